# amaranth: UnusedElaboratable=no
"""The controller's parts on their own (Amaranth simulator), each against the schedule the
cycle model assumes of it: the weight loader's and input loader's lengths and what they
write where, a PE row's slots and hand-offs, the dot source's order and taps, the psum
unit's read and write times."""

import pytest
from amaranth.sim import Simulator

from hw.controller import (ComputeSequencer, DotSource, InputLoader, PsumUnit, WeightLoader,
                           dot_state_layout)
from hw.controller.rows import RowSequencer
from hw.schedule import (CONFIG_FIELDS, INPUT_LATENCY, INPUT_LOAD_OVERHEAD,
                         WEIGHT_LOAD_OVERHEAD, AcceleratorConfig)
from sim.cycle_model import (ArrayParams, LayerShape, Mapping, _blocks, _folds,
                             config_values, dot_taps, output_stream_order)

CONFIG = AcceleratorConfig(scheme="ternary", rows=3, cols=4, lanes=2, a_bits=4, acc_bits=16,
                           filter_spad=16, ifmap_spad=16, in_depth=512, wb_depth=256,
                           pb_depth=256)
PARAMS = ArrayParams.of(CONFIG)


def set_cfg(ctx, part, values):
    for name in CONFIG_FIELDS:
        ctx.set(getattr(part.cfg, name), values[name])


def simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


# ---- the weight loader ---------------------------------------------------------------------

def word(addr, bank):
    """What weight bank ``bank`` holds at ``addr`` in the tests (a 4-bit word)."""
    return (3 * addr + bank) % 16


def test_weight_loader_writes_each_pass_in_its_length_and_waits_for_its_bank():
    """Two row folds x two column folds x two filter groups (p * q * S = 6 words a pass):
    every word of a pass goes to its filter bank, one word per row and cycle; ``done``
    pulses for the pass ``p * q * S + WEIGHT_LOAD_OVERHEAD - 1`` cycles after the decision
    (the dot source can push its first dot a cycle later); pass
    ``m >= 2`` waits until row 0 has been handed pass ``m - 1`` and no row reads bank
    ``m % 2``; the first two passes load back to back. The loader sees an entry the cycle
    after its pulse."""
    shape = LayerShape(4, 4, 3, 3, 6, 6, 1, 1)          # 2 words x 3 rows = 6 units: 2 folds
    mp = Mapping(q=1, p=2, Fseg=6)
    values = config_values(shape, PARAMS, mp)
    assert (values["n_r"], values["n_v"], values["Gi"], values["pqS"]) == (2, 2, 2, 6)
    dut = WeightLoader(CONFIG)
    writes, done_at = [], []

    async def testbench(ctx):
        set_cfg(ctx, dut, values)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.status.running, 1)
        previous = (0, 0)
        # row 0 enters passes 0 and 1 at cycles 29 and 30, pass 2 at 59, pass 3 at 69, and
        # from pass 4 on the cycle after the pass is written
        entering = {29, 30, 59, 69, 79, 89, 99}
        for cycle in range(1, 120):
            busy = 0b01 if 30 <= cycle < 50 else 0
            ctx.set(dut.status.pass_entered, cycle in entering)
            ctx.set(dut.status.filter_bank_busy, busy)
            en, addr = previous      # the buffer answers a read the cycle after, like the RAM
            for i in range(3):
                ctx.set(dut.bank.data[i], word(addr, i) if en >> i & 1 else 0)
            if ctx.get(dut.wload.we):
                writes.append((ctx.get(dut.wload.we), ctx.get(dut.wload.addr),
                               [ctx.get(dut.wload.data[i]) for i in range(3)]))
            if ctx.get(dut.progress.done):
                done_at.append(cycle)
            previous = (ctx.get(dut.bank.en), ctx.get(dut.bank.addr))
            await ctx.tick()

    simulate(dut, testbench)
    assert len(writes) == 8 * 6
    for m in range(8):
        kr, g = m // 4, m % 2
        base = kr * values["MqS"] + g * 6
        for k, (we, addr, data) in enumerate(writes[6 * m:6 * m + 6]):
            assert (we, addr) == (0b111, (m % 2) * 16 + k)
            assert data == [word(base + k, i) for i in range(3)]
    length = 6 + WEIGHT_LOAD_OVERHEAD - 1          # the dot source sees the pulse a cycle on
    assert done_at == [1 + length,                  # decided in the first running cycle
                       1 + 7 + length,              # pass 1 right after (issue + 1 cycle)
                       50 + length,                 # pass 2: pass 1 entered, bank 0 at 50
                       60 + length,                 # pass 3: pass 2 entered at 59
                       70 + length, 80 + length, 90 + length, 100 + length]


