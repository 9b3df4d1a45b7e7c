"""The input loader: each block's input rows from the input buffer into the PEs' input banks.

Block ``b`` (loop order: for a grouped layer the group ``grp``, then row fold ``kr``, column
fold ``kv``, segment ``kf``) needs, for the
channel groups of the row fold's reduction units, the input rows of the column fold's output
rows and the input columns of the segment, clipped to the image (padding is never stored:
taps in the padding are invalid slots). The loader reads them one word per cycle
(channel word, row, column order; the layer's words start at ``in_base``, 0 for one layer
at a time) and broadcasts each, tagged with its channel group and row,
to the PEs (``InputBus``): PE ``(i, j)`` takes a word of its row's channel group ``cg_i``
whose row ``h`` is ``e_j * stride + r_i - padding``, into its bank ``b % 2`` at ``cq * Wseg +
(w - ws)``.

A walker sets up the row descriptors ``(cg_i, r_i)`` of the first row fold on ``init``
(``rows`` cycles, ``initialising`` high); each row fold advances them by ``rows`` units. A
grouped layer's groups are ``grp_inputs`` words apart in the buffer (each group's channel
words from its own first one); each group starts again from the first row fold's
descriptors, which the walker keeps.

The loader starts block ``b`` (a *decision*) when it is idle, row 0 has entered block ``b -
1`` (or ``b <= 1``; it counts how many blocks it is ahead of row 0 from
``status.block_entered``) and no row still reads bank ``b % 2`` (``status.input_bank_busy``):
phase 1 advances the block, phase 2 registers its raw row and column ranges, clears the PEs'
activity flags of the bank and sets the rows' flags (``RowFlags``: the row holds a reduction
unit; its channel group is the last), phase 3 clips the ranges to the image and finds the
first word (an empty block skips to phase 5), phase 4 issues one word per cycle, phase 5
pulses ``progress.done`` while the last word is broadcast. Each phase is one short
registered step (no add-compare-select chains for timing).

Latency: from a decision in cycle ``t``, ``done`` pulses at ``t + words +
hw.schedule.INPUT_LOAD_OVERHEAD - 1``; the dot source and the next decision can use the block
a cycle later. Throughput: one word per cycle.

Model: ``sim.cycle_model`` (``_blocks``: the words per block; ``_schedule``: the decisions).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.array import InputBus, tag_bits
from hw.buffer import BufferRead
from hw.controller.interfaces import Limits, Progress, RowFlags, SequencerStatus, config_layout
from hw.schedule import MAX_PADDING, MAX_STRIDE, AcceleratorConfig

__all__ = ["InputLoader"]


class InputLoader(wiring.Component):
    """The input loader (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
    init : In(1)
        Strobe: set up the row descriptors for a new layer (``rows`` cycles).
    initialising : Out(1)
    start : In(1)
        Strobe: the layer starts (its first block is next).
    status : In(SequencerStatus)
    progress : Out(Progress)
        ``done``: the last word of a block is written this cycle.
    flags : Out(RowFlags)
    buffer : Out(BufferRead)
        The input buffer's read port.
    ibus : Out(InputBus)
        The array's input bus.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._lim = Limits(config)
        c = config
        super().__init__({
            "cfg": In(config_layout(c)), "init": In(1), "initialising": Out(1),
            "start": In(1),
            "status": In(SequencerStatus()),
            "progress": Out(Progress()), "flags": Out(RowFlags(c.rows)),
            "buffer": Out(BufferRead(banks=1, depth=c.in_depth, shape=c.a_word_bits)),
            "ibus": Out(InputBus(rows=c.rows, cols=c.cols, ifmap_spad=c.ifmap_spad,
                                 word_bits=c.a_word_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        c, lim, cfg = self._config, self._lim, self.cfg
        Y, X, FS, IS, Din = c.rows, c.cols, c.filter_spad, c.ifmap_spad, c.in_depth
        tb = tag_bits(X)

        def upto(n, name=None):
            return Signal(range(n + 1), name=name)

        def below(n, name=None):
            return Signal(range(max(2, n)), name=name)

        pos_bits = (max(lim["H"], lim["W"]) + MAX_PADDING + lim["FsegU"] + lim["S"]
                    + 2 * lim["U"] + lim["XU"]).bit_length() + 1

        def pos(name):
            return Signal(signed(pos_bits), name=name)

        # ---- row descriptors (cg_i, r_i) of the row fold being loaded ----------------------
        row_cg = Array([upto(lim["Cg"] + Y, name=f"row_cg{i}") for i in range(Y)])
        row_r = Array([upto(lim["R"], name=f"row_r{i}") for i in range(Y)])
        if c.groups > 1:
            init_cg = Array([upto(Y, name=f"init_cg{i}") for i in range(Y)])
            init_r = Array([upto(lim["R"], name=f"init_r{i}") for i in range(Y)])
        walk_k = Signal(range(Y + 1), init=Y)
        walk_cg, walk_r = upto(Y), upto(Y)
        m.d.comb += self.initialising.eq(walk_k != Y)
        with m.If(self.init):
            m.d.sync += [walk_k.eq(0), walk_cg.eq(0), walk_r.eq(0)]
        with m.Elif(walk_k != Y):
            m.d.sync += [walk_k.eq(walk_k + 1), row_cg[walk_k].eq(walk_cg),
                         row_r[walk_k].eq(walk_r)]
            if c.groups > 1:   # kept for the first row fold of every group
                m.d.sync += [init_cg[walk_k].eq(walk_cg), init_r[walk_k].eq(walk_r)]
            with m.If(walk_r + 1 == cfg.R):
                m.d.sync += [walk_r.eq(0), walk_cg.eq(walk_cg + 1)]
            with m.Else():
                m.d.sync += walk_r.eq(walk_r + 1)

        # ---- the block being loaded ------------------------------------------------------
        phase = Signal(range(6))   # 0 idle, 1 advance, 2 ranges, 3 clipped ranges, 4 issue, 5 done
        first = Signal()
        more = Signal()                  # a block is left to load
        early = Signal(range(3))         # min(blocks loaded, 2): the first two load ahead
        ahead = Signal(range(4))         # blocks decided but not yet entered by row 0
        bank_next = Signal()
        kr, kv, kf = below(lim["n_r"], "kr"), below(lim["n_v"], "kv"), below(lim["n_f"], "kf")
        ws = pos("ws")
        eu0, euw0 = upto(lim["XU"] * lim["n_v"], "eu0"), upto(lim["XUW"] * lim["n_v"], "euw0")
        cbase0 = below(Din, "cbase0")
        bank = Signal()
        kr_last, kv_last, kf_last = Signal(), Signal(), Signal()
        m.d.comb += [kr_last.eq(kr == cfg.n_r - 1), kv_last.eq(kv == cfg.n_v - 1),
                     kf_last.eq(kf == cfg.n_f - 1)]
        grp_last = Const(1)              # the last group (always, for ungrouped layers)
        if c.groups > 1:
            grp, gbase = below(c.groups, "grp"), below(Din, "gbase")
            grp_last = grp == cfg.groups - 1
        rows_v, cols_v = upto(Y), upto(X)
        m.d.comb += [rows_v.eq(Mux(kr_last, cfg.rows_last, Y)),
                     cols_v.eq(Mux(kv_last, cfg.cols_last, X))]
        st = self.status
        decide = Signal()
        m.d.comb += decide.eq(st.running & (phase == 0) & more & ((early < 2) | (ahead == 0))
                              & ~Mux(bank_next, st.input_bank_busy[1], st.input_bank_busy[0]))
        with m.If(self.start):
            m.d.sync += [early.eq(0), ahead.eq(0)]
        with m.Else():
            m.d.sync += ahead.eq(ahead + decide - st.block_entered)
            with m.If(decide & (early != 2)):
                m.d.sync += early.eq(early + 1)

        # ranges (raw in phase 2, clipped in phase 3) and issue counters
        r_cg_hi = upto(lim["Cg"] + Y)
        r_hlo, r_hhi, r_wlo, r_whi = (pos(n) for n in ("hlo", "hhi", "wlo", "whi"))
        q_hlo, q_hhi, q_whi, q_row = (pos(n) for n in ("hlo_raw", "hhi_raw", "whi_raw", "row_raw"))
        i_cg, i_cq = upto(lim["Cg"] + Y), below(FS)
        i_h, i_w = pos("i_h"), pos("i_w")
        i_addr, i_row_addr, i_chan_addr = below(Din), below(Din), below(Din)
        i_cqW, i_wl = below(IS), below(IS)
        used = [Signal(2, name=f"used{i}") for i in range(Y)]
        last_cg = [Signal(2, name=f"last_cg{i}") for i in range(Y)]
        for i in range(Y):
            m.d.comb += [self.flags.used[i].eq(used[i]), self.flags.last_cg[i].eq(last_cg[i])]

        with m.If(self.start):
            m.d.sync += [phase.eq(0), first.eq(1), more.eq(1), bank_next.eq(0)]
            m.d.sync += [u.eq(0) for u in used]
        with m.Elif(decide):
            m.d.sync += [phase.eq(1), bank_next.eq(~bank_next)]
        with m.Switch(phase):
            with m.Case(1):  # advance the block and the row descriptors
                with m.If(first):
                    m.d.sync += [first.eq(0), kr.eq(0), kv.eq(0), kf.eq(0), ws.eq(-cfg.P),
                                 eu0.eq(0), euw0.eq(0), cbase0.eq(cfg.in_base), bank.eq(0)]
                    if c.groups > 1:
                        m.d.sync += [grp.eq(0), gbase.eq(cfg.in_base)]
                with m.Else():
                    m.d.sync += bank.eq(~bank)
                    with m.If(kf_last):
                        m.d.sync += [kf.eq(0), ws.eq(-cfg.P)]
                        with m.If(kv_last):
                            m.d.sync += [kv.eq(0), eu0.eq(0), euw0.eq(0), kr.eq(kr + 1)]
                            wrap0 = row_r[0] + cfg.YmodR >= cfg.R
                            m.d.sync += cbase0.eq(cbase0 + cfg.YdivR_qHW
                                                  + Mux(wrap0, cfg.qHW, 0))
                            for i in range(Y):
                                nr = row_r[i] + cfg.YmodR
                                with m.If(nr >= cfg.R):
                                    m.d.sync += [row_r[i].eq(nr - cfg.R),
                                                 row_cg[i].eq(row_cg[i] + cfg.YdivR + 1)]
                                with m.Else():
                                    m.d.sync += [row_r[i].eq(nr),
                                                 row_cg[i].eq(row_cg[i] + cfg.YdivR)]
                            if c.groups > 1:
                                with m.If(kr_last):   # the next group: its first row fold
                                    nxt = gbase + cfg.grp_inputs
                                    m.d.sync += [kr.eq(0), grp.eq(grp + 1), gbase.eq(nxt),
                                                 cbase0.eq(nxt)]
                                    for i in range(Y):
                                        m.d.sync += [row_r[i].eq(init_r[i]),
                                                     row_cg[i].eq(init_cg[i])]
                        with m.Else():
                            m.d.sync += [kv.eq(kv + 1), eu0.eq(eu0 + cfg.XU),
                                         euw0.eq(euw0 + cfg.XUW)]
                    with m.Else():
                        m.d.sync += [kf.eq(kf + 1), ws.eq(ws + cfg.FsegU)]
                m.d.sync += phase.eq(2)
            with m.Case(2):  # the block's raw ranges (registered), row flags
                eu_max = Mux(kv_last, eu0 + cfg.CL1U, eu0 + cfg.XU - cfg.U)
                m.d.sync += [
                    q_hlo.eq(eu0 - cfg.P),
                    q_hhi.eq(eu_max + cfg.R - 1 - cfg.P),
                    q_whi.eq(ws + Mux(kf_last, cfg.FlU1, cfg.FsU1) + cfg.S - 1),
                    q_row.eq(euw0 - cfg.PW),
                    r_cg_hi.eq(Mux(rows_v == Y, row_cg[Y - 1], cfg.Cg - 1)),
                    i_cg.eq(row_cg[0]),
                    more.eq(~(kr_last & kv_last & kf_last & grp_last)),
                ]
                for i in range(Y):
                    with m.If(bank):
                        m.d.sync += [used[i][1].eq(rows_v > i),
                                     last_cg[i][1].eq(row_cg[i] == cfg.Cg - 1)]
                    with m.Else():
                        m.d.sync += [used[i][0].eq(rows_v > i),
                                     last_cg[i][0].eq(row_cg[i] == cfg.Cg - 1)]
                m.d.sync += phase.eq(3)
            with m.Case(3):  # clipped ranges and the start address; an empty block is done
                hlo_c = Mux(q_hlo < 0, 0, q_hlo)
                hhi_c = Mux(q_hhi >= cfg.H, cfg.H - 1, q_hhi)
                wlo_c = Mux(ws < 0, 0, ws)
                whi_c = Mux(q_whi >= cfg.W, cfg.W - 1, q_whi)
                chan = cbase0 + Mux(q_hlo < 0, 0, q_row) + wlo_c
                m.d.sync += [r_hlo.eq(hlo_c), r_hhi.eq(hhi_c), r_wlo.eq(wlo_c), r_whi.eq(whi_c),
                             i_cq.eq(0), i_h.eq(hlo_c), i_w.eq(wlo_c),
                             i_addr.eq(chan), i_row_addr.eq(chan), i_chan_addr.eq(chan),
                             i_cqW.eq(0), i_wl.eq(wlo_c - ws)]
                # max(lo, 0) > min(hi, size - 1), from the raw values side by side
                empty = ((q_hlo > q_hhi) | (q_hlo >= cfg.H) | (q_hhi < 0)
                         | (ws > q_whi) | (ws >= cfg.W) | (q_whi < 0))
                with m.If(empty):
                    m.d.sync += phase.eq(5)
                with m.Else():
                    m.d.sync += phase.eq(4)
            with m.Case(4):  # one word per cycle
                with m.If(i_w != r_whi):
                    m.d.sync += [i_w.eq(i_w + 1), i_addr.eq(i_addr + 1), i_wl.eq(i_wl + 1)]
                with m.Else():
                    m.d.sync += [i_w.eq(r_wlo), i_wl.eq(r_wlo - ws)]
                    with m.If(i_h != r_hhi):
                        m.d.sync += [i_h.eq(i_h + 1), i_row_addr.eq(i_row_addr + cfg.W),
                                     i_addr.eq(i_row_addr + cfg.W)]
                    with m.Else():
                        m.d.sync += [i_h.eq(r_hlo), i_chan_addr.eq(i_chan_addr + cfg.HW),
                                     i_row_addr.eq(i_chan_addr + cfg.HW),
                                     i_addr.eq(i_chan_addr + cfg.HW)]
                        with m.If(i_cq + 1 != cfg.q):
                            m.d.sync += [i_cq.eq(i_cq + 1), i_cqW.eq(i_cqW + cfg.Wseg)]
                        with m.Else():
                            m.d.sync += [i_cq.eq(0), i_cqW.eq(0)]
                            with m.If(i_cg != r_cg_hi):
                                m.d.sync += i_cg.eq(i_cg + 1)
                            with m.Else():
                                m.d.sync += phase.eq(5)
            with m.Case(5):
                m.d.sync += phase.eq(0)

        issuing = Signal()
        m.d.comb += [issuing.eq(phase == 4), self.progress.done.eq(phase == 5)]
        m.d.comb += [self.buffer.en.eq(issuing), self.buffer.addr.eq(i_addr)]
        # broadcast stage (registered from the issue stage)
        bus = self.ibus
        b_we = Signal()
        b_addr = Signal.like(bus.addr)
        b_hit = Signal(Y)
        b_rel = [Signal(tb, name=f"b_rel{i}") for i in range(Y)]
        b_cols = Signal(X)
        t = pos("t")
        m.d.comb += t.eq(i_h + cfg.P)
        is_bits = (IS - 1).bit_length()
        m.d.sync += [b_we.eq(issuing), b_addr.eq(Cat((i_cqW + i_wl)[:is_bits], bank)),
                     b_cols.eq(Cat(*(cols_v > j for j in range(X))))]
        for i in range(Y):
            rel = pos(f"rel{i}")
            m.d.comb += rel.eq(t - row_r[i] - eu0)
            m.d.sync += [b_hit[i].eq((row_cg[i] == i_cg) & (rows_v > i) & (rel >= 0)
                                     & (rel < cfg.XU)),
                         b_rel[i].eq(rel[:tb])]
            m.d.comb += bus.rel[i].eq(b_rel[i])
        for j in range(X):
            # j * U for the configured stride, from constants (no multiplier)
            ju = Const(0, tb)
            for u in range(MAX_STRIDE, 0, -1):
                ju = Mux(cfg.U == u, Const(j * u, tb), ju)
            m.d.comb += bus.ju[j].eq(ju)
        m.d.comb += [bus.we.eq(b_we), bus.row_hit.eq(b_hit), bus.col_ok.eq(b_cols),
                     bus.addr.eq(b_addr), bus.data.eq(self.buffer.data[0]), bus.bank.eq(bank),
                     bus.clear.eq(phase == 2)]
        return m
