"""``mulfree run-layer``: OUT.npz equal to the golden model, one-line refusals, no overwrite."""

import numpy as np
import pytest

from hw.schedule import COUNTERS, DERIVED_COUNTERS
from model.layer_file import Layer, load_outputs, save_layer
from mulfree.cli import main
from sim import toolchain
from sim.cycle_model import ArrayParams
from tests.conftest import assert_run_exact


def _layer(tmp_path, name="layer.npz", **kw):
    rng = np.random.default_rng(4)
    layer = Layer("ternary", rng.integers(-1, 2, (3, 2, 3, 3)), rng.integers(-8, 8, (2, 6, 7)),
                  kw.get("stride", 1), kw.get("padding", 1), a_bits=4)
    path = tmp_path / name
    save_layer(path, layer)
    return layer, path


def _check_out(layer, out_path, params):
    out = load_outputs(out_path)
    assert out["outputs"].dtype == np.int64
    assert_run_exact(layer, out["outputs"],
                     {name: out[name] for name in COUNTERS + DERIVED_COUNTERS}, params)
    assert [out[name] for name in ("rows", "cols", "lanes", "filter_spad", "ifmap_spad",
                                   "tree_stages")] == [params.rows, params.cols, params.lanes,
                                                       params.filter_spad, params.ifmap_spad,
                                                       params.tree_stages]


def test_run_layer_writes_exact_outputs_and_counters(tmp_path, capsys):
    layer, path = _layer(tmp_path)
    out = tmp_path / "out.npz"
    assert main(["run-layer", str(path), "-o", str(out), "--rows", "2", "--cols", "3",
                 "--lanes", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "outputs equal the golden model: yes; counters equal the cycle model: yes" in text
    _check_out(layer, out, ArrayParams(2, 3, 2, 32, 32))


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    layer, path = _layer(tmp_path)
    out = tmp_path / "out.npz"
    out.write_bytes(b"keep me")
    assert main(["run-layer", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists; use --force" in err[0]
    assert out.read_bytes() == b"keep me"
    assert main(["run-layer", str(path), "-o", str(out), "--force", "--quiet"]) == 0
    _check_out(layer, out, ArrayParams())


@pytest.mark.parametrize("flags, message", [
    (["--filter-spad", "2"], "filter width 3 exceeds the filter scratchpad (2 words)"),
    (["--ifmap-spad", "2"], "filter width 3 exceeds the input scratchpad (2 words)"),
    (["--ifmap-spad", "12"], "argument --ifmap-spad: must be a power of two"),
    (["--rows", "0"], "argument --rows: must be an integer in [1, 64], not 0"),
    (["--lanes", "5"], "argument --lanes: must be one of 1, 2, 4, 8, 16, 32, 64, not 5"),
])
def test_unmappable_layer_is_refused_with_one_line(tmp_path, capsys, flags, message):
    _, path = _layer(tmp_path)
    out = tmp_path / "out.npz"
    assert main(["run-layer", str(path), "-o", str(out)] + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_bad_layer_files_are_refused(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, scheme=np.array("ternary"), weights=np.full((1, 1, 3, 3), 2),
             inputs=np.zeros((1, 4, 4), dtype=np.int64))
    assert main(["run-layer", str(bad), "-o", str(tmp_path / "o.npz")]) == 2
    assert "holds 2; allowed: integers in [-1, 1]" in capsys.readouterr().err
    assert main(["run-layer", str(tmp_path / "none.npz"), "-o", str(tmp_path / "o.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    stride = tmp_path / "stride.npz"
    np.savez(stride, scheme=np.array("ternary"), weights=np.ones((1, 1, 1, 1), dtype=np.int64),
             inputs=np.ones((1, 8, 8), dtype=np.int64), stride=6, padding=0)
    assert main(["run-layer", str(stride), "-o", str(tmp_path / "o.npz")]) == 2
    assert "stride 6 is not supported; allowed: 1 to 4" in capsys.readouterr().err


@pytest.mark.skipif(not toolchain.icarus_available()[0], reason="Icarus Verilog not installed")
def test_icarus_backend(tmp_path):
    layer, path = _layer(tmp_path, stride=2)
    out = tmp_path / "out.npz"
    assert main(["run-layer", str(path), "-o", str(out), "--backend", "icarus"]) == 0
    _check_out(layer, out, ArrayParams())


def test_layer_over_a_configuration_limit_is_refused_with_one_line(tmp_path, capsys):
    from hw.schedule import MAX_PADDING
    _, path = _layer(tmp_path, padding=MAX_PADDING + 1)
    out = tmp_path / "out.npz"
    assert main(["run-layer", str(path), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mulfree run-layer: error: cannot map the layer on a 3x4 array: padding "
                   f"{MAX_PADDING + 1} is not supported; allowed: 0 to {MAX_PADDING}"]
    assert not out.exists()


def test_a_64_lane_xnor_layer_runs_bit_exact(tmp_path):
    """The widest xnor words: 64 lanes (as int64 codes, lanes 0 to 62 free, the extremes)."""
    rng = np.random.default_rng(64)
    weights = rng.integers(0, 2**63 - 1, size=(2, 2, 3, 3), endpoint=True)
    inputs = rng.integers(0, 2**63 - 1, size=(2, 5, 5), endpoint=True)
    weights.flat[0], inputs.flat[0] = 2**63 - 1, 0
    layer = Layer("xnor", weights, inputs, a_bits=64, w_bits=64)
    path, out = tmp_path / "xnor64.npz", tmp_path / "out.npz"
    save_layer(path, layer)
    assert main(["run-layer", str(path), "-o", str(out), "--quiet"]) == 0
    _check_out(layer, out, ArrayParams())
