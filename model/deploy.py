"""The integer deployment model: fold a trained quantized network into integer layers.

``fold(net, ...)`` turns a trained quantized ``Sequential`` (``model.nets``) into an
``IntegerModel``: a list of ``IntegerLayer`` records, each one conv or dense layer exactly as
the accelerator runs it, followed by its integer output stage:

- ``scheme``, ``weights`` (int codes ``[M, C / groups, R, S]`` in the ``model.quant`` encoding;
  a dense layer is ``R = S = 1``), ``groups`` (grouped and depthwise convolutions; 1
  otherwise), ``a_bits``, ``w_bits``, ``stride``, ``padding``, ``in_shape``
  (the input codes ``[C, H, W]``; for ``xnor`` C counts packed words): what a ``LAYER.npz``
  of the hardware flow holds, so ``model.ops.conv2d(scheme, inputs, weights, ...)`` of the
  layer's integer inputs is the accumulator the accelerator must produce;
- ``pool``: integer max pooling of the accumulator (``model.ops.maxpool2d``);
- ``output``: ``"sign"`` (one threshold per channel, +/-1 outputs), ``"levels"`` (``2**k - 1``
  thresholds per channel, unsigned k-bit DoReFa codes) or ``"scores"`` (the last layer).

Batch norm, the weight scales (alpha, mean|W|, the DoReFa 1/n factors) and the input-code
scales are folded into the thresholds by ``model.thresholds`` (``fold_sign_threshold``,
``fold_multilevel_thresholds``), which reproduce the float model's computation bit for bit:
from the first layer to the last, inference needs only the integer ops of ``model.ops``.

Activations between layers: +/-1 after ``Sign`` (layers with binary weights then use
``xnor``: +/-1 weights on +/-1 activations packed by channel, padded taps excluded; ternary,
pow2 and int weights take the +/-1 values as signed 2-bit codes) or unsigned k-bit codes
where the next layer quantizes its input (DoReFa). The first layer takes the pixel codes
themselves (digits 0..16, MNIST 0..255; the float model sees ``codes / pixel_max``): an
unsigned input of ``pixel_bits`` for ``dorefa``, a signed one of ``pixel_bits + 1`` for the
other schemes. The BNN paper's 8-bit first layer, ``sum_n 2**(n-1) (x^n . w_b)`` over bit
planes, is this same integer.

The last layer's scores: the float model's logits are ``BN(scale * acc)``, one affine map per
class; the integer head is ``score = gain * acc + offset`` with ``gain`` and ``offset``
integers (the affine map in fixed point, ``2**-score_shift`` units, sized so that nothing
overflows int64) and the prediction is the first argmax. These are the only products left
(``classes`` constant multiplications per image, done after the accelerator); two classes'
scores would have to tie to within about ``2**-40`` of the logits' size for the argmax to
differ from the float model's.

Models imported from QONNX (``model.qonnx_import``) use four optional fields that a folded
network leaves at their defaults:

- ``IntegerLayer.codebook``: a ``dorefa`` (look-up table) layer whose weight code ``q`` has
  the integer level ``codebook[q]`` instead of ``2q - n`` (the ``LAYER.npz`` codebook);
- ``IntegerLayer.out_min``: a ``"levels"`` output's codes are ``out_min`` plus the number of
  thresholds passed (signed codes: ``out_min < 0``);
- ``IntegerModel.pixel_min``: the first layer's input codes are in ``[pixel_min, pixel_max]``
  (signed or +/-1 inputs);
- ``IntegerModel.float_io`` (``model.qonnx_ref.FloatInterface``): the graph's input quantizer
  and the float layouts of its input and output, for ``run_float``.

A grouped or depthwise convolution (``Conv2d(..., groups=G)``) folds into a layer with
``IntegerLayer.groups = G`` (default 1), also an optional field.

The file format (``save``/``load``) is one ``.npz`` of integer arrays plus a JSON manifest
(format name, version, net, data set, per-layer fields, accuracy, training settings and a
SHA-256 of the arrays and the manifest); ``load`` refuses another version or a corrupt file
with one clear message, and checks every field (``_layer_from_manifest``, ``check_model``:
its type, its range, and that the layers chain). Version 1 files have none of the five
optional fields above (``load`` refuses one that does); a model that uses any of them is
written as version 2 (so an older reader refuses it instead of misreading it), and ``load``
reads both. A float network (``float``, ``lenet300``) cannot fold; it is saved as a
float checkpoint (``save_float``) that ``load`` returns as such. A folded model also keeps the
training state it was folded from (``IntegerModel.state``: the float shadow weights and
batch-norm statistics, arrays ``state.<name>``, which a reader that does not know them
ignores), so that later steps -- structured pruning with fine-tuning (``model.channels``) --
can rebuild and retrain the network; inference never reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from model import layer_file, ops, quant
from model import layers as L
from model.container import read_container, write_container
from model.qonnx_ref import FloatInterface, Quantizer
from model.thresholds import fold_multilevel_thresholds, fold_sign_threshold

__all__ = ["FORMAT", "VERSION", "IntegerLayer", "IntegerModel", "LayerTrace", "IntegerTrace",
           "FloatCheckpoint", "fold", "run_integer", "predict", "hardware_layer", "save",
           "save_float", "load", "check_model", "xnor_lanes", "MAX_XNOR_LANES", "score_head",
           "run_float", "FloatRun", "VERSIONS"]

FORMAT = "mulfree-model"
#: The version written for a model that uses none of the fields added in version 2.
VERSION = 1
#: Every version ``load`` reads (2: codebook, out_min, pixel_min, float_io).
VERSIONS = (1, 2)
_OUTPUTS = ("sign", "levels", "scores")
_ACTIVATIONS_BEFORE_SIGN = (L.HardTanh,)


@dataclass
class IntegerLayer:
    """One conv/dense layer of the integer model and its integer output stage.

    Members
    -------
    kind : str
        ``"conv"`` or ``"dense"`` (a dense layer is a 1x1 convolution of a 1x1 image).
    scheme : str
        The ``model.quant`` scheme of the products.
    weights : int array [M, C / groups, R, S]
        Weight codes (``xnor``: C packed words of ``w_bits`` lanes).
    a_bits, w_bits : int
        Activation and weight widths (``xnor``: both the lane count).
    stride, padding : int
        Of the convolution (dense: 1 and 0).
    in_shape : (C, H, W)
        Shape of one image's input codes (``xnor``: C words).
    channels : int
        Input channels before packing (equals ``in_shape[0]`` unless ``xnor``).
    flatten : bool
        The previous layer's output is flattened (channel-major) to form this input.
    pool : int
        Max-pool window and stride on the accumulator (0: none).
    acc_range : (int, int)
        Smallest and largest possible accumulator (the worst case of the layer).
    output : str
        ``"sign"``, ``"levels"`` or ``"scores"``.
    thresholds : int64 [M, L] or None
        ``"sign"``: L = 1, output +1 iff ``acc >= T`` (``<=`` where ``flip``);
        ``"levels"``: L = 2**out_bits - 1, the code is the number of thresholds passed.
    flip : bool [M] or None
        Where the comparison direction is reversed (negative batch-norm gain).
    constant : bool [M] or None
        Channels whose output does not depend on the accumulator (zero gain).
    out_bits : int or None
        k of the ``"levels"`` output codes.
    score_gain, score_offset : int64 [M] or None
        ``"scores"``: ``score = score_gain * acc + score_offset`` in ``2**-score_shift`` units.
    score_shift : int
    out_min : int
        ``"levels"``: the code when no threshold is passed (0; negative for signed codes).
    codebook : int64 [2**w_bits] or None
        ``dorefa`` only: the integer level of each weight code (a look-up table other than
        ``2q - n``, ``model.compress.codebook_conv2d``).
    groups : int
        Independent channel groups of a convolution (depthwise: groups = C = M; ``xnor``
        packs words within a group).
    """

    kind: str
    scheme: str
    weights: np.ndarray
    a_bits: int
    w_bits: int
    stride: int
    padding: int
    in_shape: tuple
    channels: int
    flatten: bool
    pool: int
    acc_range: tuple
    output: str
    thresholds: np.ndarray | None = None
    flip: np.ndarray | None = None
    constant: np.ndarray | None = None
    out_bits: int | None = None
    score_gain: np.ndarray | None = None
    score_offset: np.ndarray | None = None
    score_shift: int = 0
    out_min: int = 0
    codebook: np.ndarray | None = None
    groups: int = 1

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weights.shape[1:]))

    @property
    def accumulator_width(self) -> int:
        """Signed bits that hold every accumulator of the layer (``model.ops`` width rule)."""
        if self.codebook is not None:
            from model.compress import codebook_accumulator_width
            return codebook_accumulator_width(self.codebook, a_bits=self.a_bits,
                                              fan_in=self.fan_in)
        return ops.accumulator_width(self.scheme, a_bits=self.a_bits, w_bits=self.w_bits,
                                     fan_in=self.fan_in)

    def out_shape(self) -> tuple:
        """``(M, E, F)`` of the accumulator after pooling."""
        _, h, w = self.in_shape
        _, _, r, s = self.weights.shape
        e = ops.conv_output_size(h, r, self.stride, self.padding)
        f = ops.conv_output_size(w, s, self.stride, self.padding)
        if self.pool:
            e = ops.conv_output_size(e, self.pool, self.pool, 0)
            f = ops.conv_output_size(f, self.pool, self.pool, 0)
        return (self.out_channels, e, f)

    def encode_inputs(self, activations: np.ndarray) -> np.ndarray:
        """This layer's input codes ``[N, C, H, W]`` from the previous stage's outputs.

        ``activations`` are pixel codes, +/-1 values or k-bit codes, ``[N, C, H, W]`` (or
        ``[N, F]``); flattening and ``xnor`` packing are applied here.
        """
        a = np.asarray(activations)
        n = a.shape[0]
        if self.flatten or self.kind == "dense":
            a = a.reshape(n, -1, 1, 1)
        if self.scheme == "xnor":
            lanes = self.a_bits
            _, c, h, w = a.shape
            grouped = a.reshape(n, c // lanes, lanes, h, w).transpose(0, 1, 3, 4, 2)
            return quant.pack_pm1(grouped)
        return a.astype(np.int64)

    def accumulate(self, inputs: np.ndarray) -> np.ndarray:
        """The exact accumulator ``[N, M, E, F]`` (before pooling) of input codes ``inputs``."""
        if self.codebook is not None:
            from model.compress import codebook_conv2d
            return codebook_conv2d(inputs, self.weights, self.codebook, stride=self.stride,
                                   padding=self.padding, a_bits=self.a_bits,
                                   groups=self.groups)
        if self.kind == "dense":
            acc = ops.dense(self.scheme, inputs[:, :, 0, 0], self.weights[:, :, 0, 0],
                            a_bits=self.a_bits, w_bits=self.w_bits)
            return acc[:, :, None, None]
        return ops.conv2d(self.scheme, inputs, self.weights, stride=self.stride,
                          padding=self.padding, a_bits=self.a_bits, w_bits=self.w_bits,
                          groups=self.groups)

    def activate(self, pooled: np.ndarray) -> np.ndarray:
        """The output stage on pooled accumulators ``[N, M, E, F]``: codes or scores.

        Thresholds are applied by ``model.ops.apply_sign_threshold`` /
        ``apply_multilevel_thresholds``.
        """
        if self.output == "scores":
            acc = pooled[:, :, 0, 0] if pooled.ndim == 4 else pooled
            return acc * self.score_gain + self.score_offset
        if self.output == "sign":
            th = ops.SignThreshold(threshold=self.thresholds[:, 0], flip=self.flip,
                                   constant=self.constant, y_range=tuple(self.acc_range))
            return ops.apply_sign_threshold(pooled, th, axis=1)
        th = ops.MultilevelThresholds(thresholds=self.thresholds, flip=self.flip,
                                      constant=self.constant, bits=self.out_bits,
                                      y_range=tuple(self.acc_range))
        return self.out_min + ops.apply_multilevel_thresholds(pooled, th, axis=1)


@dataclass
class IntegerModel:
    """A folded network: integer layers plus what is needed to feed and describe it.

    ``pixel_min``/``pixel_max`` bound the first layer's input codes; ``float_io`` (imported
    models) says how float inputs become those codes and how the outputs become floats.
    """

    layers: list[IntegerLayer]
    input_shape: tuple
    pixel_max: int
    classes: int
    meta: dict = field(default_factory=dict)
    pixel_min: int = 0
    float_io: FloatInterface | None = None
    #: The trained network's ``state_dict()`` (float64), or None (imported or older files).
    state: dict | None = None

    @property
    def pixel_bits(self) -> int:
        return int(self.pixel_max).bit_length()

    def summary(self) -> list[str]:
        """One line per layer: kind, scheme, widths, shapes, output stage."""
        lines = []
        for i, layer in enumerate(self.layers):
            m, c, r, s = layer.weights.shape
            pool = f", maxpool {layer.pool}" if layer.pool else ""
            groups = f", groups {layer.groups}" if layer.groups > 1 else ""
            out = layer.output + (f" {layer.out_bits}-bit" if layer.output == "levels" else "")
            if layer.output == "levels" and layer.out_min:
                out += f" from {layer.out_min}"
            lut = " (look-up table)" if layer.codebook is not None else ""
            lines.append(f"{i}: {layer.kind} {layer.scheme}{lut} W{layer.w_bits} A{layer.a_bits} "
                         f"[{m}, {c}, {r}, {s}] on {list(layer.in_shape)}, stride "
                         f"{layer.stride}, padding {layer.padding}{groups}{pool}, accumulator "
                         f"{layer.accumulator_width} bits -> {out}")
        return lines


@dataclass
class LayerTrace:
    """What one layer saw and produced in ``run_integer`` (for one batch)."""

    inputs: np.ndarray        # input codes [N, C, H, W] as the layer consumes them
    accumulators: np.ndarray  # exact accumulators [N, M, E, F] before pooling
    pooled: np.ndarray        # after max pooling (the accumulators if no pooling)
    outputs: np.ndarray       # +/-1, k-bit codes, or integer scores [N, M]


@dataclass
class IntegerTrace:
    layers: list[LayerTrace]
    predictions: np.ndarray | None  # None when stopped early with ``upto``


# --------------------------------------------------------------------------------------------
# Folding a trained network
# --------------------------------------------------------------------------------------------

#: Most +/-1 lanes per packed ``xnor`` word (32, the BNN paper's SWAR word; words then fit
#: int64 codes everywhere, LAYER.npz included).
MAX_XNOR_LANES = 32


def xnor_lanes(channels: int) -> int:
    """Lanes per packed word for ``channels`` +/-1 inputs: the largest divisor <= 32."""
    return max(d for d in range(1, min(channels, MAX_XNOR_LANES) + 1) if channels % d == 0)


def _stages(net: L.Sequential):
    """Split the network into (linear layer, following layers) stages, flatten flags apart."""
    stages = []
    pending_flatten = False
    for i, layer in enumerate(net.layers):
        if isinstance(layer, L.QuantizeGradients):
            continue  # the identity at inference (it quantizes gradients only)
        if isinstance(layer, L.Linear):
            if not isinstance(layer, L.QuantizedWeights):
                raise ValueError(f"layer {i} ({type(layer).__name__}) has float weights; only "
                                 "quantized networks fold to integers (save it as a float "
                                 "checkpoint instead)")
            if "bias" in layer.params:
                raise ValueError(f"layer {i} ({type(layer).__name__}) has a bias; quantized "
                                 "layers fold without one")
            stages.append({"index": i, "layer": layer, "after": [],
                           "flatten": pending_flatten})
            pending_flatten = False
        elif not stages:
            if not isinstance(layer, L.Flatten):
                raise ValueError(f"layer {i} ({type(layer).__name__}) comes before the first "
                                 "quantized layer; only Flatten may")
            pending_flatten = True
        elif isinstance(layer, L.Flatten):
            pending_flatten = True
        else:
            stages[-1]["after"].append((i, layer))
    if not stages:
        raise ValueError("the network has no quantized conv or dense layer")
    return stages


def _parse_after(stage) -> dict:
    """Check the layers after a linear layer: [MaxPool2d] [BatchNorm] [activation] [Sign]."""
    info = {"pool": 0, "bn": None, "activations": [], "sign": False}
    for pos, (i, layer) in enumerate(stage["after"]):
        name = type(layer).__name__
        if isinstance(layer, L.MaxPool2d):
            if pos != 0 or layer.stride != layer.size:
                raise ValueError(f"layer {i}: max pooling folds only directly after the conv "
                                 "layer, with stride equal to its size")
            info["pool"] = layer.size
        elif isinstance(layer, L.BatchNorm):
            if info["bn"] is not None or info["activations"] or info["sign"]:
                raise ValueError(f"layer {i}: one BatchNorm, before any activation, per layer")
            info["bn"] = layer
        elif isinstance(layer, (L.HardTanh, L.ReLU)):
            if info["sign"]:
                raise ValueError(f"layer {i}: {name} after Sign does not fold")
            info["activations"].append((i, layer))
        elif isinstance(layer, L.Sign):
            if info["sign"]:
                raise ValueError(f"layer {i}: two Sign layers in a row")
            info["sign"] = True
        else:
            raise ValueError(f"layer {i} ({name}) does not fold into integer thresholds")
    return info


def _bn_params(bn: L.BatchNorm | None, channels: int) -> dict:
    if bn is None:  # identity: (x - 0) / sqrt(1 + 0) * 1 + 0 == x exactly
        return {"gamma": np.ones(channels), "beta": np.zeros(channels),
                "mean": np.zeros(channels), "var": np.ones(channels), "eps": np.zeros(channels)}
    return bn.inference_params()


def _weights_and_scheme(layer, q: quant.QTensor, input_kind: str, input_bits: int):
    """(scheme, weight codes [M, C, R, S] unpacked, w_bits, a_bits) of a quantized layer."""
    levels = q.levels()
    if levels.ndim == 2:
        levels = levels[:, :, None, None]
    if layer.scheme == "dorefa":
        if input_kind == "pm1":
            raise ValueError("a DoReFa layer needs unsigned activation codes, not +/-1: give it "
                             "bitA instead of a Sign before it")
        w_bits = layer.bitW
        codes = quant.encode_weight_levels("dorefa", levels, w_bits)
        return "dorefa", codes, w_bits, input_bits
    a_bits = 2 if input_kind == "pm1" else input_bits + 1
    if q.scheme == "binary" and input_kind == "pm1":
        return "xnor", levels, None, None
    return q.scheme, quant.encode_weight_levels(q.scheme, levels, q.bits), q.bits, a_bits


def _head(pooled_range: tuple, scale, bn_params: dict, channels: int):
    """Integer (gain, offset, shift) of the per-class affine map ``BN(scale * acc)``."""
    p = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (channels,))
         for k, v in bn_params.items()}
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (channels,))
    inv = p["gamma"] / np.sqrt(p["var"] + p["eps"])
    return score_head(s * inv, p["beta"] - p["mean"] * inv, pooled_range)


def score_head(gain, offset, acc_range: tuple):
    """Integer ``(score_gain, score_offset, score_shift)`` of ``score = gain * acc + offset``.

    ``gain`` and ``offset`` are float64 [M]; the integers are them in ``2**-score_shift``
    units, the shift the largest that keeps every score of an accumulator in ``acc_range``
    below ``2**60`` (so nothing overflows int64).
    """
    gain = np.asarray(gain, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    if not (np.all(np.isfinite(gain)) and np.all(np.isfinite(offset))):
        raise ValueError("the score gain and offset must be finite")
    reach = max(abs(acc_range[0]), abs(acc_range[1]), 1)
    magnitude = float(np.max(np.abs(gain)) * reach + np.max(np.abs(offset)))
    if magnitude == 0.0:
        shift = 0
    else:
        shift = 60 - math.frexp(magnitude)[1]  # magnitude * 2**shift < 2**60
    g = np.round(np.ldexp(gain, shift)).astype(np.int64)
    o = np.round(np.ldexp(offset, shift)).astype(np.int64)
    return g, o, shift


def fold(net: L.Sequential, *, input_shape, pixel_max: int, classes: int | None = None,
         meta: dict | None = None) -> IntegerModel:
    """Fold a trained quantized network into an ``IntegerModel`` (evaluation-mode statistics).

    ``input_shape`` is one image's ``(C, H, W)`` and ``pixel_max`` the largest pixel code (the
    network's first layer has ``input_scale = 1 / pixel_max``). Raises ``ValueError`` naming
    the layer when the network has float layers, a bias, or an order of layers that does not
    fold (see the module docstring).
    """
    stages = _stages(net)
    pixel_bits = int(pixel_max).bit_length()
    shape = tuple(int(v) for v in input_shape)
    input_kind, input_bits = "pixels", pixel_bits
    out_layers = []
    for k, stage in enumerate(stages):
        layer = stage["layer"]
        idx = stage["index"]
        if k == 0 and layer.input_bits is not None:
            raise ValueError(f"layer {idx}: the first layer takes the pixel codes as they are; "
                             "it must not quantize its input (bitA/input_bits=None)")
        if k > 0 and layer.input_scale != 1.0:
            raise ValueError(f"layer {idx}: only the first layer may have an input_scale")
        if k == 0 and not math.isclose(layer.input_scale * pixel_max, 1.0, rel_tol=1e-12):
            raise ValueError(f"layer {idx}: input_scale {layer.input_scale} is not "
                             f"1/pixel_max = 1/{pixel_max}")
        info = _parse_after(stage)
        q = layer.quantized_weight()
        scheme, wcodes, w_bits, a_bits = _weights_and_scheme(layer, q, input_kind, input_bits)
        flatten = stage["flatten"]
        kind = "conv" if isinstance(layer, L.Conv2d) else "dense"
        if kind == "dense":
            shape = (int(np.prod(shape)), 1, 1)
        elif flatten:
            raise ValueError(f"layer {idx}: a convolution after Flatten does not fold")
        channels = shape[0]
        groups = layer.groups
        if scheme == "xnor":
            lanes = xnor_lanes(channels // groups)  # a word never straddles two groups
            m, c, r, s = wcodes.shape
            grouped = wcodes.reshape(m, c // lanes, lanes, r, s).transpose(0, 1, 3, 4, 2)
            wcodes = quant.pack_pm1(grouped)
            w_bits = a_bits = lanes
            in_shape = (channels // lanes,) + shape[1:]
        else:
            in_shape = shape
        stride = layer.stride if kind == "conv" else 1
        padding = layer.padding if kind == "conv" else 0
        fan_in = int(np.prod(wcodes.shape[1:]))
        p_lo, p_hi = ops.product_range(scheme, a_bits=a_bits, w_bits=w_bits)
        acc_range = (fan_in * p_lo, fan_in * p_hi)
        rec = IntegerLayer(kind=kind, scheme=scheme, weights=np.asarray(wcodes), a_bits=a_bits,
                           w_bits=w_bits if w_bits is not None else q.bits, stride=stride,
                           padding=padding, in_shape=in_shape, channels=channels,
                           flatten=flatten, pool=info["pool"], acc_range=acc_range,
                           output="scores", groups=groups)
        out_shape = rec.out_shape()
        m = out_shape[0]
        scale = layer.output_scale()
        bn = _bn_params(info["bn"], m)
        nxt = stages[k + 1]["layer"] if k + 1 < len(stages) else None
        if nxt is None:
            if info["sign"] or info["activations"]:
                raise ValueError(f"layer {idx}: the last layer's scores must not pass an "
                                 "activation (its argmax is the prediction)")
            rec.score_gain, rec.score_offset, rec.score_shift = _head(acc_range, scale, bn, m)
        elif info["sign"]:
            if nxt.input_bits is not None:
                raise ValueError(f"layer {stages[k + 1]['index']} quantizes its input but "
                                 "follows a Sign")
            for i, act in info["activations"]:
                if not isinstance(act, _ACTIVATIONS_BEFORE_SIGN):
                    raise ValueError(f"layer {i}: {type(act).__name__} before Sign does not "
                                     "fold (only HardTanh, which keeps the sign)")
            th = fold_sign_threshold(bn["gamma"], bn["beta"], bn["mean"], bn["var"], bn["eps"],
                                     scale, y_range=acc_range)
            rec.output, rec.thresholds = "sign", th.threshold[:, None]
            rec.flip, rec.constant = th.flip, th.constant
            input_kind, input_bits = "pm1", 1
        else:
            if nxt.input_bits is None:
                raise ValueError(f"layer {stages[k + 1]['index']} gets float activations: put "
                                 "a Sign before it or give it input_bits (bitA)")
            th = fold_multilevel_thresholds(bn["gamma"], bn["beta"], bn["mean"], bn["var"],
                                            bn["eps"], scale, nxt.input_bits,
                                            y_range=acc_range)
            rec.output, rec.thresholds = "levels", th.thresholds
            rec.flip, rec.constant = th.flip, th.constant
            rec.out_bits = nxt.input_bits
            input_kind, input_bits = "levels", nxt.input_bits
        out_layers.append(rec)
        shape = out_shape
    if classes is None:
        classes = out_layers[-1].out_channels
    return IntegerModel(out_layers, tuple(int(v) for v in input_shape), int(pixel_max),
                        int(classes), dict(meta or {}), state=net.state_dict())


# --------------------------------------------------------------------------------------------
# Integer inference
# --------------------------------------------------------------------------------------------

def _check_images(model: IntegerModel, x_codes) -> np.ndarray:
    x = np.asarray(x_codes)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"images must be [N, {', '.join(map(str, model.input_shape))}] pixel "
                         f"codes, not shape {x.shape}")
    return quant.check_codes("pixel codes", x, model.pixel_min, model.pixel_max)


def run_integer(model: IntegerModel, x_codes, upto: int | None = None) -> IntegerTrace:
    """Run the integer model on pixel codes ``[N, C, H, W]`` and keep every layer's trace.

    ``upto`` stops after that many layers (the trace then has no predictions). Each
    ``LayerTrace`` holds the layer's input codes (what a ``LAYER.npz`` feeds the accelerator),
    its exact accumulators (``model.ops.conv2d``/``dense``), the pooled accumulators and the
    output codes or scores.
    """
    acts = _check_images(model, x_codes)
    count = len(model.layers) if upto is None else int(upto)
    if not 0 <= count <= len(model.layers):
        raise ValueError(f"upto must be in [0, {len(model.layers)}], not {upto!r}")
    traces = []
    for layer in model.layers[:count]:
        inputs = layer.encode_inputs(acts)
        acc = layer.accumulate(inputs)
        pooled = ops.maxpool2d(acc, layer.pool) if layer.pool else acc
        out = layer.activate(pooled)
        traces.append(LayerTrace(inputs, acc, pooled, out))
        acts = out
    done = count == len(model.layers)
    return IntegerTrace(traces, np.argmax(acts.reshape(len(acts), -1), axis=1) if done else None)


def hardware_layer(model: IntegerModel, index: int, image) -> layer_file.Layer:
    """Layer ``index`` of the integer model on one image, as a ``LAYER.npz`` record.

    ``image`` is one image's pixel codes ``[C, H, W]``; the earlier layers run on the integer
    model to give this layer's input codes. Save it with ``model.layer_file.save_layer``;
    the accelerator's ``outputs`` must equal ``run_integer(model, image[None]).layers[index]
    .accumulators[0]``.
    """
    if not 0 <= index < len(model.layers):
        raise ValueError(f"layer index must be in [0, {len(model.layers) - 1}], not {index!r}")
    trace = run_integer(model, np.asarray(image)[None], upto=index + 1)
    rec = model.layers[index]
    return layer_file.Layer(scheme=rec.scheme, weights=rec.weights,
                            inputs=trace.layers[index].inputs[0], stride=rec.stride,
                            padding=rec.padding, a_bits=rec.a_bits, w_bits=rec.w_bits,
                            codebook=rec.codebook, groups=rec.groups)


def predict(model: IntegerModel, x_codes, *, batch_size: int = 256) -> np.ndarray:
    """Integer-model predictions for pixel codes ``[N, C, H, W]``, in batches."""
    x = _check_images(model, x_codes)
    out = [run_integer(model, x[i:i + batch_size]).predictions
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@dataclass
class FloatRun:
    """What ``run_float`` gives for N samples."""

    outputs: np.ndarray      # float32 [N] + output shape: the graph's float outputs
    codes: np.ndarray        # int64, same shape: the integers behind them
    predictions: np.ndarray  # int64 [N]: the first argmax of the integer scores or codes
    input_codes: np.ndarray  # int64 [N, C, H, W]: the first layer's input codes


def run_float(model: IntegerModel, inputs, *, batch_size: int = 256) -> FloatRun:
    """Run the integer model on float inputs, as the source graph would (imported models).

    ``inputs`` are floats of shape ``[N] + float_io.input_shape`` (the graph's own layout);
    the graph's input quantizer turns them into codes. ``outputs`` are the last layer's
    float results in the graph's output layout: its scores ``(score_gain * acc +
    score_offset) * 2**-score_shift`` (the graph's affine ops on ``s_a * s_w * acc``) or,
    when the graph ends in a quantizer, that quantizer's values of the codes; ``codes`` are
    the pooled accumulators, or those output codes. A model without ``float_io`` takes its
    pixel codes ``[N, C, H, W]`` as they are. Raises ``ValueError`` on a wrong shape or a
    non-finite input.
    """
    io = model.float_io
    x = np.asarray(inputs)
    if io is None:
        x_codes = _check_images(model, x)
        out_shape = None
    else:
        want = tuple(io.input_shape)
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise ValueError(f"inputs must have shape [N, {', '.join(map(str, want))}] (the "
                             f"graph's input without its batch dimension), not {list(x.shape)}")
        if x.dtype.kind not in "iuf" or (x.size and not np.all(np.isfinite(x))):
            raise ValueError("inputs must be finite real numbers")
        x_codes = io.quantizer.codes(x).reshape((len(x),) + tuple(model.input_shape))
        out_shape = tuple(io.output_shape)
    last = model.layers[-1]
    outs, codes, preds = [], [], []
    for i in range(0, len(x_codes), batch_size):
        trace = run_integer(model, x_codes[i:i + batch_size])
        final = trace.layers[-1]
        n = len(final.pooled)
        if last.output == "scores":
            ints = final.pooled.reshape(n, -1)
            floats = np.ldexp(final.outputs.astype(np.float64), -last.score_shift)
        else:
            ints = final.outputs.reshape(n, -1)
            quantizer = io.output_quantizer if io is not None else None
            floats = ints if quantizer is None else quantizer.values(ints)
        outs.append(np.asarray(floats, dtype=np.float32).reshape(n, -1))
        codes.append(ints.astype(np.int64))
        preds.append(trace.predictions)
    n = len(x_codes)
    shape = (n,) + (out_shape if out_shape is not None else outs[0].shape[1:] if outs else (0,))
    if not outs:
        return FloatRun(np.zeros(shape, np.float32), np.zeros(shape, np.int64),
                        np.zeros(0, np.int64), x_codes)
    return FloatRun(np.concatenate(outs).reshape(shape), np.concatenate(codes).reshape(shape),
                    np.concatenate(preds), x_codes)


# --------------------------------------------------------------------------------------------
# The file format
# --------------------------------------------------------------------------------------------

_LAYER_FIELDS = ("kind", "scheme", "a_bits", "w_bits", "stride", "padding", "in_shape",
                 "channels", "flatten", "pool", "acc_range", "output", "out_bits",
                 "score_shift")
_LAYER_ARRAYS = ("weights", "thresholds", "flip", "constant", "score_gain", "score_offset")
# Version 2: written only when used (a model that uses none of them stays version 1).
_LAYER_FIELDS_V2 = {"out_min": 0, "groups": 1}
_LAYER_ARRAYS_V2 = ("codebook",)


def _version_of(model: IntegerModel) -> int:
    """1 unless the model uses a field of version 2 (see the module docstring)."""
    uses_v2 = (model.pixel_min != 0 or model.float_io is not None
               or any(layer.out_min != 0 or layer.codebook is not None or layer.groups != 1
                      for layer in model.layers))
    return 2 if uses_v2 else VERSION


@dataclass
class FloatCheckpoint:
    """A float network's weights (``float``, ``lenet300``), as ``load`` returns them."""

    net: str
    input_shape: tuple
    pixel_max: int
    classes: int
    state: dict
    meta: dict = field(default_factory=dict)


def save(model: IntegerModel, path, *, overwrite: bool = False) -> None:
    """Save an ``IntegerModel`` as ``.npz`` integer arrays plus a JSON manifest."""
    version = _version_of(model)
    arrays, layers = {}, []
    for i, layer in enumerate(model.layers):
        fields = {name: getattr(layer, name) for name in _LAYER_FIELDS}
        if version >= 2:
            fields.update({name: getattr(layer, name) for name in _LAYER_FIELDS_V2})
        fields["accumulator_width"] = layer.accumulator_width
        fields["weights_shape"] = list(layer.weights.shape)
        layers.append(fields)
        for name in _LAYER_ARRAYS + _LAYER_ARRAYS_V2:
            value = getattr(layer, name)
            if value is not None:
                arr = np.asarray(value)
                arrays[f"layer{i}.{name}"] = arr.astype(np.uint8) if arr.dtype == bool else arr
    for name, value in (model.state or {}).items():
        arrays[f"state.{name}"] = np.asarray(value, dtype=np.float64)
    manifest = {"kind": "integer", "input_shape": list(model.input_shape),
                "pixel_max": model.pixel_max, "classes": model.classes, "layers": layers,
                "meta": model.meta}
    if version >= 2:
        manifest["pixel_min"] = model.pixel_min
        manifest["float_io"] = None if model.float_io is None else model.float_io.to_dict()
    write_container(path, format=FORMAT, version=version, manifest=manifest, arrays=arrays,
                    overwrite=overwrite)


def save_float(net: L.Sequential, path, *, net_name: str, input_shape, pixel_max: int,
               classes: int, meta: dict | None = None, overwrite: bool = False) -> None:
    """Save a float network's parameters and buffers (rebuilt by ``model.nets.build``)."""
    arrays = {f"state.{k}": v for k, v in net.state_dict().items()}
    manifest = {"kind": "float", "net": net_name, "input_shape": list(input_shape),
                "pixel_max": int(pixel_max), "classes": int(classes), "meta": dict(meta or {})}
    write_container(path, format=FORMAT, version=VERSION, manifest=manifest, arrays=arrays,
                    overwrite=overwrite)


def _corrupt(path, why: str) -> ValueError:
    return ValueError(f"{str(path)!r} is not a valid mulfree model file: {why}")


# --- reading a file: every field checked -------------------------------------------------------

def _int(value, what: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{what} must be in {bounds}, not {value}")
    return value


def _ints(value, what: str, length: int, lo: int | None = None) -> tuple:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"{what} must be a list of {length} integers, not {value!r}")
    return tuple(_int(v, what, lo) for v in value)


def _integer_array(value, what: str, shape: tuple) -> np.ndarray:
    if value is None:
        raise ValueError(f"{what} is missing")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integers, not {arr.dtype} values")
    if arr.shape != tuple(shape):
        raise ValueError(f"{what} must have shape {list(shape)}, not {list(arr.shape)}")
    return arr.astype(np.int64)


def _flags(value, what: str, channels: int) -> np.ndarray:
    arr = _integer_array(value, what, (channels,))
    if np.any((arr != 0) & (arr != 1)):
        raise ValueError(f"{what} must hold 0 or 1 per channel")
    return arr.astype(bool)


#: Largest magnitude of a score (``gain * acc + offset``): int64 with room to spare.
_SCORE_LIMIT = 1 << 62


def _layer_from_manifest(i: int, fields, arrays: dict) -> IntegerLayer:
    """One ``IntegerLayer`` from its manifest fields and arrays, every field checked."""
    what = f"layer {i}"
    if not isinstance(fields, dict):
        raise ValueError(f"{what} must be a JSON object, not {fields!r}")
    missing = [name for name in _LAYER_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"{what} has no field {missing[0]!r}")
    kind = fields["kind"]
    if kind not in ("conv", "dense"):
        raise ValueError(f"{what}: kind must be 'conv' or 'dense', not {kind!r}")
    scheme = fields["scheme"]
    if not isinstance(scheme, str) or scheme not in quant.SCHEMES:
        raise ValueError(f"{what}: unknown scheme {scheme!r}; allowed: "
                         f"{', '.join(quant.SCHEMES)}")
    a_bits = _int(fields["a_bits"], f"{what} a_bits")
    w_bits = _int(fields["w_bits"], f"{what} w_bits")
    quant.activation_code_range(scheme, a_bits)
    w_lo, w_hi = quant.weight_code_range(scheme, w_bits)
    stride = _int(fields["stride"], f"{what} stride", 1, 1 << 16)
    padding = _int(fields["padding"], f"{what} padding", 0, 1 << 16)
    in_shape = _ints(fields["in_shape"], f"{what} in_shape", 3, 1)
    channels = _int(fields["channels"], f"{what} channels", 1)
    if not isinstance(fields["flatten"], bool):
        raise ValueError(f"{what}: flatten must be true or false, not {fields['flatten']!r}")
    groups = _int(fields.get("groups", 1), f"{what} groups", 1, 1 << 16)
    pool = _int(fields["pool"], f"{what} pool", 0, 1 << 16)
    if pool == 1:
        raise ValueError(f"{what}: pool must be 0 (none) or a window of at least 2, not 1")
    output = fields["output"]
    if output not in _OUTPUTS:
        raise ValueError(f"{what}: unknown output {output!r}; allowed: {', '.join(_OUTPUTS)}")
    weights = arrays.get(f"layer{i}.weights")
    if weights is None:
        raise ValueError(f"{what} has no weights")
    weights = np.asarray(weights)
    if weights.ndim != 4 or 0 in weights.shape:
        raise ValueError(f"{what} weights must be a non-empty [M, C, R, S] array, not shape "
                         f"{list(weights.shape)}")
    weights = quant.check_codes(f"{what} {scheme} weight codes", weights, w_lo, w_hi)
    m, c, r, s = weights.shape
    if in_shape[0] % groups or m % groups:
        raise ValueError(f"{what}: groups {groups} must divide the input channels "
                         f"{in_shape[0]} and the filters {m}")
    if c * groups != in_shape[0]:
        split = f" ({groups} groups of {c})" if groups > 1 else ""
        raise ValueError(f"{what}: weights {list(weights.shape)} take {c * groups} input "
                         f"channels{split}, in_shape {list(in_shape)} has {in_shape[0]}")
    lanes = a_bits if scheme == "xnor" else 1
    if channels != in_shape[0] * lanes:
        raise ValueError(f"{what}: channels {channels} must be {in_shape[0] * lanes} "
                         f"(in_shape {list(in_shape)}" + (f" of {lanes} lanes)" if lanes > 1
                                                          else ")"))
    if kind == "dense" and (r, s, in_shape[1], in_shape[2], stride, padding) != \
            (1, 1, 1, 1, 1, 0):
        raise ValueError(f"{what}: a dense layer has 1x1 weights on a [C, 1, 1] input, stride "
                         "1 and no padding")
    if kind == "dense" and groups != 1:
        raise ValueError(f"{what}: groups must be 1 for a dense layer, not {groups}")
    fan_in = c * r * s
    codebook = _codebook(what, arrays.get(f"layer{i}.codebook"), scheme, w_bits)
    if codebook is not None:
        from model.compress import codebook_acc_range
        acc_range = codebook_acc_range(codebook, a_bits=a_bits, fan_in=fan_in)
        products = "the codebook's products"
    else:
        p_lo, p_hi = ops.product_range(scheme, a_bits=a_bits, w_bits=w_bits)
        acc_range = (fan_in * p_lo, fan_in * p_hi)
        products = "the product range"
    if fields["acc_range"] != list(acc_range):
        raise ValueError(f"{what}: acc_range must be {list(acc_range)} (fan-in {fan_in} times "
                         f"{products}), not {fields['acc_range']!r}")
    layer = IntegerLayer(kind=kind, scheme=scheme, weights=weights, a_bits=a_bits,
                         w_bits=w_bits, stride=stride, padding=padding, in_shape=in_shape,
                         channels=channels, flatten=fields["flatten"], pool=pool,
                         acc_range=acc_range, output=output, codebook=codebook, groups=groups)
    layer.out_shape()  # the kernel, stride and pooling leave a non-empty output
    present = {name for name in _LAYER_ARRAYS if f"layer{i}.{name}" in arrays}
    if output != "levels" and fields["out_bits"] is not None:
        raise ValueError(f"{what}: out_bits must be null for a {output!r} output, not "
                         f"{fields['out_bits']!r}")
    if output == "scores":
        expected = {"weights", "score_gain", "score_offset"}
        layer.score_shift = _int(fields["score_shift"], f"{what} score_shift", 0, 62)
        layer.score_gain = _integer_array(arrays.get(f"layer{i}.score_gain"),
                                          f"{what} score_gain", (m,))
        layer.score_offset = _integer_array(arrays.get(f"layer{i}.score_offset"),
                                            f"{what} score_offset", (m,))
        reach = max(abs(acc_range[0]), abs(acc_range[1]))
        worst = max(abs(int(g)) * reach + abs(int(o))
                    for g, o in zip(layer.score_gain, layer.score_offset))
        if worst >= _SCORE_LIMIT:
            raise ValueError(f"{what}: score_gain and score_offset reach {worst}; allowed: "
                             f"scores below 2**62")
    else:
        expected = {"weights", "thresholds", "flip", "constant"}
        if fields["score_shift"] != 0:
            raise ValueError(f"{what}: score_shift must be 0 for a {output!r} output, not "
                             f"{fields['score_shift']!r}")
        if output == "levels":
            layer.out_bits = _int(fields["out_bits"], f"{what} out_bits", 1, 16)
            layer.out_min = _int(fields.get("out_min", 0), f"{what} out_min",
                                 -(1 << (layer.out_bits - 1)), 0)
        count = 1 if output == "sign" else (1 << layer.out_bits) - 1
        layer.thresholds = _integer_array(arrays.get(f"layer{i}.thresholds"),
                                          f"{what} thresholds", (m, count))
        layer.flip = _flags(arrays.get(f"layer{i}.flip"), f"{what} flip", m)
        layer.constant = _flags(arrays.get(f"layer{i}.constant"), f"{what} constant", m)
    out_min = fields.get("out_min", 0)
    if output != "levels" and (isinstance(out_min, bool) or out_min != 0):
        raise ValueError(f"{what}: out_min must be 0 for a {output!r} output, not {out_min!r}")
    if present != expected:
        extra = sorted(present - expected)
        raise ValueError(f"{what}: unexpected array {extra[0]!r} for a {output!r} output"
                         if extra else f"{what}: {sorted(expected - present)[0]} is missing")
    return layer


def _codebook(what: str, value, scheme: str, w_bits: int) -> np.ndarray | None:
    """A layer's codebook array checked (None when it has none)."""
    if value is None:
        return None
    if scheme != "dorefa":
        raise ValueError(f"{what}: a codebook needs scheme 'dorefa' (the look-up table), not "
                         f"{scheme!r}")
    book = quant.check_codes(f"{what} codebook", value, -(1 << 15), (1 << 15) - 1)
    if book.shape != (1 << w_bits,):
        raise ValueError(f"{what}: codebook must hold 2**w_bits = {1 << w_bits} levels, not "
                         f"shape {list(book.shape)}")
    return book


_QUANTIZER_FIELDS = ("op", "scale", "bits", "signed", "narrow", "rounding_mode")
_FLOAT_IO_FIELDS = ("input_shape", "output_shape", "quantizer", "output_quantizer")


def _object(value, what: str, fields: tuple, optional: tuple = ()) -> dict:
    """``value`` if it is a JSON object with exactly ``fields`` (``optional`` may be absent)."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, not {value!r}")
    missing = [name for name in fields if name not in value and name not in optional]
    if missing:
        raise ValueError(f"{what} has no field {missing[0]!r}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValueError(f"{what}: unknown field {unknown[0]!r}; allowed: {', '.join(fields)}")
    return value


def _quantizer(value, what: str) -> Quantizer:
    fields = _object(value, what, _QUANTIZER_FIELDS)
    for name in ("op", "rounding_mode"):
        if not isinstance(fields[name], str):
            raise ValueError(f"{what} {name} must be a string, not {fields[name]!r}")
    for name in ("signed", "narrow"):
        if not isinstance(fields[name], bool):
            raise ValueError(f"{what} {name} must be true or false, not {fields[name]!r}")
    scale = fields["scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ValueError(f"{what} scale must be a number, not {scale!r}")
    try:
        return Quantizer(op=fields["op"], scale=float(scale),
                         bits=_int(fields["bits"], f"{what} bits", 1, 32),
                         signed=fields["signed"], narrow=fields["narrow"],
                         rounding_mode=fields["rounding_mode"])
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _shape(value, what: str) -> tuple:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} must be a non-empty list of positive integers, not {value!r}")
    return tuple(_int(v, what, 1) for v in value)


def _float_io(value) -> FloatInterface | None:
    """``float_io`` of the manifest (null: none), every field checked."""
    if value is None:
        return None
    fields = _object(value, "float_io", _FLOAT_IO_FIELDS, optional=("output_quantizer",))
    out_q = fields.get("output_quantizer")
    return FloatInterface(_shape(fields["input_shape"], "float_io input_shape"),
                          _shape(fields["output_shape"], "float_io output_shape"),
                          _quantizer(fields["quantizer"], "float_io quantizer"),
                          None if out_q is None
                          else _quantizer(out_q, "float_io output_quantizer"))


def _state(arrays: dict) -> dict | None:
    """The training state (arrays ``state.<name>``: finite floats), or None without one."""
    state = {}
    for key in sorted(arrays):
        if not key.startswith("state."):
            continue
        arr = np.asarray(arrays[key])
        if arr.dtype.kind != "f":
            raise ValueError(f"array {key!r} must hold floats (training state), not "
                             f"{arr.dtype} values")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"array {key!r} contains NaN or inf; allowed: finite floats")
        state[key[len("state."):]] = arr
    return state or None


def _refuse_v2_fields(manifest: dict, records: list, arrays: dict) -> None:
    """A version-1 file holds none of the fields version 2 added."""
    for name in ("pixel_min", "float_io"):
        if name in manifest:
            raise ValueError(f"{name} is a version-2 field; this file is version 1")
    for i, fields in enumerate(records):
        for name in _LAYER_FIELDS_V2:
            if isinstance(fields, dict) and name in fields:
                raise ValueError(f"layer {i} {name} is a version-2 field; this file is "
                                 "version 1")
        for name in _LAYER_ARRAYS_V2:
            if f"layer{i}.{name}" in arrays:
                raise ValueError(f"array 'layer{i}.{name}' is a version-2 field; this file is "
                                 "version 1")


def _output_codes(layer: IntegerLayer) -> tuple[int, int]:
    """Smallest and largest code a layer's output stage gives: +/-1, or the codes of its
    thresholds at both ends of the accumulator range (each channel's code is monotone in the
    accumulator, so no code lies outside them; a threshold beyond the range is never
    passed)."""
    if layer.output == "sign":
        return (-1, 1)
    ends = np.array(layer.acc_range, dtype=np.int64).reshape(2, 1, 1, 1)
    codes = layer.activate(np.broadcast_to(ends, (2, layer.out_channels, 1, 1)))
    return int(codes.min()), int(codes.max())


def check_model(model: IntegerModel) -> None:
    """``ValueError`` (one line naming the layer and field) unless the layers chain: each
    takes the previous one's output shape and codes, the first the images, the last gives one
    score per class."""
    c, h, w = model.input_shape
    shape, codes = (c, h, w), (model.pixel_min, model.pixel_max)
    io = model.float_io
    out_q = io.output_quantizer if io is not None else None
    for i, layer in enumerate(model.layers):
        what = f"layer {i}"
        last = i == len(model.layers) - 1
        if last and out_q is not None:
            _check_output_quantizer(what, layer, out_q)
        elif (layer.output == "scores") != last:
            raise ValueError(f"{what}: only the last layer gives scores, not {layer.output!r}")
        flat = (int(np.prod(shape)), 1, 1)
        if layer.kind == "dense" or layer.flatten:
            if layer.kind == "conv":
                raise ValueError(f"{what}: a convolution cannot follow a flatten")
            wanted = flat
        else:
            wanted = shape
        if layer.channels != wanted[0] or tuple(layer.in_shape[1:]) != tuple(wanted[1:]):
            raise ValueError(f"{what} takes {layer.channels} channels of "
                             f"{list(layer.in_shape[1:])}, the previous stage gives "
                             f"{wanted[0]} of {list(wanted[1:])}")
        if layer.scheme == "xnor":
            if codes != (-1, 1):
                raise ValueError(f"{what}: xnor takes +/-1 inputs, the previous stage gives "
                                 f"codes {codes[0]} to {codes[1]}")
        else:
            lo, hi = quant.activation_code_range(layer.scheme, layer.a_bits)
            if codes[0] < lo or codes[1] > hi:
                raise ValueError(f"{what} takes {layer.scheme} activations of {layer.a_bits} "
                                 f"bits ({lo} to {hi}), the previous stage gives {codes[0]} "
                                 f"to {codes[1]}")
        shape = layer.out_shape()
        if not last:
            codes = _output_codes(layer)
    if shape[1:] != (1, 1) or shape[0] != model.classes:
        raise ValueError(f"the last layer gives {list(shape)} scores; the model has "
                         f"{model.classes} classes (one score each)")
    if io is not None:
        _check_float_io(model, io)


def _check_output_quantizer(what: str, layer: IntegerLayer, out_q: Quantizer) -> None:
    """The last layer of a graph ending in a quantizer gives that quantizer's codes."""
    want = "sign" if out_q.bipolar else "levels"
    if layer.output != want:
        raise ValueError(f"{what}: the output quantizer ({out_q.describe()}) needs a {want!r} "
                         f"output, not {layer.output!r}")
    if want == "levels" and (layer.out_bits, layer.out_min) != (out_q.bits,
                                                                 out_q.code_range[0]):
        raise ValueError(f"{what}: the output quantizer ({out_q.describe()}) gives "
                         f"{out_q.bits}-bit codes from {out_q.code_range[0]}, not "
                         f"{layer.out_bits}-bit codes from {layer.out_min}")


def _check_float_io(model: IntegerModel, io: FloatInterface) -> None:
    """``float_io`` fits the model: as many values in and out, input codes the first layer
    takes."""
    if math.prod(io.input_shape) != math.prod(model.input_shape):
        raise ValueError(f"float_io input_shape {list(io.input_shape)} does not hold the "
                         f"input {list(model.input_shape)}")
    if math.prod(io.output_shape) != model.classes:
        raise ValueError(f"float_io output_shape {list(io.output_shape)} does not hold the "
                         f"{model.classes} outputs")
    lo, hi = io.quantizer.code_range
    if lo < model.pixel_min or hi > model.pixel_max:
        raise ValueError(f"float_io quantizer ({io.quantizer.describe()}) gives codes {lo} to "
                         f"{hi}, outside pixel_min {model.pixel_min} to pixel_max "
                         f"{model.pixel_max}")


def _float_checkpoint(manifest: dict, arrays: dict) -> FloatCheckpoint:
    from model import nets
    net = manifest["net"]
    if not isinstance(net, str) or net not in nets.NETS:
        raise ValueError(f"unknown network {net!r}; allowed: {', '.join(nets.NETS)}")
    input_shape = _ints(manifest["input_shape"], "input_shape", 3, 1)
    pixel_max = _int(manifest["pixel_max"], "pixel_max", 1, 1 << 16)
    classes = _int(manifest["classes"], "classes", 2, 1 << 16)
    state = {k[len("state."):]: v for k, v in arrays.items() if k.startswith("state.")}
    others = sorted(k for k in arrays if not k.startswith("state."))
    if others:
        raise ValueError(f"unexpected array {others[0]!r}")
    checkpoint = FloatCheckpoint(net, input_shape, pixel_max, classes, state,
                                 _meta(manifest))
    # The state must be the one of the network it names (names, shapes, finite real values).
    nets.build(net, input_shape, classes, pixel_max=pixel_max,
               **nets.build_options(checkpoint.meta)).load_state_dict(state)
    return checkpoint


def _meta(manifest: dict) -> dict:
    meta = manifest.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a JSON object, not {meta!r}")
    return meta


def load(path) -> IntegerModel | FloatCheckpoint:
    """Load a file written by ``save`` or ``save_float``.

    Raises ``ValueError`` with one clear line when the file is missing, not a mulfree model,
    of another format version, or corrupt: a checksum mismatch (of the arrays or the
    manifest), or any field missing, of the wrong type, out of its range or inconsistent with
    the others (``check_model``).
    """
    manifest, arrays = read_container(path, format=FORMAT, version=VERSIONS,
                                      what="mulfree model", again=" (train it again)")
    try:
        for key in ("kind", "input_shape", "pixel_max", "classes"):
            if key not in manifest:
                raise ValueError(f"manifest field {key!r} is missing")
        if manifest["kind"] == "float":
            return _float_checkpoint(manifest, arrays)
        if manifest["kind"] != "integer":
            raise ValueError(f"unknown kind {manifest['kind']!r}; allowed: integer, float")
        version = manifest["version"]
        records = manifest.get("layers")
        if not isinstance(records, list) or not records:
            raise ValueError(f"layers must be a non-empty list, not {records!r}")
        known = {f"layer{i}.{name}" for i in range(len(records))
                 for name in _LAYER_ARRAYS + _LAYER_ARRAYS_V2}
        unknown = sorted(name for name in set(arrays) - known if not name.startswith("state."))
        if unknown:
            raise ValueError(f"unexpected array {unknown[0]!r}")
        if version < 2:
            _refuse_v2_fields(manifest, records, arrays)
        layers = [_layer_from_manifest(i, fields, arrays) for i, fields in enumerate(records)]
        for i, (layer, fields) in enumerate(zip(layers, records)):
            if fields.get("weights_shape") != list(layer.weights.shape):
                raise ValueError(f"layer {i} weights_shape {fields.get('weights_shape')!r} is "
                                 f"not the weights' shape {list(layer.weights.shape)}")
        pixel_max = _int(manifest["pixel_max"], "pixel_max", 1, 1 << 16)
        model = IntegerModel(layers, _ints(manifest["input_shape"], "input_shape", 3, 1),
                             pixel_max, _int(manifest["classes"], "classes", 2, 1 << 16),
                             _meta(manifest),
                             pixel_min=_int(manifest.get("pixel_min", 0), "pixel_min",
                                            -(1 << 16), pixel_max - 1),
                             float_io=_float_io(manifest.get("float_io")),
                             state=_state(arrays))
        check_model(model)
        return model
    except ValueError as exc:
        raise _corrupt(path, str(exc)) from None
