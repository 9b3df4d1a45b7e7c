# amaranth: UnusedElaboratable=no
# (cells built here only to inspect their interface are never elaborated, on purpose)
"""The MAC cell in the Amaranth simulator against sums of ``model.ops.product``."""

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.sim import Simulator

from hw.mac import MAC_LATENCY, MacCell, check_mac
from model.ops import accumulator_width, product, product_range
from model.quant import activation_code_range, weight_code_range

CELLS = [  # scheme, a_bits, w_bits
    ("binary", 8, None), ("ternary", 8, None), ("pow2", 8, None), ("dorefa", 4, 4),
    ("dorefa", 2, 1), ("int", 8, 8), ("xnor", 16, None), ("xnor", 64, None),
]


def codes(values):
    """Python ints as a NumPy array of codes (uint64 where 64-lane codes need the top bit)."""
    return np.array(values, dtype=np.uint64 if max(values) >= 1 << 63 else np.int64)


def model_sums(scheme, a_bits, w_bits, sums):
    """The golden result of each sum: ``model.ops.product`` added over its beats."""
    return [int(np.sum(product(scheme, codes([a for a, _ in beats]),
                               codes([w for _, w in beats]), a_bits=a_bits, w_bits=w_bits)))
            for beats in sums]


def random_sums(scheme, a_bits, w_bits, *, count, fan_in, rng):
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits if scheme != "xnor" else a_bits)
    sums = []
    for _ in range(count):
        length = int(rng.integers(1, fan_in, endpoint=True))
        sums.append([(int(rng.integers(a_lo, a_hi, endpoint=True, dtype=np.uint64
                                       if a_hi >= 1 << 63 else np.int64)),
                      int(rng.integers(w_lo, w_hi, endpoint=True, dtype=np.uint64
                                       if w_hi >= 1 << 63 else np.int64)))
                     for _ in range(length)])
    return sums


def rtl_sums(cell, sums, *, rng=None, p_valid=1.0, p_ready=1.0):
    """Run ``sums`` (lists of (a, w) beats) through ``cell`` with random gaps on ``i_stream``
    (probability ``p_valid`` of offering a beat) and random back-pressure on ``o_stream``."""
    rng = rng or np.random.default_rng(0)
    results = []

    async def producer(ctx):
        for beats in sums:
            for index, (a, w) in enumerate(beats):
                while rng.random() >= p_valid:
                    await ctx.tick()
                ctx.set(cell.i_stream.valid, 1)
                ctx.set(cell.i_stream.payload,
                        {"a": a, "w": w, "last": int(index == len(beats) - 1)})
                await ctx.tick().until(cell.i_stream.ready)
                ctx.set(cell.i_stream.valid, 0)

    async def consumer(ctx):
        for _ in sums:
            while rng.random() >= p_ready:
                await ctx.tick()
            ctx.set(cell.o_stream.ready, 1)
            payload, = await ctx.tick().sample(cell.o_stream.payload).until(cell.o_stream.valid)
            ctx.set(cell.o_stream.ready, 0)
            results.append(payload)

    sim = Simulator(cell)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return results


@pytest.mark.parametrize("scheme, a_bits, w_bits", CELLS)
@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.6, 0.4)])
def test_random_sums_match_model(scheme, a_bits, w_bits, p_valid, p_ready):
    rng = np.random.default_rng(a_bits * 100 + int(p_ready * 10))
    fan_in = 9
    cell = MacCell(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
    sums = random_sums(scheme, a_bits, w_bits, count=60, fan_in=fan_in, rng=rng)
    assert rtl_sums(cell, sums, rng=rng, p_valid=p_valid, p_ready=p_ready) == \
        model_sums(scheme, a_bits, w_bits, sums)


def extreme_beats(scheme, a_bits, w_bits):
    """The (a, w) pairs that give the smallest and the largest product."""
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits if scheme != "xnor" else a_bits)
    pairs = [(a, w) for a in (a_lo, a_hi) for w in (w_lo, w_hi)]
    products = [int(product(scheme, codes([a]), codes([w]), a_bits=a_bits, w_bits=w_bits)[0])
                for a, w in pairs]
    lo, hi = product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    return pairs[products.index(lo)], pairs[products.index(hi)]


@pytest.mark.parametrize("scheme, a_bits, w_bits", CELLS)
def test_accumulator_reaches_both_bounds_without_overflow(scheme, a_bits, w_bits):
    fan_in = 25
    cell = MacCell(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
    assert cell.acc_width == accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits,
                                               fan_in=fan_in)
    assert cell.o_stream.payload.shape() == signed(cell.acc_width)
    lowest, highest = extreme_beats(scheme, a_bits, w_bits)
    sums = [[lowest] * fan_in, [highest] * fan_in, [lowest] * (fan_in - 1) + [highest]]
    got = rtl_sums(cell, sums)
    lo, hi = product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    assert got == model_sums(scheme, a_bits, w_bits, sums)
    assert got[:2] == [fan_in * lo, fan_in * hi]
    # The bound is tight: one bit less could not hold it.
    assert not (-(1 << (cell.acc_width - 2)) <= fan_in * lo and
                fan_in * hi < 1 << (cell.acc_width - 2))


