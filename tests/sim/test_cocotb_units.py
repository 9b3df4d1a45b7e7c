"""Step 2 of the verification ladder: the generated Verilog of every product unit, on
Verilator and on Icarus, through cocotb, against ``model.ops.product``.

One simulator build per simulator: a ``sim.unit_bank.UnitBank`` holds one unit of each kind
at a representative width, and the testbench (``sim.tb.units_tb``) drives each unit
exhaustively (XNOR: every activation of 16 lanes; random with the extremes at 64 lanes).
"""

import shutil

import pytest
from amaranth.hdl import Module, Mux

from hw.generate import to_verilog
from hw.units import UNIT_CLASSES, SignUnit, product_unit
from sim.cocotb_runner import run_cocotb, simulator_available
from sim.unit_bank import REPRESENTATIVE_UNITS, UnitBank


def run_bank(bank, simulator):
    ok, why = simulator_available(simulator)
    if not ok:
        pytest.skip(why)
    return run_cocotb(sources={"unit_bank.v": to_verilog(bank, name="unit_bank")},
                      toplevel="unit_bank", test_module="sim.tb.units_tb",
                      simulator=simulator, config=bank.config())


# The tests share this module's fixtures: one worker runs them all. The fixture's
# a Verilator build takes up to a minute (more on a loaded machine).
pytestmark = [pytest.mark.xdist_group("sim.test_cocotb_units"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module", params=[  # each on its own worker
    pytest.param("verilator", marks=pytest.mark.xdist_group("verilator")),
    pytest.param("icarus", marks=pytest.mark.xdist_group("icarus"))])
def bank_run(request):
    return run_bank(UnitBank.representative(), request.param)


def test_the_bank_holds_every_unit_kind():
    assert {UNIT_CLASSES[scheme] for scheme, *_ in REPRESENTATIVE_UNITS.values()} == \
        set(UNIT_CLASSES.values())


def test_every_unit_was_tested(bank_run):
    assert sorted(t.name.rsplit("=", 1)[1] for t in bank_run.testcases) == \
        sorted(REPRESENTATIVE_UNITS)


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE_UNITS))
def test_generated_unit_matches_model(bank_run, name):
    case = bank_run.testcase(f"name={name}")
    assert case.passed, bank_run.summary()


class SignUnitWithoutCarry(SignUnit):
    """A deliberately wrong sign unit: its negate forgets the +1 (one's complement)."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(Mux(self.w, ~self.a, self.a))
        return m


def test_a_wrong_unit_fails_on_the_simulator():
    bank = UnitBank({"sign": (SignUnitWithoutCarry(a_bits=8), "exhaustive"),
                     "ternary": (product_unit("ternary", a_bits=4), "exhaustive")})
    result = run_bank(bank, "icarus")
    assert not result.passed
    sign = result.testcase("name=sign")
    assert not sign.passed
    assert "256 of 512 products differ" in sign.message
    assert "a=-128 w=1 gave 127, model 128" in sign.message
    assert result.testcase("name=ternary").passed


def test_waveforms_are_opt_in_and_keep_the_build(monkeypatch):
    bank = UnitBank({"ternary": (product_unit("ternary", a_bits=3), "exhaustive")})
    quiet = run_bank(bank, "icarus")
    assert quiet.passed and quiet.build_dir is None and quiet.waves is None
    monkeypatch.setenv("MULFREE_WAVES", "1")
    bank = UnitBank({"ternary": (product_unit("ternary", a_bits=3), "exhaustive")})
    traced = run_bank(bank, "icarus")
    try:
        assert traced.passed
        assert traced.waves is not None and traced.waves.stat().st_size > 0
        assert traced.waves.parent == traced.build_dir
    finally:
        shutil.rmtree(traced.build_dir, ignore_errors=True)
