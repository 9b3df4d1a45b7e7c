"""The accelerator core: PE array, weight and psum banks, the controller's parts, the counters.

What every accelerator shares, whoever feeds it: ``hw.accelerator.Accelerator`` (one layer
at a time from the host's streams) and ``hw.engine.NetworkEngine`` (a whole network from
on-chip memory) wrap it. The core holds no activation buffer: its input loader reads the
layer's activation words through ``inputs`` from the wrapper's buffer.

A layer: the wrapper sets ``cfg`` (held for the whole layer), pulses ``init`` (the input
loader's row walker, ``initialising`` while it runs), writes the weights into the banks
through ``weights`` (or has them there already), pulses ``start``; ``running`` rises the
cycle after and falls when the last psum is written; the wrapper then reads the sums
through ``psums`` (``hw.controller.unload.Unloader``).

Counters (``counters``, ``hw.schedule.COUNTERS``, ``counter_bits`` each; ``clear`` zeroes
them): the core's own events, plus the wrapper's (``ext``: activation-buffer writes and
stream words), each ``hw.schedule.EVENT_LATENCY`` cycles or less after the event. A counter
wraps past ``2**counter_bits - 1``.

Latency and throughput: see ``hw.controller``.

Model: ``model.ops.conv2d`` / ``dense`` (sums) and ``sim.cycle_model.predict`` (cycles and
counters).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.array import RowStationaryArray
from hw.buffer import BufferRead, BufferWrite, GlobalBuffer, check_weight_ram
from hw.controller import ComputeSequencer, InputLoader, PsumUnit, WeightLoader, config_layout
from hw.controller.interfaces import Limits
from hw.schedule import COUNTERS, AcceleratorConfig

__all__ = ["AcceleratorCore", "counter_layout", "external_events_layout"]


def counter_layout(config: AcceleratorConfig) -> data.StructLayout:
    """The counters: ``hw.schedule.COUNTERS``, ``counter_bits`` each."""
    return data.StructLayout({name: unsigned(config.counter_bits) for name in COUNTERS})


def external_events_layout() -> data.StructLayout:
    """Events outside the core, per cycle: activation-buffer reads and writes (``glb_reads``,
    ``glb_writes``) and words on the host's streams (``offchip_words``)."""
    return data.StructLayout({"glb_reads": unsigned(2), "glb_writes": unsigned(2),
                              "offchip_words": unsigned(2)})


def popcount(bits):
    """The number of set bits of ``bits`` (a small adder tree)."""
    return sum(bits[i] for i in range(len(bits)))


