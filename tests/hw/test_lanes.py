# amaranth: UnusedElaboratable=no
"""``hw.lanes.LaneDot`` against ``model.ops.lane_dot``: every scheme, exhaustively where the
codes are few, seeded-random plus the extremes otherwise; padded xnor lanes; pipelining."""

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.lanes import LaneDot, adder_tree, lane_code_bits
from model.ops import lane_dot, lane_dot_range, signed_width
from model.quant import activation_code_range, to_unsigned_bits, weight_code_range

#: scheme -> (a_bits, w_bits) per lane
WIDTHS = {"binary": (3, None), "ternary": (3, None), "pow2": (3, None), "dorefa": (2, 2),
          "int": (3, 3), "xnor": (1, 1)}


def pack(codes, bits):
    return sum(int(to_unsigned_bits(c, bits)) << (lane * bits) for lane, c in enumerate(codes))


def code_ranges(scheme, a_bits, w_bits, codebook=None):
    if scheme == "xnor":
        return (0, 1), (0, 1)
    a = (0, (1 << a_bits) - 1) if codebook is not None else activation_code_range(scheme, a_bits)
    w = (0, len(codebook) - 1) if codebook is not None else weight_code_range(scheme, w_bits)
    return a, w


def rtl(dot: LaneDot, pairs, idles=None):
    """The dot of each (a codes, w codes) pair, ``dot.latency`` cycles after applying it."""
    out = []
    ab, wb = dot.a_bits, dot.w_bits

    async def testbench(ctx):
        for n, (a, w) in enumerate(pairs):
            ctx.set(dot.a, pack(a, ab))
            ctx.set(dot.w, pack(w, wb))
            if idles is not None:
                ctx.set(dot.idle, idles[n])
            if dot.latency:
                await ctx.tick().repeat(dot.latency)
            else:
                await ctx.delay(1e-9)
            out.append(ctx.get(dot.p))

    sim = Simulator(dot)
    if dot.latency:
        sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return out


@pytest.mark.parametrize("lanes", [1, 2, 3])
@pytest.mark.parametrize("scheme", ["binary", "ternary", "pow2", "dorefa", "int", "xnor"])
def test_every_code_pair_of_small_words(scheme, lanes):
    a_bits, w_bits = WIDTHS[scheme]
    dot = LaneDot(scheme, lanes=lanes, a_bits=a_bits, w_bits=w_bits)
    (alo, ahi), (wlo, whi) = code_ranges(scheme, dot.a_bits, dot.w_bits)
    a_words = list(itertools.product(range(alo, ahi + 1), repeat=lanes))
    w_words = list(itertools.product(range(wlo, whi + 1), repeat=lanes))
    pairs = [(a, w) for a in a_words for w in w_words]
    if len(pairs) > 1500:
        rng = np.random.default_rng(lanes)
        pairs = [pairs[i] for i in rng.choice(len(pairs), 1500, replace=False)]
        # and the corners: every lane at an extreme activation and weight code
        pairs += [((a,) * lanes, (w,) * lanes) for a in (alo, ahi) for w in (wlo, whi)]
    got = rtl(dot, pairs)
    want = [int(lane_dot(scheme, np.array(a), np.array(w), a_bits=dot.a_bits,
                         w_bits=dot.w_bits)) for a, w in pairs]
    assert got == want
    lo, hi = lane_dot_range(scheme, lanes=lanes, a_bits=dot.a_bits, w_bits=dot.w_bits)
    assert dot.p_shape.width == signed_width(lo, hi)
    assert min(want) == lo and max(want) == hi          # the extremes were reached


