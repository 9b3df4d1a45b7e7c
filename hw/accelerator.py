"""The accelerator: row-stationary array, global buffer and controller behind four streams.

One layer at a time:

1. ``config_stream``: the layer's configuration, one field per beat in the order of
   ``hw.schedule.CONFIG_FIELDS`` (values from ``sim.cycle_model.config_values``, each at most
   its ``hw.schedule.config_limits`` value; a beat is ``config_beat_bits`` wide, the widest
   field, and a field takes its low bits). The first beat resets the counters.
2. ``weight_stream``: ``M * Cw * R * S`` weight words (``lanes`` codes each, lane ``l`` in bits
   ``[l * w_bits, (l + 1) * w_bits)``, hardware bit patterns) in the order of
   ``sim.cycle_model.weight_word_order``; they go to the weight banks.
3. ``input_stream``: ``Cw * H * W`` activation words (``lanes`` codes each), channel-word
   major ``[Cw, H, W]``.
4. the compute phase (no stream activity): the controller runs every dot.
5. ``output_stream``: ``M * E * F`` exact sums (signed ``acc_bits``) in the order of
   ``sim.cycle_model.output_stream_order``; then the accelerator takes the next config.

Every stream honours back-pressure (``valid``/``ready`` of ``amaranth.lib.stream``). A layer's
``C`` channels are ``Cw = ceil(C / lanes)`` words; the last word's padded lanes carry zero
codes (``xnor``: zero bits in both words) and are idle, never counted as MACs.

The controller is four parts (``hw.controller``) joined to the array (``hw.array``) and the
global buffer (``hw.buffer``) with ``wiring.connect``; this module adds the stream adapters,
the unloader and the counters.

Counters (``counters``, ``hw.schedule.COUNTERS``, ``counter_bits`` each, valid once
``output_stream`` has delivered the last word and steady while ``idle``; they restart with
the first configuration beat). The host derives ``macs``, ``rf_reads`` and ``rf_writes``
(``hw.schedule.derived_counters``). A counter wraps past ``2**counter_bits - 1``: the host
refuses a layer whose ``sim.cycle_model.predict`` counts do not fit (``sim.run_layer``).

Latency and throughput: see ``hw.controller``; the streams take or give one word per cycle.

Model: ``model.ops.conv2d`` / ``model.ops.dense`` (outputs) and ``sim.cycle_model.predict``
(cycles and every counter).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.array import RowStationaryArray
from hw.buffer import GlobalBuffer
from hw.controller import (ComputeSequencer, InputLoader, PsumUnit, WeightLoader,
                           config_layout)
from hw.controller.interfaces import Limits
from hw.schedule import CONFIG_FIELDS, COUNTERS, AcceleratorConfig, config_field_bits

__all__ = ["Accelerator", "config_beat_bits", "accelerator_design"]


def config_beat_bits(config: AcceleratorConfig) -> int:
    """Width of a ``config_stream`` beat: the widest configuration field."""
    return max(config_field_bits(config).values())


def _popcount(bits):
    return sum(bits[i] for i in range(len(bits)))


class Accelerator(wiring.Component):
    """Row-stationary accelerator for one scheme (see module docstring).

    Parameters
    ----------
    config : hw.schedule.AcceleratorConfig
        Everything the generator takes.

    Members
    -------
    config_stream : In(stream.Signature(config_beat_bits))
        One configuration field per beat (see the module docstring).
    weight_stream : In(stream.Signature(lanes * w_bits))
    input_stream : In(stream.Signature(lanes * a_bits))
    output_stream : Out(stream.Signature(signed(acc_bits)))
    counters : Out(StructLayout of ``COUNTERS``, ``counter_bits`` each)
    idle : Out(1)
        High while waiting for a configuration.
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._config = c = config
        self._limits = Limits(config)
        self._counter_layout = data.StructLayout(
            {name: unsigned(c.counter_bits) for name in COUNTERS})
        super().__init__({
            "config_stream": In(stream.Signature(config_beat_bits(c))),
            "weight_stream": In(stream.Signature(c.w_word_bits)),
            "input_stream": In(stream.Signature(c.a_word_bits)),
            "output_stream": Out(stream.Signature(signed(c.acc_bits))),
            "counters": Out(self._counter_layout),
            "idle": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def config_limits(self) -> dict[str, int]:
        """``hw.schedule.config_limits``: the largest value of each configuration field."""
        return dict(self._limits.values)

    @property
    def field_bits(self) -> dict[str, int]:
        """``hw.schedule.config_field_bits``: the width of each configuration field."""
        return dict(self._limits.bits)

    def elaborate(self, platform):
        m = Module()
        c, lim = self._config, self._limits
        Y, X = c.rows, c.cols
        arr = m.submodules.array = RowStationaryArray(
            Y, X, c.scheme, lanes=c.lanes, a_bits=c.a_bits, w_bits=c.w_bits,
            acc_bits=c.acc_bits, filter_spad=c.filter_spad, ifmap_spad=c.ifmap_spad,
            tree_stages=c.tree_stages, codebook=c.codebook, more_modes=c.more_modes)
        buf = m.submodules.buffer = GlobalBuffer(
            rows=Y, cols=X, a_word_bits=c.a_word_bits, w_word_bits=c.w_word_bits,
            acc_bits=c.acc_bits, in_depth=c.in_depth, wb_depth=c.wb_depth, pb_depth=c.pb_depth)
        seq = m.submodules.sequencer = ComputeSequencer(c)
        wl = m.submodules.weight_loader = WeightLoader(c)
        il = m.submodules.input_loader = InputLoader(c)
        pu = m.submodules.psum_unit = PsumUnit(c)

        cfg = Signal(config_layout(c))
        for part in (seq, wl, il, pu):
            m.d.comb += part.cfg.eq(cfg)
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
        wiring.connect(m, il.buffer, buf.in_read)
        wiring.connect(m, pu.write, buf.pb_write)

        Din, Dw, Dp = c.in_depth, c.wb_depth, c.pb_depth

        def upto(n):
            return Signal(range(n + 1))

        def below(n):   # 0 .. n - 1 while in use; may wrap one step past its last value
            return Signal(range(max(2, n)))

        start = Signal()
        for part in (seq, wl, il, pu):
            m.d.comb += part.start.eq(start)

        # ---- config stream -> configuration register, one field per beat ---------------
        cfg_k = Signal(range(len(CONFIG_FIELDS)))
        cfg_first = Signal()
        # ---- weight stream -> weight banks (bank u % rows for reduction unit u) --------
        wk, wslot = below(Dw), below(Dw)
        wbank = Signal(range(Y))
        wcount = below(lim["n_weights"])
        # ---- input stream -> input buffer --------------------------------------------
        icount = below(Din)
        # ---- output stream <- psum banks ---------------------------------------------
        u_kv = below(lim["n_v"])
        u_j = Signal(range(X))
        u_a, u_base = below(Dp), below(Dp)
        u_more = Signal()
        u_jd = Signal(range(X))
        u_cols = upto(X)
        m.d.comb += u_cols.eq(Mux(u_kv + 1 == cfg.n_v, cfg.cols_last, X))

        out = self.output_stream
        issue = Signal()
        unload_en = Signal(X)
        m.d.comb += [buf.wb_write.addr.eq(wslot + wk),
                     buf.wb_write.data.eq(self.weight_stream.payload),
                     buf.in_write.addr.eq(icount),
                     buf.in_write.data.eq(self.input_stream.payload),
                     out.payload.eq(buf.pb_read.data[u_jd])]
        # the psum banks' read port: the psum unit while computing, the unloader after
        m.d.comb += [buf.pb_read.en.eq(Mux(seq.running, pu.read.en, unload_en)),
                     buf.pb_read.addr.eq(Mux(seq.running, pu.read.addr, u_base + u_a))]
        for j in range(X):
            m.d.comb += pu.read.data[j].eq(buf.pb_read.data[j])

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.config_stream.ready.eq(1),
                             cfg_first.eq(cfg_k == 0)]
                with m.If(self.config_stream.valid):
                    with m.Switch(cfg_k):
                        for k, name in enumerate(CONFIG_FIELDS):
                            field = getattr(cfg, name)
                            with m.Case(k):
                                m.d.sync += field.eq(self.config_stream.payload[:len(field)])
                    m.d.sync += cfg_k.eq(cfg_k + 1)
                    with m.If(cfg_k == len(CONFIG_FIELDS) - 1):
                        m.d.sync += [cfg_k.eq(0), wk.eq(0), wbank.eq(0), wslot.eq(0),
                                     wcount.eq(0), icount.eq(0)]
                        m.d.comb += il.init.eq(1)   # the walker reads cfg from the next cycle
                        m.next = "INIT"
            with m.State("INIT"):
                with m.If(~il.initialising):
                    m.next = "WEIGHTS"
            with m.State("WEIGHTS"):
                m.d.comb += self.weight_stream.ready.eq(1)
                with m.If(self.weight_stream.valid):
                    m.d.comb += buf.wb_write.en.eq(1 << wbank)
                    m.d.sync += [wk.eq(wk + 1), wcount.eq(wcount + 1)]
                    with m.If(wk + 1 == cfg.MqS):
                        m.d.sync += wk.eq(0)
                        with m.If(wbank == Y - 1):
                            m.d.sync += [wbank.eq(0), wslot.eq(wslot + cfg.MqS)]
                        with m.Else():
                            m.d.sync += wbank.eq(wbank + 1)
                    with m.If(wcount + 1 == cfg.n_weights):
                        m.next = "INPUTS"
            with m.State("INPUTS"):
                m.d.comb += self.input_stream.ready.eq(1)
                with m.If(self.input_stream.valid):
                    m.d.comb += buf.in_write.en.eq(1)
                    m.d.sync += icount.eq(icount + 1)
                    with m.If(icount + 1 == cfg.n_inputs):
                        m.next = "START"
            with m.State("START"):
                m.d.comb += start.eq(1)
                m.next = "COMPUTE"
            with m.State("COMPUTE"):
                with m.If(~seq.running):
                    m.d.sync += [u_kv.eq(0), u_j.eq(0), u_a.eq(0), u_base.eq(0),
                                 u_more.eq(1), out.valid.eq(0)]
                    m.next = "UNLOAD"
            with m.State("UNLOAD"):
                m.d.comb += issue.eq(u_more & (~out.valid | out.ready))
                m.d.comb += unload_en.eq(Mux(issue, 1 << u_j, 0))
                with m.If(issue):
                    m.d.sync += [out.valid.eq(1), u_jd.eq(u_j), u_a.eq(u_a + 1)]
                    with m.If(u_a + 1 == cfg.GiFp):
                        m.d.sync += [u_a.eq(0), u_j.eq(u_j + 1)]
                        with m.If(u_j + 1 == u_cols):
                            m.d.sync += [u_j.eq(0), u_kv.eq(u_kv + 1),
                                         u_base.eq(u_base + cfg.GiFp)]
                            with m.If(u_kv + 1 == cfg.n_v):
                                m.d.sync += u_more.eq(0)
                with m.Elif(out.ready):
                    m.d.sync += out.valid.eq(0)
                with m.If(~u_more & (~out.valid | out.ready)):
                    m.d.sync += out.valid.eq(0)
                    m.next = "IDLE"

        # ---- counters -----------------------------------------------------------------
        cnt = self.counters
        events = {
            "cycles": seq.running,
            "slots": arr.ev_slots,
            "last_slots": arr.ev_last_slots,
            "skipped": arr.ev_skipped,
            "filter_reads": arr.ev_filter_reads,
            "filter_writes": wl.ev_writes,
            "input_writes": arr.ev_takes,
            "array_transfers": pu.ev_transfers,
            "glb_reads": (buf.in_read.en[0] + _popcount(buf.wb_read.en)
                          + _popcount(buf.pb_read.en)),
            "glb_writes": (buf.in_write.en[0] + _popcount(buf.wb_write.en)
                           + _popcount(buf.pb_write.en)),
            "offchip_words": ((self.weight_stream.valid & self.weight_stream.ready)
                              + (self.input_stream.valid & self.input_stream.ready)
                              + (out.valid & out.ready)),
        }
        with m.If(self.config_stream.valid & self.config_stream.ready & cfg_first):
            for name in COUNTERS:
                m.d.sync += getattr(cnt, name).eq(0)
        with m.Else():
            for name in COUNTERS:
                field = getattr(cnt, name)
                m.d.sync += field.eq(field + events[name])
        return m


def accelerator_design(config: AcceleratorConfig, *, module: str | None = None):
    """The accelerator as Verilog and manifest (``hw.generate.Design``; module
    ``accelerator``). The manifest lists the ports, the parameters, the configuration fields
    (in beat order, with their widths and limits) and the counters."""
    from hw.generate import Design, _base_manifest, _ordered, check_module_name, to_verilog
    if module is not None:
        check_module_name(module)
    acc = Accelerator(config)
    module = module or "accelerator"
    text = to_verilog(acc, name=module)
    manifest = _base_manifest("accelerator", acc, module, text)
    limits, bits = acc.config_limits, acc.field_bits
    manifest.update(config.to_dict())
    manifest.update({
        "latency": "layer-dependent: sim.cycle_model.predict",
        "throughput": f"{config.macs_per_cycle} MACs per cycle while computing",
        "model": "model.ops.conv2d; counters: sim.cycle_model.predict",
        "counters": list(COUNTERS), "config_beat_bits": config_beat_bits(config),
        "config_fields": {name: {"bits": bits[name], "limit": limits[name]}
                          for name in CONFIG_FIELDS},
    })
    return Design(module, text, _ordered(manifest))