class AcceleratorCore(wiring.Component):
    """The accelerator core (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
    init : In(1)
        Strobe: start the input loader's row walker (after ``cfg`` is set).
    initialising : Out(1)
    start : In(1)
        Strobe: compute the layer (the weights and activations are in place).
    running : Out(1)
    inputs : Out(BufferRead)
        The input loader's reads of the activation words (one bank, ``in_depth`` words).
    weights : In(BufferWrite)
        Writes into the weight banks (``rows`` banks, shared data), while not running.
    psums : In(BufferRead)
        Reads of the psum banks (``cols`` banks), while not running.
    clear : In(1)
        Zero the counters.
    ext : In(external_events_layout)
    counters : Out(counter_layout)
    """

    def __init__(self, config: AcceleratorConfig, *, weight_ram: str = "memory"):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        check_weight_ram(weight_ram, config.wb_depth)
        self._weight_ram = weight_ram
        self._config = c = config
        self._limits = Limits(config)
        super().__init__({
            "cfg": In(config_layout(c)), "init": In(1), "initialising": Out(1),
            "start": In(1), "running": Out(1),
            "inputs": Out(BufferRead(banks=1, depth=c.in_depth, shape=c.a_word_bits)),
            "weights": In(BufferWrite(banks=c.rows, depth=c.wb_depth, shape=c.w_word_bits)),
            "psums": In(BufferRead(banks=c.cols, depth=c.pb_depth, shape=c.acc_bits)),
            "clear": In(1), "ext": In(external_events_layout()),
            "counters": Out(counter_layout(c)),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        c = self._config
        arr = m.submodules.array = RowStationaryArray(
            c.rows, c.cols, c.scheme, lanes=c.lanes, a_bits=c.a_bits, w_bits=c.w_bits,
            acc_bits=c.acc_bits, filter_spad=c.filter_spad, ifmap_spad=c.ifmap_spad,
            tree_stages=c.tree_stages, codebook=c.codebook, more_modes=c.more_modes)
        buf = m.submodules.buffer = GlobalBuffer(
            rows=c.rows, cols=c.cols, w_word_bits=c.w_word_bits, acc_bits=c.acc_bits,
            wb_depth=c.wb_depth, pb_depth=c.pb_depth, weight_ram=self._weight_ram)
        seq = m.submodules.sequencer = ComputeSequencer(c)
        wl = m.submodules.weight_loader = WeightLoader(c)
        il = m.submodules.input_loader = InputLoader(c)
        pu = m.submodules.psum_unit = PsumUnit(c)

        for part in (seq, wl, il, pu):
            m.d.comb += [part.cfg.eq(self.cfg), part.start.eq(self.start)]
        wiring.connect(m, seq.status, wl.status, il.status)
        wiring.connect(m, wl.progress, seq.weights)
        wiring.connect(m, il.progress, seq.inputs)
        wiring.connect(m, pu.progress, seq.psums)
        wiring.connect(m, il.flags, seq.flags)
        wiring.connect(m, seq.events, pu.events)
        wiring.connect(m, seq.slots, arr.slots)
        wiring.connect(m, wl.wload, arr.wload)
        wiring.connect(m, il.ibus, arr.ibus)
        wiring.connect(m, pu.psum, arr.psum)
        wiring.connect(m, wl.bank, buf.wb_read)
        wiring.connect(m, il.buffer, wiring.flipped(self.inputs))
        wiring.connect(m, pu.write, buf.pb_write)
        wiring.connect(m, wiring.flipped(self.weights), buf.wb_write)
        m.d.comb += [il.init.eq(self.init), self.initialising.eq(il.initialising),
                     self.running.eq(seq.running)]

        # the psum banks' read port: the psum unit while computing, the wrapper after
        running = seq.running
        m.d.comb += [buf.pb_read.en.eq(Mux(running, pu.read.en, self.psums.en)),
                     buf.pb_read.addr.eq(Mux(running, pu.read.addr, self.psums.addr))]
        for j in range(c.cols):
            m.d.comb += [pu.read.data[j].eq(buf.pb_read.data[j]),
                         self.psums.data[j].eq(buf.pb_read.data[j])]

        # ---- counters -----------------------------------------------------------------
        cnt, ext = self.counters, self.ext
        events = {
            "cycles": running,
            "slots": arr.ev_slots,
            "last_slots": arr.ev_last_slots,
            "skipped": arr.ev_skipped,
            "filter_reads": arr.ev_filter_reads,
            "filter_writes": wl.ev_writes,
            "input_writes": arr.ev_takes,
            "array_transfers": pu.ev_transfers,
            "glb_reads": (self.inputs.en[0] + popcount(buf.wb_read.en)
                          + popcount(buf.pb_read.en) + ext.glb_reads),
            "glb_writes": (popcount(buf.wb_write.en) + popcount(buf.pb_write.en)
                           + ext.glb_writes),
            "offchip_words": ext.offchip_words,
        }
        with m.If(self.clear):
            for name in COUNTERS:
                m.d.sync += getattr(cnt, name).eq(0)
        with m.Else():
            for name in COUNTERS:
                field = getattr(cnt, name)
                m.d.sync += field.eq(field + events[name])
        return m
