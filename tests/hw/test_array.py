"""The row-stationary array alone: one pass driven by hand (filter rows into the rows' filter
scratchpads, input rows on the tagged input bus, each row's slots one dot behind the row
above) against ``model.ops.conv2d``: the column sums leave the bottom row exact."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.array import RowStationaryArray
from hw.schedule import INPUT_LATENCY, accumulate_latency
from model.ops import conv2d
from model.quant import activation_code_range, to_unsigned_bits, weight_code_range

WIDTHS = {"ternary": (4, 2), "int": (4, 3), "xnor": (1, 1)}
SPAD = 16


def pack(codes, bits):
    return sum(int(to_unsigned_bits(c, bits)) << (lane * bits) for lane, c in enumerate(codes))


def run_one_pass(scheme, weights, inputs, *, lanes, tree_stages=0):
    """Weights [1, C, R, S] (C <= lanes: one channel word) with R == rows; inputs [C, H, W]
    with E == cols output rows, stride 1, no padding: PE(i, j) holds filter row i and input
    row j + i. Dot f (output column f) runs S slots; row i runs it S cycles after row i - 1.
    Returns the bottom row's column sums [E, F] and the event totals."""
    a_bits, w_bits = WIDTHS[scheme]
    _, C, R, S = weights.shape
    _, H, W = inputs.shape
    E, F = H - R + 1, W - S + 1
    arr = RowStationaryArray(R, E, scheme, lanes=lanes, a_bits=a_bits, w_bits=w_bits,
                             acc_bits=16, filter_spad=SPAD, ifmap_spad=SPAD,
                             tree_stages=tree_stages)
    A = accumulate_latency(tree_stages)
    out = np.zeros((E, F), dtype=np.int64)
    events = dict.fromkeys(("slots", "takes", "filter_reads"), 0)

    def word(codes, bits):
        padded = np.zeros(lanes, dtype=np.int64)
        padded[:len(codes)] = codes
        return pack(padded, bits)

    async def testbench(ctx):
        async def tick():
            await ctx.tick()
            events["slots"] += ctx.get(arr.ev_slots)
            events["takes"] += ctx.get(arr.ev_takes)
            events["filter_reads"] += ctx.get(arr.ev_filter_reads)

        ctx.set(arr.slots.n_last, C)
        # filter row i of the channel word into row i's bank 0, tap s at word s
        for s in range(S):
            ctx.set(arr.wload.we, (1 << R) - 1)
            ctx.set(arr.wload.addr, s)
            for i in range(R):
                ctx.set(arr.wload.data[i], word(weights[0, :, i, s], w_bits))
            await tick()
        ctx.set(arr.wload.we, 0)
        # input row h to every PE with j + i == h: rel = h - i, column j takes rel == j
        bus = arr.ibus
        ctx.set(bus.clear, 1)
        await tick()
        ctx.set(bus.clear, 0)
        ctx.set(bus.col_ok, (1 << E) - 1)
        for j in range(E):
            ctx.set(bus.ju[j], j)
        for h in range(H):
            for w in range(W):
                ctx.set(bus.we, 1)
                hits = 0
                for i in range(R):
                    rel = h - i
                    if 0 <= rel < E:
                        hits |= 1 << i
                    ctx.set(bus.rel[i], rel % (1 << 8))
                ctx.set(bus.row_hit, hits)
                ctx.set(bus.addr, w)
                ctx.set(bus.data, word(inputs[:, h, w], a_bits))
                await tick()
        ctx.set(bus.we, 0)
        for _ in range(INPUT_LATENCY + 1):
            await tick()
        # the dots: row i runs dot f during cycles (f + i) * S + s
        total = (F + R - 1) * S + INPUT_LATENCY + A + 2
        for t in range(total):
            for i in range(R):
                slot = arr.slots.slots[i]
                f, s = divmod(t - i * S, S)
                running = 0 <= f < F
                ctx.set(slot.faddr, s if running else 0)
                ctx.set(slot.iaddr, f + s if running else 0)
                ctx.set(slot.valid, running)
                ctx.set(slot.first, running and s == 0)
                ctx.set(slot.last, running and s == S - 1)
                ctx.set(slot.bp, 0)
                ctx.set(slot.last_word, 1)
            # the bottom row's dot f is finished INPUT_LATENCY + A + 1 cycles after its last
            # slot: read it then
            f, s = divmod(t - (R - 1) * S - INPUT_LATENCY - A - 1, S)
            if 0 <= f < F and s == S - 1:
                for j in range(E):
                    out[j, f] = ctx.get(arr.psum.bottom[j])
            await tick()
        for _ in range(4):
            await tick()

    sim = Simulator(arr)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return out, events


@pytest.mark.parametrize("tree_stages", [0, 1])
@pytest.mark.parametrize("scheme, lanes", [("ternary", 4), ("int", 2), ("xnor", 8)])
def test_one_pass_gives_the_convolution_at_the_bottom(scheme, lanes, tree_stages):
    rng = np.random.default_rng(lanes + tree_stages)
    a_bits, w_bits = WIDTHS[scheme]
    C, R, S, H, W = min(lanes, 3), 3, 3, 6, 7
    if scheme == "xnor":
        a, w = rng.integers(0, 2, (C, H, W)), rng.integers(0, 2, (1, C, R, S))
        want = conv2d("int", 1 - 2 * a, 1 - 2 * w, a_bits=2, w_bits=2)[0]
    else:
        (alo, ahi), (wlo, whi) = (activation_code_range(scheme, a_bits),
                                  weight_code_range(scheme, w_bits))
        a = rng.integers(alo, ahi + 1, (C, H, W))
        w = rng.integers(wlo, whi + 1, (1, C, R, S))
        w[0, 0, 0, 0] = wlo                                         # an extreme
        want = conv2d(scheme, a, w, a_bits=a_bits, w_bits=w_bits)[0]
    got, events = run_one_pass(scheme, w, a, lanes=lanes, tree_stages=tree_stages)
    np.testing.assert_array_equal(got, want)
    E, F = want.shape
    assert events["slots"] == R * E * F * S            # every PE active on every slot
    assert events["filter_reads"] == R * F * S          # one read per row and slot
    # every input word goes to each PE whose row it is: row h to min(h + 1, ...) PEs
    assert events["takes"] == sum(sum(1 for i in range(R) if 0 <= h - i < E)
                                  for h in range(H)) * W
