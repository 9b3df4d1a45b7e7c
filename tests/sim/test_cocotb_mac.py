"""Step 2 of the verification ladder for the MAC cell: its generated Verilog on Verilator and
Icarus through cocotb (``sim.tb.mac_tb``), with the stream driver and monitor of
``sim.streams`` (random gaps and back-pressure), against sums of ``model.ops.product``."""

import pytest

from hw.generate import mac_design
from sim.cocotb_runner import run_cocotb, simulator_available

MAC_TESTS = ["sums_match_model/flow=full_rate", "sums_match_model/flow=stalling",
             "accumulator_reaches_both_bounds", "one_beat_per_cycle_and_declared_latency",
             "clear_drops_the_sum_in_progress"]


# The tests share this module's fixtures: one worker runs them all. The fixture's
# a Verilator build takes up to a minute (more on a loaded machine).
pytestmark = [pytest.mark.xdist_group("sim.test_cocotb_mac"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module", params=[  # each on its own worker
    pytest.param("verilator", marks=pytest.mark.xdist_group("verilator")),
    pytest.param("icarus", marks=pytest.mark.xdist_group("icarus"))])
def mac_run(request):
    ok, why = simulator_available(request.param)
    if not ok:
        pytest.skip(why)
    design = mac_design(scheme="pow2", a_bits=8, fan_in=25)
    return run_cocotb(sources={f"{design.module}.v": design.verilog}, toplevel=design.module,
                      test_module="sim.tb.mac_tb", simulator=request.param,
                      config=design.manifest)


def test_every_mac_test_ran(mac_run):
    assert sorted(t.name for t in mac_run.testcases) == sorted(MAC_TESTS), mac_run.summary()


@pytest.mark.parametrize("name", MAC_TESTS)
def test_generated_mac_cell(mac_run, name):
    assert mac_run.testcase(name).passed, mac_run.summary()
