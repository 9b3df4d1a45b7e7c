# amaranth: UnusedElaboratable=no
"""One PE, driven slot by slot as its row drives it: every finished dot equals the value from
the PE above plus the lane dots (``model.ops.lane_dot``) of its valid slots; a PE that took no
input word passes the value from above on; the events count what happened."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.pe import PE, check_spad_size
from model.ops import accumulator_width, lane_dot
from model.quant import activation_code_range, to_unsigned_bits, weight_code_range

WIDTHS = {"binary": (4, None), "ternary": (4, None), "pow2": (3, None), "dorefa": (3, 2),
          "int": (4, 3), "xnor": (1, 1)}
SPAD = 16


def pack(codes, bits):
    return sum(int(to_unsigned_bits(c, bits)) << (lane * bits) for lane, c in enumerate(codes))


def ranges(scheme, a_bits, w_bits):
    if scheme == "xnor":
        return (0, 1), (0, 1)
    return activation_code_range(scheme, a_bits), weight_code_range(scheme, w_bits)


def run_dots(scheme, lanes, dots, *, active=True, tree_stages=0, seed=0):
    """``dots``: lists of slots ``(input address, weight codes, valid)``; the input
    scratchpad (bank 0) holds random words and each dot gets a random value from above.
    Runs each dot on a fresh PE; returns (the PE's psum and slot events per dot, the
    expected psums)."""
    a_bits, w_bits = WIDTHS[scheme]
    rng = np.random.default_rng(seed)
    results, expected = [], []
    for slots in dots:
        pe = PE(scheme, lanes=lanes, a_bits=a_bits, w_bits=w_bits, acc_bits=20,
                ifmap_spad=SPAD, tree_stages=tree_stages)
        ab, wb = pe.modes[0].a_bits, pe.modes[0].w_bits
        (alo, ahi), _ = ranges(scheme, ab, wb)
        inputs = rng.integers(alo, ahi + 1, (SPAD, lanes))
        above = int(rng.integers(-1000, 1000))
        total = above
        for addr, w, valid in slots:
            if valid and active:
                total += int(lane_dot(scheme, inputs[addr], np.asarray(w), a_bits=ab,
                                      w_bits=wb))
        expected.append(total)
        results.append(_one_dot(pe, slots, inputs, above, active, ab, wb, tree_stages))
    return results, expected


def _one_dot(pe, slots, inputs, above, active, ab, wb, stages):
    out = {}

    async def testbench(ctx):
        ctx.set(pe.i_clear, 1)
        await ctx.tick()
        ctx.set(pe.i_clear, 0)
        if active:
            for addr in range(len(inputs)):
                ctx.set(pe.i_take, 1)
                ctx.set(pe.i_addr, addr)
                ctx.set(pe.i_data, pack(inputs[addr], ab))
                await ctx.tick()
            ctx.set(pe.i_take, 0)
        slot_events = 0
        for n, (addr, w, valid) in enumerate(slots):
            ctx.set(pe.c_iaddr, addr)
            ctx.set(pe.c_valid, valid)
            ctx.set(pe.c_first, n == 0)
            ctx.set(pe.c_last, n == len(slots) - 1)
            await ctx.tick()
            ctx.set(pe.w_word, pack(w, wb))
            ctx.set(pe.above, above)
            ctx.set(pe.c_valid, 0)
            ctx.set(pe.c_first, 0)
            ctx.set(pe.c_last, 0)
            slot_events += ctx.get(pe.ev_slot)
        await ctx.tick()
        slot_events += ctx.get(pe.ev_slot) if not slots else 0
        for _ in range(stages + 1):
            await ctx.tick()
        out["psum"] = ctx.get(pe.psum)
        out["slots"] = slot_events

    sim = Simulator(pe)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return out


def random_dots(rng, scheme, lanes, n, ab, wb):
    _, (wlo, whi) = ranges(scheme, ab, wb)
    dots = []
    for _ in range(n):
        length = int(rng.integers(1, 6))
        dots.append([(int(rng.integers(0, SPAD)), rng.integers(wlo, whi + 1, lanes),
                      bool(rng.random() < 0.8)) for _ in range(length)])
    return dots


@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("scheme", ["binary", "ternary", "pow2", "dorefa", "int", "xnor"])
def test_each_dot_starts_from_above_and_adds_its_valid_slots(scheme, lanes):
    rng = np.random.default_rng(lanes)
    a_bits, w_bits = WIDTHS[scheme]
    ab, wb = (1, 1) if scheme == "xnor" else (a_bits, w_bits or {"binary": 1, "ternary": 2,
                                                                  "pow2": 3}[scheme])
    dots = random_dots(rng, scheme, lanes, 4, ab, wb)
    results, expected = run_dots(scheme, lanes, dots, seed=lanes)
    assert [r["psum"] for r in results] == expected
    assert [r["slots"] for r in results] == [sum(v for _, _, v in d) for d in dots]


def test_a_pe_without_an_input_row_passes_the_value_from_above():
    rng = np.random.default_rng(3)
    dots = random_dots(rng, "ternary", 2, 3, 4, 2)
    results, expected = run_dots("ternary", 2, dots, active=False, seed=3)
    assert [r["psum"] for r in results] == expected       # expected: above only
    assert all(r["slots"] == 0 for r in results)


@pytest.mark.parametrize("stages", [1, 2])
def test_a_pipelined_lane_tree_delays_only(stages):
    rng = np.random.default_rng(stages)
    dots = random_dots(rng, "pow2", 8, 3, 3, 3)
    results, expected = run_dots("pow2", 8, dots, tree_stages=stages, seed=stages)
    assert [r["psum"] for r in results] == expected


def test_acc_bits_must_hold_a_word():
    with pytest.raises(ValueError, match="acc_bits 4 cannot hold a word's dot product"):
        PE("ternary", lanes=8, a_bits=8, acc_bits=4)


def test_spad_sizes_must_be_powers_of_two():
    with pytest.raises(ValueError, match="must be a power of two"):
        check_spad_size("ifmap_spad", 12)
    assert accumulator_width("ternary", a_bits=4, fan_in=9) <= 20
