"""``mulfree build``: boards by name, one real place-and-route, clear one-line refusals."""

import json
import re

import pytest

from mulfree.cli import main
from sim import toolchain


def run(capsys, *argv):
    status = main(["build", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def open_toolchain_found():
    return all(t.found for t in toolchain.find_fpga_tools()
               if t.name in ("yosys", "nextpnr-ice40", "icepack"))


def assert_one_line_error(status, err, *fragments):
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("mulfree build: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_list_boards_shows_the_tested_ones_first(capsys):
    status, out, _ = run(capsys, "--list-boards")
    assert status == 0
    lines = out.splitlines()
    assert lines[1].split()[:4] == ["icebreaker", "iCE40UP5K", "12", "MHz"]
    assert lines[2].split()[:4] == ["ulx3s-85f", "LFE5U-85F", "25", "MHz"]
    assert "here (tested)" in lines[1] and "here (tested)" in lines[2]
    arty = next(line for line in lines if line.startswith("arty-a7-35 "))
    assert "tree only: needs AMD Vivado" in arty


@pytest.mark.parametrize("argv, fragments", [
    ((), ["--board is required"]),
    (("--board", "icebreaker", "--link-test"), ["-o/--output DIR is required"]),
    (("--board", "icebreaker", "-o", "x", "--counter-bits", "7"),
     ["argument --counter-bits: must be an integer in [8, 64], not 7"]),
    (("--board", "icebreaker", "-o", "x", "--link-test", "--scheme", "ternary"),
     ["exactly one of --scheme"]),
    (("--board", "icebreakr", "-o", "x", "--link-test"),
     ["unknown board 'icebreakr'", "tested: icebreaker, ulx3s-85f"]),
    (("--board", "icebreaker", "-o", "x", "--link-test", "--baud", "4000000"),
     ["baud rate 4e+06 is too fast for a 12 MHz clock"]),
    (("--board", "icebreaker", "-o", "x", "--scheme", "quaternary"),
     ["unknown scheme 'quaternary'"]),
    (("--board", "icebreaker", "-o", "x", "--scheme", "ternary", "--rows", "0"),
     ["argument --rows: must be an integer in [1, 64], not 0"]),
    (("--board", "icebreaker", "-o", "x", "--scheme", "ternary", "--acc-bits", "99"),
     ["argument --acc-bits: must be an integer in [2, 64], not 99"]),
    (("--board", "icebreaker", "-o", "x", "--scheme", "ternary", "--lanes", "6"),
     ["argument --lanes: must be one of 1, 2, 4, 8, 16, 32, 64, not 6"]),
    (("--board", "icebreaker", "-o", "x", "--scheme", "ternary", "--spad", "12"),
     ["argument --spad: must be a power of two"]),
    (("--board", "icebreaker", "-o", "x", "--scheme", "dorefa"), ["needs a weight width"]),
    (("--board", "icebreaker", "-o", "x", "--scheme", "int", "--multipliers", "logic"),
     ["argument --multipliers: unknown multiplier placement 'logic'; allowed: dsp, lut"]),
    (("--board", "icestick", "-o", "x", "--scheme", "int", "--multipliers", "dsp"),
     ["--multipliers dsp: the iCE40HX1K (icestick) has no DSP blocks; allowed there: lut"]),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, argv, fragments):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, *argv)
    assert_one_line_error(status, err, *fragments)
    assert not (tmp_path / "x").exists()


def test_an_existing_output_is_not_replaced_without_force(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    status, _, err = run(capsys, "--board", "icebreaker", "--link-test", "-o", str(out))
    assert_one_line_error(status, err, "exists and is not empty; use --force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_vendor_board_writes_its_build_tree_and_names_the_tool(capsys, tmp_path):
    status, out, _ = run(capsys, "--board", "arty-a7-35", "--link-test", "-o",
                         str(tmp_path / "arty"))
    assert status == 0
    assert "not built here: it needs AMD Vivado (vivado)" in out
    assert json.loads((tmp_path / "arty" / "report.json").read_text())["built"] is False


@pytest.mark.skipif(not open_toolchain_found(), reason="YoWASP Yosys/nextpnr-ice40 not installed")
@pytest.mark.timeout(600)  # synthesis, place-and-route and packing: half a minute or more
def test_link_test_bitstream_for_the_icebreaker(capsys, tmp_path):
    """The one real place-and-route of the test suite (well under a minute)."""
    out = tmp_path / "link"
    status, printed, _ = run(capsys, "--board", "icebreaker", "--link-test", "-o", str(out))
    assert status == 0
    bitstream = out / "top.bin"
    assert bitstream.exists() and bitstream.stat().st_size > 100_000  # the UP5K image
    report = json.loads((out / "report.json").read_text())
    assert report["built"] and report["meets_timing"] is True
    capacity = {"logic cells": 5280, "block RAM": 30, "DSP": 8, "SPRAM": 4}  # iCE40UP5K
    for resource, available in capacity.items():
        assert report["utilisation"][resource]["available"] == available
    used = report["utilisation"]["logic cells"]["used"]
    # the fit check's packed count is exactly what place-and-route used
    assert report["packed"]["logic cells"] == used < capacity["logic cells"]
    (fmax,) = report["fmax_mhz"].values()
    assert fmax >= 12
    assert re.search(rf"^  logic cells +{used:,} / 5,280 +{100 * used / 5280:.1f} %$", printed,
                     re.MULTILINE)
    assert f"fmax cd_sync.clk: {fmax:.1f} MHz  (meets the 12 MHz board clock" in printed
    assert f"bitstream: {bitstream}  (" in printed
    # the report beside the bitstream names it by file name: it stays true when moved
    assert re.search(r"^bitstream: top\.bin  \(", (out / "report.txt").read_text(),
                     re.MULTILINE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder


def test_design_accelerator_sizes_the_accelerator_for_the_layers_with_most_macs(tmp_path, capsys):
    import numpy as np
    from model import deploy, nets
    from model.layer_file import Layer
    from mulfree.commands.build import _model_args
    from sim.cycle_model import ArrayParams

    net = nets.build("ternarynet", (1, 8, 8), pixel_max=16)
    model = deploy.fold(net, input_shape=(1, 8, 8), pixel_max=16)
    path = tmp_path / "model.npz"
    deploy.save(model, path)
    params = ArrayParams(3, 4, 2, 32, 32)
    args, note = _model_args(path, params, 20)
    assert args.counter_bits == 20 and args.lanes == 2
    first, rest = model.layers[0], model.layers[1:]
    sized, _ = _model_args(path, params, None)   # from the layers
    from sim.run_layer import plan
    peak = max(plan(Layer(il.scheme, il.weights, np.zeros(il.in_shape, dtype=np.int64),
                          stride=il.stride, padding=il.padding, a_bits=il.a_bits,
                          w_bits=il.w_bits), params)[2].counter_peak
               for il in rest)
    assert sized == args.replace(counter_bits=max(8, peak.bit_length()))
    assert first.a_bits != rest[0].a_bits                     # the pixels are wider
    assert (args.scheme, args.a_bits, args.w_bits) == ("ternary", rest[0].a_bits, 2)
    assert args.acc_bits == max(layer.accumulator_width for layer in rest)
    assert "for layers 1, 2, 3" in note and "(layer 0 uses another scheme or width)" in note


def test_model_flag_refuses_a_float_checkpoint(tmp_path, capsys):
    from model import deploy, nets
    deploy.save_float(nets.build("float", (1, 8, 8), pixel_max=16), tmp_path / "float.npz",
                      net_name="float", input_shape=(1, 8, 8), pixel_max=16, classes=10)
    status, _, err = run(capsys, "--board", "icebreaker", "-o", str(tmp_path / "x"),
                         "--model", str(tmp_path / "float.npz"))
    assert_one_line_error(status, err, "is a float checkpoint")


def test_a_board_without_a_serial_port_is_refused_in_one_line(capsys, tmp_path):
    status, _, err = run(capsys, "--board", "orangecrab-r0-2-85f", "--link-test", "-o",
                         str(tmp_path / "oc"))
    assert_one_line_error(status, err, "OrangeCrabR0_2_85FPlatform has no 'uart' resource")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("outcome, built", [
    ("ok", [((2, 2), False)]),
    ("unroutable", [((2, 2), False), ((2, 1), False)]),
    ("slow", [((2, 2), False), ((2, 1), True)]),
])
def test_without_a_size_the_largest_array_that_packs_is_built_then_one_with_room(
        monkeypatch, outcome, built):
    """The largest array whose packed design fits is placed and routed; if that fails or
    misses the board clock, the largest within 95 % of the logic is built (over the first
    attempt's output, which this run wrote), then within the logic headroom."""
    import argparse
    from boards import build as flow
    from boards.build import BuildError, DoesNotFit
    from mulfree.commands import build as command

    searched, calls = [], []

    def fake_search(board, make_top, rows, cols, overflow, *, progress, headroom, most_pes,
                    synth_opts=None):
        assert most_pes
        searched.append(headroom)
        return ((2, 2) if headroom == 1.0 else (2, 1)) + ([],)

    class Report:
        built = True

        def __init__(self, size):
            self.meets_timing = not (outcome == "slow" and size == (2, 2))

    def fake_build(board, top, out, *, force, progress, extra_files, synth_opts=None):
        calls.append((top, force))
        if outcome == "unroutable" and top == (2, 2):
            raise BuildError("nextpnr-ice40 failed: cannot route")
        assert json.loads(extra_files["accelerator.json"])["rows"] == top[0]
        return Report(top)

    monkeypatch.setattr(flow, "largest_array_that_fits", fake_search)
    monkeypatch.setattr(flow, "build", fake_build)
    args = argparse.Namespace(rows=3, cols=4, baud=115200, output="x", force=False,
                              synth_opts=None)
    overflow = DoesNotFit("logic cells", 9000, 5280, "iCE40UP5K", "icebreaker")
    from hw.schedule import AcceleratorConfig
    def extra_for(r, c):
        return {"accelerator.json": json.dumps(AcceleratorConfig(rows=r, cols=c).to_dict())}
    report = command._build_largest(args, "icebreaker", lambda r, c: (r, c), extra_for,
                                    overflow)
    assert calls == built and report.meets_timing
    assert (args.rows, args.cols) == calls[-1][0]
    assert searched == [1.0, 0.95][:len(calls)]


def test_design_accelerator_needs_a_model(capsys, tmp_path):
    status, _, err = run(capsys, "--board", "icebreaker", "-o", str(tmp_path / "x"),
                         "--design", "accelerator")
    assert_one_line_error(status, err, "--design accelerator sizes the one-layer accelerator")
    status, _, err = run(capsys, "--board", "icebreaker", "-o", str(tmp_path / "x"),
                         "--design", "chip")
    assert status == 2 and "chip" in err


@pytest.mark.parametrize("argv, program, counters", [
    (["--board", "icebreaker"], "builtin", False),
    (["--board", "ulx3s-85f"], "loaded", True),
    (["--board", "icebreaker", "--program", "loaded", "--counters"], "loaded", True),
    (["--board", "ulx3s-85f", "--program", "builtin", "--no-counters"], "builtin", False),
])
def test_the_engine_a_board_gets_by_default_and_on_request(monkeypatch, tmp_path, capsys, argv,
                                                            program, counters):
    """``--model``: on the iCE40 the program is built in and there are no per-layer counters
    (room for a larger array), elsewhere both are as before; the flags override either."""
    import boards.engine
    import boards.top
    from boards import build as flow
    from model import deploy, nets
    model = tmp_path / "bn.npz"
    deploy.save(deploy.fold(nets.build("binarynet", (1, 8, 8), pixel_max=16, seed=0),
                            input_shape=(1, 8, 8), pixel_max=16), model)
    built = {}

    class Report:
        built, meets_timing, fmax_mhz = True, True, {}

        def lines(self):
            return []

    def fake_build(board, top, out, *, force, progress, extra_files, synth_opts=None):
        built.update(json.loads(extra_files["engine.json"]))
        built["engine"] = top()          # what the bitstream would hold
        return Report()

    class Top:                           # the board top and its target, not elaborated
        def __init__(self, target_factory, *, baud):
            self.target_factory = target_factory

        def __call__(self):
            return self.target_factory()

    monkeypatch.setattr(flow, "build", fake_build)
    monkeypatch.setattr(boards.top, "BoardTop", Top)
    monkeypatch.setattr(boards.engine, "EngineTarget", lambda engine, weight_ram: engine)
    status, out, _ = run(capsys, *argv, "--model", str(model), "--rows", "1", "--cols", "2",
                         "-o", str(tmp_path / "x"))
    assert status == 0
    assert (built["program"], built["counters"], built["rows"], built["cols"]) == \
        (program, counters, 1, 2)
    engine = built["engine"]
    assert (engine.builtin is not None, engine.counters) == (program == "builtin", counters)
    assert "images/s:" in out


def test_an_unknown_program_place_is_refused(tmp_path, capsys):
    status, _, err = run(capsys, "--board", "icebreaker", "--model", "m.npz", "--program",
                         "rom", "-o", str(tmp_path / "x"))
    assert_one_line_error(status, err, "rom")
    assert list(tmp_path.iterdir()) == []


def test_design_accelerator_takes_a_model_with_grouped_layers(tmp_path):
    """mobilenet_tiny's depthwise layers: the accelerator sized for the model runs its groups
    one after the other (``AcceleratorConfig.groups``: the most groups of its layers)."""
    from model import deploy, nets
    from mulfree.commands.build import _model_args
    from sim.cycle_model import ArrayParams
    net = nets.build("mobilenet_tiny", (1, 8, 8), pixel_max=16, seed=0)
    model = deploy.fold(net, input_shape=(1, 8, 8), pixel_max=16)
    deploy.save(model, tmp_path / "mobile.npz")
    accel, note = _model_args(tmp_path / "mobile.npz", ArrayParams(3, 4, 1, 32, 32, 0), None)
    in_it = [int(k) for k in note.split("for layers ")[1].split(" of ")[0].split(", ")]
    most = max(model.layers[k].groups for k in in_it)
    assert most > 1 and accel.groups == most
