"""The layer program compiler: a deployed integer model into a program for the network engine.

``hw.program`` defines the program's format and the engine's parameters (``EngineConfig``);
this module fills them in from a ``model.deploy.IntegerModel`` with the cycle model
(``sim.cycle_model``), which is why it lives beside it:

- ``engine_for_model``: the smallest engine (``EngineConfig``) of a given array size that
  runs a model: weight banks holding every layer, an activation buffer holding the largest
  layer's input and output side by side, psum banks, sums, counters and a post-processor
  (``hw.postproc.PostProcessorParams.for_model``) sized for it;
- ``compile_program``: the ``Program`` of a model on an engine: one ``LayerDescriptor`` per
  layer (the accelerator's configuration ``sim.cycle_model.config_values`` with the layer's
  places ``wb_base`` and ``in_base``, and the post-processor's ``PostConfig``), the header,
  the weight image (bank by bank) and the threshold entries; ``Program.beats``,
  ``Program.weight_words``, ``Program.input_words`` and ``Program.decode_scores`` are the
  words the engine's streams take and give;
- the fit check: ``compile_program`` refuses a model the engine cannot run with one
  ``ValueError`` line naming what does not fit and by how much;
- ``predict_program``: each layer's counters as the engine reports them.

Placement. Layer ``k``'s weights follow layer ``k - 1``'s in every weight bank (``wb_base``).
The engine has one activation buffer of ``in_depth`` words: even layers read their input at
address 0 and write their output (the next layer's input) at the top of the buffer
(``in_depth - out_words``); odd layers read at the top and write at 0. A layer's input and
output never overlap since ``in_words + out_words <= in_depth``, and layer 0's input, which
the host writes, starts at 0. Threshold entries: every thresholded layer's channels, in layer
order (``thr_base``).

Column split. A first layer of few input channels (an image's pixels: one) leaves most of
its mode's lanes (and PE rows) idle. The compiler splits its ``S`` filter columns into the
``k`` parts the cycle model finds fastest (``first_layer_split``; ``model.column_split``):
``C * k`` input channels of ``R x ceil(S / k)`` filters, the same sums, and the host sends
each image so split (``split_image``, in ``Program.input_words``). ``Program.compiled`` is
the model as run, ``Program.split`` its ``k``.

Modes. An engine has one datapath per kind of layer (``model_modes``; ``hw.schedule.Datapath``,
``AcceleratorConfig.modes``), all on one activation word: BinaryNet's binary first layer on
pixel codes runs as binary A8 with 4 lanes, its XNOR layers with 32 lanes. Each layer runs in
its mode (``layer_modes``; the configuration field ``mode``) with that mode's lanes; a
layer's output is packed for the next layer's mode, and the image's words for layer 0's.

Counters. The engine's core counts what the one-layer accelerator counts in its compute phase
and unload (``sim.cycle_model.predict``), except that no weight or input word arrives from the
host per layer (the one-layer accelerator's ``glb_writes`` counts them; ``offchip_words``
counts weights, inputs and outputs). Instead the post-processor's activation-buffer traffic
is counted (``postproc_traffic``): ``glb_reads`` one read-back per element that is not the
first of its pooling window, ``glb_writes`` one write per element, elements past the last
full window dropped and counted in neither; ``offchip_words`` is the last layer's scores
(0 for the other layers).

Command line: ``python -m sim.program MODEL.npz [--rows R --cols C --lanes L]
[--from-layer K]`` prints the engine, the header and each layer's descriptor and counters.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from hw.postproc import (OutputKind, PostProcessorParams, buffer_words, layer_config,
                         setup_cycles, threshold_entries)
from hw.program import (PROGRAM_VERSION, EngineConfig, descriptor_values, encode_beats,
                        engine_fingerprint, header_fields, layer_fields, program_beat_bits,
                        threshold_entry_words,
                        threshold_words)
from hw.schedule import (CONFIG_FIELDS, COUNTERS, LANES, AcceleratorConfig, Datapath,
                         config_limits, derived_counters)
from model import layer_file
from model.column_split import split_filter_columns, zero_weight_code
from model.deploy import IntegerLayer, IntegerModel
from model.shapes import LayerShape
from sim.cycle_model import (ArrayParams, Mapping, check_mappable, choose_mapping,
                             config_values, memory_depths, output_stream_order, predict,
                             weight_word_order)
from sim.column_split import choose_column_split
from sim.run_layer import lanes_for_words, layer_codes, pack_lanes

__all__ = ["LayerDescriptor", "Program", "engine_for_model", "compile_program", "image_cycles",
           "images_per_second", "layer_engine_cycles", "DEFAULT_ARRAY", "predict_program",
           "postproc_traffic", "layer_key", "layer_modes", "model_modes", "submodel", "report",
           "first_layer_split", "split_first_layer", "split_image", "main"]


# --------------------------------------------------------------------------------------------
# Layers as the engine's datapath sees them
# --------------------------------------------------------------------------------------------

def layer_key(layer: IntegerLayer) -> tuple:
    """``(scheme, a_bits, w_bits, codebook)`` of one lane of ``layer``: the datapath it needs
    (an ``xnor`` layer's packed words are 1-bit codes per lane)."""
    if layer.scheme == "xnor":
        return ("xnor", 1, 1, None)
    book = None if layer.codebook is None else tuple(int(v) for v in layer.codebook)
    return (layer.scheme, int(layer.a_bits), int(layer.w_bits), book)


def _describe(key: tuple) -> str:
    scheme, a_bits, w_bits, book = key
    return f"{scheme} A{a_bits} W{w_bits}" + ("" if book is None else f" codebook {list(book)}")


def _runs(mode: Datapath, key: tuple) -> bool:
    """Whether layers of ``key`` (``layer_key``) run in ``mode``: its key, or (not ``xnor``)
    the same scheme, weight width and codebook with wider activation codes. Integer codes
    keep their value in a wider code (sign- or zero-extended, as ``model.quant
    .to_unsigned_bits`` and the post-processor write them) and every product unit but XNOR's
    takes the code's value, so the sums are the same."""
    scheme, a_bits, w_bits, book = key
    return mode.key == key or (scheme != "xnor" and mode.a_bits > a_bits
                               and mode.key == (scheme, mode.a_bits, w_bits, book))


def layer_modes(model: IntegerModel, config: AcceleratorConfig) -> list[int]:
    """Each layer's datapath mode: an index into ``config.modes``.

    A layer runs in the mode of its ``layer_key``, else in the narrowest mode of its scheme,
    weight width and codebook with wider activation codes (``_runs``).
    ``ValueError`` (one line) naming the first layer no mode runs and the modes there are."""
    modes = config.modes
    out = []
    for k, layer in enumerate(model.layers):
        key = layer_key(layer)
        fits = [i for i, mode in enumerate(modes) if _runs(mode, key)]
        if not fits:
            raise ValueError(f"layer {k} ({_describe(key)}) does not run on any datapath of "
                             f"the engine; its modes: "
                             f"{'; '.join(d.describe() for d in modes)}")
        out.append(min(fits, key=lambda i: modes[i].a_bits))
    return out


def _mode_in(key: tuple, word: int) -> Datapath | None:
    """The datapath for layers of ``key`` on ``word``-bit activation words: as many lanes
    (``hw.schedule.LANES``) as its codes fill the word, codes (not ``xnor``'s) widened to
    the narrowest width that does (``_runs``); None when none does."""
    scheme, a_bits, w_bits, book = key
    for bits in range(a_bits, 33) if scheme != "xnor" else (a_bits,):
        if word % bits == 0 and word // bits in LANES:
            try:
                return Datapath(scheme, word // bits, bits, w_bits, book)
            except ValueError:
                return None
    return None


def model_modes(model: IntegerModel, lanes: int | None = None) -> tuple[Datapath, ...]:
    """The datapaths (``hw.schedule.Datapath``, mode 0 first) of an engine for ``model``.

    Layers of one datapath (``layer_key``): that one with ``lanes`` lanes (default: an
    ``xnor`` model's packed word, ``sim.run_layer.lanes_for_words``; 1 otherwise).

    Layers of several (e.g. BinaryNet: binary weights on pixel codes, then XNOR layers): one
    mode per kind, in the order the kinds first appear, all on one activation word (every
    mode's ``lanes * a_bits``, ``hw.schedule.check_modes``). The word is the narrowest that
    holds ``lanes`` (default 1) codes of the widest non-XNOR activations (by default also an
    XNOR layer's packed word) and that every kind fills with a lane count of
    ``hw.schedule.LANES``, activation codes other than XNOR's widened where that needs it
    (``_runs``): BinaryNet on the digits runs binary A6 as binary A8 with 4 lanes beside 32
    XNOR lanes. Kinds that widen to the same datapath share it (DoReFa-Net's A5 and A3
    layers). ``ValueError`` (one line) when no word up to 64 lanes of 32 bits fits every
    kind."""
    layers = model.layers
    keys = list(dict.fromkeys(layer_key(layer) for layer in layers))
    packed = [int(layer.a_bits) for layer in layers if layer.scheme == "xnor"]
    if len(keys) == 1:
        scheme, a_bits, w_bits, book = keys[0]
        if lanes is None:
            lanes = lanes_for_words(max(packed)) if scheme == "xnor" else 1
        return (Datapath(scheme, lanes, a_bits, w_bits, book),)
    widest = max(a_bits for scheme, a_bits, _, _ in keys if scheme != "xnor")
    need = (lanes or 1) * widest
    if lanes is None and packed:
        need = max(need, lanes_for_words(max(packed)))
    for word in range(need, LANES[-1] * 32 + 1):
        modes = [_mode_in(key, word) for key in keys]
        if all(modes):
            return tuple(dict.fromkeys(modes))
    raise ValueError(f"no activation word of at least {need} bits holds a whole number of "
                     f"lanes ({', '.join(map(str, LANES))}) of every datapath the layers "
                     f"need ({'; '.join(_describe(key) for key in keys)})")


def _record(layer: IntegerLayer, inputs=None) -> layer_file.Layer:
    """``layer`` as a ``LAYER.npz`` record (zero inputs unless given), for
    ``sim.run_layer.layer_codes``."""
    if inputs is None:
        inputs = np.zeros(layer.in_shape, dtype=np.int64)
    return layer_file.Layer(scheme=layer.scheme, weights=layer.weights, inputs=inputs,
                            stride=layer.stride, padding=layer.padding, a_bits=layer.a_bits,
                            w_bits=layer.w_bits, codebook=layer.codebook, groups=layer.groups)


def _next_flattens(nxt: IntegerLayer) -> bool:
    return bool(nxt.flatten or nxt.kind == "dense")


def postproc_traffic(layer: IntegerLayer) -> tuple[int, int]:
    """``(reads, writes)`` of the activation buffer by the post-processor for ``layer``'s
    elements (``hw.postproc``): an element in a row or column past the last full pooling
    window is dropped; every other one is written once (its lane, with the word's unused
    lanes), and read back first unless it is its window's first element. A scores layer's
    elements go to the output stream: none."""
    if layer.output == "scores":
        return 0, 0
    channels, rows, cols = layer.out_shape()
    pool = max(int(layer.pool), 1)
    writes = channels * rows * pool * cols * pool
    return writes - channels * rows * cols, writes


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a layer needs of any engine with a given array (no addresses yet)."""

    shape: LayerShape
    mapping: Mapping
    params: ArrayParams
    mode: int
    in_words: int
    out_words: int
    bank_words: int
    psum_words: int
    weights: np.ndarray          # codes [M, C, R, S], one per channel
    w_bits: int


def _plan(model: IntegerModel, k: int, params: ArrayParams, mode: int,
          next_lanes: int | None = None) -> _Plan:
    """Layer ``k`` run in ``mode`` with ``params``; its output packed ``next_lanes`` (the next
    layer's mode's lanes; default ``params.lanes``) to a word."""
    layers = model.layers
    layer = layers[k]
    try:
        w, a, _, w_bits = layer_codes(_record(layer))
        shape = LayerShape.of(w.shape, a.shape, layer.stride, layer.padding, layer.groups)
        check_mappable(shape, params)
        mp = choose_mapping(shape, params)
    except ValueError as exc:
        raise ValueError(f"layer {k} cannot run on the engine's array: {exc}") from None
    in_words, bank_words, psum_words = memory_depths(shape, params, mp)
    out_words = 0
    if k + 1 < len(layers):
        channels, rows, cols = layer.out_shape()
        out_words = buffer_words(channels, rows, cols, lanes=next_lanes or params.lanes,
                                 flatten=_next_flattens(layers[k + 1]))
    return _Plan(shape, mp, params, mode, in_words, out_words, bank_words, psum_words, w,
                 w_bits)


def _array(config: AcceleratorConfig, mode: int) -> ArrayParams:
    """The schedule parameters of layers run in ``mode`` (that mode's lanes)."""
    return ArrayParams.of(config, mode)


def _plans(model: IntegerModel, config: AcceleratorConfig, modes: list[int]) -> list[_Plan]:
    """Every layer's ``_Plan`` on ``config``, layer ``k`` in mode ``modes[k]``."""
    params = [_array(config, mode) for mode in modes]
    return [_plan(model, k, params[k], modes[k],
                  params[k + 1].lanes if k + 1 < len(modes) else None)
            for k in range(len(modes))]


def _counters(plan: _Plan, layer: IntegerLayer, last: bool) -> dict:
    """The layer's counters as the engine reports them, and the derived ones (module
    docstring)."""
    s = plan.shape
    raw = predict(s, plan.params, plan.mapping, weights=plan.weights, scheme=layer.scheme,
                  w_bits=plan.w_bits, codebook=layer.codebook)
    counts = {name: int(raw[name]) for name in COUNTERS}
    cfg = config_values(s, plan.params, plan.mapping)
    reads, writes = postproc_traffic(layer)
    counts["glb_reads"] += reads
    counts["glb_writes"] += writes - cfg["n_weights"] - cfg["n_inputs"]
    counts["offchip_words"] = s.M * s.E * s.F if last else 0
    counts.update(derived_counters(counts, lanes=plan.params.lanes, n_last=cfg["n_last"]))
    return counts


# --------------------------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerDescriptor:
    """One layer of a program.

    Members
    -------
    shape, mapping, params
        The layer on the array (``params``: its mode's lanes).
    mode : int
        The layer's datapath (index into the engine's modes).
    config : dict
        The accelerator's configuration fields (``hw.schedule.CONFIG_FIELDS``).
    post : dict
        The post-processor's (``hw.postproc.PostConfig``).
    in_words, out_words : int
        Activation words the layer reads (at ``in_base``) and writes (at ``post["dst_base"]``;
        0 for the last layer).
    bank_words : int
        Words per weight bank (at ``wb_base``).
    thr_entries : int
        Threshold entries (at ``post["thr_base"]``; 0 for the last layer).
    counters : dict
        The counters the engine reports for the layer (``predict_program``).
    """

    shape: LayerShape
    mapping: Mapping
    params: ArrayParams
    mode: int
    config: dict
    post: dict
    in_words: int
    out_words: int
    bank_words: int
    thr_entries: int
    counters: dict

    def values(self) -> dict[str, int]:
        """The descriptor's fields by name (``hw.program.layer_fields``)."""
        return descriptor_values(self.config, self.post)


@dataclasses.dataclass(frozen=True)
class Program:
    """A compiled layer program (``compile_program``).

    Members
    -------
    engine : hw.program.EngineConfig
    model : model.deploy.IntegerModel
    header : dict
        ``hw.program.HEADER_FIELDS`` values.
    layers : tuple of LayerDescriptor
    weights : object array [rows, bank_words]
        Each weight bank's words (Python ints).
    thresholds : tuple of dict
        ``hw.postproc.ThresholdEntry`` values, entry by entry.
    compiled : model.deploy.IntegerModel
        The model the layers run: ``split_first_layer(model, split)``.
    split : int
        The parts layer 0's filter columns are split into (``first_layer_split``; 1: none).
    """

    engine: EngineConfig
    model: IntegerModel
    header: dict
    layers: tuple
    weights: np.ndarray
    thresholds: tuple
    compiled: IntegerModel
    split: int

    def beats(self) -> list[int]:
        """The program stream's beats: the header, then each layer's descriptor."""
        beats = encode_beats(header_fields(self.engine), self.header)
        fields = layer_fields(self.engine)
        for d in self.layers:
            beats += encode_beats(fields, d.values())
        return beats

    def weight_words(self) -> list[int]:
        """The weight stream's words: every bank's ``bank_words`` words, bank by bank, then
        each threshold entry's words, low word first."""
        words = [int(v) for v in self.weights.ravel()]
        for entry in self.thresholds:
            words += threshold_words(self.engine, entry)
        return words

    def input_words(self, image_codes) -> list[int]:
        """The input stream's words for one image: its pixel codes ``[C, H, W]`` as layer
        0's input codes (``IntegerLayer.encode_inputs``), one channel per lane, packed
        ``lanes`` to a word (``sim.run_layer.pack_lanes``) at the width of layer 0's mode
        (codes widened by value), channel-word major."""
        m = self.model
        x = np.asarray(image_codes)
        if x.shape != tuple(m.input_shape):
            raise ValueError(f"an image must be [{', '.join(map(str, m.input_shape))}] codes, "
                             f"not shape {list(x.shape)}")
        if not np.issubdtype(x.dtype, np.integer) or x.min() < m.pixel_min \
                or x.max() > m.pixel_max:
            raise ValueError(f"image codes must be integers in [{m.pixel_min}, "
                             f"{m.pixel_max}]")
        x = split_image(m.layers[0], self.split, x)
        first = self.compiled.layers[0]
        _, a, _, _ = layer_codes(_record(first, first.encode_inputs(x[None])[0]))
        mode = self.engine.accelerator.modes[self.layers[0].mode]
        return [int(v) for v in pack_lanes(a, mode.a_bits, mode.lanes).ravel()]

    def decode_scores(self, words) -> np.ndarray:
        """The last layer's sums ``[classes]`` (int64) from the output stream's words (in the
        array's output order, ``sim.cycle_model.output_stream_order``; signed ``acc_bits``
        or their two's-complement bit patterns)."""
        d = self.layers[-1]
        s = d.shape
        words = [int(w) for w in words]
        if len(words) != self.header["scores"]:
            raise ValueError(f"{len(words)} score words; the program gives "
                             f"{self.header['scores']}")
        bits = self.engine.accelerator.acc_bits
        half = 1 << (bits - 1)
        values = np.array([((w + half) & ((1 << bits) - 1)) - half for w in words],
                          dtype=np.int64)
        out = np.zeros(s.M * s.E * s.F, dtype=np.int64)
        out[output_stream_order(s, d.params, d.mapping)] = values
        return out.reshape(s.M, s.E * s.F)[:, 0] if s.E * s.F == 1 else out.reshape(
            s.M, s.E, s.F)


def predict_program(program: Program) -> list[dict]:
    """Each layer's counters as the engine reports them (``hw.schedule.COUNTERS``), with the
    derived ``macs``, ``rf_reads`` and ``rf_writes`` (the layer's lanes)."""
    return [dict(d.counters) for d in program.layers]


# --------------------------------------------------------------------------------------------
# The fit check and the compiler
# --------------------------------------------------------------------------------------------

def _refuse(what: str, need: int, have: int) -> ValueError:
    return ValueError(f"the model does not fit the engine: {what}: {need} needed, {have} "
                      f"available ({need - have} over)")


def compile_program(model: IntegerModel, engine: EngineConfig) -> Program:
    """The program that runs ``model`` on ``engine`` (see the module docstring).

    Raises ``ValueError`` with one line naming what does not fit and by how much: layers
    over ``max_layers``, a layer the engine's datapath or array cannot run, weight bank
    words, threshold entries, a layer's activation words (input and output) or psum words,
    its sums' width, a layer the post-processor cannot serve, a configuration field over
    its limit or a counter over ``counter_bits``.
    """
    if not isinstance(model, IntegerModel):
        raise TypeError(f"model must be a model.deploy.IntegerModel, not {model!r}")
    if not isinstance(engine, EngineConfig):
        raise TypeError(f"engine must be an EngineConfig, not {engine!r}")
    a, pp = engine.accelerator, engine.post
    split = first_layer_split(model, a)
    given, model = model, split_first_layer(model, split)
    layers = model.layers
    n = len(layers)
    if n > engine.max_layers:
        raise _refuse("layers", n, engine.max_layers)
    try:
        modes = layer_modes(model, a)
    except ValueError as exc:
        raise ValueError(f"the model does not fit the engine: {exc}") from None
    plans = _plans(model, a, modes)
    bank_words = sum(p.bank_words for p in plans)
    if bank_words > a.wb_depth:
        raise _refuse("weight words per bank", bank_words, a.wb_depth)
    thresholded = [layer.out_channels for layer in layers if layer.output != "scores"]
    if sum(thresholded) > pp.thr_depth:
        raise _refuse("threshold entries", sum(thresholded), pp.thr_depth)
    for k, (p, layer) in enumerate(zip(plans, layers)):
        if p.in_words + p.out_words > a.in_depth:
            raise _refuse(f"activation words of layer {k} ({p.in_words} in, {p.out_words} "
                          "out)", p.in_words + p.out_words, a.in_depth)
        if p.psum_words > a.pb_depth:
            raise _refuse(f"psum words per bank of layer {k}", p.psum_words, a.pb_depth)
        if layer.accumulator_width > a.acc_bits:
            raise _refuse(f"sum bits of layer {k}", layer.accumulator_width, a.acc_bits)

    limits = config_limits(a)
    descriptors, entries = [], []
    wb_base = thr_base = 0
    depth = a.in_depth
    for k, (p, layer) in enumerate(zip(plans, layers)):
        last = k == n - 1
        nxt = None if last else layers[k + 1]
        if not last and p.out_words != plans[k + 1].in_words:
            raise AssertionError(f"layer {k}'s output words disagree with layer {k + 1}'s "
                                 "input")   # pragma: no cover
        in_base = 0 if k % 2 == 0 else depth - p.in_words
        dst_base = 0 if last or k % 2 else depth - p.out_words
        layer_thr = 0 if layer.output == "scores" else layer.out_channels
        lanes = p.params.lanes if last else plans[k + 1].params.lanes
        if not last and nxt.scheme != "xnor" and \
                a.modes[modes[k + 1]].a_bits != pp.code_bits:
            raise ValueError(f"the model does not fit the engine: the post-processor writes "
                             f"{pp.code_bits}-bit codes, layer {k + 1} takes "
                             f"{a.modes[modes[k + 1]].a_bits}-bit codes (its mode)")
        try:
            post = layer_config(pp, layer, nxt, lanes=lanes, dst_base=dst_base,
                                thr_base=thr_base if layer_thr else 0)
            entries += threshold_entries(pp, layer)
        except ValueError as exc:
            raise ValueError(f"the model does not fit the engine: the post-processor cannot "
                             f"serve layer {k}: {exc}") from None
        config = config_values(p.shape, p.params, p.mapping)
        config.update(wb_base=wb_base, in_base=in_base)
        if "mode" in CONFIG_FIELDS:
            config["mode"] = p.mode
        for name in CONFIG_FIELDS:
            if config[name] > limits[name]:
                raise ValueError(f"the model does not fit the engine: layer {k}'s "
                                 f"configuration field {name} ({CONFIG_FIELDS[name]}) is "
                                 f"{config[name]}; allowed: at most {limits[name]} "
                                 f"({config[name] - limits[name]} over)")
        counters = _counters(p, layer, last)
        top = max(COUNTERS, key=lambda name: counters[name])
        peak = counters[top]
        if peak >= 1 << a.counter_bits:
            raise ValueError(f"the model does not fit the engine: layer {k}'s counter {top} "
                             f"would reach {peak}; allowed: below 2**{a.counter_bits} "
                             f"(counter_bits {a.counter_bits}, {peak.bit_length()} needed)")
        descriptors.append(LayerDescriptor(p.shape, p.mapping, p.params, p.mode, config, post,
                                           p.in_words, p.out_words, p.bank_words, layer_thr,
                                           counters))
        wb_base += p.bank_words
        thr_base += layer_thr
    weights = np.zeros((a.rows, bank_words), dtype=object)
    for d, p in zip(descriptors, plans):
        _place_weights(weights, d, p)
    last = descriptors[-1]
    header = {"fingerprint": engine_fingerprint(engine), "version": PROGRAM_VERSION,
              "layers": n, "bank_words": bank_words, "thr_entries": len(entries),
              "input_words": descriptors[0].in_words,
              "scores": last.shape.M * last.shape.E * last.shape.F}
    program = Program(engine, given, header, tuple(descriptors), weights, tuple(entries),
                      model, split)
    image = image_cycles(program)
    if image >= 1 << a.counter_bits:
        raise ValueError(f"the model does not fit the engine: an image takes "
                         f"{image} cycles; allowed: below 2**{a.counter_bits} (counter_bits "
                         f"{a.counter_bits}, {image.bit_length()} needed)")
    return program


#: The engine's steps around a layer (``hw.engine.NetworkEngine``), in cycles beyond the
#: descriptor's beats, the wait for the core and the post-processor, the compute phase and
#: the unload: the last beat reaching the layer register, the setup strobe, the compute
#: phase's last cycle, and the counters saved one per cycle.
LAYER_STEPS = 1 + 1 + 1 + len(COUNTERS)

#: From the unloader's start to the post-processor's last write: one sum per cycle plus this
#: many (the unloader's read, its output register, the post-processor's threshold look-up
#: and its write); a scores layer's last sum leaves a cycle earlier, on the output stream.
UNLOAD_LATENCY = 4


def layer_engine_cycles(d: LayerDescriptor, engine: EngineConfig, last: bool) -> int:
    """Cycles the engine spends on layer ``d``: its descriptor's beats, then the wait until
    the input loader has walked its rows (``rows`` cycles) and the post-processor has filled
    its tables (``hw.postproc.setup_cycles``), the compute phase (``sim.cycle_model``'s
    cycles), the unload (one sum per cycle) and the fixed ``LAYER_STEPS``."""
    beats = len(encode_beats(layer_fields(engine), d.values()))
    wait = max(setup_cycles(d.post), engine.accelerator.rows)
    unload = d.shape.M * d.shape.E * d.shape.F + UNLOAD_LATENCY - (1 if last else 0)
    return beats + wait + d.counters["cycles"] + unload + LAYER_STEPS


def image_cycles(program: Program) -> int:
    """The engine's ``image_cycles`` counter for one image: from the cycle after its last
    input word to its last layer's saved counters, less the cycles in which a score waited
    for the host (the time the image takes with the output stream always ready)."""
    n = len(program.layers)
    return sum(layer_engine_cycles(d, program.engine, k == n - 1)
               for k, d in enumerate(program.layers))


def images_per_second(program: Program, clock_hz: float) -> float:
    """Images per second at ``clock_hz``: each image's input words, then its layers
    (``image_cycles``); the scores leave while the last layer unloads."""
    return clock_hz / (program.header["input_words"] + image_cycles(program))


def _place_weights(image: np.ndarray, d: LayerDescriptor, p: _Plan) -> None:
    """Layer ``d``'s weight words into ``image`` [rows, bank_words]: the one-layer
    accelerator's stream order (``sim.cycle_model.weight_word_order``), word ``n`` of
    reduction unit ``u = n // MqS`` into bank ``u % rows`` at ``wb_base + (u // rows) * MqS
    + n % MqS``."""
    rows = image.shape[0]
    lanes = p.params.lanes
    packed = np.moveaxis(pack_lanes(np.moveaxis(p.weights, 1, 0), p.w_bits, lanes), 0, 1)
    words = packed.ravel()[weight_word_order(p.shape, p.params, p.mapping)]
    mqs = d.config["MqS"]
    unit, j = np.divmod(np.arange(len(words)), mqs)
    banks = unit % rows
    addrs = d.config["wb_base"] + (unit // rows) * mqs + j
    for bank, addr, word in zip(banks, addrs, words):
        image[bank, addr] = int(word)


# --------------------------------------------------------------------------------------------
# An engine for a model
# --------------------------------------------------------------------------------------------

#: The engine's array when none is asked for (``mulfree run-model``, ``mulfree build --model``):
#: rows x cols.
DEFAULT_ARRAY = (2, 2)


def _post_codes(model: IntegerModel, config: AcceleratorConfig, modes: list[int]) -> int:
    """Bits of the codes the post-processor writes: the activation codes of the modes of the
    layers after the first that take no XNOR words (all one width), else 1 where they all
    take XNOR words, else mode 0's. ``ValueError`` (one line) when those layers' modes have
    codes of different widths."""
    widths = {}
    for k, layer in enumerate(model.layers[1:], 1):
        if layer.scheme != "xnor":
            widths.setdefault(config.modes[modes[k]].a_bits, k)
    if len(widths) > 1:
        (a, j), (b, k) = list(widths.items())[:2]
        raise ValueError(f"layers {j} and {k} take {a}-bit and {b}-bit codes in their modes; "
                         "allowed: one code width for every layer after the first that takes "
                         "no XNOR words (the post-processor writes one)")
    if widths:
        return next(iter(widths))
    if len(model.layers) > 1 or config.scheme == "xnor":
        return 1
    return config.a_bits


def split_first_layer(model: IntegerModel, k: int) -> IntegerModel:
    """The same network with its first layer's ``S`` filter columns split into ``k`` parts
    (``model.column_split``): ``C * k`` channels of ``R x ceil(S / k)`` filters over shifted,
    explicitly padded copies of the image (``split_image``), the same sums bit for bit.
    ``k = 1``: ``model`` itself."""
    if k == 1:
        return model
    first = model.layers[0]
    codes, weights = split_filter_columns(
        np.zeros(first.in_shape, dtype=np.int64), first.weights, k, scheme=first.scheme,
        stride=first.stride, padding=first.padding, w_bits=first.w_bits,
        codebook=first.codebook)
    layer = dataclasses.replace(first, weights=weights, padding=0, in_shape=codes.shape,
                                channels=codes.shape[0])
    return dataclasses.replace(model, layers=[layer, *model.layers[1:]],
                               input_shape=layer.in_shape)


def split_image(first: IntegerLayer, k: int, codes) -> np.ndarray:
    """An image's codes ``[C, H, W]`` for ``first`` (a model's first layer) as those of its
    first layer split into ``k`` parts (``split_first_layer``)."""
    if k == 1:
        return np.asarray(codes)
    return split_filter_columns(codes, first.weights, k, scheme=first.scheme,
                                stride=first.stride, padding=first.padding,
                                w_bits=first.w_bits, codebook=first.codebook)[0]


def first_layer_split(model: IntegerModel, config: AcceleratorConfig) -> int:
    """How many parts the engine splits the first layer's filter columns into on ``config``:
    the fastest by the cycle model (``sim.column_split.choose_column_split`` with layer 0's
    mode's lanes); 1 for a layer that is not a convolution of one group, an ``xnor`` layer (its
    codes are packed words) or a model no mode of ``config`` runs (the caller refuses it)."""
    first = model.layers[0]
    if first.kind != "conv" or first.scheme == "xnor" or first.groups != 1 or first.flatten:
        return 1
    try:
        params = _array(config, layer_modes(model, config)[0])
        w, a, _, _ = layer_codes(_record(first))
        shape = LayerShape.of(w.shape, a.shape, first.stride, first.padding)
        zero = zero_weight_code(first.scheme, first.w_bits, first.codebook)
        return choose_column_split(shape, params, zero_weight=zero is not None).k
    except ValueError:
        return 1


def engine_for_model(model: IntegerModel, *, rows: int, cols: int, lanes: int | None = None,
                     filter_spad: int = 32, ifmap_spad: int = 32, tree_stages: int = 0,
                     counter_bits: int | None = None,
                     max_layers: int | None = None, counters: bool = True,
                     builtin: bool = False) -> EngineConfig:
    """The smallest engine with a ``rows`` x ``cols`` array that runs ``model``.

    The datapaths are ``model_modes(model, lanes)`` (one mode per kind of layer, the first
    layer's as mode 0; each layer's mode is ``layer_modes``'); ``wb_depth`` holds every
    layer's weight words per bank, ``in_depth`` the largest input and output of a layer side
    by side (the post-processor's depth), ``pb_depth`` the largest layer's psum words per
    bank, ``acc_bits`` the widest layer's sums, ``counter_bits`` (default) the largest count
    of any layer and at least twice the image's compute and unload cycles, ``max_layers``
    (default) the model's layers; the post-processor is ``PostProcessorParams.for_model`` on
    the accelerator's activation word, writing the codes of the layers' modes (``_post_codes``).
    The first layer is sized with its filter columns split as ``compile_program`` splits
    them (``first_layer_split``).
    ``counters``: per-layer counters (``EngineConfig.counters``); ``builtin``: the model's
    program built into the engine (``EngineConfig.builtin``: no program memory, every
    descriptor field a constant of the logic; the engine then runs this model only).
    ``ValueError`` (one line) when a layer cannot run on such an engine.
    """
    first, *more = model_modes(model, lanes)
    probe = AcceleratorConfig(scheme=first.scheme, rows=rows, cols=cols, lanes=first.lanes,
                              a_bits=first.a_bits, w_bits=first.w_bits, acc_bits=64,
                              filter_spad=filter_spad, ifmap_spad=ifmap_spad,
                              tree_stages=tree_stages, codebook=first.codebook,
                              more_modes=tuple(more))
    given = model
    model = split_first_layer(model, first_layer_split(model, probe))  # as the engine runs it
    layers = model.layers
    modes = layer_modes(model, probe)
    plans = _plans(model, probe, modes)
    if counter_bits is None:
        counts = [_counters(p, layer, k == len(layers) - 1)
                  for k, (p, layer) in enumerate(zip(plans, layers))]
        peak = max(max(c[name] for name in COUNTERS) for c in counts)
        image = sum(c["cycles"] + p.shape.M * p.shape.E * p.shape.F
                    for c, p in zip(counts, plans))
        counter_bits = max(8, peak.bit_length(),
                           (2 * image + 64 * len(layers)).bit_length())
    in_depth = max(p.in_words + p.out_words for p in plans)
    acc_bits = max(probe.min_acc_bits, *(layer.accumulator_width for layer in layers))
    accelerator = probe.replace(acc_bits=acc_bits, in_depth=in_depth,
                                wb_depth=sum(p.bank_words for p in plans),
                                pb_depth=max(p.psum_words for p in plans),
                                counter_bits=counter_bits)
    code_bits = _post_codes(model, accelerator, modes)
    post = PostProcessorParams.for_model(model, lanes=accelerator.a_word_bits // code_bits,
                                         code_bits=code_bits, depth=in_depth)
    engine = EngineConfig(accelerator, post, max_layers or len(layers), counters=counters)
    program = compile_program(given, engine)   # every other limit (``ValueError`` if one is hit)
    if builtin:
        engine = dataclasses.replace(engine, builtin=tuple(program.beats()))
    return engine


# --------------------------------------------------------------------------------------------
# Part of a model, and the command line
# --------------------------------------------------------------------------------------------

def submodel(model: IntegerModel, start: int) -> IntegerModel:
    """Layers ``start`` onwards of ``model`` as a model of their own: its input is what
    layer ``start - 1`` gives (+/-1 after a sign output, ``out_min`` and up after levels),
    in the unflattened shape ``layer start - 1`` outputs."""
    layers = model.layers
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < len(layers):
        raise ValueError(f"the first layer must be an integer in [0, {len(layers) - 1}], not "
                         f"{start!r}")
    if start == 0:
        return model
    prev = layers[start - 1]
    if prev.output == "sign":
        lo, hi = -1, 1
    else:
        lo, hi = int(prev.out_min), int(prev.out_min) + (1 << int(prev.out_bits)) - 1
    return IntegerModel(list(layers[start:]), tuple(int(v) for v in prev.out_shape()),
                        pixel_max=hi, classes=model.classes, meta=dict(model.meta),
                        pixel_min=lo)


def report(program: Program) -> list[str]:
    """The program in lines: the engine, the header, each layer's descriptor and counters."""
    e = program.engine
    a, pp = e.accelerator, e.post
    fields = layer_fields(e)
    lines = [f"engine: {a.rows}x{a.cols} array, modes "
             f"{'; '.join(f'{k}: {d.describe()}' for k, d in enumerate(a.modes))}, sums "
             f"{a.acc_bits} bits, counters {a.counter_bits} bits",
             f"  weight banks {a.rows} x {a.wb_depth} words of {a.w_word_bits} bits, "
             f"activation buffer {a.in_depth} words of {a.a_word_bits} bits, psum banks "
             f"{a.cols} x {a.pb_depth}",
             f"  post-processor: {pp.thr_depth} threshold entries of "
             f"{threshold_entry_words(e)} "
             f"words, up to {pp.max_channels} channels, pool {pp.max_pool}",
             f"  program: {len(program.beats())} beats of {program_beat_bits(e)} bits "
             f"(header {len(header_fields(e))}, {len(fields)} per layer), "
             f"{len(program.weight_words())} weight-stream words of {a.w_word_bits} bits",
             "header: " + ", ".join(f"{k} {v}" for k, v in program.header.items())]
    if e.builtin is not None or not e.counters:
        lines.append("  " + ", ".join(
            (["program built into the logic"] if e.builtin is not None else [])
            + ([] if e.counters else ["no per-layer counters (the image's cycles only)"])))
    if program.split > 1:
        first = program.model.layers[0]
        lines.append(f"  layer 0's {first.weights.shape[3]} filter columns split into "
                     f"{program.split} parts (the host sends each image split)")
    for k, d in enumerate(program.layers):
        s, mp = d.shape, d.mapping
        c = d.counters
        kind = OutputKind(d.post["kind"]).name.lower()
        lines.append(f"layer {k}: [{s.M}, {s.C}, {s.R}, {s.S}] on [{s.C}, {s.H}, {s.W}] -> "
                     f"{kind}; mode {d.mode}; mapping q={mp.q} p={mp.p} Fseg={mp.Fseg}; wb_base "
                     f"{d.config['wb_base']} ({d.bank_words} words per bank), in_base "
                     f"{d.config['in_base']} ({d.in_words} words), dst_base "
                     f"{d.post['dst_base']} ({d.out_words} words), thr_base "
                     f"{d.post['thr_base']} ({d.thr_entries} entries)")
        lines.append("  counters: " + ", ".join(f"{name} {c[name]:,}" for name in
                                                 (*COUNTERS, "macs")))
        lines.append(f"  post-processor setup {setup_cycles(d.post)} cycles")
    return lines


def main(argv=None) -> int:
    """``python -m sim.program MODEL.npz [--rows R --cols C --lanes L --from-layer K]``."""
    import argparse

    from model.deploy import load
    parser = argparse.ArgumentParser(prog="python -m sim.program",
                                     description="Compile a deployed model into a layer "
                                     "program for the smallest network engine that runs it.")
    parser.add_argument("model", help="a folded model (MODEL.npz, model.deploy.save)")
    parser.add_argument("--rows", type=int, default=3, help="PE rows (default 3)")
    parser.add_argument("--cols", type=int, default=4, help="PE columns (default 4)")
    parser.add_argument("--lanes", type=int, default=None,
                        help="MACs per PE per cycle (default: an xnor model's word, else 1); "
                             "with several datapaths, lanes of the widest non-XNOR codes "
                             "(sim.program.model_modes)")
    parser.add_argument("--from-layer", type=int, default=0,
                        help="compile layers K onwards (their input: what layer K-1 gives)")
    args = parser.parse_args(argv)
    try:
        model = load(args.model)
        if not isinstance(model, IntegerModel):
            raise ValueError(f"{args.model} is a float checkpoint; fold it first")
        model = submodel(model, args.from_layer)
        engine = engine_for_model(model, rows=args.rows, cols=args.cols, lanes=args.lanes)
        program = compile_program(model, engine)
    except ValueError as exc:
        print(f"python -m sim.program: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report(program)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
