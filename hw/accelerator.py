"""The accelerator: row-stationary array, global buffer and controller behind four streams.

One layer at a time:

1. ``config_stream``: the layer's configuration, one field per beat in the order of
   ``hw.controller.CONFIG_FIELDS`` (values from ``sim.cycle_model.config_values``, each at
   most its ``hw.controller.config_limits`` value; a beat is ``config_beat_bits`` wide, the
   widest field, and a field takes its low bits). The first beat resets the counters.
2. ``weight_stream``: ``M * C * R * S`` weight codes (hardware bit patterns) in the order of
   ``sim.cycle_model.weight_stream_order``; they go to the weight banks.
3. ``input_stream``: ``C * H * W`` activation codes, channel-major ``[C, H, W]``.
4. the compute phase (no stream activity): the controller runs every pass.
5. ``output_stream``: ``M * E * F`` exact sums (signed ``acc_bits``) in the order of
   ``sim.cycle_model.output_stream_order``; then the accelerator takes the next config.

Every stream honours back-pressure (``valid``/``ready`` of ``amaranth.lib.stream``).

Generic over every scheme of ``model.quant.SCHEMES`` through ``hw.units.product_unit``. For
``xnor`` an activation word and a weight word each pack ``lanes`` channels (bit i = channel
i of the word, ``model.quant.pack_pm1``): the layer's ``C`` counts packed words, one MAC slot
is one word pair and adds ``lanes - 2 * popcount(a ^ w)``; padded positions are never
multiplied (there is no zero in +/-1), which is exactly the border correction of
``model.ops.xnor_conv2d``.

Counters (``counters``, ``counter_bits`` each (48 by default), valid once ``output_stream``
has delivered the last word and steady while ``idle``; they restart with the first
configuration beat). A counter wraps past ``2**counter_bits - 1``: the host refuses a layer
whose ``sim.cycle_model.predict`` counts do not fit (``sim.run_layer.check_job``).

``cycles``
    clock cycles of the compute phase (step 4): from the cycle after the last input word is
    accepted until the last partial sum is written to the psum buffer, inclusive.
``macs``
    multiply-accumulate slots on a real (weight, activation) pair: a PE that holds an input
    row, at a tap inside the image. Equal to the number of terms of the layer's sum; includes
    the skipped ones.
``skipped``
    those of ``macs`` whose product unit raised ``skip`` (weight level 0): the accumulator is
    not clocked. Always 0 for units that cannot skip (``binary``, ``xnor``, ``dorefa``
    without a codebook holding a 0 level, ``int``).
``rf_reads``
    scratchpad reads in the PEs: 2 per MAC slot (weight and activation) + 1 per psum entry
    read by an active PE during a drain.
``rf_writes``
    scratchpad writes in the PEs: every weight word written into a filter scratchpad, every
    input word taken into an input scratchpad, every psum written at the end of a dot by an
    active PE.
``array_transfers``
    partial sums handed from a PE to the PE below during drains (``rows - 1`` per psum per
    drained column).
``glb_reads``
    words read from the global buffer: input words broadcast to the array, weight words sent
    to the PE rows, old partial sums read during drains (after the first row fold), outputs
    read for ``output_stream``.
``glb_writes``
    words written to the global buffer: weights and inputs from the streams, partial sums
    written by drains.
``offchip_words``
    words crossing the accelerator boundary on ``weight_stream``, ``input_stream`` and
    ``output_stream`` (the configuration beats are not counted).

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
from hw.controller import CONFIG_FIELDS, Controller, config_layout
from hw.units import quiet_if_invalid

__all__ = ["Accelerator", "COUNTER_NAMES", "COUNTER_BITS", "config_beat_bits"]

#: The counters, in the order of ``counters`` (and of OUT.npz).
COUNTER_NAMES = ("cycles", "macs", "skipped", "rf_reads", "rf_writes", "array_transfers",
                 "glb_reads", "glb_writes", "offchip_words")
#: Default width of each counter.
COUNTER_BITS = 48


def config_beat_bits(field_bits: dict[str, int]) -> int:
    """Width of a ``config_stream`` beat: the widest configuration field."""
    return max(field_bits.values())


def _popcount(bits):
    return sum(bits[i] for i in range(len(bits)))


class Accelerator(wiring.Component):
    """Row-stationary accelerator for one scheme (see module docstring).

    Parameters
    ----------
    rows, cols : int
        PE array size.
    scheme, a_bits, w_bits, codebook : as ``hw.units.product_unit``.
    acc_bits : int
        Partial-sum width: at least ``model.ops.accumulator_width`` of every layer run.
    filter_spad, ifmap_spad, psum_spad : int
        PE scratchpad entries per bank (powers of two).
    in_depth, wb_depth, pb_depth : int
        Global buffer: input words, words per weight bank, words per psum bank.
    counter_bits : int
        Width of each counter (at most 64).

    Members
    -------
    config_stream : In(stream.Signature(config_beat_bits))
        One configuration field per beat (see the module docstring).
    weight_stream : In(stream.Signature(w_bits))
    input_stream : In(stream.Signature(a_bits))
    output_stream : Out(stream.Signature(signed(acc_bits)))
    counters : Out(StructLayout of ``COUNTER_NAMES``, ``counter_bits`` each)
    idle : Out(1)
        High while waiting for a configuration.
    """

    @quiet_if_invalid
    def __init__(self, rows: int, cols: int, scheme: str, *, a_bits: int,
                 w_bits: int | None = None, acc_bits: int, filter_spad: int = 16,
                 ifmap_spad: int = 16, psum_spad: int = 16, in_depth: int = 1024,
                 wb_depth: int = 1024, pb_depth: int = 1024, codebook=None,
                 counter_bits: int = COUNTER_BITS):
        if isinstance(counter_bits, bool) or not isinstance(counter_bits, int) or \
                not 8 <= counter_bits <= 64:
            raise ValueError(f"counter_bits must be an integer in [8, 64], not "
                             f"{counter_bits!r}")
        self._counter_bits = counter_bits
        self._array = RowStationaryArray(rows, cols, scheme, a_bits=a_bits, w_bits=w_bits,
                                         acc_bits=acc_bits, filter_spad=filter_spad,
                                         ifmap_spad=ifmap_spad, psum_spad=psum_spad,
                                         codebook=codebook)
        arr = self._array
        self._buffer = GlobalBuffer(rows=rows, cols=cols, a_bits=arr.a_bits, w_bits=arr.w_bits,
                                    acc_bits=acc_bits, in_depth=in_depth, wb_depth=wb_depth,
                                    pb_depth=pb_depth)
        self._controller = Controller(self._array, self._buffer)
        self._counter_layout = data.StructLayout(
            {name: unsigned(counter_bits) for name in COUNTER_NAMES})
        super().__init__({
            "config_stream": In(stream.Signature(
                config_beat_bits(self._controller.field_bits))),
            "weight_stream": In(stream.Signature(arr.w_bits)),
            "input_stream": In(stream.Signature(arr.a_bits)),
            "output_stream": Out(stream.Signature(signed(acc_bits))),
            "counters": Out(self._counter_layout),
            "idle": Out(1),
        })

    @property
    def array(self) -> RowStationaryArray:
        return self._array

    @property
    def buffer(self) -> GlobalBuffer:
        return self._buffer

    @property
    def config_limits(self) -> dict[str, int]:
        """``hw.controller.config_limits``: the largest value of each configuration field."""
        return self._controller.limits

    @property
    def field_bits(self) -> dict[str, int]:
        """``hw.controller.config_field_bits``: the width of each configuration field."""
        return self._controller.field_bits

    @property
    def counter_bits(self) -> int:
        return self._counter_bits

    def elaborate(self, platform):
        m = Module()
        arr, buf, ctl = self._array, self._buffer, self._controller
        m.submodules.array = arr
        m.submodules.buffer = buf
        m.submodules.controller = ctl
        Y, X = arr.rows, arr.cols

        cfg = Signal(config_layout(ctl.field_bits))
        m.d.comb += ctl.cfg.eq(cfg)
        lim = ctl.limits
        Din, Dw, Dp = buf.depths

        def upto(n):
            return Signal(range(n + 1))

        def below(n):   # 0 .. n - 1 while in use; may wrap one step past its last value
            return Signal(range(max(2, n)))

        # ---- config stream -> configuration register, one field per beat ---------------
        cfg_k = Signal(range(len(CONFIG_FIELDS)))
        cfg_first = Signal()
        # ---- weight stream -> weight banks -------------------------------------------
        wk = below(Dw)
        wbank = Signal(range(Y))
        wslot = below(Dw)
        wcount = below(lim["n_weights"])
        # ---- input stream -> input buffer --------------------------------------------
        icount = below(Din)
        # ---- output stream <- psum banks ---------------------------------------------
        u_ke = below(lim["n_v"])
        u_j = Signal(range(X))
        u_a = below(Dp)
        u_base = below(Dp)
        u_more = Signal()
        u_jd = Signal(range(X))
        u_cols = upto(X)
        m.d.comb += u_cols.eq(Mux(u_ke + 1 == cfg.n_v, cfg.cols_last, X))

        out = self.output_stream
        issue = Signal()
        m.d.comb += [buf.wb_waddr.eq(wslot + wk), buf.wb_wdata.eq(self.weight_stream.payload),
                     buf.in_waddr.eq(icount), buf.in_wdata.eq(self.input_stream.payload),
                     ctl.unload_raddr.eq(u_base + u_a),
                     out.payload.eq(buf.pb_rdata[u_jd])]

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
                        m.d.comb += ctl.init.eq(1)   # the walker reads cfg from the next cycle
                        m.next = "INIT"
            with m.State("INIT"):
                with m.If(~ctl.initialising):
                    m.next = "WEIGHTS"
            with m.State("WEIGHTS"):
                m.d.comb += self.weight_stream.ready.eq(1)
                with m.If(self.weight_stream.valid):
                    m.d.comb += buf.wb_we.eq(1 << wbank)
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
                    m.d.comb += buf.in_we.eq(1)
                    m.d.sync += icount.eq(icount + 1)
                    with m.If(icount + 1 == cfg.n_inputs):
                        m.next = "START"
            with m.State("START"):
                m.d.comb += ctl.start.eq(1)
                m.next = "COMPUTE"
            with m.State("COMPUTE"):
                with m.If(~ctl.running):
                    m.d.sync += [u_ke.eq(0), u_j.eq(0), u_a.eq(0), u_base.eq(0),
                                 u_more.eq(1), out.valid.eq(0)]
                    m.next = "UNLOAD"
            with m.State("UNLOAD"):
                m.d.comb += issue.eq(u_more & (~out.valid | out.ready))
                m.d.comb += ctl.unload_re.eq(Mux(issue, 1 << u_j, 0))
                with m.If(issue):
                    m.d.sync += [out.valid.eq(1), u_jd.eq(u_j), u_a.eq(u_a + 1)]
                    with m.If(u_a + 1 == cfg.GiFp):
                        m.d.sync += [u_a.eq(0), u_j.eq(u_j + 1)]
                        with m.If(u_j + 1 == u_cols):
                            m.d.sync += [u_j.eq(0), u_ke.eq(u_ke + 1),
                                         u_base.eq(u_base + cfg.GiFp)]
                            with m.If(u_ke + 1 == cfg.n_v):
                                m.d.sync += u_more.eq(0)
                with m.Elif(out.ready):
                    m.d.sync += out.valid.eq(0)
                with m.If(~u_more & (~out.valid | out.ready)):
                    m.d.sync += out.valid.eq(0)
                    m.next = "IDLE"

        # ---- counters -----------------------------------------------------------------
        cnt = self.counters
        events = {
            "cycles": ctl.running,
            "macs": arr.ev_mac,
            "skipped": arr.ev_skip,
            "rf_reads": arr.ev_rf_reads,
            "rf_writes": arr.ev_rf_writes,
            "array_transfers": arr.ev_hops,
            "glb_reads": buf.in_re + _popcount(buf.wb_re) + _popcount(buf.pb_re),
            "glb_writes": buf.in_we + _popcount(buf.wb_we) + _popcount(buf.pb_we),
            "offchip_words": ((self.weight_stream.valid & self.weight_stream.ready)
                              + (self.input_stream.valid & self.input_stream.ready)
                              + (out.valid & out.ready)),
        }
        with m.If(self.config_stream.valid & self.config_stream.ready & cfg_first):
            for name in COUNTER_NAMES:
                m.d.sync += getattr(cnt, name).eq(0)
        with m.Else():
            for name in COUNTER_NAMES:
                field = getattr(cnt, name)
                m.d.sync += field.eq(field + events[name])
        return m


def accelerator_design(*, rows: int, cols: int, scheme: str, a_bits: int,
                       w_bits: int | None = None, acc_bits: int, filter_spad: int = 16,
                       ifmap_spad: int = 16, psum_spad: int = 16, in_depth: int = 1024,
                       wb_depth: int = 1024, pb_depth: int = 1024, module: str | None = None,
                       counter_bits: int = COUNTER_BITS):
    """The accelerator as Verilog and manifest (``hw.generate.Design``; module
    ``accelerator``). The manifest lists the ports, the configuration fields (in beat order,
    with their widths and limits), the counters and the buffer sizes."""
    from hw.generate import Design, _base_manifest, _ordered, check_module_name, to_verilog
    if module is not None:
        check_module_name(module)
    acc = Accelerator(rows, cols, scheme, a_bits=a_bits, w_bits=w_bits, acc_bits=acc_bits,
                      filter_spad=filter_spad, ifmap_spad=ifmap_spad, psum_spad=psum_spad,
                      in_depth=in_depth, wb_depth=wb_depth, pb_depth=pb_depth,
                      counter_bits=counter_bits)
    module = module or "accelerator"
    text = to_verilog(acc, name=module)
    manifest = _base_manifest("accelerator", acc, module, text)
    manifest.update({
        "scheme": scheme, "a_bits": acc.array.a_bits, "w_bits": acc.array.w_bits,
        "acc_width": acc_bits, "can_skip": acc.array.can_skip,
        "latency": "layer-dependent: sim.cycle_model.predict",
        "throughput": f"{rows * cols} MACs per cycle while computing",
        "model": "model.ops.conv2d; counters: sim.cycle_model.predict",
        "rows": rows, "cols": cols, "filter_spad": filter_spad, "ifmap_spad": ifmap_spad,
        "psum_spad": psum_spad, "in_depth": in_depth, "wb_depth": wb_depth,
        "pb_depth": pb_depth, "counters": list(COUNTER_NAMES), "counter_bits": counter_bits,
        "config_beat_bits": config_beat_bits(acc.field_bits),
        "config_fields": {name: {"bits": acc.field_bits[name], "limit": acc.config_limits[name]}
                          for name in CONFIG_FIELDS},
    })
    return Design(module, text, _ordered(manifest))
