"""Shared weights on the array: codebook indices through the LutUnit, zeros skipped, bit-exact.

Golden model: ``model.compress.codebook_conv2d``; counters: ``sim.cycle_model.predict`` with
the codebook (``skipped`` counts the MACs whose codebook level is 0).
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.units import product_unit
from model.compress import (codebook_accumulator_width, codebook_conv2d, integer_codebook,
                            prune_to_sparsity, share_weights)
from model.layer_file import Layer, load_layer, save_layer
from sim.cocotb_runner import simulator_available
from sim.cycle_model import ArrayParams
from sim.run_layer import run_layer
from tests.conftest import assert_run_exact


def shared_layer(rng, shape, *, share_bits=3, sparsity=0.6, a_bits=5):
    """A pruned, k-means-shared layer with an 8-bit integer codebook, and its input codes."""
    m, c, r, s, h, w = shape
    weights = rng.standard_normal((m, c, r, s))
    weights *= prune_to_sparsity(weights, sparsity)
    shared = share_weights(weights, share_bits)
    levels, _ = integer_codebook(shared.codebook, 8)
    inputs = rng.integers(0, 1 << a_bits, size=(c, h, w))
    return shared.indices, levels, inputs


def check_on_array(layer: Layer, params: ArrayParams, backend: str = "amaranth"):
    run = run_layer(layer, backend=backend, params=params)
    assert_run_exact(layer, run.outputs, run.counters, params, run.mapping)
    return run


def test_product_unit_with_a_codebook_is_the_table_of_its_levels():
    levels, _ = integer_codebook([0.0, -0.31, -0.05, 0.12, 0.29, 0.0, 0.0, 0.0], 6)
    unit = product_unit("dorefa", a_bits=3, w_bits=3, codebook=levels)
    assert unit.can_skip
    sim = Simulator(unit)
    seen = []

    async def tb(ctx):
        for w in range(8):
            for a in range(8):
                ctx.set(unit.w, w)
                ctx.set(unit.a, a)
                seen.append((w, a, ctx.get(unit.p), ctx.get(unit.skip)))

    sim.add_testbench(tb)
    sim.run()
    for w, a, p, skip in seen:
        assert p == levels[w] * a and skip == (levels[w] == 0)


def test_codebook_needs_the_lut_scheme():
    with pytest.raises(ValueError, match="'dorefa'"):
        product_unit("ternary", a_bits=4, codebook=[0, 1, -1, 0])
    with pytest.raises(ValueError, match="'dorefa'"):
        Layer("ternary", np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1)), codebook=[0, 1, -1, 0])
    with pytest.raises(ValueError, match="2\\^w_bits = 4 levels"):
        Layer("dorefa", np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1)), w_bits=2, a_bits=4,
              codebook=[0, 1, -1])


@pytest.mark.parametrize("shape, stride, padding, rows, cols", [
    ((2, 2, 3, 3, 5, 5), 1, 1, 3, 4),     # padding at every border
    ((3, 1, 3, 3, 7, 7), 2, 0, 3, 4),     # stride 2
    ((2, 2, 5, 5, 6, 6), 1, 2, 3, 2),     # R > rows (row folds), E > cols (column folds)
    ((6, 12, 1, 1, 1, 1), 1, 0, 3, 4),    # a dense layer
])
def test_shared_layers_are_bit_exact_with_zeros_skipped(shape, stride, padding, rows, cols):
    rng = np.random.default_rng(sum(shape) + stride + padding)
    indices, levels, inputs = shared_layer(rng, shape)
    layer = Layer("dorefa", indices, inputs, stride=stride, padding=padding, a_bits=5,
                  w_bits=3, codebook=levels)
    run = check_on_array(layer, ArrayParams(rows=rows, cols=cols, lanes=2))
    assert 0 < run.counters["skipped"] < run.counters["macs"]


def test_all_zero_weights_skip_every_mac():
    rng = np.random.default_rng(0)
    _, levels, inputs = shared_layer(rng, (2, 3, 3, 3, 4, 4))
    layer = Layer("dorefa", np.zeros((2, 3, 3, 3), dtype=np.int64), inputs, padding=1,
                  a_bits=5, w_bits=3, codebook=levels)
    run = check_on_array(layer, ArrayParams())
    assert run.counters["skipped"] == run.counters["macs"] > 0
    assert not run.outputs.any()


def test_accumulator_at_its_bound():
    # Every weight at the most negative level, every activation at its largest code.
    levels = np.array([0, -128, 5, 127])
    weights = np.ones((2, 4, 3, 3), dtype=np.int64)
    inputs = np.full((4, 3, 3), 31)
    layer = Layer("dorefa", weights, inputs, a_bits=5, w_bits=2, codebook=levels)
    run = check_on_array(layer, ArrayParams())
    assert run.outputs.min() == -128 * 31 * 36
    width = codebook_accumulator_width(levels, a_bits=5, fan_in=36)
    assert run.outputs.min() >= -(1 << (width - 1))


def test_layer_file_keeps_the_codebook(tmp_path):
    rng = np.random.default_rng(3)
    indices, levels, inputs = shared_layer(rng, (2, 2, 3, 3, 4, 4))
    layer = Layer("dorefa", indices, inputs, padding=1, a_bits=5, w_bits=3, codebook=levels)
    save_layer(tmp_path / "layer.npz", layer)
    back = load_layer(tmp_path / "layer.npz")
    np.testing.assert_array_equal(back.codebook, levels)
    np.testing.assert_array_equal(back.weights, indices)


def check_shared_layer_on_simulator(simulator: str, seed: int):
    """Skip unless ``simulator`` runs here; else check a padded shared layer on it."""
    ok, why = simulator_available(simulator)
    if not ok:
        pytest.skip(why)
    rng = np.random.default_rng(seed)
    indices, levels, inputs = shared_layer(rng, (2, 2, 3, 3, 5, 5))
    layer = Layer("dorefa", indices, inputs, padding=1, a_bits=5, w_bits=3, codebook=levels)
    check_on_array(layer, ArrayParams(), backend=simulator)


def test_icarus_runs_a_shared_layer_bit_exact():
    check_shared_layer_on_simulator("icarus", seed=4)


@pytest.mark.slow
def test_verilator_runs_a_shared_layer_bit_exact(request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the Verilator build takes about 45 s here; run with -m slow")
    check_shared_layer_on_simulator("verilator", seed=5)


def test_run_layer_command_accepts_a_shared_layer(tmp_path, capsys):
    from model.layer_file import load_outputs
    from mulfree.cli import main

    rng = np.random.default_rng(6)
    indices, levels, inputs = shared_layer(rng, (4, 9, 1, 1, 1, 1), sparsity=0.7)
    layer = Layer("dorefa", indices, inputs, a_bits=5, w_bits=3, codebook=levels)
    save_layer(tmp_path / "layer.npz", layer)
    assert main(["run-layer", str(tmp_path / "layer.npz"), "-o", str(tmp_path / "out.npz"),
                 "--quiet"]) == 0
    assert "golden model: yes" in capsys.readouterr().out
    out = load_outputs(tmp_path / "out.npz")
    expected = codebook_conv2d(inputs, indices, levels, a_bits=5)
    np.testing.assert_array_equal(out["outputs"], expected)
    assert int(out["skipped"]) == int(np.count_nonzero(levels[indices] == 0)) > 0