@pytest.mark.parametrize("scheme", ["ternary", "pow2"])
def test_all_zero_weights_sum_to_zero(scheme):
    cell = MacCell(scheme, a_bits=8, fan_in=16)
    sums = [[(-128, 0)] * 16, [(127, 0)] * 3 + [(-128, -1)], [(5, 0)]]
    assert rtl_sums(cell, sums) == model_sums(scheme, 8, None, sums) == [0, 128, 0]


def run_cycles(cell, script):
    """Drive ``cell`` one cycle per entry of ``script``: a dict with the inputs of that cycle
    (``beat`` = (a, w, last) or None, ``ready``, ``clear``); return per cycle the
    ``i_stream.ready`` seen before the edge and (``valid``, ``payload``) after it."""
    trace = []

    async def testbench(ctx):
        for step in script:
            beat = step.get("beat")
            ctx.set(cell.i_stream.valid, beat is not None)
            if beat is not None:
                ctx.set(cell.i_stream.payload, {"a": beat[0], "w": beat[1], "last": beat[2]})
            ctx.set(cell.o_stream.ready, step.get("ready", 1))
            ctx.set(cell.clear, step.get("clear", 0))
            accepted = ctx.get(cell.i_stream.ready)
            await ctx.tick()
            trace.append((accepted, ctx.get(cell.o_stream.valid), ctx.get(cell.o_stream.payload)))

    sim = Simulator(cell)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return trace


def test_one_beat_per_cycle_and_latency_one():
    cell = MacCell("ternary", a_bits=8, fan_in=3)
    assert cell.latency == MAC_LATENCY == 1
    beats = [(10, 1, 0), (20, -1, 0), (7, 1, 1),      # sum -3
             (100, 0, 0), (-5, -1, 1),                # a skipped beat, then +5: sum 5
             (9, 1, 1), (-128, -1, 1), (4, 0, 1)]     # three one-beat sums: 9, 128, 0
    trace = run_cycles(cell, [{"beat": b} for b in beats] + [{}])
    assert [t[0] for t in trace[:len(beats)]] == [1] * len(beats)  # never stalls
    valid = [t[1] for t in trace]
    assert valid == [0, 0, 1, 0, 1, 1, 1, 1, 0]  # a sum is valid the cycle after its last beat
    assert [t[2] for t, v in zip(trace, valid) if v] == [-3, 5, 9, 128, 0]
    # Between outputs the payload is the running partial sum; a skipped beat leaves it alone.
    assert [t[2] for t in trace[:4]] == [10, -10, -3, 0]


def test_back_pressure_holds_the_sum_and_stalls_input():
    cell = MacCell("pow2", a_bits=4, fan_in=2)
    trace = run_cycles(cell, [
        {"beat": (7, 2, 1), "ready": 0},   # sum 14 finishes
        {"beat": (3, -1, 1), "ready": 0},  # held: input not accepted
        {"beat": (3, -1, 1), "ready": 0},
        {"beat": (3, -1, 1), "ready": 1},  # 14 taken, -3 accepted in the same cycle
        {"ready": 1}, {"ready": 1}])
    assert [t[0] for t in trace[:4]] == [1, 0, 0, 1]
    assert [(t[1], t[2]) for t in trace] == [(1, 14), (1, 14), (1, 14), (1, -3), (0, 0), (0, 0)]


def test_clear_drops_partial_and_waiting_sums():
    cell = MacCell("int", a_bits=8, w_bits=8, fan_in=4)
    trace = run_cycles(cell, [
        {"beat": (100, 100, 0)},
        {"beat": (1, 1, 0), "clear": 1},   # not accepted: clear has priority
        {"beat": (2, 3, 1)},               # a fresh sum: 6
        {"ready": 0, "clear": 1},          # the waiting 6 is dropped
        {"beat": (-128, -128, 1)},
        {}])
    assert [t[0] for t in trace] == [1, 0, 1, 0, 1, 1]
    assert [(t[1], t[2]) for t in trace] == [(0, 10000), (0, 0), (1, 6), (0, 0), (1, 16384),
                                             (0, 0)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(scheme="ternary", a_bits=8, fan_in=0), "fan_in must be a positive integer"),
    (dict(scheme="int", a_bits=8, fan_in=9), "'int' needs a weight width"),
    (dict(scheme="xnor", a_bits=8, w_bits=4, fan_in=9), "must be equal"),
    (dict(scheme="ternery", a_bits=8, fan_in=9), "unknown scheme 'ternery'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_mac(**kwargs)               # what mac_design asks before building a cell
    with pytest.raises(ValueError, match=message):
        MacCell(**kwargs)
