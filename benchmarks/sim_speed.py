"""Simulation speed of the accelerator: Amaranth's simulator against Verilator (cocotb).

One ternary layer on a 3x4 array, run once on each. The simulated clock cycles are the
compute phase (``cycles``) plus one cycle per stream word (configuration, weights, inputs,
outputs); the wall time is the simulation alone (Amaranth: ``Simulator.run``, after
elaboration; Verilator: cocotb's own REAL TIME of the test, after the build, whose time is
printed separately).

Usage: ``python benchmarks/sim_speed.py``
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from model.layer_file import Layer  # noqa: E402
from sim.cycle_model import ArrayParams  # noqa: E402
from sim.run_layer import BACKENDS, accelerator_config, plan  # noqa: E402

PARAMS = ArrayParams(rows=3, cols=4, filter_spad=32, ifmap_spad=32)


def layer() -> Layer:
    rng = np.random.default_rng(0)
    return Layer("ternary", rng.integers(-1, 2, (8, 4, 3, 3)), rng.integers(-8, 8, (4, 12, 12)),
                 1, 1, a_bits=4)


def main() -> int:
    lay = layer()
    _, mp, job = plan(lay, PARAMS)
    args = accelerator_config([lay], PARAMS, [mp])
    rows = []

    amaranth = BACKENDS["amaranth"]()
    (words, counters), = amaranth.run(args, [job])
    elaboration, total = amaranth.last_timing
    sim_cycles = counters["cycles"] + counters["offchip_words"] + 1
    rows.append(("amaranth (pysim)", sim_cycles, total, f"elaboration {elaboration:.1f} s"))

    verilator = BACKENDS["verilator"]()
    ok, why = verilator.available()
    if ok:
        start = time.perf_counter()
        (words_v, counters_v), = verilator.run(args, [job])
        wall = time.perf_counter() - start
        m = re.search(r"TESTS=\d+ PASS=\d+ FAIL=\d+ SKIP=\d+\s+[\d.]+\s+([\d.]+)",
                      verilator.last_result.log)
        sim_time = float(m.group(1)) if m else wall
        assert words_v == words and counters_v == counters, "backends disagree"
        rows.append(("verilator (cocotb)", sim_cycles, sim_time,
                     f"build + run {wall:.0f} s"))
    else:
        print(f"verilator unavailable: {why}")
    print(f"layer: ternary [8, 4, 3, 3] on [4, 12, 12], padding 1, array 3x4; "
          f"{counters['cycles']} compute cycles\n")
    print("| simulator | simulated cycles | wall time (s) | cycles / s | note |")
    print("|---|---:|---:|---:|---|")
    for name, cycles, seconds, note in rows:
        print(f"| {name} | {cycles:,} | {seconds:.2f} | {cycles / seconds:,.0f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
