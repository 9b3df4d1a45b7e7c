"""How long an RTL simulation of the accelerator will take, predicted before it starts.

The simulated cycles come from the cycle model (``sim.cycle_model.predict``: the compute
``cycles`` plus one cycle per stream word, ``offchip_words``); the speed of each simulator is
measured by ``python benchmarks/sim_speed.py`` (``docs/array.md``). Amaranth's simulator and
Icarus evaluate every PE every cycle, so their speed falls with the array's size; Verilator
under cocotb is held back by cocotb's per-cycle Python monitor instead, after a build.

The figures are for an idle 2-core machine; a loaded one is slower, so the estimate is a lower
bound of the order of magnitude, meant to refuse runs of hours, not to time runs of minutes.
"""

from __future__ import annotations

__all__ = ["SPEED", "BUILD_SECONDS", "LIMIT_SECONDS", "simulation_seconds", "describe"]

#: Simulated cycles per second times (PEs + 3) for the simulators that evaluate every PE
#: (Amaranth: 2,050-2,180 cycles/s on a 3x4 array; Icarus about 1.3 times that), and cycles
#: per second for Verilator under cocotb (about 28,000 on a 3x4 array).
SPEED = {"amaranth": 31_000, "icarus": 40_000, "verilator": 28_000}

#: Seconds to build the simulation model before the first cycle (Verilator: 11-12 s for a
#: 3x4 array, about 30 s with the testbench on a loaded machine).
BUILD_SECONDS = {"amaranth": 1.0, "icarus": 5.0, "verilator": 30.0}

#: A run predicted to take longer than this is refused unless asked for (``--force``).
LIMIT_SECONDS = 600.0


def simulation_seconds(backend: str, cycles: int, pes: int) -> float:
    """Predicted wall time of ``cycles`` simulated clock cycles of an array of ``pes`` PEs."""
    if backend not in SPEED:
        raise ValueError(f"unknown simulator {backend!r}; allowed: {', '.join(SPEED)}")
    if backend == "verilator":
        rate = SPEED[backend]
    else:
        rate = SPEED[backend] / (pes + 3)
    return BUILD_SECONDS[backend] + cycles / rate


def describe(seconds: float) -> str:
    """``"about 21 hours"``, ``"about 12 minutes"``, ``"about 40 s"``."""
    if seconds >= 5400:
        return f"about {seconds / 3600:.0f} hours"
    if seconds >= 90:
        return f"about {seconds / 60:.0f} minutes"
    return f"about {seconds:.0f} s"
