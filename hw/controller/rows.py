"""A PE row's sequencer: it runs the dots handed to it, slot by slot, and hands each one on.

Each PE row has one. A dot comes in on ``i_dots`` (from the row above when that row has
finished it, or from the dot source for row 0) and waits in ``next`` while the row still runs
its current dot; the row runs a dot's slots (channel word ``cq``, taps ``s`` from ``lo`` to
``hi``: the taps inside the image, at least ``n_min`` of them) and, in the cycle of its last
slot, hands the dot to the row below on ``o_dots``. The row below therefore starts a dot only
after this row has finished it, and this row's PEs hold the finished sum (``hw.pe.PE.psum``)
until they finish their next dot: since every dot runs at least ``n_min`` taps, any two dots
outlast the longest, so the row below always takes the sum in time and ``next`` is always
free when a dot comes in (the schedule's invariant, ``sim.cycle_model``).

The slot of a cycle (``slot``, ``hw.array.row_slot_layout``): filter scratchpad word ``fb +
cq * S + s`` of bank ``pp``, input scratchpad word ``fu + cq * Wseg + s`` of bank ``bp``;
valid when the tap is inside the image and the row holds a reduction unit in this block
(``used``); ``first``/``last`` of the dot; ``last_word`` on the layer's last channel word
when the row holds its last channel group.

Latency: a dot handed in while the row is free (or finishing) starts the next cycle.
Throughput: one slot per cycle.

Model: ``sim.cycle_model`` (``_schedule``: ``T[i][k] = max(T[i][k-1] + len[k-1],
T[i-1][k] + len[k])``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.array import row_slot_layout
from hw.controller.interfaces import Limits, config_layout, dot_state_layout
from hw.schedule import AcceleratorConfig

__all__ = ["RowSequencer"]


class RowSequencer(wiring.Component):
    """One PE row's sequencer (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
    start : In(1)
        Strobe: a layer starts (the row forgets any dot).
    i_dots : In(stream.Signature(dot_state_layout))
        The next dot; ``ready`` while ``next`` is free.
    o_dots : Out(stream.Signature(dot_state_layout))
        The dot whose last slot runs this cycle (``ready`` is not looked at).
    current : Out(dot_state_layout)
        The dot the row runs.
    slot : Out(row_slot_layout)
    used, last_cg : In(2)
        Per input bank: the row holds a reduction unit; its channel group is the last.
    filter_busy, input_busy : Out(2)
        Per bank: the current or next dot reads it.
    overflow : Out(1)
        Set when a dot came in while ``next`` was full (the schedule rules it out; tests
        check it stays clear).
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._lim = Limits(config)
        state = dot_state_layout(config)
        super().__init__({
            "cfg": In(config_layout(config)), "start": In(1),
            "i_dots": In(stream.Signature(state)), "o_dots": Out(stream.Signature(state)),
            "current": Out(state),
            "slot": Out(row_slot_layout(config.filter_spad, config.ifmap_spad)),
            "used": In(2), "last_cg": In(2),
            "filter_busy": Out(2), "input_busy": Out(2), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c, lim, cfg = self._config, self._lim, self.cfg
        FS, IS = c.filter_spad, c.ifmap_spad
        fs_bits, is_bits = (FS - 1).bit_length(), (IS - 1).bit_length()
        state = dot_state_layout(c)

        cur, nxt = Signal(state, name="cur"), Signal(state, name="nxt")
        cur_valid, nxt_valid = Signal(), Signal()
        s = Signal(range(max(2, lim["S"])), name="s")
        cq = Signal(range(max(2, FS)), name="cq")
        cqs = Signal(range(max(2, FS)), name="cqs")          # cq * S
        cqw = Signal(range(max(2, IS)), name="cqw")          # cq * Wseg
        last_cq = Signal()
        last_slot = Signal()
        m.d.comb += [last_cq.eq(cq == cfg.q - 1),
                     last_slot.eq(cur_valid & (s == cur.hi) & last_cq)]
        free = Signal()                      # the current dot is over at the end of this cycle
        m.d.comb += free.eq(~cur_valid | last_slot)
        incoming = Signal()
        m.d.comb += [self.i_dots.ready.eq(~nxt_valid), self.current.eq(cur),
                     incoming.eq(self.i_dots.valid & ~nxt_valid),
                     self.o_dots.valid.eq(last_slot), self.o_dots.payload.eq(cur)]
        with m.If(self.start):
            m.d.sync += self.overflow.eq(0)
        with m.Elif(self.i_dots.valid & nxt_valid):
            m.d.sync += self.overflow.eq(1)     # never, by the schedule's invariant

        with m.If(self.start):
            m.d.sync += [cur_valid.eq(0), nxt_valid.eq(0)]
        with m.Elif(free):
            following = Signal(state)
            m.d.comb += following.eq(Mux(nxt_valid, nxt, self.i_dots.payload))
            m.d.sync += [cur.eq(following), cur_valid.eq(nxt_valid | incoming),
                         nxt_valid.eq(0), s.eq(following.lo), cq.eq(0), cqs.eq(0), cqw.eq(0)]
        with m.Else():
            with m.If(incoming):
                m.d.sync += [nxt.eq(self.i_dots.payload), nxt_valid.eq(1)]
            with m.If(s == cur.hi):
                m.d.sync += [s.eq(cur.lo), cq.eq(cq + 1), cqs.eq(cqs + cfg.S),
                             cqw.eq(cqw + cfg.Wseg)]
            with m.Else():
                m.d.sync += s.eq(s + 1)

        # ---- the slot ------------------------------------------------------------------------
        faddr = Signal(range(2 * FS + lim["S"] + 1))
        iaddr = Signal(range(2 * IS + lim["FsegU"] + lim["S"] + 1))
        used = Mux(cur.bp, self.used[1], self.used[0])
        last_cg = Mux(cur.bp, self.last_cg[1], self.last_cg[0])
        slot = self.slot
        m.d.comb += [
            faddr.eq(cur.fb + cqs + s), iaddr.eq(cur.fu + cqw + s),
            slot.faddr.eq(Cat(faddr[:fs_bits], cur.pp)),
            slot.iaddr.eq(Cat(iaddr[:is_bits], cur.bp)),
            slot.valid.eq(cur_valid & used & (s >= cur.vlo) & (s <= cur.vhi)),
            slot.first.eq(cur_valid & (cq == 0) & (s == cur.lo)),
            slot.last.eq(last_slot),
            slot.bp.eq(cur.bp),
            slot.last_word.eq(last_cg & last_cq),
        ]
        for b in range(2):
            m.d.comb += [
                self.filter_busy[b].eq((cur_valid & (cur.pp == b)) | (nxt_valid & (nxt.pp == b))),
                self.input_busy[b].eq((cur_valid & (cur.bp == b)) | (nxt_valid & (nxt.bp == b))),
            ]
        return m