# ---- the input loader ------------------------------------------------------------------------

def expected_takes(shape, params, mp, block):
    """Python model of a block's input load: {(row, col, spad addr): buffer addr}."""
    fo = _folds(shape, params, mp)
    kr, rest = divmod(block, fo.n_v * fo.n_f)
    kv, kf = divmod(rest, fo.n_f)
    Y, X = params.rows, params.cols
    rows_v = fo.rows_last if kr == fo.n_r - 1 else Y
    cols_v = fo.cols_last if kv == fo.n_v - 1 else X
    U, P = shape.stride, shape.padding
    ws = kf * mp.Fseg * U - P
    fv = fo.F_last if kf == fo.n_f - 1 else mp.Fseg
    takes = {}
    for i in range(rows_v):
        cg, r = divmod(kr * Y + i, shape.R)
        for j in range(cols_v):
            h = (kv * X + j) * U + r - P
            if not 0 <= h < shape.H:
                continue
            for cq in range(mp.q):
                c = cg * mp.q + cq
                for w in range(max(0, ws), min(shape.W, ws + (fv - 1) * U + shape.S)):
                    spad = (block % 2) * 16 + cq * fo.Wseg + (w - ws)
                    takes[(i, j, spad)] = (c * shape.H + h) * shape.W + w
    return takes


@pytest.mark.parametrize("dims, mp", [
    ((2, 4, 3, 3, 6, 7, 1, 1), Mapping(1, 1, 4)),       # row folds, segments, padding
    ((2, 6, 2, 3, 9, 5, 2, 0), Mapping(3, 2, 2)),       # stride 2, q = 3 words
])
def test_input_loader_sends_each_block_to_the_pes_that_hold_its_rows(dims, mp):
    """Every block: each PE takes exactly the words of its input rows (the Python model of
    the mapping), at the input scratchpad address its slots read; ``done`` pulses for the block
    ``words + INPUT_LOAD_OVERHEAD - 1`` cycles after the decision; the row flags are set."""
    shape = LayerShape(*dims)
    values = config_values(shape, PARAMS, mp)
    fo = _folds(shape, PARAMS, mp)
    words = _blocks(shape, PARAMS, mp, fo).words
    n_blocks = fo.n_r * fo.n_v * fo.n_f
    dut = InputLoader(CONFIG)
    got = [dict() for _ in range(n_blocks)]
    done_at = []

    async def testbench(ctx):
        set_cfg(ctx, dut, values)
        ctx.set(dut.init, 1)
        await ctx.tick()
        ctx.set(dut.init, 0)
        await ctx.tick().until(~dut.initialising)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.status.running, 1)
        block, previous = 0, (0, 0)
        for cycle in range(1, 4000):
            en, addr = previous
            ctx.set(dut.buffer.data[0], addr if en else 0)
            bus = dut.ibus
            if ctx.get(bus.we):
                for i in range(3):
                    for j in range(4):
                        if (ctx.get(bus.row_hit) >> i & 1 and ctx.get(bus.col_ok) >> j & 1
                                and ctx.get(bus.rel[i]) == ctx.get(bus.ju[j])):
                            key = (i, j, ctx.get(bus.addr))
                            assert key not in got[block]
                            got[block][key] = ctx.get(bus.data)
            # row 0 enters each block the cycle it is written: no waiting for row 0
            done = ctx.get(dut.progress.done)
            ctx.set(dut.status.block_entered, done)
            if done:
                block += 1
                done_at.append(cycle)
                if block == n_blocks:
                    break
            previous = (ctx.get(dut.buffer.en), ctx.get(dut.buffer.addr))
            await ctx.tick()

    simulate(dut, testbench)
    for b in range(n_blocks):
        assert got[b] == expected_takes(shape, PARAMS, mp, b), b
    # back to back: block b is decided the cycle after block b - 1's pulse
    starts = [1] + [d + 1 for d in done_at[:-1]]
    assert [d - s for d, s in zip(done_at, starts)] == [
        int(w) + INPUT_LOAD_OVERHEAD - 1 for w in words]


