"""One PE: the 1-D convolution primitive against ``model.ops.conv2d`` (R = 1), driven slot by
slot as the controller drives it; padding taps excluded, skips counted, drain adds ``d_in``."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.pe import PE
from model.ops import accumulator_width, conv2d
from model.quant import SCHEMES, activation_code_range, to_unsigned_bits, weight_code_range

WIDTHS = {"binary": (4, 1), "xnor": (5, 5), "ternary": (4, 2), "pow2": (3, 3),
          "dorefa": (3, 3), "int": (5, 3)}
SPAD = 32


def run_pe(scheme, weights, inputs, *, stride, padding, d_in=0):
    """Load ``weights`` [p, q, S] and ``inputs`` [q, W] into bank 0, run every slot of one
    pass, drain with running sum ``d_in``; returns (psums [p, F], macs, skips)."""
    a_bits, w_bits = WIDTHS[scheme]
    p, q, S = weights.shape
    W = inputs.shape[1]
    F = (W + 2 * padding - S) // stride + 1
    acc = accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=q * S) + 2
    pe = PE(scheme, a_bits=a_bits, w_bits=w_bits, acc_bits=acc, column=0, filter_spad=SPAD,
            ifmap_spad=SPAD, psum_spad=SPAD)
    wseg = (F - 1) * stride + S           # input scratchpad row: w from -padding on
    out = {}

    async def testbench(ctx):
        ctx.set(pe.i_eu, 0)
        for k, code in enumerate(to_unsigned_bits(weights.ravel(), w_bits)):
            ctx.set(pe.w_we, 1)
            ctx.set(pe.w_addr, k)
            ctx.set(pe.w_data, int(code))
            await ctx.tick()
        ctx.set(pe.w_we, 0)
        ctx.set(pe.i_clear, 1)
        await ctx.tick()
        ctx.set(pe.i_clear, 0)
        for cq in range(q):
            for w in range(W):
                if w + padding < wseg:
                    ctx.set(pe.i_we, 1)
                    ctx.set(pe.i_d, 0)       # the column's output row: i_eu == 0
                    ctx.set(pe.i_addr, cq * wseg + w + padding)
                    ctx.set(pe.i_data, int(to_unsigned_bits(inputs[cq, w], a_bits)))
                    await ctx.tick()
        ctx.set(pe.i_we, 0)
        ctx.set(pe.c_start, 1)
        await ctx.tick()
        ctx.set(pe.c_start, 0)
        macs = skips = 0
        slots = [(fi, mi, cq, s) for fi in range(F) for mi in range(p) for cq in range(q)
                 for s in range(S)]
        for slot in slots + [None, None]:   # two more cycles for the pipeline
            if slot is not None:
                fi, mi, cq, s = slot
                w = fi * stride + s - padding
                ctx.set(pe.c_faddr, (mi * q + cq) * S + s)
                ctx.set(pe.c_iaddr, cq * wseg + fi * stride + s)
                ctx.set(pe.c_paddr, fi * p + mi)
                ctx.set(pe.c_valid, 0 <= w < W)
                ctx.set(pe.c_first, cq == 0 and s == 0)
                ctx.set(pe.c_last, cq == q - 1 and s == S - 1)
            else:
                ctx.set(pe.c_valid, 0)
                ctx.set(pe.c_last, 0)
            _, _, mac, skip = await ctx.tick().sample(pe.ev_mac, pe.ev_skip)
            macs, skips = macs + mac, skips + skip
        psums = np.zeros((p, F), dtype=np.int64)
        ctx.set(pe.d_in, d_in)
        for k in range(p * F):
            ctx.set(pe.d_tok, 1)
            ctx.set(pe.d_addr, k)
            await ctx.tick()
            psums[k % p, k // p] = ctx.get(pe.d_out) - d_in
        out.update(psums=psums, macs=macs, skips=skips)

    sim = Simulator(pe)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return out["psums"], out["macs"], out["skips"]


def _random(rng, scheme, p, q, S, W):
    a_bits, w_bits = WIDTHS[scheme]
    lo, hi = weight_code_range(scheme, w_bits)
    weights = rng.integers(lo, hi + 1, size=(p, q, S))
    lo, hi = activation_code_range(scheme, a_bits)
    return weights, rng.integers(lo, hi + 1, size=(q, W))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 2), (1, 2)])
def test_pe_row_convolution_matches_conv2d(scheme, stride, padding):
    rng = np.random.default_rng(SCHEMES.index(scheme) * 10 + stride + padding)
    p, q, S, W = 2, 2, 3, 7
    weights, inputs = _random(rng, scheme, p, q, S, W)
    psums, macs, skips = run_pe(scheme, weights, inputs, stride=stride, padding=padding,
                                d_in=-5)
    a_bits, w_bits = WIDTHS[scheme]
    # a 1-row convolution: R = 1 and H = 1; output row padding / stride is the real row
    gold = conv2d(scheme, inputs[:, None, :], weights[:, :, None, :], stride=stride,
                  padding=padding, a_bits=a_bits, w_bits=w_bits)[:, padding // stride, :]
    np.testing.assert_array_equal(psums, gold)
    F = gold.shape[1]
    taps = [(f, s) for f in range(F) for s in range(S) if 0 <= f * stride + s - padding < W]
    assert macs == p * q * len(taps)
    if scheme in ("ternary", "pow2"):
        assert skips == sum(int((weights[:, :, s] == 0).sum()) for _, s in taps)
    else:
        assert skips == 0


def test_zero_weights_are_skipped_and_sum_to_zero():
    weights = np.zeros((1, 1, 3), dtype=np.int64)
    inputs = np.array([[7, -8, 3, 1, -1]])
    psums, macs, skips = run_pe("ternary", weights, inputs, stride=1, padding=0)
    assert not psums.any()
    assert macs == skips == 9


def test_spad_sizes_must_be_powers_of_two():
    with pytest.raises(ValueError, match="psum_spad must be a power of two"):
        PE("ternary", a_bits=4, acc_bits=8, psum_spad=12)
