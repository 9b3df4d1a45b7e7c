"""The dot source: the layer's dots, in order, into PE row 0 as soon as each is ready.

Dots go in loop order: (for a grouped layer, the group ``grp`` of ``groups``), row fold
``kr``, column fold ``kv``, segment ``kf``, filter group ``g`` (a pass), output column
``fi``, filter ``mi``. A dot's psum address is ``kv * GiFp + grp * grp_psums + g * Fp + fi *
p + mi`` (``GiFp``: every group's filters; column fold major, as the unloader reads). A dot
is *ready* when

- it starts a pass, and the loader has written that pass's weights (``weights`` pulses
  ``done`` per pass written; the source counts how many written passes it has not entered
  yet), or it does not; likewise for a block's inputs (``inputs``), and
- in a row fold after the first, the old partial sum it starts from has been written: fewer
  than ``fold_dots`` dots are in flight (pushed, their psums not yet written; ``psums``
  pulses per dot written);

it is then pushed into row 0 (``o_dots``) when row 0 can take it, and the pass and block it
starts are *entered* (``pass_entered``, ``block_entered`` pulse, for the loaders).

The dot's state (``interfaces.dot_state_layout``) is made in a pipeline of three stream
stages, one dot per cycle: the *iterator* keeps the loop counters and, incrementally, the
window's first input column ``w0 = kf * F' * U - P + fi * U`` (as ``-w0`` and ``W - 1 -
w0``); stage A registers the taps inside the image, ``vlo = max(0, -w0)`` and ``vhi =
min(S - 1, W - 1 - w0)``; stage B the taps the dot runs, ``n_eff = max(vhi - vlo + 1,
n_min)``; stage C (the head) its first and last tap ``lo``/``hi`` (``sim.cycle_model.dot_taps``).

Latency: three cycles from the iterator to the head (hidden behind the first pass's loads);
a ready head is pushed in the cycle row 0 can take it. Throughput: one dot per cycle.

Model: ``sim.cycle_model`` (``_schedule``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.controller.interfaces import Limits, Progress, config_layout, dot_state_layout
from hw.schedule import AcceleratorConfig

__all__ = ["DotSource"]


class DotSource(wiring.Component):
    """The dot source (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
    start : In(1)
        Strobe: the layer's first dot is next.
    running : In(1)
    weights, inputs, psums : In(Progress)
        A pass's weights, a block's inputs, a dot's psums were written (pulses).
    o_dots : Out(stream.Signature(dot_state_layout))
        Into row 0.
    pass_entered, block_entered : Out(1)
        Pulses: the dot pushed this cycle starts a pass, a block.
    idle : Out(1)
        Every dot has been pushed and every psum written.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._lim = Limits(config)
        super().__init__({
            "cfg": In(config_layout(config)), "start": In(1), "running": In(1),
            "weights": In(Progress()), "inputs": In(Progress()), "psums": In(Progress()),
            "o_dots": Out(stream.Signature(dot_state_layout(config))),
            "pass_entered": Out(1), "block_entered": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c, lim, cfg = self._config, self._lim, self.cfg
        FS = c.filter_spad
        state = dot_state_layout(c)
        taps = state["lo"].shape
        pos_bits = (lim["W"] + 2 * lim["P"] + lim["FsegU"] + lim["S"]).bit_length() + 2
        # what travels down the pipeline beside the dot's state
        carried = data.StructLayout({
            "dot": state, "pass_first": unsigned(1), "block_first": unsigned(1),
            "neg_w0": signed(pos_bits), "room": signed(pos_bits),
            "vlo": taps, "vhi": taps, "n_eff": taps,
        })

        def below(n, name):
            return Signal(range(max(2, n)), name=name)

        # ---- the iterator ---------------------------------------------------------------
        kr, kv = below(lim["n_r"], "kr"), below(lim["n_v"], "kv")
        kf, g = below(lim["n_f"], "kf"), below(lim["Gi"], "g")
        fi, mi = below(lim["Fseg"], "fi"), below(FS, "mi")
        fb, fu = below(FS, "fb"), Signal(range(lim["FsegU"] + 1), name="fu")
        neg_ws = Signal(signed(pos_bits), name="neg_ws")        # -(kf * F' * U - P)
        neg_w0 = Signal(signed(pos_bits), name="neg_w0")        # -(that + fi * U)
        pbase, pb_kv, pb_kf = (below(c.pb_depth, n) for n in ("pbase", "pb_kv", "pb_kf"))
        k = below(c.pb_depth, "k")
        pp, bp, more = Signal(name="pp"), Signal(name="bp"), Signal(name="more")
        f_v = Signal(range(lim["Fseg"] + 1))
        m.d.comb += f_v.eq(Mux(kf == cfg.n_f - 1, cfg.F_last, cfg.Fseg))
        head0 = Signal(carried)
        d0 = head0.dot
        m.d.comb += [
            d0.pp.eq(pp), d0.bp.eq(bp), d0.fb.eq(fb), d0.fu.eq(fu), d0.paddr.eq(pbase + k),
            d0.kr_first.eq(kr == 0), d0.kv_last.eq(kv == cfg.n_v - 1),
            head0.pass_first.eq((fi == 0) & (mi == 0)),
            head0.block_first.eq((fi == 0) & (mi == 0) & (g == 0)),
            head0.neg_w0.eq(neg_w0), head0.room.eq(cfg.W - 1 + neg_w0),
        ]

        # ---- stages A, B, C: registered, each moving when the next has room ---------------
        stages = [Signal(carried, name=f"stage{n}") for n in "ABC"]
        valid = [Signal(name=f"stage{n}_valid") for n in "ABC"]
        take = [Signal(name=f"take{n}") for n in "ABC"]          # stage n loads this cycle
        push = Signal()
        ready = Signal()
        m.d.comb += [take[2].eq(~valid[2] | push),
                     take[1].eq(~valid[1] | take[2]),
                     take[0].eq(~valid[0] | take[1])]
        advance = Signal()
        m.d.comb += advance.eq(self.running & more & take[0])
        a, b, h = stages
        with m.If(self.start):
            m.d.sync += [v.eq(0) for v in valid]
        with m.Else():
            with m.If(take[0]):
                m.d.sync += [a.eq(head0), valid[0].eq(advance),
                             a.vlo.eq(Mux(neg_w0 > 0, neg_w0, 0)),
                             a.vhi.eq(Mux(head0.room < cfg.S - 1, head0.room, cfg.S - 1))]
            with m.If(take[1]):
                n_s = Signal(signed(taps.width + 2))
                m.d.comb += n_s.eq(Mux((a.room >= 0) & (a.neg_w0 < cfg.S),
                                       a.vhi - a.vlo + 1, 0))
                # an empty window (no tap inside the image) runs its taps at the end
                m.d.sync += [b.eq(a), valid[1].eq(valid[0]),
                             b.n_eff.eq(Mux(n_s > cfg.n_min, n_s, cfg.n_min)),
                             b.vlo.eq(Mux(n_s > 0, a.vlo, cfg.S)),
                             b.dot.vlo.eq(Mux(n_s > 0, a.vlo, cfg.S)),
                             b.dot.vhi.eq(Mux(n_s > 0, a.vhi, 0))]
            with m.If(take[2]):
                over = Signal()
                m.d.comb += over.eq(b.vlo + b.n_eff > cfg.S)
                m.d.sync += [h.eq(b), valid[2].eq(valid[1]),
                             h.dot.lo.eq(Mux(over, cfg.S - b.n_eff, b.vlo)),
                             h.dot.hi.eq(Mux(over, cfg.S - 1, b.vlo + b.n_eff - 1))]

        # ---- the head: ready when its pass's weights and block's inputs are written and the
        # old psum it starts from is written --------------------------------------------------
        passes = Signal(range(4), name="passes_loaded")     # written, not yet entered
        blocks = Signal(range(4), name="blocks_loaded")
        in_flight = Signal(range(lim["fold_dots"] + 2), name="in_flight")
        enter_pass = Signal()
        enter_block = Signal()
        m.d.comb += [
            ready.eq(valid[2] & (~h.pass_first | (passes != 0))
                     & (~h.block_first | (blocks != 0))
                     & (h.dot.kr_first | (in_flight < cfg.fold_dots))),
            self.o_dots.valid.eq(ready), self.o_dots.payload.eq(h.dot),
            push.eq(ready & self.o_dots.ready),
            enter_pass.eq(push & h.pass_first), enter_block.eq(push & h.block_first),
            self.pass_entered.eq(enter_pass), self.block_entered.eq(enter_block),
            self.idle.eq(~more & ~valid[0] & ~valid[1] & ~valid[2] & (in_flight == 0)),
        ]
        with m.If(self.start):
            m.d.sync += [passes.eq(0), blocks.eq(0), in_flight.eq(0)]
        with m.Else():
            m.d.sync += [passes.eq(passes + self.weights.done - enter_pass),
                         blocks.eq(blocks + self.inputs.done - enter_block),
                         in_flight.eq(in_flight + push - self.psums.done)]

        # ---- advance the iterator ----------------------------------------------------------
        if c.groups > 1:
            # grouped layers: the group is the outermost loop; its psums start at ``pb_grp``
            grp, pb_grp = below(c.groups, "grp"), below(c.pb_depth, "pb_grp")
            with m.If(self.start):
                m.d.sync += [grp.eq(0), pb_grp.eq(0)]
        with m.If(self.start):
            m.d.sync += [more.eq(1), kr.eq(0), kv.eq(0), kf.eq(0), g.eq(0), fi.eq(0), mi.eq(0),
                         fb.eq(0), fu.eq(0), neg_ws.eq(cfg.P), neg_w0.eq(cfg.P), pbase.eq(0),
                         pb_kv.eq(0), pb_kf.eq(0), k.eq(0), pp.eq(0), bp.eq(0)]
        with m.Elif(advance):
            m.d.sync += [k.eq(k + 1), mi.eq(mi + 1), fb.eq(fb + cfg.qS)]
            with m.If(mi == cfg.p - 1):
                m.d.sync += [mi.eq(0), fb.eq(0), fi.eq(fi + 1), fu.eq(fu + cfg.U),
                             neg_w0.eq(neg_w0 - cfg.U)]
                with m.If(fi == f_v - 1):        # the pass is over
                    m.d.sync += [fi.eq(0), fu.eq(0), k.eq(0), pp.eq(~pp), g.eq(g + 1),
                                 neg_w0.eq(neg_ws), pbase.eq(pbase + cfg.Fp)]
                    with m.If(g == cfg.Gi - 1):  # the block is over
                        m.d.sync += [g.eq(0), bp.eq(~bp), kf.eq(kf + 1),
                                     neg_ws.eq(neg_ws - cfg.FsegU),
                                     neg_w0.eq(neg_ws - cfg.FsegU),
                                     pb_kf.eq(pb_kf + cfg.Fsegp),
                                     pbase.eq(pb_kv + pb_kf + cfg.Fsegp)]
                        with m.If(kf == cfg.n_f - 1):
                            m.d.sync += [kf.eq(0), neg_ws.eq(cfg.P), neg_w0.eq(cfg.P),
                                         pb_kf.eq(0), kv.eq(kv + 1),
                                         pb_kv.eq(pb_kv + cfg.GiFp), pbase.eq(pb_kv + cfg.GiFp)]
                            with m.If(kv == cfg.n_v - 1):
                                if c.groups == 1:
                                    m.d.sync += [kv.eq(0), pb_kv.eq(0), pbase.eq(0),
                                                 kr.eq(kr + 1)]
                                    with m.If(kr == cfg.n_r - 1):
                                        m.d.sync += more.eq(0)
                                else:    # the next row fold revisits the group's psums
                                    m.d.sync += [kv.eq(0), pb_kv.eq(pb_grp), pbase.eq(pb_grp),
                                                 kr.eq(kr + 1)]
                                    with m.If(kr == cfg.n_r - 1):
                                        nxt = pb_grp + cfg.grp_psums
                                        m.d.sync += [kr.eq(0), grp.eq(grp + 1), pb_grp.eq(nxt),
                                                     pb_kv.eq(nxt), pbase.eq(nxt)]
                                        with m.If(grp == cfg.groups - 1):
                                            m.d.sync += more.eq(0)
        return m
