"""The dot source: the layer's dots, in order, into PE row 0 as soon as each is ready.

Dots go in loop order: row fold ``kr``, column fold ``kv``, segment ``kf``, filter group
``g`` (a pass), output column ``fi``, filter ``mi``. A dot is *ready* when

- its pass's weights are written (``weights.done`` passes) and its block's inputs
  (``inputs.done`` blocks), and
- in a row fold after the first, the old partial sum it starts from has been written:
  ``psums.done + fold_dots > g`` for its index ``g``;

it is then pushed into row 0 (``o_dots``) when row 0 can take it. Its state
(``interfaces.dot_state_layout``) holds its banks, its scratchpad offsets, its psum address
and its taps: the window of output column ``f`` starts at input column ``w0 = kf * F' * U
- P + fi * U``; the taps inside the image are ``vlo = max(0, -w0)`` to ``vhi = min(S - 1,
W - 1 - w0)``, and the dot runs ``n_eff = max(vhi - vlo + 1, n_min)`` of them from ``lo``
(``sim.cycle_model.dot_taps``).

``status`` tells the loaders how many passes and blocks have been pushed (``*_entered``).

Latency: a ready dot is pushed in the cycle row 0 can take it. Throughput: one dot per cycle.

Model: ``sim.cycle_model`` (``_schedule``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
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
        Passes whose weights are written, blocks whose inputs are written, dots whose
        psums are written.
    o_dots : Out(stream.Signature(dot_state_layout))
        Into row 0.
    passes_entered, blocks_entered : Out
        Passes and blocks whose first dot has been pushed.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._lim = lim = Limits(config)
        super().__init__({
            "cfg": In(config_layout(config)), "start": In(1), "running": In(1),
            "weights": In(Progress(lim["n_passes"])), "inputs": In(Progress(lim["n_blocks"])),
            "psums": In(Progress(lim["n_dots"])),
            "o_dots": Out(stream.Signature(dot_state_layout(config))),
            "passes_entered": Out(range(lim["n_passes"] + 1)),
            "blocks_entered": Out(range(lim["n_blocks"] + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        c, lim, cfg = self._config, self._lim, self.cfg
        FS = c.filter_spad

        def below(n, name):
            return Signal(range(max(2, n)), name=name)

        kr, kv = below(lim["n_r"], "kr"), below(lim["n_v"], "kv")
        kf, g = below(lim["n_f"], "kf"), below(lim["Gi"], "g")
        fi, mi = below(lim["Fseg"], "fi"), below(FS, "mi")
        fb, fu = below(FS, "fb"), Signal(range(lim["FsegU"] + 1), name="fu")
        ws_bits = (lim["W"] + 2 * lim["P"] + lim["FsegU"] + lim["S"]).bit_length() + 2
        ws = Signal(signed(ws_bits), name="ws")
        pb_kv, pb_g, pb_kf, k = (below(c.pb_depth, n) for n in ("pb_kv", "pb_g", "pb_kf", "k"))
        n_pass = Signal(range(lim["n_passes"] + 1), name="n_pass")
        n_block = Signal(range(lim["n_blocks"] + 1), name="n_block")
        gdot = Signal(range(lim["n_dots"] + 1), name="gdot")
        pp, bp, more = Signal(name="pp"), Signal(name="bp"), Signal(name="more")
        f_v = Signal(range(lim["Fseg"] + 1))
        m.d.comb += f_v.eq(Mux(kf == cfg.n_f - 1, cfg.F_last, cfg.Fseg))

        # ---- the next dot's taps ---------------------------------------------------------
        w0 = Signal(signed(ws_bits + 1))
        vlo, vhi = Signal(signed(ws_bits + 2)), Signal(signed(ws_bits + 2))
        n_s, n_eff = Signal(signed(ws_bits + 3)), Signal(signed(ws_bits + 3))
        lo = Signal(signed(ws_bits + 3))
        m.d.comb += [
            w0.eq(ws + fu),
            vlo.eq(Mux(w0 < 0, -w0, 0)),
            vhi.eq(Mux(cfg.W - 1 - w0 < cfg.S - 1, cfg.W - 1 - w0, cfg.S - 1)),
            n_s.eq(Mux(vhi >= vlo, vhi - vlo + 1, 0)),
            n_eff.eq(Mux(n_s > cfg.n_min, n_s, cfg.n_min)),
            lo.eq(Mux(vlo + n_eff > cfg.S, cfg.S - n_eff, vlo)),
        ]
        dot = self.o_dots.payload
        empty = n_s == 0
        m.d.comb += [
            dot.pp.eq(pp), dot.bp.eq(bp), dot.fb.eq(fb), dot.fu.eq(fu),
            dot.lo.eq(lo), dot.hi.eq(lo + n_eff - 1),
            dot.vlo.eq(Mux(empty, cfg.S, vlo)), dot.vhi.eq(Mux(empty, 0, vhi)),
            dot.paddr.eq(pb_kv + pb_g + pb_kf + k),
            dot.kr_first.eq(kr == 0), dot.kv_last.eq(kv == cfg.n_v - 1),
        ]
        ready = Signal()
        m.d.comb += ready.eq(self.running & more & (n_pass < self.weights.done)
                             & (n_block < self.inputs.done)
                             & ((kr == 0) | (self.psums.done + cfg.fold_dots > gdot)))
        m.d.comb += self.o_dots.valid.eq(ready)
        push = Signal()
        m.d.comb += push.eq(ready & self.o_dots.ready)

        with m.If(self.start):
            m.d.sync += [more.eq(1), kr.eq(0), kv.eq(0), kf.eq(0), g.eq(0), fi.eq(0), mi.eq(0),
                         fb.eq(0), fu.eq(0), ws.eq(-cfg.P), pb_kv.eq(0), pb_g.eq(0),
                         pb_kf.eq(0), k.eq(0), n_pass.eq(0), n_block.eq(0), gdot.eq(0),
                         pp.eq(0), bp.eq(0), self.passes_entered.eq(0),
                         self.blocks_entered.eq(0)]
        with m.Elif(push):
            m.d.sync += [gdot.eq(gdot + 1), k.eq(k + 1), mi.eq(mi + 1), fb.eq(fb + cfg.qS)]
            with m.If((fi == 0) & (mi == 0)):
                m.d.sync += self.passes_entered.eq(n_pass + 1)
                with m.If(g == 0):
                    m.d.sync += self.blocks_entered.eq(n_block + 1)
            with m.If(mi == cfg.p - 1):
                m.d.sync += [mi.eq(0), fb.eq(0), fi.eq(fi + 1), fu.eq(fu + cfg.U)]
                with m.If(fi == f_v - 1):
                    m.d.sync += [fi.eq(0), fu.eq(0), k.eq(0), n_pass.eq(n_pass + 1),
                                 pp.eq(~pp), g.eq(g + 1), pb_g.eq(pb_g + cfg.Fp)]
                    with m.If(g == cfg.Gi - 1):
                        m.d.sync += [g.eq(0), pb_g.eq(0), n_block.eq(n_block + 1),
                                     bp.eq(~bp), kf.eq(kf + 1), ws.eq(ws + cfg.FsegU),
                                     pb_kf.eq(pb_kf + cfg.Fsegp)]
                        with m.If(kf == cfg.n_f - 1):
                            m.d.sync += [kf.eq(0), ws.eq(-cfg.P), pb_kf.eq(0), kv.eq(kv + 1),
                                         pb_kv.eq(pb_kv + cfg.GiFp)]
                            with m.If(kv == cfg.n_v - 1):
                                m.d.sync += [kv.eq(0), pb_kv.eq(0), kr.eq(kr + 1)]
                                with m.If(kr == cfg.n_r - 1):
                                    m.d.sync += more.eq(0)
        return m
