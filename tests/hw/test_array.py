"""The row-stationary array alone: one pass driven by hand (filter rows on the row buses, input
rows on the diagonal bus, psums down the columns) against ``model.ops.conv2d``."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.array import EVENT_LATENCY, INPUT_LATENCY, RowStationaryArray
from model.ops import accumulator_width, conv2d
from model.quant import activation_code_range, to_unsigned_bits, weight_code_range

WIDTHS = {"ternary": (4, 2), "xnor": (4, 4), "int": (4, 3)}
SPAD = 16


def run_one_pass(scheme, weights, inputs, *, stride, rows, cols, drain_cols=None,
                 gap=INPUT_LATENCY + 2, trace=None):
    """Weights [1, 1, R, S] with R == rows, inputs [1, H, W] with E == cols outputs rows:
    PE(i, j) holds filter row i and input row j * stride + i; the first drain token comes
    ``gap + 1`` cycles after the last slot. Returns (sums [E, F], events); ``trace`` (a
    list) gets the per-cycle ``ev_mac``, and the index of the first slot's cycle last."""
    a_bits, w_bits = WIDTHS[scheme]
    _, _, R, S = weights.shape
    _, H, W = inputs.shape
    F = (W - S) // stride + 1
    acc = accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=R * S)
    arr = RowStationaryArray(rows, cols, scheme, a_bits=a_bits, w_bits=w_bits, acc_bits=acc,
                             filter_spad=SPAD, ifmap_spad=SPAD, psum_spad=SPAD)
    drain_cols = cols if drain_cols is None else drain_cols
    result = {}

    async def testbench(ctx):
        ev = dict.fromkeys(("mac", "rf_writes", "hops"), 0)

        async def tick():
            _, _, mac, wr, hops = await ctx.tick().sample(arr.ev_mac, arr.ev_rf_writes,
                                                          arr.ev_hops)
            ev["mac"] += mac
            if trace is not None:
                trace.append(mac)
            ev["rf_writes"] += wr
            ev["hops"] += hops

        for j in range(cols):
            ctx.set(arr.i_eu[j], j * stride)     # column j computes output row j
        # filter row i on row bus i, every column takes it
        ctx.set(arr.w_col_en, (1 << cols) - 1)
        for s in range(S):
            ctx.set(arr.w_we, (1 << rows) - 1)
            ctx.set(arr.w_addr, s)
            for i in range(rows):
                ctx.set(arr.w_data[i], int(to_unsigned_bits(weights[0, 0, i, s], w_bits)))
            await tick()
        ctx.set(arr.w_we, 0)
        # input rows on the diagonal bus: row h goes to every PE with j * stride + i == h
        ctx.set(arr.i_clear, 1)
        await tick()
        ctx.set(arr.i_clear, 0)
        ctx.set(arr.i_row_hit, (1 << rows) - 1)
        ctx.set(arr.i_col_ok, (1 << cols) - 1)
        for h in range(H):
            for w in range(W):
                ctx.set(arr.i_we, 1)
                for i in range(rows):
                    ctx.set(arr.i_d[i], h - i)
                ctx.set(arr.i_addr, w)
                ctx.set(arr.i_data, int(to_unsigned_bits(inputs[0, h, w], a_bits)))
                await tick()
        ctx.set(arr.i_we, 0)
        ctx.set(arr.c_start, 1)
        await tick()
        ctx.set(arr.c_start, 0)
        first_slot = len(trace) if trace is not None else None
        for f in range(F):
            for s in range(S):
                ctx.set(arr.c_valid, 1)
                ctx.set(arr.c_faddr, s)
                ctx.set(arr.c_iaddr, f * stride + s)
                ctx.set(arr.c_paddr, f)
                ctx.set(arr.c_first, s == 0)
                ctx.set(arr.c_last, s == S - 1)
                await tick()
        ctx.set(arr.c_valid, 0)
        ctx.set(arr.c_last, 0)
        for _ in range(gap):   # the input register and the PE pipeline
            await tick()
        # drain: one token per output column f, sums come out of the bottom rows later
        ctx.set(arr.d_col_ok, (1 << drain_cols) - 1)
        sums = []
        for k in range(F + rows + INPUT_LATENCY + 1):
            ctx.set(arr.d_tok, k < F)
            ctx.set(arr.d_addr, k)
            if ctx.get(arr.d_bottom_tok):
                sums.append([ctx.get(arr.d_bottom[j]) for j in range(cols)])
            await tick()
        result["sums"] = np.array(sums, dtype=np.int64).T
        result["events"] = ev
        if trace is not None:
            trace.append(first_slot)

    sim = Simulator(arr)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return result["sums"], result["events"]


