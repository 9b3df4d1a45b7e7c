"""The post-processing unit: a layer's accumulators in, the next layer's input words out.

Between one layer's exact accumulators and the next layer's activation buffer the network
engine needs, per element, the output stage of ``model.deploy``: folded integer thresholds,
max pooling, the next layer's code format and packing, or (last layer) the raw accumulator.
``PostProcessor`` does it without a multiplier: comparators, a popcount, a max/min, adders
and counters.

What it does with an element ``(acc, m, e, f)`` (output channel ``m``, output row ``e``,
column ``f``, before pooling) of a layer configured by a ``PostConfig``. Elements come at
most one per cycle, each exactly once, in any order in which every channel's elements come
row by row with increasing columns (channels interleave freely; the row-stationary array's
``sim.cycle_model.output_stream_order`` is one), so a pooling window's first element
(``e % P == 0`` and ``f % P == 0``) comes before the rest of the window:

1. *Thresholds.* The channel's entry of the threshold memory (``ThresholdEntry``, written
   once through ``thr_write``, at ``thr_base + m``) holds ``2**max_out_bits - 1``
   thresholds, ``flip`` and ``constant``. The *count* is the number of the layer's
   ``2**out_bits - 1`` thresholds passed: ``acc >= T`` (``acc <= T`` where ``flip``), exactly
   ``model.thresholds.apply_multilevel_thresholds`` / ``apply_sign_threshold`` (a sign output
   is ``out_bits = 1``: count 1 is +1, count 0 is -1). One comparator per threshold serves
   both directions: a flipped channel's entry holds ``T + 1`` and passes when ``acc < T + 1``
   (the comparison's result inverted). A ``constant`` channel's count is fixed: the entry's
   first threshold field holds it. ``threshold_entries`` writes the entries of a layer.
2. *Max pooling after thresholding.* ``model.deploy`` pools the accumulators and then
   thresholds; the unit thresholds every element and pools the counts. Both agree because
   the count ``g(acc)`` of a channel is a monotone step function of ``acc``: non-decreasing
   (``flip`` clear), so ``g(max acc) = max g(acc)``, or non-increasing (``flip`` set), so
   ``g(max acc) = min g(acc)`` (constant channels: every element has the same count). For a
   sign output the counts are single bits and max/min are OR/AND; in the XNOR encoding (bit 1
   means -1, the complement of the count) the pooled bit is the AND of the window's bits, or
   the OR where flipped. ``tests/hw/test_postproc.py`` checks this equivalence exhaustively
   on the golden model and the RTL against it.
3. *Packing.* The pooled count becomes the next layer's code (``CodeFormat``) in lane
   ``m % lanes`` of word ``m // lanes`` at pooled position ``(e', f') = (e // P, f // P)``:
   address ``dst_base + (m // lanes) * E' * F' + e' * F' + f'`` (channel-major ``[Cw, E',
   F']``, the layout of ``model.deploy.IntegerLayer.encode_inputs``), or, where the next
   layer flattens, flat index ``i = m * E' * F' + e' * F' + f'`` in lane ``i % lanes`` of word
   ``dst_base + i // lanes``. The word is written through ``dst_write`` with lane-granular
   enables: the element's lane, plus the lanes no channel uses (past ``lanes``, and past
   the last channel in the last word), which get zero codes, so every word of the layer
   ends equal to the next layer's packed input. A window's first element (``e % P == 0`` and
   ``f % P == 0``, which the accelerator delivers first) is written as it is; every other
   element reads its lane back (``dst_read``), combines and writes (read-modify-write).
   Elements in rows or columns past the last full window are dropped.
4. *Scores* (``OutputKind.SCORES``): every element goes unchanged to ``o_stream`` (the host
   applies the integer head ``score_gain * acc + score_offset``).

Addresses without multiplication: ``start`` fills three small tables with counters and
adders (the ``setup`` state machine): per column ``f`` the offset of ``f'``, per row ``e``
the offset of ``e' * F'``, per channel ``m`` the offset of its word and its lane. Offsets
are mixed-radix pairs (word, lane), lane < ``lanes``; an element's address and lane are the
sum of its three entries with at most two carries. Where the next layer does not flatten,
the spatial entries count whole words (lane 0). The write data are the code repeated in
every lane (zero in the unused ones); the lane's one-hot enable and the unused lanes'
thermometer are decoded three bits at a time (look-up tables, no carry chains).

Back-to-back elements: different lanes of one word never conflict (lane-granular writes);
an element that reads back the lane written by the element just before it (a pooling window
fed in consecutive cycles) gets the value forwarded from that write, so the unit never
stalls. The destination memory may be transparent or not.

Latency: ``WRITE_LATENCY`` = 2 cycles from an element's transfer on ``i_stream`` to its
write on ``dst_write`` (its read, if any, one cycle earlier); ``SCORE_LATENCY`` = 1 cycle
from ``i_stream`` to ``o_stream``. Throughput: one element per cycle (scores: one per cycle
while ``o_stream`` is ready). Setup: ``setup_cycles(config)`` cycles from ``start`` until
``i_stream`` is ready (``F' P + E' P + C + 1``).

Model: ``model.deploy.IntegerLayer.activate`` of ``model.ops.maxpool2d`` (``run_integer``)
and ``IntegerLayer.encode_inputs`` of the next layer; the thresholds of
``model.thresholds``.

Supported: outputs sign, levels (up to ``max_out_bits``) and scores; pools 0 (none) to
``max_pool``, windows with stride equal to their size (``model.deploy``'s only pooling);
next layers taking XNOR words, +/-1 as signed codes, or unsigned / signed k-bit codes;
flattening. Not supported: pooling a scores layer (its elements pass through unpooled),
levels outputs into XNOR or +/-1 words, thresholds that do not fit ``thr_bits`` signed bits
(a folded layer's lie in its accumulator range widened by one: ``accumulator_width + 1``),
pooling with a stride other than the window, two layers in flight at once (``start`` begins
a layer; the previous one must have drained, ``busy`` low). Levels compare all
``2**out_bits - 1`` thresholds at once (``2**max_out_bits - 1`` comparators; no sequential
search).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model import ops

__all__ = ["OutputKind", "CodeFormat", "PostProcessorParams", "PostConfig", "Element",
           "ThresholdEntry", "ThresholdWrite", "BufferWrite", "BufferRead", "PostProcessor",
           "WRITE_LATENCY", "SCORE_LATENCY", "setup_cycles", "layer_config",
           "threshold_entries", "buffer_words", "conv_size", "check_config"]

#: Cycles from an element's transfer on ``i_stream`` to its ``dst_write``.
WRITE_LATENCY = 2
#: Cycles from an element's transfer on ``i_stream`` to its ``o_stream`` beat (scores).
SCORE_LATENCY = 1


class OutputKind(enum.Enum, shape=2):
    """The layer's output stage (``model.deploy.IntegerLayer.output``)."""

    SIGN = 0     #: +/-1 outputs: one threshold per channel (``out_bits`` = 1)
    LEVELS = 1   #: ``out_min`` + the number of ``2**out_bits - 1`` thresholds passed
    SCORES = 2   #: the last layer: raw accumulators to ``o_stream``


