"""The unloader: a finished layer's sums out of the psum banks, each with its coordinates.

After the compute phase every psum bank holds the final sums of its output rows. The unloader
reads them in ``sim.cycle_model.output_stream_order``: column fold by column fold (``kv``),
each used column ``j`` (output row ``e = kv * cols + j``), its bank in address order
``a = g * F * p + f * p + mi`` (filter group ``g``, output column ``f``, filter ``mi``;
filter ``m = g * p + mi``). Each element leaves on ``o_stream`` as ``(acc, m, e, f)``;
the coordinates come from counters (no multiplier: ``f`` advances when ``mi`` wraps,
``g`` when the running ``(f + 1) * p`` reaches ``F * p``).

Latency: 1 cycle from a read to its element on ``o_stream`` (the banks' read latency).
Throughput: one element per cycle while ``o_stream`` is ready.

Model: ``sim.cycle_model.output_stream_order`` (order) and ``model.ops`` (values).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.buffer import BufferRead
from hw.controller.interfaces import Limits, config_layout
from hw.schedule import AcceleratorConfig

__all__ = ["Unloader", "element_layout"]


def element_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One output element: its sum ``acc`` and its filter ``m``, row ``e`` and column ``f``."""
    lim = Limits(config)
    return data.StructLayout({
        "acc": signed(config.acc_bits),
        "m": unsigned(max(1, (lim["GiFp"]).bit_length())),
        "e": unsigned(max(1, lim["E"].bit_length())),
        "f": unsigned(max(1, (lim["Fseg"] * lim["n_f"]).bit_length())),
    })


class Unloader(wiring.Component):
    """The unloader (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
    start : In(1)
        Strobe: the layer's sums are final; unload them.
    busy : Out(1)
        From ``start`` until the last element has left.
    psums : Out(BufferRead)
        The psum banks' read port.
    o_stream : Out(stream.Signature(element_layout))
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "cfg": In(config_layout(config)), "start": In(1), "busy": Out(1),
            "psums": Out(BufferRead(banks=config.cols, depth=config.pb_depth,
                                    shape=config.acc_bits)),
            "o_stream": Out(stream.Signature(element_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        c, cfg, lim = self._config, self.cfg, Limits(self._config)
        X, Dp = c.cols, c.pb_depth
        layout = element_layout(c)

        def below(n, name):
            return Signal(range(max(2, n)), name=name)

        kv = below(lim["n_v"], "kv")
        j = Signal(range(X), name="j")
        a, base = below(Dp, "a"), below(Dp, "base")
        mi, fp, mbase = below(Dp, "mi"), Signal(range(Dp + 1), name="fp"), below(Dp, "mbase")
        f = Signal(layout["f"].shape, name="f")
        e_base = Signal(layout["e"].shape, name="e_base")
        more = Signal()
        cols = Signal(range(X + 1))
        m.d.comb += cols.eq(Mux(kv + 1 == cfg.n_v, cfg.cols_last, X))

        out = self.o_stream
        issue = Signal()
        m.d.comb += [issue.eq(more & (~out.valid | out.ready)),
                     self.psums.en.eq(Mux(issue, 1 << j, 0)),
                     self.psums.addr.eq(base + a),
                     self.busy.eq(more | out.valid)]
        # the element read this cycle: its column and coordinates, for the cycle after
        jd = Signal.like(j)
        coords = Signal(data.StructLayout({k: layout[k].shape for k in ("m", "e", "f")}))
        m.d.comb += [out.payload.acc.eq(self.psums.data[jd]), out.payload.m.eq(coords.m),
                     out.payload.e.eq(coords.e), out.payload.f.eq(coords.f)]

        with m.If(self.start):
            m.d.sync += [kv.eq(0), j.eq(0), a.eq(0), base.eq(0), mi.eq(0), fp.eq(cfg.p),
                         mbase.eq(0), f.eq(0), e_base.eq(0), more.eq(1), out.valid.eq(0)]
        with m.Elif(issue):
            m.d.sync += [out.valid.eq(1), jd.eq(j), coords.m.eq(mbase + mi),
                         coords.e.eq(e_base + j), coords.f.eq(f),
                         a.eq(a + 1), mi.eq(mi + 1)]
            with m.If(mi + 1 == cfg.p):
                m.d.sync += [mi.eq(0), f.eq(f + 1), fp.eq(fp + cfg.p)]
                with m.If(fp == cfg.Fp):
                    m.d.sync += [f.eq(0), fp.eq(cfg.p), mbase.eq(mbase + cfg.p)]
            with m.If(a + 1 == cfg.GiFp):      # the column's bank is done
                m.d.sync += [a.eq(0), mi.eq(0), f.eq(0), fp.eq(cfg.p), mbase.eq(0),
                             j.eq(j + 1)]
                with m.If(j + 1 == cols):
                    m.d.sync += [j.eq(0), kv.eq(kv + 1), base.eq(base + cfg.GiFp),
                                 e_base.eq(e_base + X)]
                    with m.If(kv + 1 == cfg.n_v):
                        m.d.sync += more.eq(0)
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)
        return m