# ---- a PE row's sequencer ------------------------------------------------------------------

def dot_state(**fields):
    layout = dot_state_layout(CONFIG)
    value = 0
    for name, v in fields.items():
        f = layout[name]
        value |= (v & ((1 << f.width) - 1)) << f.offset
    return value


def test_a_row_runs_its_dots_slot_by_slot_and_hands_each_on_at_its_last_slot():
    """q = 2 channel words, S = 3: a dot with taps 1..2 (one in the padding below vlo = 2)
    runs 2 x 2 slots; the next one, handed in while the first runs, waits in ``next`` and
    starts right after; a dot handed to a free row starts the next cycle."""
    values = {name: 0 for name in CONFIG_FIELDS}
    values.update(q=2, S=3, Wseg=7)
    dut = RowSequencer(CONFIG)
    slots, handed = [], []
    dots = [dot_state(pp=1, bp=0, fb=6, fu=2, lo=1, hi=2, vlo=2, vhi=2, paddr=5),
            dot_state(pp=1, bp=0, fb=12, fu=3, lo=0, hi=2, vlo=0, vhi=2, paddr=6),
            dot_state(pp=0, bp=1, fb=0, fu=0, lo=0, hi=1, vlo=0, vhi=1, paddr=7)]

    async def testbench(ctx):
        set_cfg(ctx, dut, values)
        ctx.set(dut.used, 0b11)
        ctx.set(dut.last_cg, 0b01)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        schedule = {0: dots[0], 2: dots[1], 20: dots[2]}
        for cycle in range(30):
            if cycle in schedule:
                assert ctx.get(dut.i_dots.ready)
                ctx.set(dut.i_dots.valid, 1)
                ctx.set(dut.i_dots.payload.as_value(), schedule[cycle])
            else:
                ctx.set(dut.i_dots.valid, 0)
            slot = ctx.get(dut.slot)
            if ctx.get(dut.o_dots.valid):
                handed.append((cycle, ctx.get(dut.o_dots.payload).paddr))
            slots.append((cycle, slot.faddr, slot.iaddr, slot.valid, slot.first, slot.last,
                          slot.last_word))
            await ctx.tick()
        assert not ctx.get(dut.overflow)

    simulate(dut, testbench)
    running = set(range(1, 11)) | set(range(21, 25))
    busy = [s for s in slots if s[0] in running]
    assert not any(s[3] or s[4] or s[5] for s in slots if s[0] not in running)
    # dot 0 (cycles 1-4): cq 0 taps 1, 2 then cq 1 taps 1, 2; tap 1 is padding
    assert busy[:4] == [(1, 16 + 6 + 1, 2 + 1, 0, 1, 0, 0), (2, 16 + 6 + 2, 2 + 2, 1, 0, 0, 0),
                        (3, 16 + 6 + 4, 2 + 7 + 1, 0, 0, 0, 1),
                        (4, 16 + 6 + 5, 2 + 7 + 2, 1, 0, 1, 1)]
    # dot 1 (cycles 5-10) straight after, from ``next``
    assert [s[0] for s in busy[4:10]] == list(range(5, 11)) and busy[4][4] == 1
    assert busy[9][5] == 1
    # dot 2 handed to the free row at cycle 20: its first slot at 21; its input bank 1 does
    # not hold the last channel group (bank 0 did: last_word on dot 0's cq = 1)
    assert busy[10][0] == 21 and busy[10][2] == 16 + 0
    assert [s[6] for s in busy[10:14]] == [0, 0, 0, 0]
    assert handed == [(4, 5), (10, 6), (24, 7)]


