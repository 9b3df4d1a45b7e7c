"""``mulfree demo``: a short run end to end (one epoch, one image, no synthesis)."""

import json

import numpy as np
import pytest

from model import deploy
from mulfree.cli import main


# The tests share this module's fixtures: one worker runs them all. The fixture's
# training and RTL simulation takes up to a minute (more on a loaded machine).
pytestmark = [pytest.mark.xdist_group("cli.test_demo"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    status = main(["demo", "--epochs", "1", "--images", "1", "--no-synthesis", "--no-progress",
                   "--engine-images", "2", "-o", str(out)])
    return status, out


def test_short_demo_is_bit_exact_and_writes_its_report(short_run, capsys):
    status, out = short_run
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    rtl = summary["rtl"]
    assert rtl["bit_exact"] and rtl["counters_equal_cycle_model"]
    # the whole network on the iCEBreaker's network engine (1x3, its program built in, no
    # per-layer counters): two test images, scores and cycles equal to the models'
    eng = summary["engine"]
    assert eng["images"] == eng["bit_exact"] == eng["cycles_equal"] == 2
    assert eng["array"] == "1x3" and eng["counters_equal"] is None
    from sim import toolchain
    assert eng["backend"] == ("verilator" if toolchain.verilator_available()[0] else "amaranth")
    assert eng["images_per_s"] == pytest.approx(12e6 / eng["cycles_per_image"])
    assert "## The whole network on the network engine" in (out / "report.md").read_text()
    model = deploy.load(out / "model.npz")
    # every accumulator of every layer of the image was compared
    expected = sum(int(np.prod(layer.weights.shape[:1])) * _out_pixels(layer)
                   for layer in model.layers)
    assert rtl["accumulators_compared"] == expected
    assert [layer["layer"] for layer in rtl["layers"]] == list(range(len(model.layers)))
    # the default array is the one whose accelerator fits the iCEBreaker (2x1), its counters
    # just wide enough for its layers' largest count (cycle model)
    from model.layer_file import Layer
    from sim.cycle_model import COUNTERS, ArrayParams, predict
    from sim.run_layer import layer_shape
    settings = summary["settings"]
    assert (settings["rows"], settings["cols"], settings["counter_bits"]) == (2, 1, None)
    lanes = {}
    for a in rtl["accelerators"]:
        assert (a["rows"], a["cols"]) == (2, 1)
        # xnor layers get as many lanes as the model packs channels into a word
        assert a["lanes"] == (32 if a["scheme"] == "xnor" else 1)
        params = ArrayParams(2, 1, a["lanes"], 32, 32)
        peak = 0
        for k in a["layers"]:
            lanes[k] = a["lanes"]
            il = model.layers[k]
            shape = layer_shape(Layer(il.scheme, il.weights, np.zeros(il.in_shape, int),
                                      il.stride, il.padding, a_bits=il.a_bits,
                                      w_bits=il.w_bits))
            counts = predict(shape, params)
            peak = max(peak, *(counts[c] for c in COUNTERS if c != "skipped"))
        assert a["counter_bits"] == max(8, peak.bit_length())
    for layer in rtl["layers"]:
        assert layer["exact_images"] == 1
        assert layer["utilisation"] == pytest.approx(
            layer["macs"] / (2 * lanes[layer["layer"]] * layer["cycles"]), abs=1e-4)
    acc = summary["accuracy"]
    assert acc["agreement"] == 1.0 and acc["integer_model"] == acc["trained_model"]
    assert model.meta["accuracy"] == acc
    assert {p.name for p in (out / "verilog").iterdir()} == {
        f"accelerator_{a['scheme']}_a{a['a_bits']}_w{a['w_bits']}_l{a['lanes']}.v"
        for a in rtl["accelerators"]}
    for plot in ("energy_dataflows.png", "energy_schemes.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "bit-exact" in report and "| 0 | binary |" in report
    energy = summary["energy_pj"]
    assert set(energy["by_dataflow_per_image"]) == {"RS", "WS", "OS_A", "OS_B", "OS_C", "NLR"}
    assert energy["our_array_per_image"]["total"] > energy["our_array_per_image"]["compute"] > 0
    assert summary["synthesis"] is None and summary["bitstream"] is None


def _out_pixels(layer):
    from model.ops import conv_output_size
    _, h, w = layer.in_shape
    _, _, r, s = layer.weights.shape
    return (conv_output_size(h, r, layer.stride, layer.padding)
            * conv_output_size(w, s, layer.stride, layer.padding))


def test_the_demo_does_not_replace_a_report_without_force(short_run, capsys):
    _, out = short_run
    before = sorted(p.name for p in out.iterdir())
    status = main(["demo", "--epochs", "1", "--images", "1", "--no-synthesis", "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert "exists and is not empty; use --force" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "argument --images: must be an integer >= 1, not 0"),
    (["--images", "360"], "images must be in [1, 359] (the test images of digits), not 360"),
    (["--net", "float"], "argument --net: network 'float' is a float network; the demo needs "
                         "a quantized one"),
    (["--net", "resnet"], "argument --net: unknown network 'resnet'"),
    (["--board", "nope"], "unknown board 'nope'"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    status = main(["demo", "--epochs", "1", "--no-synthesis", "-o", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and message in err[-1] and err[-1].startswith("mulfree demo: error:")
    assert not (tmp_path / "r").exists()
