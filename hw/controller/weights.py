"""The weight loader: each pass's weights from the weight banks into the PE rows' filter banks.

Pass ``m`` (loop order group ``grp`` of a grouped layer, row fold ``kr``, column fold
``kv``, segment ``kf``, filter group ``g``) needs ``p * q * S`` words per PE row: words
``wb_base + (grp * n_r + kr) * M * q * S + g * p * q * S`` onwards (``M``: a group's
filters) of each row's weight bank (``sim.cycle_model.weight_word_order``; ``wb_base`` is 0
for one layer at a time, the layer's place in a network engine's banks), written into filter
bank ``m % 2`` of the rows the pass uses. The loader starts pass ``m`` (a *decision*) when it is
idle, row 0 has entered pass ``m - 1`` (or ``m <= 1``: the first two passes load ahead; it
counts how many passes it is ahead of row 0 from ``status.pass_entered``) and no row still
reads bank ``m % 2`` (``status.filter_bank_busy``). Then it reads one word per row per cycle
for ``p * q * S`` cycles and writes each the cycle after; ``progress.done`` pulses with the
last word of a pass.

Latency: from a decision in cycle ``t``, ``done`` pulses at ``t + p * q * S +
hw.schedule.WEIGHT_LOAD_OVERHEAD - 1``, so the pass's first dot can be pushed at ``t + p * q
* S + WEIGHT_LOAD_OVERHEAD``; the next decision can come at ``t + p * q * S + 1``.
Throughput: ``rows`` words per cycle.

Model: ``sim.cycle_model`` (``_schedule``: the loader's decisions).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.array import FilterWrite
from hw.buffer import BufferRead
from hw.controller.interfaces import Limits, Progress, SequencerStatus, config_layout
from hw.lanes import adder_tree
from hw.schedule import AcceleratorConfig

__all__ = ["WeightLoader"]


class WeightLoader(wiring.Component):
    """The weight loader (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
    start : In(1)
        Strobe: the layer starts (its first pass is next).
    status : In(SequencerStatus)
    progress : Out(Progress)
        ``done``: the last word of a pass is written this cycle.
    bank : Out(BufferRead)
        The weight banks' read port.
    wload : Out(FilterWrite)
        The array's filter scratchpad writes.
    ev_writes : Out(range(rows + 1))
        Filter scratchpad words written this cycle.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._lim = Limits(config)
        c = config
        super().__init__({
            "cfg": In(config_layout(c)), "start": In(1),
            "status": In(SequencerStatus()),
            "progress": Out(Progress()),
            "bank": Out(BufferRead(banks=c.rows, depth=c.wb_depth, shape=c.w_word_bits)),
            "wload": Out(FilterWrite(rows=c.rows, filter_spad=c.filter_spad,
                                     word_bits=c.w_word_bits)),
            "ev_writes": Out(range(c.rows + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        c, lim, cfg = self._config, self._lim, self.cfg
        Y, FS, Dw = c.rows, c.filter_spad, c.wb_depth
        fs_bits = (FS - 1).bit_length()

        def below(n, name):
            return Signal(range(max(2, n)), name=name)

        # ---- the next pass to load ---------------------------------------------------------
        more = Signal()                  # a pass is left to load
        bank_next = Signal()             # its filter bank: its index % 2
        early = Signal(range(3))         # min(passes loaded, 2): the first two load ahead
        ahead = Signal(range(4))         # passes decided but not yet entered by row 0
        kr, kv = below(lim["n_r"], "kr"), below(lim["n_v"], "kv")
        kf, g = below(lim["n_f"], "kf"), below(lim["Gi"], "g")
        base_kr, base = below(Dw, "base_kr"), below(Dw, "base")
        st = self.status
        decide = Signal()
        issuing = Signal()
        m.d.comb += decide.eq(st.running & ~issuing & more & ((early < 2) | (ahead == 0))
                              & ~Mux(bank_next, st.filter_bank_busy[1], st.filter_bank_busy[0]))
        with m.If(self.start):
            m.d.sync += [early.eq(0), ahead.eq(0)]
        with m.Else():
            m.d.sync += ahead.eq(ahead + decide - st.pass_entered)
            with m.If(decide & (early != 2)):
                m.d.sync += early.eq(early + 1)

        # ---- issue: one word per row and cycle --------------------------------------------
        k = below(FS, "k")
        addr = below(Dw, "addr")
        bank = Signal()
        rowmask = Signal(Y)
        if c.groups > 1:
            grp = below(c.groups, "grp")      # the group (grouped layers: the outermost loop)
            with m.If(self.start):
                m.d.sync += grp.eq(0)
        with m.If(self.start):
            m.d.sync += [more.eq(1), bank_next.eq(0), kr.eq(0), kv.eq(0), kf.eq(0), g.eq(0),
                         base_kr.eq(cfg.wb_base), base.eq(cfg.wb_base), issuing.eq(0)]
        with m.Elif(decide):
            rows_used = Mux(kr == cfg.n_r - 1, cfg.rows_last, Y)
            m.d.sync += [issuing.eq(1), k.eq(0), addr.eq(base), bank.eq(bank_next),
                         rowmask.eq(Cat(*(rows_used > i for i in range(Y)))),
                         bank_next.eq(~bank_next), g.eq(g + 1), base.eq(base + cfg.pqS)]
            with m.If(g == cfg.Gi - 1):
                m.d.sync += [g.eq(0), base.eq(base_kr), kf.eq(kf + 1)]
                with m.If(kf == cfg.n_f - 1):
                    m.d.sync += [kf.eq(0), kv.eq(kv + 1)]
                    with m.If(kv == cfg.n_v - 1):
                        m.d.sync += [kv.eq(0), kr.eq(kr + 1), base_kr.eq(base_kr + cfg.MqS),
                                     base.eq(base_kr + cfg.MqS)]
                        with m.If(kr == cfg.n_r - 1):
                            if c.groups > 1:   # the next group's folds follow in the banks
                                m.d.sync += kr.eq(0)
                                with m.If(grp == cfg.groups - 1):
                                    m.d.sync += more.eq(0)
                                with m.Else():
                                    m.d.sync += grp.eq(grp + 1)
                            else:
                                m.d.sync += more.eq(0)
        with m.Elif(issuing):
            m.d.sync += [k.eq(k + 1), addr.eq(addr + 1)]
            with m.If(k == cfg.pqS - 1):
                m.d.sync += issuing.eq(0)
        m.d.comb += [self.bank.en.eq(Mux(issuing, rowmask, 0)), self.bank.addr.eq(addr)]

        # ---- write: the cycle after the read ---------------------------------------------
        writing, last, k_d, bank_d, mask_d = Signal(), Signal(), below(FS, "k_d"), Signal(), \
            Signal(Y)
        m.d.sync += [writing.eq(issuing & ~self.start), last.eq(k == cfg.pqS - 1),
                     k_d.eq(k), bank_d.eq(bank), mask_d.eq(rowmask)]
        we = Signal(Y)
        m.d.comb += we.eq(Mux(writing, mask_d, 0))
        m.d.comb += [self.wload.we.eq(we), self.wload.addr.eq(Cat(k_d[:fs_bits], bank_d))]
        for i in range(Y):
            m.d.comb += self.wload.data[i].eq(self.bank.data[i])
        m.d.comb += self.progress.done.eq(writing & last & ~self.start)
        count, _ = adder_tree(m, [we[i] for i in range(Y)], name="wcount")
        m.d.comb += self.ev_writes.eq(count)
        return m