@pytest.mark.parametrize("scheme", list(WIDTHS))
@pytest.mark.parametrize("stride", [1, 2])
def test_one_pass_is_the_convolution(scheme, stride):
    rng = np.random.default_rng(stride)
    rows, cols, S, W = 3, 4, 3, 8
    H = (cols - 1) * stride + rows
    a_bits, w_bits = WIDTHS[scheme]
    lo, hi = weight_code_range(scheme, w_bits)
    weights = rng.integers(lo, hi + 1, size=(1, 1, rows, S))
    lo, hi = activation_code_range(scheme, a_bits)
    inputs = rng.integers(lo, hi + 1, size=(1, H, W))
    sums, events = run_one_pass(scheme, weights, inputs, stride=stride, rows=rows, cols=cols)
    gold = conv2d(scheme, inputs, weights, stride=stride, a_bits=a_bits, w_bits=w_bits)[0]
    np.testing.assert_array_equal(sums, gold)
    F = gold.shape[1]
    assert events["mac"] == rows * cols * F * S
    assert events["hops"] == cols * (rows - 1) * F
    # weights: S per PE; inputs: W per PE (each PE takes exactly its own row); psums: F
    assert events["rf_writes"] == rows * cols * (S + W + F)


def test_hops_are_counted_only_in_drained_columns():
    rng = np.random.default_rng(0)
    weights = rng.integers(-1, 2, size=(1, 1, 2, 2))
    inputs = rng.integers(-8, 8, size=(1, 4, 5))
    _, events = run_one_pass("ternary", weights, inputs, stride=1, rows=2, cols=3,
                             drain_cols=1)
    assert events["hops"] == 1 * (2 - 1) * 4


@pytest.mark.parametrize("F", [1, 2])
def test_drain_right_behind_the_last_slot(F):
    # the earliest drain the schedule allows: the first token enters 2 cycles after the
    # last slot, when the last psum is being written (with F == 1 it is the one read)
    rng = np.random.default_rng(F)
    rows, cols, S = 3, 2, 3
    weights = rng.integers(-1, 2, size=(1, 1, rows, S))
    weights[0, 0, :, -1] = 1     # the last tap adds: the last slot changes the sum
    inputs = rng.integers(-8, 8, size=(1, cols + rows - 1, S + F - 1))
    inputs[..., -1] = 7
    sums, _ = run_one_pass("ternary", weights, inputs, stride=1, rows=rows, cols=cols, gap=1)
    gold = conv2d("ternary", inputs, weights, stride=1, a_bits=4, w_bits=2)[0]
    np.testing.assert_array_equal(sums, gold)


def test_event_counts_lag_by_the_declared_latency():
    rng = np.random.default_rng(3)
    rows, cols, S, W = 2, 3, 3, 5
    weights = rng.integers(-1, 2, size=(1, 1, rows, S))
    inputs = rng.integers(-8, 8, size=(1, cols + rows - 1, W))
    trace = []
    run_one_pass("ternary", weights, inputs, stride=1, rows=rows, cols=cols, trace=trace)
    first = trace.pop()
    F = W - S + 1
    # slot -> input register -> PE stage 1 -> events (stage 2) -> EVENT_LATENCY registers
    start = first + INPUT_LATENCY + 1 + EVENT_LATENCY
    expected = [0] * len(trace)
    expected[start:start + F * S] = [rows * cols] * (F * S)
    assert trace == expected


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0, cols=4), "rows must be an integer in \\[1, 64\\]"),
    (dict(rows=3, cols=65), "cols must be an integer in \\[1, 64\\]"),
    (dict(rows=3, cols=4, ifmap_spad=24), "ifmap_spad must be a power of two"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RowStationaryArray(scheme="ternary", a_bits=4, acc_bits=8, **kwargs)
