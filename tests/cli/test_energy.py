"""``mulfree energy`` as a user meets it: the table, JSON and plot files, pricing a run-layer
output beside the model, refusals."""

import json

import numpy as np
import pytest

from model import deploy, nets
from mulfree.cli import main
from sim import energy


def _run(capsys, *args):
    code = main(["energy", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_issue_command_writes_table_json_and_plot(capsys, tmp_path):
    js, png = tmp_path / "alexnet.json", tmp_path / "alexnet.png"
    code, out, err = _run(capsys, "--network", "alexnet", "--pes", "256", "--batch", "16",
                          "--json", str(js), "--plot", str(png))
    assert code == 0, err
    assert "CONV layers, energy relative to RS: WS" in out and "FC layers" in out
    assert "OS_A" in out and "OS_B" in out and "OS_C" in out and "NLR" in out
    for name in ("conv1", "conv5", "fc8"):
        assert any(line.startswith(name) for line in out.splitlines())
    data = json.loads(js.read_text())
    assert set(data["dataflows"]) == set(energy.PAPER_DATAFLOWS)
    report = energy.network_energy("alexnet", batch=16, pes=256)
    for df, d in data["dataflows"].items():
        assert list(d["layers"]) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                     "fc7", "fc8"]
        for le in report.dataflows[df].layers:
            got = d["layers"][le.layer.name]
            assert got["total"] == pytest.approx(le.total)
            assert got["levels"]["dram"] == pytest.approx(le.energy["dram"])
            assert got["counts"]["rf"]["psums"] == pytest.approx(le.counts["rf"]["psums"])
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_45nm_and_a_subset_of_dataflows(capsys, tmp_path):
    js = tmp_path / "lenet.json"
    code, out, err = _run(capsys, "--network", "lenet5", "--pes", "64", "--batch", "2",
                          "--dataflows", "rs,nlr", "--costs", "45nm", "--json", str(js))
    assert code == 0, err
    data = json.loads(js.read_text())
    assert data["unit"] == "pJ" and set(data["dataflows"]) == {"rs", "nlr"}
    assert data["dataflows"]["rs"]["hardware"]["pes"] == 64
    assert "energy in pJ units" in out


def test_scheme_flags(capsys, tmp_path):
    js = tmp_path / "t.json"
    code, _, err = _run(capsys, "--network", "digits", "--pes", "16", "--batch", "1",
                        "--scheme", "ternary", "--a-bits", "8", "--sparsity", "0.5",
                        "--json", str(js))
    assert code == 0, err
    data = json.loads(js.read_text())
    conv1 = data["dataflows"]["rs"]["layers"]["conv1"]
    assert conv1["scheme"]["name"] == "ternary" and conv1["scheme"]["a_bits"] == 8
    assert conv1["counts"]["skipped"] == pytest.approx(conv1["counts"]["macs"] / 2)


def test_a_deployment_model_file(capsys, tmp_path):
    net = nets.build("ternarynet", (1, 8, 8), 10, pixel_max=16, seed=5)
    model = deploy.fold(net, input_shape=(1, 8, 8), pixel_max=16)
    path = tmp_path / "ternary.npz"
    deploy.save(model, path)
    js = tmp_path / "m.json"
    code, out, err = _run(capsys, "--network", str(path), "--pes", "16", "--batch", "1",
                          "--json", str(js))
    assert code == 0, err
    data = json.loads(js.read_text())
    assert data["network"] == "ternary"
    layers = data["dataflows"]["rs"]["layers"]
    assert list(layers) == ["conv1", "conv2", "fc3", "fc4"]
    for (name, ly), src in zip(layers.items(), model.layers):
        zeros = np.mean(src.weights == 0)
        assert ly["counts"]["skipped"] == pytest.approx(ly["counts"]["macs"] * zeros)
        assert ly["scheme"]["acc_bits"] == src.accumulator_width


def test_existing_outputs_need_force(capsys, tmp_path):
    js = tmp_path / "e.json"
    js.write_text("keep me")
    code, out, err = _run(capsys, "--network", "digits", "--pes", "16", "--json", str(js))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--force" in err
    assert js.read_text() == "keep me"
    code, _, err = _run(capsys, "--network", "digits", "--pes", "16", "--json", str(js),
                        "--force")
    assert code == 0, err
    assert json.loads(js.read_text())["network"] == "digits"


@pytest.mark.parametrize("args, words", [
    (["--dataflows", "rs,xs"], "unknown dataflow 'xs'"),
    (["--dataflows", "rs,os"], "unknown dataflow 'os'"),
    (["--network", "resnet"], "unknown network 'resnet'"),
    (["--batch", "0"], "argument --batch: must be an integer in [1, 65536], not 0"),
    (["--batch", "1000000000000000"], "must be an integer in [1, 65536], not 1000000000000000"),
    (["--batch", "1e15"], "must be an integer in [1, 65536], not '1e15'"),
    (["--pes", "16", "--rows", "5"], "--rows 5 does not divide --pes 16"),
    (["--sparsity", "2"], "argument --sparsity: must be a finite number in [0, 1], not 2"),
    (["--sparsity", "nan"], "argument --sparsity: must be a finite number in [0, 1], not nan"),
    (["--scheme", "binary", "--w-bits", "4"], "fixed weight width"),
    (["--json", "no/such/folder/e.json"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, args, words):
    code, out, err = _run(capsys, "--network", "digits", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_a_float_checkpoint_is_refused(capsys, tmp_path):
    net = nets.build("float", (1, 8, 8), 10, pixel_max=16, seed=0)
    path = tmp_path / "float.npz"
    deploy.save_float(net, path, net_name="float", input_shape=(1, 8, 8), pixel_max=16,
                      classes=10)
    code, _, err = _run(capsys, "--network", str(path))
    assert code == 2 and "float network" in err and len(err.strip().splitlines()) == 1


def test_the_alternatives_are_named(capsys):
    code, out, err = _run(capsys, "--network", "digits", "--pes", "16", "--batch", "1",
                          "--dataflows", "rs,ws_array,os_any")
    assert code == 0, err
    assert "WS_ARRAY" in out and "OS_ANY" in out


# ------------------------------------------------------------------------------------------
# --run: what a run-layer output counted, priced beside the model.

@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    from model.layer_file import Layer, save_layer

    folder = tmp_path_factory.mktemp("ran")
    rng = np.random.default_rng(5)
    save_layer(folder / "conv.npz", Layer("ternary", rng.integers(-1, 2, (4, 3, 3, 3)),
                                          rng.integers(-8, 8, (3, 6, 6)), 1, 1, a_bits=4))
    save_layer(folder / "fc.npz", Layer("binary", rng.integers(0, 2, (5, 12, 1, 1)),
                                        rng.integers(-8, 8, (12, 1, 1)), 1, 0, a_bits=4))
    # the conv layer on 2 lanes and smaller scratchpads: --run reads them from OUT.npz
    for name, array in (("conv", ["--lanes", "2", "--filter-spad", "16", "--ifmap-spad", "16"]),
                        ("fc", [])):
        assert main(["run-layer", str(folder / f"{name}.npz"), "-o",
                     str(folder / f"{name}_out.npz"), "--quiet", *array]) == 0
    return folder


def test_run_prices_each_layer_and_level_beside_the_model(capsys, ran, tmp_path):
    capsys.readouterr()
    js = tmp_path / "runs.json"
    code, out, err = _run(capsys, "--run", str(ran / "conv_out.npz"), "--layer",
                          str(ran / "conv.npz"), "--run", str(ran / "fc_out.npz"), "--layer",
                          str(ran / "fc.npz"), "--json", str(js))
    assert code == 0, err
    for name in ("conv: ternary", "fc: binary", "all 2 layers (pJ)"):
        assert name in out
    assert out.count("counters equal the model: yes") == 2
    for level in ("dram", "glb", "array", "rf", "alu"):
        assert sum(line.split()[:1] == [level] for line in out.splitlines()) == 2
    data = json.loads(js.read_text())
    from model.layer_file import load_layer, load_outputs
    for run, name in zip(data["runs"], ("conv", "fc")):
        counters = load_outputs(ran / f"{name}_out.npz")
        layer = load_layer(ran / f"{name}.npz")
        assert run["counters"]["ran"] == {k: counters[k] for k in run["counters"]["ran"]}
        assert run["counters_equal"] and run["unit"] == "pJ"
        words = -(-layer.inputs.shape[0] // counters["lanes"])    # channels per word: lanes
        n_w, n_in = layer.weights[:, :words].size, layer.inputs[:words].size
        n_out = int(np.prod(counters["outputs"].shape))
        assert run["ran"]["counts"]["dram"] == {"inputs": n_in, "weights": n_w, "psums": n_out}
        assert run["ran"]["counts"]["array"]["psums"] == counters["array_transfers"]
        assert sum(run["ran"]["counts"]["rf"].values()) == \
            counters["rf_reads"] + counters["rf_writes"]
        assert run["ran"]["total"] == pytest.approx(run["model"]["total"])


@pytest.mark.parametrize("args, words", [
    (["--run", "{d}/conv_out.npz"], "--run and --layer come in pairs: 1 --run, 0 --layer"),
    (["--run", "{d}/conv_out.npz", "--layer", "{d}/fc.npz"], "not the same layer"),
    (["--run", "{d}/none.npz", "--layer", "{d}/conv.npz"], "none.npz does not exist"),
    (["--run", "{d}/conv_out.npz", "--layer", "{d}/conv.npz", "--plot", "x.png"],
     "with --run use --json"),
    (["--run", "{d}/conv_out.npz", "--layer", "{d}/conv.npz", "--ifmap-spad", "3"],
     "--ifmap-spad: must be a power of two"),
    (["--run", "{d}/conv_out.npz", "--layer", "{d}/conv.npz", "--psum-spad", "4"],
     "unrecognized arguments: --psum-spad"),
])
def test_bad_run_input_is_one_line_exit_2(capsys, ran, args, words):
    capsys.readouterr()
    code, out, err = _run(capsys, *[a.format(d=ran) for a in args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