# ---- the dot source ----------------------------------------------------------------------------

def test_dot_source_pushes_the_dots_in_loop_order_with_their_taps():
    """Every dot of a layer with row folds, segments and padding, in the cycle model's loop
    order; its taps are ``dot_taps``' and its psum address the bank layout's; nothing is
    pushed while a pass's weights are missing."""
    shape = LayerShape(2, 4, 3, 3, 5, 7, 1, 2)
    mp = Mapping(q=1, p=2, Fseg=4)
    values = config_values(shape, PARAMS, mp)
    fo = _folds(shape, PARAMS, mp)
    n_eff, n_s, n_min = dot_taps(shape, mp.Fseg)
    n_passes = fo.n_r * fo.n_v * fo.n_f * fo.Gi
    n_dots = fo.n_r * fo.n_v * fo.Gi * shape.F * mp.p
    dut = DotSource(CONFIG)
    pushed = []

    async def testbench(ctx):
        set_cfg(ctx, dut, values)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.running, 1)
        ctx.set(dut.o_dots.ready, 1)
        for _ in range(5):
            assert not ctx.get(dut.o_dots.valid)     # no weights yet
            await ctx.tick()
        # loaders that stay at most two passes (blocks) ahead of row 0, a psum unit that
        # writes each dot's psum three cycles after it is pushed
        counts = {"passes": [0, 0], "blocks": [0, 0]}          # written, entered
        writes = []
        cycle = 0
        while len(pushed) < n_dots:
            cycle += 1
            for name, port, total in (("passes", dut.weights, n_passes),
                                      ("blocks", dut.inputs, n_passes // fo.Gi)):
                written, entered = counts[name]
                pulse = written < total and written - entered < 2
                ctx.set(port.done, pulse)
                counts[name][0] += pulse
            ctx.set(dut.psums.done, bool(writes) and writes[0] <= cycle)
            if writes and writes[0] <= cycle:
                writes.pop(0)
            counts["passes"][1] += ctx.get(dut.pass_entered)
            counts["blocks"][1] += ctx.get(dut.block_entered)
            if ctx.get(dut.o_dots.valid):
                d = ctx.get(dut.o_dots.payload)
                pushed.append((d.pp, d.bp, d.fb, d.fu, d.lo, d.hi, d.vlo, d.vhi, d.paddr,
                               d.kr_first, d.kv_last))
                writes.append(cycle + 3)
            await ctx.tick()
        assert counts["passes"][1] == n_passes
        ctx.set(dut.weights.done, 0)
        ctx.set(dut.inputs.done, 0)
        while writes:
            cycle += 1
            assert not ctx.get(dut.idle)
            ctx.set(dut.psums.done, writes[0] <= cycle)
            if writes[0] <= cycle:
                writes.pop(0)
            await ctx.tick()
        ctx.set(dut.psums.done, 0)
        await ctx.tick()
        assert ctx.get(dut.idle)

    simulate(dut, testbench)
    want = []
    n = 0
    for kr in range(fo.n_r):
        for kv in range(fo.n_v):
            for kf in range(fo.n_f):
                for g in range(fo.Gi):
                    fv = fo.F_last if kf == fo.n_f - 1 else mp.Fseg
                    for fi in range(fv):
                        f = kf * mp.Fseg + fi
                        w0 = f * shape.stride - shape.padding
                        vlo, vhi = max(0, -w0), min(shape.S - 1, shape.W - 1 - w0)
                        lo = min(vlo, shape.S - int(n_eff[f]))
                        for mi in range(mp.p):
                            paddr = (kv * fo.Gi * shape.F * mp.p + g * shape.F * mp.p
                                     + f * mp.p + mi)
                            want.append((n % 2, (n // fo.Gi) % 2, mi * fo.d, fi * shape.stride,
                                         lo, lo + int(n_eff[f]) - 1,
                                         vlo if n_s[f] else shape.S, vhi if n_s[f] else 0,
                                         paddr, int(kr == 0), int(kv == fo.n_v - 1)))
                    n += 1
    assert pushed == want


# ---- the psum unit -----------------------------------------------------------------------------

@pytest.mark.parametrize("tree_stages", [0, 2])
def test_psum_unit_reads_old_sums_and_writes_new_ones_at_the_pe_times(tree_stages):
    """A dot starting in row 0 at cycle t: its old sum is read at t + A - 1 (shown on
    ``top`` at t + A; 0 in the first row fold); a dot whose last slot runs in the bottom row
    at t is written at t + INPUT_LATENCY + A + 1 from ``bottom``, to the used columns."""
    config = CONFIG.replace(tree_stages=tree_stages)
    A = config.accumulate_latency
    values = {name: 0 for name in CONFIG_FIELDS}
    values.update(cols_last=2)
    dut = PsumUnit(config)
    log = {"read": [], "write": [], "top": [], "done": []}

    async def testbench(ctx):
        set_cfg(ctx, dut, values)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        events = {3: ("top", dot_state(paddr=9, kr_first=0, kv_last=1)),
                  4: ("top", dot_state(paddr=10, kr_first=1)),
                  6: ("bottom", dot_state(paddr=11, kv_last=0))}
        for cycle in range(20):
            kind, state = events.get(cycle, (None, 0))
            ctx.set(dut.events.top_valid, kind == "top")
            ctx.set(dut.events.top.as_value(), state)
            ctx.set(dut.events.bottom_valid, kind == "bottom")
            ctx.set(dut.events.bottom.as_value(), state)
            for j in range(4):
                ctx.set(dut.read.data[j], 100 + j)
                ctx.set(dut.psum.bottom[j], 200 + j)
            if ctx.get(dut.read.en):
                log["read"].append((cycle, ctx.get(dut.read.en), ctx.get(dut.read.addr)))
            if ctx.get(dut.write.en):
                log["write"].append((cycle, ctx.get(dut.write.en), ctx.get(dut.write.addr),
                                     [ctx.get(dut.write.data[j]) for j in range(4)]))
            log["top"].append(ctx.get(dut.psum.top[0]))
            if ctx.get(dut.progress.done):
                log["done"].append(cycle)
            await ctx.tick()
        assert ctx.get(dut.ev_transfers) == 0

    simulate(dut, testbench)
    assert log["read"] == [(3 + A - 1, 0b0011, 9)]
    assert log["top"][3 + A] == 100 and log["top"][4 + A] == 0
    assert log["write"] == [(6 + INPUT_LATENCY + A + 1, 0b1111, 11, [200, 201, 202, 203])]
    assert log["done"] == [6 + INPUT_LATENCY + A + 1]


def test_the_compute_sequencer_composes_source_and_rows():
    """The parts are joined (an elaboration check with the real widths)."""
    from amaranth.back import rtlil
    assert "row2" in rtlil.convert(ComputeSequencer(CONFIG))


# ---- the unloader --------------------------------------------------------------------------

@pytest.mark.parametrize("dims, mp", [
    ((5, 2, 3, 3, 7, 6, 1, 1), Mapping(1, 2, 3)),       # 3 column folds, last one partial
    ((6, 1, 1, 2, 4, 9, 2, 0), Mapping(1, 3, 5)),       # stride 2, two filter groups
])
def test_unloader_reads_every_sum_in_stream_order_with_its_coordinates(dims, mp):
    """Every element of the output once, in ``output_stream_order``, with its (m, e, f) and
    the sum its column's psum bank holds at the element's address; a stall on ``o_stream``
    holds the element."""
    from hw.controller import Unloader
    shape = LayerShape(*dims)
    values = config_values(shape, PARAMS, mp)
    order = output_stream_order(shape, PARAMS, mp)
    dut = Unloader(CONFIG)
    got = []

    async def testbench(ctx):
        set_cfg(ctx, dut, values)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        previous = (0, 0)
        for cycle in range(3 * len(order) + 10):
            en, addr = previous          # the banks answer the cycle after, like the RAM
            for j in range(4):
                ctx.set(dut.psums.data[j], 1000 * j + addr - 500 if en >> j & 1 else 0)
            ready = cycle % 3 != 1
            ctx.set(dut.o_stream.ready, ready)
            if ctx.get(dut.o_stream.valid) and ready:
                p = ctx.get(dut.o_stream.payload)
                got.append((p.acc, p.m, p.e, p.f))
            if ctx.get(dut.psums.en):
                previous = (ctx.get(dut.psums.en), ctx.get(dut.psums.addr))
            if not ctx.get(dut.busy):
                break
            await ctx.tick()

    simulate(dut, testbench)
    fo = _folds(shape, PARAMS, mp)
    want = []
    for flat in order:
        m, rest = divmod(int(flat), shape.E * shape.F)
        e, f = divmod(rest, shape.F)
        kv, j = divmod(e, 4)
        g, mi = divmod(m, mp.p)
        addr = kv * fo.Gi * shape.F * mp.p + g * shape.F * mp.p + f * mp.p + mi
        want.append((1000 * j + addr - 500, m, e, f))
    assert got == want


# ---- the field loader ----------------------------------------------------------------------

def test_field_loader_writes_one_field_per_beat_from_its_low_bits():
    """Beats with junk above each field's width: each field takes its low bits; ``first``
    and ``done`` mark the first and last beat; a gap in ``valid`` or ``enable`` waits."""
    from amaranth.hdl import signed, unsigned
    from amaranth.lib import data

    from hw.controller import FieldLoader
    layout = data.StructLayout({"a": unsigned(3), "b": signed(5), "c": unsigned(1)})
    dut = FieldLoader(layout, 8)
    beats = [0b1111_0101, 0b1011_0110, 0b0000_0011]
    marks = []

    async def testbench(ctx):
        ctx.set(dut.enable, 1)
        for k, beat in enumerate(beats):
            ctx.set(dut.i_stream.valid, 0)
            await ctx.tick()
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, beat)
            marks.append((ctx.get(dut.first), ctx.get(dut.done)))
            await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        await ctx.tick()
        assert (ctx.get(dut.fields.a), ctx.get(dut.fields.b), ctx.get(dut.fields.c)) == (
            0b101, 0b10110 - 32, 1)
        ctx.set(dut.enable, 0)
        ctx.set(dut.i_stream.valid, 1)
        ctx.set(dut.i_stream.payload, 0)
        assert not ctx.get(dut.i_stream.ready) and not ctx.get(dut.first)

    simulate(dut, testbench)
    assert marks == [(1, 0), (0, 0), (0, 1)]


def test_field_loader_refuses_a_beat_narrower_than_a_field():
    from amaranth.hdl import unsigned
    from amaranth.lib import data

    from hw.controller import FieldLoader
    with pytest.raises(ValueError, match="beat_bits 4 is narrower than the widest field"):
        FieldLoader(data.StructLayout({"a": unsigned(5)}), 4)
