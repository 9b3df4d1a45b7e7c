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
   major ``[Cw, H, W]``. A grouped layer (``groups`` > 1, at most ``AcceleratorConfig.groups``)
   has ``Cw = groups * Cw_g``: each group's ``C / groups`` channels packed into words of
   their own, group after group; its ``M`` filters see ``Cw_g`` channel words each.
4. the compute phase (no stream activity): the controller runs every dot.
5. ``output_stream``: ``M * E * F`` exact sums (signed ``acc_bits``) in the order of
   ``sim.cycle_model.output_stream_order``; then the accelerator takes the next config.

Every stream honours back-pressure (``valid``/``ready`` of ``amaranth.lib.stream``). A layer's
``C`` channels are ``Cw = ceil(C / lanes)`` words; the last word's padded lanes carry zero
codes (``xnor``: zero bits in both words) and are idle, never counted as MACs.

The core (``hw.core.AcceleratorCore``: array, weight and psum banks, the controller's parts,
the counters) does the work; this module adds the configuration register
(``hw.controller.fields.FieldLoader``), the activation buffer (``hw.buffer.WordBuffer``), the
stream writers and the unloader (``hw.controller.unload.Unloader``).

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

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.buffer import WordBuffer
from hw.controller import config_layout
from hw.controller.fields import FieldLoader
from hw.controller.interfaces import Limits
from hw.controller.unload import Unloader
from hw.core import AcceleratorCore, counter_layout
from hw.schedule import CONFIG_FIELDS, COUNTERS, AcceleratorConfig, config_field_bits

__all__ = ["Accelerator", "config_beat_bits", "accelerator_design"]


def config_beat_bits(config: AcceleratorConfig) -> int:
    """Width of a ``config_stream`` beat: the widest configuration field."""
    return max(config_field_bits(config).values())


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
        super().__init__({
            "config_stream": In(stream.Signature(config_beat_bits(c))),
            "weight_stream": In(stream.Signature(c.w_word_bits)),
            "input_stream": In(stream.Signature(c.a_word_bits)),
            "output_stream": Out(stream.Signature(signed(c.acc_bits))),
            "counters": Out(counter_layout(c)),
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
        Y = c.rows
        core = m.submodules.core = AcceleratorCore(c)
        loader = m.submodules.config = FieldLoader(config_layout(c), config_beat_bits(c))
        inputs = m.submodules.inputs = WordBuffer(depth=c.in_depth, shape=c.a_word_bits)
        unload = m.submodules.unloader = Unloader(c)
        cfg = loader.fields
        m.d.comb += [core.cfg.eq(cfg), unload.cfg.eq(cfg)]
        wiring.connect(m, wiring.flipped(self.config_stream), loader.i_stream)
        wiring.connect(m, core.inputs, inputs.read)
        wiring.connect(m, unload.psums, core.psums)

        def below(n):   # 0 .. n - 1 while in use; may wrap one step past its last value
            return Signal(range(max(2, n)))

        # ---- weight stream -> weight banks (bank u % rows for reduction unit u) --------
        Dw = c.wb_depth
        wk, wslot = below(Dw), below(Dw)
        wbank = Signal(range(Y))
        wcount = below(lim["n_weights"])
        if c.groups > 1:
            wkr = Signal(range(max(2, lim["n_r"])), name="wkr")   # the group's row fold written
        # ---- input stream -> activation buffer -----------------------------------------
        icount = below(c.in_depth)
        m.d.comb += [core.weights.addr.eq(wslot + wk),
                     core.weights.data.eq(self.weight_stream.payload),
                     inputs.write.addr.eq(icount),
                     inputs.write.data.eq(self.input_stream.payload)]
        # ---- output stream <- unloader -------------------------------------------------
        out = self.output_stream
        m.d.comb += [out.payload.eq(unload.o_stream.payload.acc),
                     out.valid.eq(unload.o_stream.valid),
                     unload.o_stream.ready.eq(out.ready)]

        # ---- counters: the first beat clears them; the streams' words and the buffer's
        # writes are counted by the core ---------------------------------------------------
        def moved(s):
            return s.valid & s.ready
        m.d.comb += [core.clear.eq(loader.first),
                     core.ext.glb_writes.eq(inputs.write.en[0]),
                     core.ext.offchip_words.eq(moved(self.weight_stream)
                                               + moved(self.input_stream) + moved(out)),
                     self.counters.eq(core.counters)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), loader.enable.eq(1)]
                with m.If(loader.done):
                    m.d.sync += [wk.eq(0), wbank.eq(0), wslot.eq(0), wcount.eq(0),
                                 icount.eq(0)]
                    if c.groups > 1:
                        m.d.sync += wkr.eq(0)
                    m.next = "INIT"
            with m.State("INIT"):          # the walker reads cfg from this cycle on
                m.d.comb += core.init.eq(1)
                m.next = "WALK"
            with m.State("WALK"):
                with m.If(~core.initialising):
                    m.next = "WEIGHTS"
            with m.State("WEIGHTS"):
                m.d.comb += self.weight_stream.ready.eq(1)
                with m.If(self.weight_stream.valid):
                    m.d.comb += core.weights.en.eq(1 << wbank)
                    m.d.sync += [wk.eq(wk + 1), wcount.eq(wcount + 1)]
                    with m.If(wk + 1 == cfg.MqS):
                        m.d.sync += wk.eq(0)
                        if c.groups == 1:
                            fold_done = wbank == Y - 1
                        else:   # a group's last row fold may use fewer banks
                            fold_done = wbank == Mux(wkr == cfg.n_r - 1, cfg.rows_last - 1,
                                                     Y - 1)
                            with m.If(fold_done):
                                m.d.sync += wkr.eq(Mux(wkr == cfg.n_r - 1, 0, wkr + 1))
                        with m.If(fold_done):
                            m.d.sync += [wbank.eq(0), wslot.eq(wslot + cfg.MqS)]
                        with m.Else():
                            m.d.sync += wbank.eq(wbank + 1)
                    with m.If(wcount + 1 == cfg.n_weights):
                        m.next = "INPUTS"
            with m.State("INPUTS"):
                m.d.comb += self.input_stream.ready.eq(1)
                with m.If(self.input_stream.valid):
                    m.d.comb += inputs.write.en.eq(1)
                    m.d.sync += icount.eq(icount + 1)
                    with m.If(icount + 1 == cfg.n_inputs):
                        m.next = "START"
            with m.State("START"):
                m.d.comb += core.start.eq(1)
                m.next = "COMPUTE"
            with m.State("COMPUTE"):
                with m.If(~core.running):
                    m.d.comb += unload.start.eq(1)
                    m.next = "UNLOAD"
            with m.State("UNLOAD"):
                with m.If(~unload.busy):
                    m.next = "IDLE"
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
