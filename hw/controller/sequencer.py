"""The compute sequencer: the dot source and one sequencer per PE row, chained by streams.

``DotSource`` pushes the layer's dots into row 0 (``RowSequencer``) as they become ready;
each row hands every dot it finishes to the row below on a ``lib.stream`` interface, so a dot
flows down the array a row at a time and the rows run elastically, each as soon as its dot
has been finished above (``hw.controller.rows``). Every row's slot goes to the array; the
first slot of row 0's dots and the last slot of the bottom row's go to the psum unit
(``events``); which filter and input banks any row still needs goes to the loaders
(``status``).

``running`` rises the cycle after ``start`` and falls the cycle after the last dot's psum is
written (the dot source is idle).

Latency: a dot pushed in cycle ``t`` into a free row 0 reaches row ``i`` no sooner than
``t + 1 + i * len``. Throughput: each row runs one slot per cycle.

Model: ``sim.cycle_model`` (``_schedule``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.array import RowSlots
from hw.controller.dots import DotSource
from hw.controller.interfaces import (DotEvents, Progress, RowFlags, SequencerStatus,
                                      config_layout)
from hw.controller.rows import RowSequencer
from hw.schedule import AcceleratorConfig

__all__ = ["ComputeSequencer"]


class ComputeSequencer(wiring.Component):
    """The compute sequencer (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
        The layer's configuration (stable while running).
    start : In(1)
        Strobe: run the layer from its first dot.
    running : Out(1)
    status : Out(SequencerStatus)
        For the loaders.
    weights, inputs, psums : In(Progress)
        A pass's weights, a block's inputs, a dot's psums were written (pulses).
    flags : In(RowFlags)
        Per row and input bank, from the input loader.
    events : Out(DotEvents)
        Dots starting in row 0 and finishing in the bottom row, for the psum unit.
    slots : Out(RowSlots)
        The rows' slots (and the layer's ``n_last`` and ``mode``), for the array.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "cfg": In(config_layout(config)), "start": In(1), "running": Out(1),
            "status": Out(SequencerStatus()),
            "weights": In(Progress()), "inputs": In(Progress()),
            "psums": In(Progress()), "flags": In(RowFlags(config.rows)),
            "events": Out(DotEvents(config)),
            "slots": Out(RowSlots(rows=config.rows, lanes=config.max_lanes,
                                  filter_spad=config.filter_spad,
                                  ifmap_spad=config.ifmap_spad, modes=len(config.modes))),
        })

    def elaborate(self, platform):
        m = Module()
        c, cfg = self._config, self.cfg
        Y = c.rows
        running = self.running
        source = m.submodules.source = DotSource(c)
        rows = [RowSequencer(c) for _ in range(Y)]
        for i, row in enumerate(rows):
            m.submodules[f"row{i}"] = row
            m.d.comb += [row.cfg.eq(cfg), row.start.eq(self.start),
                         row.used.eq(self.flags.used[i]), row.last_cg.eq(self.flags.last_cg[i]),
                         self.slots.slots[i].eq(row.slot)]
        wiring.connect(m, source.o_dots, rows[0].i_dots)
        for upper, lower in zip(rows, rows[1:]):
            wiring.connect(m, upper.o_dots, lower.i_dots)
        m.d.comb += [source.cfg.eq(cfg), source.start.eq(self.start), source.running.eq(running),
                     source.weights.done.eq(self.weights.done),
                     source.inputs.done.eq(self.inputs.done),
                     source.psums.done.eq(self.psums.done),
                     self.slots.n_last.eq(cfg.n_last)]
        if len(c.modes) > 1:
            m.d.comb += self.slots.mode.eq(cfg.mode)
        # the bottom row's finished dots leave the array (the psum unit writes them)
        m.d.comb += rows[-1].o_dots.ready.eq(1)

        started = Signal()
        with m.If(self.start):
            m.d.sync += [running.eq(1), started.eq(0)]
        with m.Elif(running):
            m.d.sync += started.eq(1)
            with m.If(started & source.idle):
                m.d.sync += running.eq(0)

        ev, st = self.events, self.status
        m.d.comb += [
            ev.top_valid.eq(rows[0].slot.first), ev.top.eq(rows[0].current),
            ev.bottom_valid.eq(rows[-1].o_dots.valid), ev.bottom.eq(rows[-1].o_dots.payload),
            st.running.eq(running),
            st.pass_entered.eq(source.pass_entered),
            st.block_entered.eq(source.block_entered),
        ]
        for b in range(2):
            m.d.comb += [st.filter_bank_busy[b].eq(Cat(*(r.filter_busy[b] for r in rows)).any()),
                         st.input_bank_busy[b].eq(Cat(*(r.input_busy[b] for r in rows)).any())]
        return m
