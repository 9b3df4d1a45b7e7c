"""cocotb testbench: a generated MAC cell (``hw.mac.MacCell``) against sums of
``model.ops.product``, through ``sim.streams`` with random gaps and back-pressure.

``MULFREE_TB_CONFIG`` is the cell's manifest (``hw.generate.mac_design``): scheme, widths,
``fan_in``, ``latency`` and the payload fields of ``i_stream``.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from model.ops import product, product_range
from model.quant import activation_code_range, weight_code_range
from sim.streams import StreamDriver, StreamMonitor, pack_fields
from sim.tb import config, seed

CELL = config()
PORTS = {port["name"]: port for port in CELL["ports"]}
FIELDS = PORTS["i_stream__payload"]["fields"]
SCHEME, A_BITS, W_BITS = CELL["scheme"], CELL["a_bits"], CELL["w_bits"]


def _codes(values) -> np.ndarray:
    values = [int(v) for v in values]
    return np.array(values, dtype=np.uint64 if max(values) >= 1 << 63 else np.int64)


def model_sum(beats) -> int:
    """The golden sum of a list of (a, w) beats."""
    return int(np.sum(product(SCHEME, _codes([a for a, _ in beats]),
                              _codes([w for _, w in beats]), a_bits=A_BITS, w_bits=W_BITS)))


def random_sums(rng: random.Random, count: int) -> list[list[tuple[int, int]]]:
    a_lo, a_hi = activation_code_range(SCHEME, A_BITS)
    w_lo, w_hi = weight_code_range(SCHEME, W_BITS)
    return [[(rng.randint(a_lo, a_hi), rng.randint(w_lo, w_hi))
             for _ in range(rng.randint(1, CELL["fan_in"]))] for _ in range(count)]


def words(sums) -> list[int]:
    """The flat ``i_stream`` payloads of ``sums``, ``last`` set on each sum's final beat."""
    return [pack_fields(FIELDS, {"a": a, "w": w, "last": int(i == len(beats) - 1)})
            for beats in sums for i, (a, w) in enumerate(beats)]


async def start(dut, *, p_valid=1.0, p_ready=1.0, rng=None):
    """Clock, reset for two cycles, then a driver and a running monitor."""
    rng = rng or random.Random(seed())
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.clear.value = 0
    dut.i_stream__payload.value = 0
    dut.o_stream__ready.value = 0
    driver = StreamDriver(dut.clk, dut.i_stream__valid, dut.i_stream__ready,
                          dut.i_stream__payload, p_valid=p_valid, rng=rng)
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    monitor = StreamMonitor(dut.clk, dut.o_stream__valid, dut.o_stream__ready,
                            dut.o_stream__payload, p_ready=p_ready, signed=True, rng=rng)
    cocotb.start_soon(monitor.run())
    return driver, monitor


@cocotb.test()
@cocotb.parametrize(flow=["full_rate", "stalling"])
async def sums_match_model(dut, flow):
    """Random sums of 1..fan_in beats, compared with the model sum by sum."""
    rng = random.Random(seed())
    p_valid, p_ready = (1.0, 1.0) if flow == "full_rate" else (0.7, 0.4)
    driver, monitor = await start(dut, p_valid=p_valid, p_ready=p_ready, rng=rng)
    sums = random_sums(rng, 150)
    await driver.send_all(words(sums))
    got = await monitor.wait_for(len(sums))
    expected = [model_sum(beats) for beats in sums]
    wrong = [i for i, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert not wrong, (f"{len(wrong)} of {len(sums)} sums differ; first: sum {wrong[0]} of "
                       f"{sums[wrong[0]]} gave {got[wrong[0]]}, model {expected[wrong[0]]}")


@cocotb.test()
async def accumulator_reaches_both_bounds(dut):
    """fan_in beats of the smallest, then of the largest product: no overflow."""
    driver, monitor = await start(dut)
    a_lo, a_hi = activation_code_range(SCHEME, A_BITS)
    w_lo, w_hi = weight_code_range(SCHEME, W_BITS)
    corners = [(a, w) for a in (a_lo, a_hi) for w in (w_lo, w_hi)]
    by_product = sorted(corners, key=lambda beat: model_sum([beat]))
    sums = [[by_product[0]] * CELL["fan_in"], [by_product[-1]] * CELL["fan_in"]]
    await driver.send_all(words(sums))
    lo, hi = product_range(SCHEME, a_bits=A_BITS, w_bits=W_BITS)
    got = await monitor.wait_for(2)
    assert got == [model_sum(s) for s in sums] == [CELL["fan_in"] * lo, CELL["fan_in"] * hi]


@cocotb.test()
async def one_beat_per_cycle_and_declared_latency(dut):
    """With ready always high, beats move every cycle and each sum comes out ``latency``
    cycles after its last beat."""
    driver, monitor = await start(dut)
    rng = random.Random(seed() + 1)
    sums = random_sums(rng, 40)
    cycle = 0
    last_beat_cycles = []
    for beats in sums:
        for index, word in enumerate(words([beats])):
            await driver.send(word)  # returns right after the edge that took the beat
            cycle += 1
            if index == len(beats) - 1:
                last_beat_cycles.append(cycle)
    assert cycle == sum(len(s) for s in sums)  # never a stall: one beat per edge
    got = await monitor.wait_for(len(sums))
    assert got == [model_sum(s) for s in sums]
    # The monitor counts edges from one edge after the driver's first beat was offered.
    taken = [edge + 1 for edge in monitor.edges]
    assert [t - c for t, c in zip(taken, last_beat_cycles)] == [CELL["latency"]] * len(sums)


@cocotb.test()
async def clear_drops_the_sum_in_progress(dut):
    """Beats, then ``clear``, then a fresh sum: only the fresh sum comes out."""
    driver, monitor = await start(dut)
    rng = random.Random(seed() + 2)
    a_lo, a_hi = activation_code_range(SCHEME, A_BITS)
    w_lo, w_hi = weight_code_range(SCHEME, W_BITS)
    dropped = [pack_fields(FIELDS, {"a": a_hi, "w": w_hi, "last": 0})] * 3
    await driver.send_all(dropped)
    dut.clear.value = 1
    await ReadOnly()
    assert dut.i_stream__ready.value == 0
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    fresh = [[(rng.randint(a_lo, a_hi), rng.randint(w_lo, w_hi)) for _ in range(4)]]
    await driver.send_all(words(fresh))
    got = await monitor.wait_for(1)
    assert got == [model_sum(fresh[0])]