class CodeFormat(enum.Enum, shape=2):
    """How the next layer takes its input codes, one lane per channel (``model.quant``)."""

    XNOR = 0      #: 1-bit lanes, bit 1 means -1 (``model.quant.pack_pm1``); sign outputs
    PM1 = 1       #: +/-1 as signed ``code_bits`` codes (1 = 0..01, -1 = 1..11); sign outputs
    UNSIGNED = 2  #: ``out_min + count`` as an unsigned code, zero-extended to ``code_bits``
    SIGNED = 3    #: ``out_min + count`` as a signed code, sign-extended to ``code_bits``


def _bits(n: int) -> int:
    """Unsigned bits that hold ``n`` (at least 1)."""
    return max(1, int(n).bit_length())


@dataclass(frozen=True)
class PostProcessorParams:
    """The generator parameters of a ``PostProcessor`` (the largest layer it serves).

    Members
    -------
    acc_bits : int
        Width of the widest (signed) accumulator on ``i_stream`` (scores included).
    max_channels : int
        Most output channels of a layer (``m`` < this).
    max_out_bits : int
        Largest ``out_bits`` of a levels output (1: sign outputs only, one comparator);
        ``2**max_out_bits - 1`` comparators.
    max_pool : int
        Largest pool window (0: no pooling).
    max_size : int
        Largest output height or width of a layer before pooling (``e``, ``f`` < this).
    lanes : int
        Lanes of a destination word for codes of ``code_bits`` (XNOR words hold
        ``lanes * code_bits`` one-bit lanes).
    code_bits : int
        Bits of a lane's code.
    depth : int
        Words of the destination buffer.
    thr_depth : int or None
        Entries of the threshold memory (every layer's channels; default ``max_channels``).
    xnor : bool
        Whether XNOR words are written: the write enable then has one bit per word bit
        (granularity 1), else one bit per ``code_bits`` lane.
    thr_bits : int or None
        Signed bits of a threshold (default ``acc_bits + 1``: every step of an accumulator,
        one past either end); a model whose scores layer is wider than its thresholded
        layers needs only their widest accumulator plus one. The accumulators of a
        thresholded layer must fit ``thr_bits - 1`` bits (they are compared at
        ``thr_bits``).
    """

    acc_bits: int
    max_channels: int
    max_out_bits: int = 1
    max_pool: int = 2
    max_size: int = 32
    lanes: int = 1
    code_bits: int = 1
    depth: int = 256
    thr_depth: int | None = None
    xnor: bool = True
    thr_bits: int | None = None

    def __post_init__(self):
        limits = {"acc_bits": (2, 48), "max_channels": (1, 1 << 16), "max_out_bits": (1, 8),
                  "max_pool": (0, 16), "max_size": (1, 1 << 12), "lanes": (1, 256),
                  "code_bits": (1, 16), "depth": (1, 1 << 24)}
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")
        if self.thr_depth is None:
            object.__setattr__(self, "thr_depth", self.max_channels)
        t = self.thr_depth
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) \
                or not self.max_channels <= t <= (1 << 20):
            raise ValueError(f"thr_depth must be an integer in [max_channels = "
                             f"{self.max_channels}, 2**20], not {t!r}")
        if self.thr_bits is None:
            object.__setattr__(self, "thr_bits", self.acc_bits + 1)
        b = self.thr_bits
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) \
                or not 2 <= b <= self.acc_bits + 1:
            raise ValueError(f"thr_bits must be an integer in [2, acc_bits + 1 = "
                             f"{self.acc_bits + 1}], not {b!r}")
        if not isinstance(self.xnor, bool):
            raise ValueError(f"xnor must be True or False, not {self.xnor!r}")
        if self.max_out_bits > self.code_bits:
            raise ValueError(f"max_out_bits {self.max_out_bits} does not fit a code of "
                             f"code_bits {self.code_bits}; allowed: max_out_bits <= code_bits")
        if self.max_pool > self.max_size:
            raise ValueError(f"max_pool {self.max_pool} exceeds max_size {self.max_size}")

    @classmethod
    def for_model(cls, model, *, lanes: int | None = None, code_bits: int | None = None,
                  depth: int | None = None) -> "PostProcessorParams":
        """The smallest parameters that serve every layer of ``model`` (a
        ``model.deploy.IntegerModel``).

        ``code_bits`` defaults to the widest input code of a next layer that does not take
        XNOR words (its ``a_bits``; 1 if all do), ``lanes`` to enough lanes for the widest
        XNOR word (else 1), ``depth`` to twice the most words a layer writes (ping-pong).
        The threshold memory holds every thresholded layer's channels in order.
        """
        layers = model.layers
        pairs = list(zip(layers[:-1], layers[1:]))
        xnor_next = [nxt for _, nxt in pairs if nxt.scheme == "xnor"]
        other_next = [nxt for _, nxt in pairs if nxt.scheme != "xnor"]
        if code_bits is None:
            code_bits = max((nxt.a_bits for nxt in other_next), default=1)
        if lanes is None:
            widest = max((nxt.a_bits for nxt in xnor_next), default=1)
            lanes = -(-widest // code_bits)
        words = []
        for layer, nxt in pairs:
            c, rows, cols = layer.out_shape()
            per_word = nxt.a_bits if nxt.scheme == "xnor" else lanes
            words.append(buffer_words(c, rows, cols, lanes=per_word,
                                      flatten=bool(nxt.flatten or nxt.kind == "dense")))
        sizes = [v for layer in layers for v in conv_size(layer)]
        channels = max(layer.out_channels for layer in layers)
        thresholded = [layer for layer in layers if layer.output != "scores"]
        return cls(acc_bits=max(layer.accumulator_width for layer in layers),
                   thr_bits=max((layer.accumulator_width + 1 for layer in thresholded),
                                default=2),
                   max_channels=channels,
                   max_out_bits=max(layer.out_bits or 1 for layer in layers),
                   max_pool=max(layer.pool for layer in layers), max_size=max(sizes),
                   lanes=lanes, code_bits=code_bits,
                   depth=depth if depth is not None else 2 * max(words, default=1),
                   thr_depth=max(channels, sum(layer.out_channels for layer in layers
                                               if layer.output != "scores")),
                   xnor=bool(xnor_next))

    @property
    def thresholds(self) -> int:
        """Thresholds per channel entry: ``2**max_out_bits - 1``."""
        return (1 << self.max_out_bits) - 1

    @property
    def word_bits(self) -> int:
        return self.lanes * self.code_bits

    @property
    def lane_slots(self) -> int:
        """Most lanes of a word in any format (``word_bits`` with XNOR, else ``lanes``)."""
        return self.word_bits if self.xnor else self.lanes

    @property
    def granularity(self) -> int:
        """Bits per write-enable bit of ``dst_write``."""
        return 1 if self.xnor else self.code_bits

    @property
    def addr_bits(self) -> int:
        return _bits(self.depth - 1)

    @property
    def thr_addr_bits(self) -> int:
        return _bits(self.thr_depth - 1)

    @property
    def channel_bits(self) -> int:
        return _bits(self.max_channels - 1)

    @property
    def size_bits(self) -> int:
        return _bits(self.max_size - 1)

    @property
    def lane_bits(self) -> int:
        """Bits of a lane index."""
        return _bits(self.lane_slots - 1)

    def max_lanes(self, code: CodeFormat) -> int:
        """Most lanes per word for codes of format ``code``."""
        return self.word_bits if code == CodeFormat.XNOR else self.lanes


class PostConfig(data.StructLayout):
    """The per-layer configuration of a ``PostProcessor`` (held from ``start`` until the
    layer's last element is written; ``layer_config`` computes it from the integer model).

    Fields
    ------
    kind : OutputKind
        Sign, levels or scores.
    out_bits : unsigned
        k: the layer uses thresholds ``0 .. 2**k - 2`` of each entry (sign: 1).
    out_min : signed(code_bits + 1)
        Levels: the code when no threshold is passed (``IntegerLayer.out_min``).
    pool : unsigned
        Max-pool window and stride P (0 or 1: no pooling).
    rows, cols : unsigned
        The pooled output size E', F' (``IntegerLayer.out_shape()[1:]``).
    channels : unsigned
        Output channels C of the layer.
    code : CodeFormat
        The next layer's input code format.
    lanes : unsigned
        The next layer's channels per word (XNOR: its lane count ``a_bits``).
    flatten : 1
        The next layer takes the output flattened channel-major (``[C*E'*F', 1, 1]``).
    dst_base : unsigned(addr_bits)
        Address of the next layer's first activation word.
    thr_base : unsigned(thr_addr_bits)
        Threshold-memory entry of channel 0.
    """

    def __init__(self, params: PostProcessorParams):
        p = params
        super().__init__({
            "kind": OutputKind,
            "out_bits": unsigned(_bits(p.max_out_bits)),
            "out_min": signed(p.code_bits + 1),
            "pool": unsigned(_bits(p.max_pool)),
            "rows": unsigned(_bits(p.max_size)),
            "cols": unsigned(_bits(p.max_size)),
            "channels": unsigned(_bits(p.max_channels)),
            "code": CodeFormat,
            "lanes": unsigned(_bits(p.lane_slots)),
            "flatten": unsigned(1),
            "dst_base": unsigned(p.addr_bits),
            "thr_base": unsigned(p.thr_addr_bits),
        })


class Element(data.StructLayout):
    """One accumulator on ``i_stream`` / ``o_stream``: ``acc`` of output channel ``m`` at
    output row ``e`` and column ``f`` (before pooling)."""

    def __init__(self, params: PostProcessorParams):
        super().__init__({"acc": signed(params.acc_bits), "m": unsigned(params.channel_bits),
                          "e": unsigned(params.size_bits), "f": unsigned(params.size_bits)})


class ThresholdEntry(data.StructLayout):
    """One channel's entry of the threshold memory.

    Fields
    ------
    thresholds : ``2**max_out_bits - 1`` x signed(thr_bits)
        Level i passes when ``acc >= thresholds[i]``, or where ``flip`` when ``acc <
        thresholds[i]`` (the model's ``T + 1``: ``acc <= T``), so one comparator serves both
        directions; a constant channel's count is ``thresholds[0]`` itself.
    flip : 1
        The comparisons are reversed (negative batch-norm gain); pooling takes the minimum.
    constant : 1
        The output does not depend on the accumulator.
    """

    def __init__(self, params: PostProcessorParams):
        super().__init__({
            "thresholds": data.ArrayLayout(signed(params.thr_bits), params.thresholds),
            "flip": unsigned(1), "constant": unsigned(1)})


class ThresholdWrite(wiring.Signature):
    """The threshold memory's write port, seen from the writer: ``data`` into entry
    ``addr`` in a cycle with ``en`` high."""

    def __init__(self, params: PostProcessorParams):
        super().__init__({"en": Out(1), "addr": Out(params.thr_addr_bits),
                          "data": Out(ThresholdEntry(params))})


class BufferWrite(wiring.Signature):
    """A write port of the destination buffer, seen from the post-processor: ``data`` into
    word ``addr``, bit group ``g`` (``granularity`` bits) only where ``en[g]`` is high."""

    def __init__(self, params: PostProcessorParams):
        super().__init__({"en": Out(params.word_bits // params.granularity),
                          "addr": Out(params.addr_bits), "data": Out(params.word_bits)})


class BufferRead(wiring.Signature):
    """A synchronous read port of the destination buffer, seen from the post-processor:
    word ``addr`` on ``data`` the cycle after ``en`` (transparent or not)."""

    def __init__(self, params: PostProcessorParams):
        super().__init__({"en": Out(1), "addr": Out(params.addr_bits),
                          "data": In(params.word_bits)})


def setup_cycles(config: dict) -> int:
    """Cycles from the cycle ``start`` is high to the first cycle ``i_stream.ready`` is
    high: ``F' P + E' P + C + 1`` (``P = max(pool, 1)``), one per table entry."""
    pool = max(int(config["pool"]), 1)
    return (int(config["cols"]) + int(config["rows"])) * pool + int(config["channels"]) + 1


def _decode(m: Module, value, count: int, name: str):
    """``(eq, ge)``: for k in ``range(count)``, ``eq[k] = (k == value)`` and ``ge[k] = (k >=
    value)``, as lists of 1-bit values. Decoded three bits at a time with switches (small
    look-up tables, no carry chains); the high part recursively."""
    low = min(3, len(value))
    n_low = 1 << low
    lo_eq, lo_ge = Signal(n_low, name=f"{name}_eq{low}"), Signal(n_low, name=f"{name}_ge{low}")
    with m.Switch(value[:low]):
        for v in range(n_low):
            with m.Case(v):
                m.d.comb += [lo_eq.eq(1 << v), lo_ge.eq(((1 << n_low) - 1) & ~((1 << v) - 1))]
    if len(value) == low:
        return [lo_eq[k] for k in range(count)], [lo_ge[k] for k in range(count)]
    hi_eq, hi_ge = _decode(m, value[low:], -(-count // n_low), f"{name}_hi")
    eq, ge = [], []
    for k in range(count):
        h, lo = divmod(k, n_low)
        eq.append(hi_eq[h] & lo_eq[lo])
        ge.append((hi_ge[h] & ~hi_eq[h]) | (hi_eq[h] & lo_ge[lo]))
    return eq, ge


class PostProcessor(wiring.Component):
    """Thresholds, max-pool after thresholding, packing into the next layer's words, raw
    scores (see the module docstring for the datapath, latency and golden model).

    Parameters
    ----------
    params : PostProcessorParams

    Members
    -------
    config : In(PostConfig)
        The layer's configuration, held from ``start`` until ``busy`` falls.
    start : In(1)
        Pulse before each layer: fills the address tables (``setup_cycles``), during which
        ``i_stream`` is not ready.
    busy : Out(1)
        High while the tables fill or an element is still on its way to the buffer.
    thr_write : In(ThresholdWrite)
        Loads the threshold memory, while ``i_stream`` transfers nothing (between layers: a
        write takes precedence over the read of the same cycle).
    i_stream : In(stream.Signature(Element))
        The layer's accumulators, in the accelerator's order (see the module docstring).
    o_stream : Out(stream.Signature(Element))
        The scores layer's elements, unchanged.
    dst_write : Out(BufferWrite)
        Lane-granular writes into the next layer's activation buffer.
    dst_read : Out(BufferRead)
        Read-back of the word a pooling window combines into.
    """

    def __init__(self, params: PostProcessorParams):
        if not isinstance(params, PostProcessorParams):
            raise TypeError(f"params must be a PostProcessorParams, not {params!r}")
        self._params = params
        super().__init__({
            "config": In(PostConfig(params)),
            "start": In(1),
            "busy": Out(1),
            "thr_write": In(ThresholdWrite(params)),
            "i_stream": In(stream.Signature(Element(params))),
            "o_stream": Out(stream.Signature(Element(params))),
            "dst_write": Out(BufferWrite(params)),
            "dst_read": Out(BufferRead(params)),
        })

    @property
    def params(self) -> PostProcessorParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        cfg = self.config
        ab, lb = p.addr_bits, p.lane_bits
        offset = data.StructLayout({"w": unsigned(ab), "l": unsigned(lb)})
        spatial = data.StructLayout({"w": unsigned(ab), "l": unsigned(lb), "first": 1})

        # ---- memories -------------------------------------------------------------------
        m.submodules.thresholds = thr_mem = Memory(shape=ThresholdEntry(p), depth=p.thr_depth,
                                                   init=[])
        m.submodules.col_table = col_mem = Memory(shape=spatial, depth=p.max_size, init=[])
        m.submodules.row_table = row_mem = Memory(shape=spatial, depth=p.max_size, init=[])
        m.submodules.channel_table = ch_mem = Memory(shape=offset, depth=p.max_channels,
                                                     init=[])
        thr_w = thr_mem.write_port()
        m.d.comb += [thr_w.en.eq(self.thr_write.en), thr_w.addr.eq(self.thr_write.addr),
                     thr_w.data.eq(self.thr_write.data)]
        thr_r, col_r, row_r, ch_r = (mem.read_port() for mem in (thr_mem, col_mem, row_mem,
                                                                  ch_mem))
        col_w, row_w, ch_w = (mem.write_port() for mem in (col_mem, row_mem, ch_mem))

        # ---- setup: the address tables, by counters and adders ----------------------------
        pool = Signal(unsigned(_bits(p.max_pool)))
        m.d.comb += pool.eq(Mux(cfg.pool > 1, cfg.pool, 1))
        idx = Signal(range(max(p.max_size, p.max_channels)))
        phase = Signal(range(max(p.max_pool, 1)))          # position inside a window
        pooled = Signal(range(p.max_size + 1))             # windows done in this phase
        acc_w, acc_l = Signal(ab), Signal(lb)               # the running offset
        f_step = Signal(offset)                             # F' (mixed radix)
        s_step = Signal(offset)                             # E' F' (mixed radix)
        end = Signal(offset)                                # C (or C E' F') (mixed radix)
        kept_cols = Signal(range(p.max_size + 1))           # F' P
        kept_rows = Signal(range(p.max_size + 1))           # E' P
        step_w, step_l, carry_w = Signal(ab), Signal(lb), Signal(ab)
        lane_sum = Signal(lb + 1)
        next_w, next_l = Signal(ab), Signal(lb)
        m.d.comb += lane_sum.eq(acc_l + step_l)
        carry = lane_sum >= cfg.lanes
        m.d.comb += [next_l.eq(Mux(carry, lane_sum - cfg.lanes, lane_sum)),
                     next_w.eq(acc_w + step_w + Mux(carry, carry_w, 0))]
        window_end = phase == pool - 1
        ready, filling = Signal(), Signal()

        def restart(m):
            m.d.sync += [idx.eq(0), phase.eq(0), pooled.eq(0), acc_w.eq(0), acc_l.eq(0)]

        def advance(m, count_to, on_end):
            """One spatial table entry written; step the offset at each window's end."""
            m.d.sync += idx.eq(idx + 1)
            with m.If(window_end):
                m.d.sync += [phase.eq(0), pooled.eq(pooled + 1), acc_w.eq(next_w),
                             acc_l.eq(next_l)]
                with m.If(pooled == count_to - 1):
                    on_end()
            with m.Else():
                m.d.sync += phase.eq(phase + 1)

        def on_start(m):
            """A new layer at any time (the last assignments win)."""
            with m.If(self.start):
                restart(m)
                m.next = "COLS"

        with m.FSM(name="setup"):
            with m.State("IDLE"):
                on_start(m)
            with m.State("COLS"):
                m.d.comb += filling.eq(1)
                m.d.comb += [step_w.eq(~cfg.flatten), step_l.eq(cfg.flatten), carry_w.eq(1),
                             col_w.en.eq(1), col_w.addr.eq(idx),
                             col_w.data.eq(Cat(acc_w, acc_l, phase == 0))]

                def cols_done():
                    m.d.sync += [f_step.w.eq(next_w), f_step.l.eq(next_l),
                                 kept_cols.eq(idx + 1)]
                    restart(m)
                    m.next = "ROWS"
                advance(m, cfg.cols, cols_done)
                on_start(m)
            with m.State("ROWS"):
                m.d.comb += filling.eq(1)
                m.d.comb += [step_w.eq(f_step.w), step_l.eq(f_step.l), carry_w.eq(1),
                             row_w.en.eq(1), row_w.addr.eq(idx),
                             row_w.data.eq(Cat(acc_w, acc_l, phase == 0))]

                def rows_done():
                    m.d.sync += [s_step.w.eq(next_w), s_step.l.eq(next_l),
                                 kept_rows.eq(idx + 1)]
                    restart(m)
                    m.next = "CHANNELS"
                advance(m, cfg.rows, rows_done)
                on_start(m)
            with m.State("CHANNELS"):
                m.d.comb += filling.eq(1)
                # flatten: += E'F' (mixed radix); else the next lane, a full word adding E'F'
                m.d.comb += [step_w.eq(Mux(cfg.flatten, s_step.w, 0)),
                             step_l.eq(Mux(cfg.flatten, s_step.l, 1)),
                             carry_w.eq(Mux(cfg.flatten, 1, s_step.w)),
                             ch_w.en.eq(1), ch_w.addr.eq(idx), ch_w.data.eq(Cat(acc_w, acc_l))]
                m.d.sync += [idx.eq(idx + 1), acc_w.eq(next_w), acc_l.eq(next_l)]
                with m.If(idx == cfg.channels - 1):
                    m.d.sync += [end.w.eq(next_w), end.l.eq(next_l)]
                    m.next = "RUN"
                on_start(m)
            with m.State("RUN"):
                m.d.comb += ready.eq(1)
                on_start(m)

        scores = cfg.kind == OutputKind.SCORES
        payload = self.i_stream.payload
        out = self.o_stream
        m.d.comb += self.i_stream.ready.eq(ready & (~scores | ~out.valid | out.ready))
        accept = self.i_stream.valid & self.i_stream.ready

        # ---- scores: one output register ------------------------------------------------
        with m.If(accept & scores):
            m.d.sync += [out.valid.eq(1), out.payload.eq(payload)]
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)

        # ---- stage 0: read the tables and the channel's thresholds ----------------------
        # (a read never meets a write of its memory, and saying so in the enables spares
        # Yosys the read-during-write emulation: registers and a bypass mux per port)
        for read, write in ((thr_r, thr_w), (col_r, col_w), (row_r, row_w), (ch_r, ch_w)):
            m.d.comb += read.en.eq(accept & ~write.en)
        m.d.comb += [thr_r.addr.eq(cfg.thr_base + payload.m), ch_r.addr.eq(payload.m),
                     row_r.addr.eq(payload.e), col_r.addr.eq(payload.f)]
        v1, acc1 = Signal(), Signal(signed(p.acc_bits))
        m.d.sync += [v1.eq(accept & ~scores & (payload.e < kept_rows) &
                           (payload.f < kept_cols)),
                     acc1.eq(payload.acc)]
        with m.If(self.start):
            m.d.sync += v1.eq(0)

        # ---- stage 1: thresholds, address, lane; read back where a window combines ------
        entry = thr_r.data
        cb = p.max_out_bits
        # a thresholded layer's accumulators fit thr_bits - 1 bits (layer_config checks)
        acc_t = acc1[:p.thr_bits].as_signed() if p.thr_bits < p.acc_bits else acc1
        passed = []
        for i in range(p.thresholds):
            t = entry.thresholds[i]
            hit = (acc_t >= t) ^ entry.flip    # flipped: acc < T + 1, i.e. acc <= T
            if (i + 1).bit_length() > 1:        # level i exists only when 2**out_bits > i + 1
                hit = hit & (cfg.out_bits >= (i + 1).bit_length())
            passed.append(hit)
        count1 = Signal(cb)
        m.d.comb += count1.eq(Mux(entry.constant, entry.thresholds[0][:cb],
                                  sum(passed[1:], passed[0])))
        lanes2x = Cat(Const(0, 1), cfg.lanes)
        total_l = Signal(lb + 2)
        m.d.comb += total_l.eq(ch_r.data.l + row_r.data.l + col_r.data.l)
        c1, c2 = total_l >= cfg.lanes, total_l >= lanes2x
        word = Signal(ab)
        lane1 = Signal(lb)
        m.d.comb += [word.eq(ch_r.data.w + row_r.data.w + col_r.data.w + c1 + c2),
                     lane1.eq(total_l - Mux(c2, lanes2x, Mux(c1, cfg.lanes, 0)))]
        addr1 = Signal(ab)
        m.d.comb += addr1.eq(cfg.dst_base + word)
        last_word = (Mux(cfg.flatten, word, ch_r.data.w) == end.w) & (end.l != 0)
        first1 = row_r.data.first & col_r.data.first
        m.d.comb += [self.dst_read.en.eq(v1 & ~first1), self.dst_read.addr.eq(addr1)]

        v2, count2, first2, flip2 = Signal(), Signal(cb), Signal(), Signal()
        addr2, lane2, pad_from2 = Signal(ab), Signal(lb), Signal(lb + 1)
        m.d.sync += [v2.eq(v1 & ~self.start), count2.eq(count1), first2.eq(first1),
                     flip2.eq(entry.flip), addr2.eq(addr1), lane2.eq(lane1),
                     pad_from2.eq(Mux(last_word, end.l, cfg.lanes))]

        # ---- stage 2: combine with the window so far, write -----------------------------
        code_bits = p.code_bits
        xnor = cfg.code == CodeFormat.XNOR
        pm1 = cfg.code == CodeFormat.PM1
        rdata = self.dst_read.data
        old_code = Signal(code_bits)
        lane_codes = p.word_bits // code_bits
        m.d.comb += old_code.eq(rdata.word_select(lane2[:_bits(lane_codes - 1)], code_bits))
        old_bit = rdata.bit_select(lane2, 1) if p.xnor else Const(0, 1)
        decoded = Signal(cb)
        with m.If(xnor):
            m.d.comb += decoded.eq(~old_bit)
        with m.Elif(pm1):
            m.d.comb += decoded.eq(~old_code[-1])
        with m.Else():
            m.d.comb += decoded.eq((old_code - cfg.out_min)[:cb])
        written = Signal(data.StructLayout({"valid": 1, "addr": ab, "lane": lb, "count": cb}))
        forward = written.valid & (written.addr == addr2) & (written.lane == lane2)
        old = Mux(forward, written.count, decoded)
        pooled_count = Signal(cb)
        if cb == 1:   # +/-1 codes: OR (max) / AND (min where flipped) of the count bits
            combined = Mux(flip2, old & count2, old | count2)
        else:
            combined = Mux((old > count2) ^ flip2, old, count2)   # max, or min where flipped
        m.d.comb += pooled_count.eq(Mux(first2, count2, combined))
        code = Signal(code_bits)
        with m.If(pm1):
            m.d.comb += code.eq(Mux(pooled_count[0], 1, -1))
        with m.Else():
            m.d.comb += code.eq(cfg.out_min + pooled_count)

        # lane-granular write: the element's lane, and zero codes into the unused lanes
        wr = self.dst_write
        m.d.comb += wr.addr.eq(addr2)
        own, pad = _decode(m, lane2, p.lane_slots, "own"), _decode(m, pad_from2, p.lane_slots,
                                                                      "pad")
        own, pad = own[0], pad[1]     # lane == lane2; lane >= pad_from2 (no channel there)
        bits = []
        enables = []
        for g in range(p.word_bits // p.granularity):
            lo = g * p.granularity
            lane = lo // code_bits
            mine, unused = own[lane], pad[lane]
            if p.xnor:
                mine, unused = Mux(xnor, own[lo], mine), Mux(xnor, pad[lo], unused)
            enables.append(v2 & (mine | unused))
        for b in range(p.word_bits):
            value = code[b % code_bits] & ~pad[b // code_bits]
            if p.xnor:
                value = Mux(xnor, ~pooled_count[0] & ~pad[b], value)
            bits.append(value)
        m.d.comb += [wr.en.eq(Cat(*enables)), wr.data.eq(Cat(*bits))]
        with m.If(v2):   # the last write, for the element right behind it
            m.d.sync += [written.valid.eq(1), written.addr.eq(addr2), written.lane.eq(lane2),
                         written.count.eq(pooled_count)]
        with m.If(self.start):
            m.d.sync += written.valid.eq(0)

        m.d.comb += self.busy.eq(filling | v1 | v2 | out.valid)
        return m


# ------------------------------------------------------------------------------------------
# Host side: the configuration and the threshold entries of a layer of ``model.deploy``
# ------------------------------------------------------------------------------------------

def conv_size(layer) -> tuple[int, int]:
    """``(E, F)``: a layer's output height and width before pooling."""
    _, h, w = layer.in_shape
    _, _, r, s = layer.weights.shape
    return (ops.conv_output_size(h, r, layer.stride, layer.padding),
            ops.conv_output_size(w, s, layer.stride, layer.padding))


def _fits(value, lo: int, hi: int) -> bool:
    return lo <= value <= hi


def layer_config(params: PostProcessorParams, layer, next_layer=None, *, lanes=None,
                 dst_base: int = 0, thr_base: int = 0) -> dict:
    """The ``PostConfig`` values of ``layer`` (a ``model.deploy.IntegerLayer``) feeding
    ``next_layer`` (None for the last layer), as a dict for ``ctx.set`` / ``PostConfig.const``.

    ``lanes`` (channels per word) defaults to the next layer's XNOR lane count for XNOR words
    and to ``params.lanes`` otherwise. Raises ``ValueError`` naming what does not fit.
    """
    p = params
    kind = {"sign": OutputKind.SIGN, "levels": OutputKind.LEVELS,
            "scores": OutputKind.SCORES}.get(layer.output)
    if kind is None:
        raise ValueError(f"output {layer.output!r} is not supported; allowed: sign, levels, "
                         "scores")
    pool = int(layer.pool)
    if kind == OutputKind.SCORES and pool > 1:
        raise ValueError(f"a scores layer with pool {pool} is not supported (its elements "
                         "pass through unpooled); allowed: pool 0")
    channels, rows, cols = layer.out_shape()
    e, f = conv_size(layer)
    checks = [("accumulator width", layer.accumulator_width, 1, p.acc_bits),
              ("channels", channels, 1, p.max_channels),
              ("output height before pooling", e, 1, p.max_size),
              ("output width before pooling", f, 1, p.max_size),
              ("pool", pool, 0, p.max_pool)]
    for name, value, lo, hi in checks:
        if not _fits(value, lo, hi):
            raise ValueError(f"layer {name} {value} is out of the post-processor's range "
                             f"[{lo}, {hi}]")
    if kind != OutputKind.SCORES and layer.accumulator_width + 1 > p.thr_bits:
        raise ValueError(f"layer accumulator width {layer.accumulator_width} needs thr_bits "
                         f">= {layer.accumulator_width + 1}, not {p.thr_bits}")
    out_bits, out_min, flatten = 1, 0, False
    if kind == OutputKind.SCORES:
        if next_layer is not None:
            raise ValueError("a scores layer is the last layer; it has no next layer")
        code, lanes = CodeFormat.UNSIGNED, 1   # unused
    else:
        if next_layer is None:
            raise ValueError(f"a {layer.output} layer needs the next layer (its input format)")
        flatten = bool(next_layer.flatten or next_layer.kind == "dense")
        if kind == OutputKind.SIGN:
            if next_layer.scheme == "xnor":
                code = CodeFormat.XNOR
                lanes = next_layer.a_bits if lanes is None else lanes
            else:
                code = CodeFormat.PM1
        else:
            out_bits, out_min = int(layer.out_bits), int(layer.out_min)
            code = CodeFormat.SIGNED if out_min < 0 else CodeFormat.UNSIGNED
        lanes = p.lanes if lanes is None else lanes
        want = channels * rows * cols if flatten else channels
        if next_layer.channels != want:
            raise ValueError(f"the next layer takes {next_layer.channels} channels, this "
                             f"layer gives {want}")
    return check_config(p, {"kind": kind, "out_bits": out_bits, "out_min": out_min,
                            "pool": pool, "rows": rows, "cols": cols, "channels": channels,
                            "code": code, "lanes": int(lanes), "flatten": int(flatten),
                            "dst_base": dst_base, "thr_base": thr_base})


def check_config(params: PostProcessorParams, config: dict) -> dict:
    """Check a ``PostConfig`` dict against ``params``; return it (``ValueError`` naming the
    first field out of range)."""
    p = params
    kind, code = OutputKind(config["kind"]), CodeFormat(config["code"])

    def need(name, lo, hi):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or not lo <= value <= hi:
            raise ValueError(f"config {name} must be an integer in [{lo}, {hi}], not "
                             f"{value!r}")
        return int(value)

    pool = need("pool", 0, p.max_pool)
    window = max(pool, 1)
    rows = need("rows", 1, p.max_size // window)
    cols = need("cols", 1, p.max_size // window)
    channels = need("channels", 1, p.max_channels)
    lanes = need("lanes", 1, p.max_lanes(code))
    flatten = need("flatten", 0, 1)
    if kind == OutputKind.SIGN:
        need("out_bits", 1, 1)
        if code not in (CodeFormat.XNOR, CodeFormat.PM1):
            raise ValueError(f"a sign output takes XNOR or PM1 codes, not {code.name}")
    elif kind == OutputKind.LEVELS:
        need("out_bits", 1, p.max_out_bits)
        if code not in (CodeFormat.UNSIGNED, CodeFormat.SIGNED):
            raise ValueError(f"a levels output takes UNSIGNED or SIGNED codes, not {code.name}")
    if kind != OutputKind.SCORES:
        if code == CodeFormat.XNOR and not p.xnor:
            raise ValueError("XNOR words need a post-processor built with xnor=True")
        if code == CodeFormat.PM1 and p.code_bits < 2:
            raise ValueError(f"PM1 codes need code_bits >= 2, not {p.code_bits}")
    if kind == OutputKind.LEVELS:
        signed_code = code == CodeFormat.SIGNED
        lo, hi = ((-(1 << (p.code_bits - 1)), (1 << (p.code_bits - 1)) - 1) if signed_code
                  else (0, (1 << p.code_bits) - 1))
        out_min = need("out_min", lo, hi)
        top = out_min + (1 << config["out_bits"]) - 1
        if top > hi:
            raise ValueError(f"codes {out_min}..{top} do not fit {p.code_bits}-bit "
                             f"{code.name.lower()} lanes")
    words = 0 if kind == OutputKind.SCORES else buffer_words(channels, rows, cols,
                                                              lanes=lanes, flatten=flatten)
    need("dst_base", 0, p.depth - words)
    need("thr_base", 0, p.thr_depth - (0 if kind == OutputKind.SCORES else channels))
    return dict(config)


def buffer_words(channels: int, rows: int, cols: int, *, lanes: int, flatten: bool) -> int:
    """Words of the next layer's input: ``ceil(C E' F' / lanes)`` flattened, else
    ``ceil(C / lanes) E' F'``."""
    if flatten:
        return -(-channels * rows * cols // lanes)
    return -(-channels // lanes) * rows * cols


def threshold_entries(params: PostProcessorParams, layer) -> list[dict]:
    """The ``ThresholdEntry`` values of ``layer``'s channels (``thr_base + m`` holds channel
    m), as dicts for ``ctx.set`` / ``ThresholdEntry.const``; none for a scores layer.

    A flipped channel's thresholds are stored plus one (``acc <= T`` is ``acc < T + 1``); a
    constant channel's entry holds its count (the number of thresholds every accumulator
    passes) in ``thresholds[0]``. Raises ``ValueError`` when a threshold does not fit
    ``thr_bits`` signed bits or a "constant" channel is not.
    """
    p = params
    if layer.output == "scores":
        return []
    th = np.asarray(layer.thresholds, dtype=np.int64)
    levels = th.shape[1]
    if levels > p.thresholds:
        raise ValueError(f"layer has {levels} thresholds per channel; the post-processor "
                         f"holds {p.thresholds} (max_out_bits {p.max_out_bits})")
    lo_t, hi_t = -(1 << (p.thr_bits - 1)), (1 << (p.thr_bits - 1)) - 1
    flip = np.asarray(layer.flip, dtype=bool)
    constant = np.asarray(layer.constant, dtype=bool)
    lo, hi = (int(v) for v in layer.acc_range)
    entries = []
    for c in range(th.shape[0]):
        row = th[c]
        if constant[c]:
            at_lo, at_hi = (int(np.sum((y <= row) if flip[c] else (y >= row)))
                            for y in (lo, hi))
            if at_lo != at_hi:
                raise ValueError(f"channel {c} is marked constant but its count is {at_lo} at "
                                 f"{lo} and {at_hi} at {hi}")
            fixed = at_lo
            values = [fixed] + [0] * (p.thresholds - 1)
        else:
            stored = row + flip[c]
            if stored.min() < lo_t or stored.max() > hi_t:
                bad = row[(stored < lo_t) | (stored > hi_t)][0]
                raise ValueError(f"channel {c} threshold {bad} does not fit {p.thr_bits} "
                                 f"signed bits; allowed: [{lo_t}, {hi_t}]")
            values = [int(v) for v in row + flip[c]] + [0] * (p.thresholds - levels)
        entries.append({"thresholds": values, "flip": int(flip[c]),
                        "constant": int(constant[c])})
    return entries