@pytest.mark.parametrize("lanes", [8, 32, 64])
def test_wide_xnor_words_with_padded_lanes(lanes):
    """Random +/-1 words; a word's last ``idle`` lanes are padding (zero bits in both words)
    and must add nothing."""
    rng = np.random.default_rng(lanes)
    dot = LaneDot("xnor", lanes=lanes, a_bits=1)
    pairs, idles, want = [], [], []
    for n in range(200):
        idle = 0 if n < 20 else int(rng.integers(0, lanes))
        a = rng.integers(0, 2, lanes)
        w = rng.integers(0, 2, lanes)
        if n == 0:
            a, w = np.zeros(lanes, int), np.ones(lanes, int)        # every lane -1: the minimum
        if n == 1:
            a = w = np.ones(lanes, int)                             # every lane +1
        a[lanes - idle:] = 0
        w[lanes - idle:] = 0
        pairs.append((a, w))
        idles.append(idle)
        want.append(int(lane_dot("xnor", a, w, a_bits=1, real=lanes - idle)))
    assert rtl(dot, pairs, idles) == want
    assert want[0] == -lanes and want[1] == lanes


@pytest.mark.parametrize("stages", [1, 2, 3])
@pytest.mark.parametrize("scheme", ["ternary", "dorefa", "xnor"])
def test_pipelined_trees_give_the_same_dots_later(scheme, stages):
    lanes = 8
    a_bits, w_bits = WIDTHS[scheme]
    dot = LaneDot(scheme, lanes=lanes, a_bits=a_bits, w_bits=w_bits, stages=stages)
    assert dot.latency == stages
    rng = np.random.default_rng(stages)
    (alo, ahi), (wlo, whi) = code_ranges(scheme, dot.a_bits, dot.w_bits)
    pairs = [(rng.integers(alo, ahi + 1, lanes), rng.integers(wlo, whi + 1, lanes))
             for _ in range(40)]
    idles = [0] * len(pairs) if scheme == "xnor" else None
    want = [int(lane_dot(scheme, a, w, a_bits=dot.a_bits, w_bits=dot.w_bits)) for a, w in pairs]
    assert rtl(dot, pairs, idles) == want


def test_a_codebook_table_per_lane():
    codebook = (-3, 0, 2, 5)
    dot = LaneDot("dorefa", lanes=4, a_bits=3, w_bits=2, codebook=codebook)
    rng = np.random.default_rng(9)
    pairs = [(rng.integers(0, 8, 4), rng.integers(0, 4, 4)) for _ in range(300)]
    pairs += [((7, 7, 7, 7), (3, 3, 3, 3)), ((7, 7, 7, 7), (0, 0, 0, 0))]
    want = [int(lane_dot("dorefa", a, w, a_bits=3, w_bits=2, codebook=codebook))
            for a, w in pairs]
    assert rtl(dot, pairs) == want
    assert want[-2:] == [4 * 5 * 7, 4 * -3 * 7]


def test_a_deliberately_wrong_model_is_caught():
    """The comparison can fail: a ternary dot read as binary disagrees on some pair."""
    dot = LaneDot("ternary", lanes=2, a_bits=3)
    pairs = [((3, -4), (1, 0)), ((-4, 3), (-1, 1))]
    got = rtl(dot, pairs)
    wrong = [int(lane_dot("binary", np.array(a), np.array(w) & 1, a_bits=3)) for a, w in pairs]
    assert got != wrong


def test_bad_parameters_name_the_value():
    with pytest.raises(ValueError, match="xnor lanes hold 1-bit codes"):
        lane_code_bits("xnor", a_bits=4)
    with pytest.raises(ValueError, match=r"lanes must be an integer in \[1, 64\], not 0"):
        LaneDot("ternary", lanes=0, a_bits=4)
    with pytest.raises(ValueError, match=r"scheme 'int' needs a weight width in \[2, 16\]"):
        lane_code_bits("int", a_bits=4)


def test_adder_tree_sums_just_wide_enough():
    from amaranth.hdl import Module, Signal, signed
    m = Module()
    terms = [Signal(signed(4), name=f"x{i}") for i in range(5)]
    total, levels = adder_tree(m, terms)
    assert levels == 3 and total.shape() == signed(7)
