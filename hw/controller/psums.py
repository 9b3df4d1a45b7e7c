"""The psum unit: the columns' ends. Old partial sums in at the top, new ones out at the bottom.

For a dot whose first slot runs in row 0 in cycle ``t`` (``events.top``) after the first row
fold, the unit reads its old partial sum from every used column's psum bank at ``t + A - 1``
(``A = accumulate_latency``) and presents it on ``top`` at ``t + A``, which the array
registers, so row 0 adds it at its first slot; in the first row fold ``top`` is 0. For a dot
whose last slot runs in the bottom row in cycle ``t`` (``events.bottom``), the bottom PEs'
``psum`` hold its column sums from ``t + INPUT_LATENCY + A + 1``: the unit writes them to
the psum banks at the dot's address then, and counts the dot in ``progress.done``.

``ev_transfers`` counts the partial sums handed down inside the array: ``rows - 1`` per
column written.

Latency: ``INPUT_LATENCY + A + 1`` cycles from a dot's last slot in the bottom row to its
psums in the buffer. Throughput: one dot per cycle.

Model: ``sim.cycle_model`` (``_schedule``: the writes).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.array import PsumChain
from hw.buffer import BufferRead, BufferWrite
from hw.controller.interfaces import DotEvents, Limits, Progress, config_layout
from hw.lanes import adder_tree
from hw.schedule import INPUT_LATENCY, AcceleratorConfig

__all__ = ["PsumUnit"]


class PsumUnit(wiring.Component):
    """The psum unit (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
    start : In(1)
        Strobe: the layer starts.
    events : In(DotEvents)
        The compute sequencer's period boundaries.
    progress : Out(Progress)
        ``done``: dots written.
    read : Out(BufferRead)
        The psum banks' read port (old partial sums).
    write : Out(BufferWrite)
        The psum banks' write port.
    psum : Out(PsumChain)
        The array's column ends.
    ev_transfers : Out
        Partial sums handed from a PE to the PE below this cycle.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._lim = lim = Limits(config)
        c = config
        super().__init__({
            "cfg": In(config_layout(c)), "start": In(1), "events": In(DotEvents(c)),
            "progress": Out(Progress(lim["n_dots"])),
            "read": Out(BufferRead(banks=c.cols, depth=c.pb_depth, shape=c.acc_bits)),
            "write": Out(BufferWrite(banks=c.cols, depth=c.pb_depth, shape=c.acc_bits,
                                     shared_data=False)),
            "psum": Out(PsumChain(cols=c.cols, acc_bits=c.acc_bits)),
            "ev_transfers": Out(range(c.cols * max(1, c.rows - 1) + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        c, cfg, ev = self._config, self.cfg, self.events
        Y, X = c.rows, c.cols
        A = c.accumulate_latency

        def colmask(kv_last):
            return Cat(*(Mux(kv_last, cfg.cols_last > j, 1) for j in range(X)))

        def delayed(values, cycles, name):
            """``values`` (name -> value) ``cycles`` cycles later."""
            out = dict(values)
            for n in range(cycles):
                regs = {}
                for key, v in out.items():
                    r = Signal.like(v, name=f"{name}_{key}_{n}") if isinstance(v, Signal) \
                        else Signal(len(v), name=f"{name}_{key}_{n}")
                    m.d.sync += r.eq(Mux(self.start, 0, v) if key == "valid" else v)
                    regs[key] = r
                out = regs
            return out

        # ---- top: old partial sums (or 0) for the dots starting in row 0 ---------------
        top = ev.top
        rd = delayed({"valid": ev.top_valid & ~top.kr_first, "paddr": top.paddr,
                      "mask": colmask(top.kv_last)}, A - 1, "rd")
        m.d.comb += [self.read.en.eq(Mux(rd["valid"], rd["mask"], 0)),
                     self.read.addr.eq(rd["paddr"])]
        zero = Signal()
        m.d.sync += zero.eq(~rd["valid"])
        for j in range(X):
            m.d.comb += self.psum.top[j].eq(Mux(zero, 0, self.read.data[j]))

        # ---- bottom: the column sums of the dots finishing in the bottom row -----------
        out = ev.bottom
        wr = delayed({"valid": ev.bottom_valid, "paddr": out.paddr,
                      "mask": colmask(out.kv_last)}, INPUT_LATENCY + A + 1, "wr")
        we = Signal(X)
        m.d.comb += we.eq(Mux(wr["valid"], wr["mask"], 0))
        m.d.comb += [self.write.en.eq(we), self.write.addr.eq(wr["paddr"])]
        for j in range(X):
            m.d.comb += self.write.data[j].eq(self.psum.bottom[j])
        done = self.progress.done
        with m.If(self.start):
            m.d.sync += done.eq(0)
        with m.Elif(wr["valid"]):
            m.d.sync += done.eq(done + 1)
        count, _ = adder_tree(m, [we[j] for j in range(X)], name="cols")
        per_cols = Array([Const(k * (Y - 1), len(self.ev_transfers)) for k in range(X + 1)])
        m.d.comb += self.ev_transfers.eq(per_cols[count])
        return m
