"""The integer deployment model: fold a trained quantized network into integer layers.

``fold(net, ...)`` turns a trained quantized ``Sequential`` (``model.nets``) into an
``IntegerModel``: a list of ``IntegerLayer`` records, each one conv or dense layer exactly as
the accelerator runs it, followed by its integer output stage:

- ``scheme``, ``weights`` (int codes ``[M, C, R, S]`` in the ``model.quant`` encoding; a dense
  layer is ``R = S = 1``), ``a_bits``, ``w_bits``, ``stride``, ``padding``, ``in_shape``
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

The file format (``save``/``load``) is one ``.npz`` of integer arrays plus a JSON manifest
(format name, version, net, data set, per-layer fields, accuracy, training settings and a
SHA-256 of the arrays); ``load`` refuses another version or a corrupt file with one clear
message. A float network (``float``, ``lenet300``) cannot fold; it is saved as a float
checkpoint (``save_float``) that ``load`` returns as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from model import layer_file, ops, quant
from model import layers as L
from model.container import read_container, write_container
from model.thresholds import fold_multilevel_thresholds, fold_sign_threshold

__all__ = ["FORMAT", "VERSION", "IntegerLayer", "IntegerModel", "LayerTrace", "IntegerTrace",
           "FloatCheckpoint", "fold", "run_integer", "predict", "hardware_layer", "save",
           "save_float", "load", "check_model", "xnor_lanes", "MAX_XNOR_LANES"]

FORMAT = "mulfree-model"
VERSION = 1
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
    weights : int array [M, C, R, S]
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

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weights.shape[1:]))

    @property
    def accumulator_width(self) -> int:
        """Signed bits that hold every accumulator of the layer (``model.ops`` width rule)."""
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
        if self.kind == "dense":
            acc = ops.dense(self.scheme, inputs[:, :, 0, 0], self.weights[:, :, 0, 0],
                            a_bits=self.a_bits, w_bits=self.w_bits)
            return acc[:, :, None, None]
        return ops.conv2d(self.scheme, inputs, self.weights, stride=self.stride,
                          padding=self.padding, a_bits=self.a_bits, w_bits=self.w_bits)

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
        return ops.apply_multilevel_thresholds(pooled, th, axis=1)


@dataclass
class IntegerModel:
    """A folded network: integer layers plus what is needed to feed and describe it."""

    layers: list[IntegerLayer]
    input_shape: tuple
    pixel_max: int
    classes: int
    meta: dict = field(default_factory=dict)

    @property
    def pixel_bits(self) -> int:
        return int(self.pixel_max).bit_length()

    def summary(self) -> list[str]:
        """One line per layer: kind, scheme, widths, shapes, output stage."""
        lines = []
        for i, layer in enumerate(self.layers):
            m, c, r, s = layer.weights.shape
            pool = f", maxpool {layer.pool}" if layer.pool else ""
            out = layer.output + (f" {layer.out_bits}-bit" if layer.output == "levels" else "")
            lines.append(f"{i}: {layer.kind} {layer.scheme} W{layer.w_bits} A{layer.a_bits} "
                         f"[{m}, {c}, {r}, {s}] on {list(layer.in_shape)}, stride "
                         f"{layer.stride}, padding {layer.padding}{pool}, accumulator "
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
    gain = s * inv
    offset = p["beta"] - p["mean"] * inv
    reach = max(abs(pooled_range[0]), abs(pooled_range[1]), 1)
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
        if scheme == "xnor":
            lanes = xnor_lanes(channels)
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
                           output="scores")
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
                        int(classes), dict(meta or {}))


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
    return quant.check_codes("pixel codes", x, 0, model.pixel_max)


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
    return IntegerTrace(traces, np.argmax(acts, axis=1) if done else None)


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
                            padding=rec.padding, a_bits=rec.a_bits, w_bits=rec.w_bits)


def predict(model: IntegerModel, x_codes, *, batch_size: int = 256) -> np.ndarray:
    """Integer-model predictions for pixel codes ``[N, C, H, W]``, in batches."""
    x = _check_images(model, x_codes)
    out = [run_integer(model, x[i:i + batch_size]).predictions
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# The file format
# --------------------------------------------------------------------------------------------

_LAYER_FIELDS = ("kind", "scheme", "a_bits", "w_bits", "stride", "padding", "in_shape",
                 "channels", "flatten", "pool", "acc_range", "output", "out_bits",
                 "score_shift")
_LAYER_ARRAYS = ("weights", "thresholds", "flip", "constant", "score_gain", "score_offset")


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
    arrays, layers = {}, []
    for i, layer in enumerate(model.layers):
        fields = {name: getattr(layer, name) for name in _LAYER_FIELDS}
        fields["accumulator_width"] = layer.accumulator_width
        fields["weights_shape"] = list(layer.weights.shape)
        layers.append(fields)
        for name in _LAYER_ARRAYS:
            value = getattr(layer, name)
            if value is not None:
                arr = np.asarray(value)
                arrays[f"layer{i}.{name}"] = arr.astype(np.uint8) if arr.dtype == bool else arr
    manifest = {"kind": "integer", "input_shape": list(model.input_shape),
                "pixel_max": model.pixel_max, "classes": model.classes, "layers": layers,
                "meta": model.meta}
    write_container(path, format=FORMAT, version=VERSION, manifest=manifest, arrays=arrays,
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
    if c != in_shape[0]:
        raise ValueError(f"{what}: weights {list(weights.shape)} take {c} input channels, "
                         f"in_shape {list(in_shape)} has {in_shape[0]}")
    lanes = a_bits if scheme == "xnor" else 1
    if channels != in_shape[0] * lanes:
        raise ValueError(f"{what}: channels {channels} must be {in_shape[0] * lanes} "
                         f"(in_shape {list(in_shape)}" + (f" of {lanes} lanes)" if lanes > 1
                                                          else ")"))
    if kind == "dense" and (r, s, in_shape[1], in_shape[2], stride, padding) != \
            (1, 1, 1, 1, 1, 0):
        raise ValueError(f"{what}: a dense layer has 1x1 weights on a [C, 1, 1] input, stride "
                         "1 and no padding")
    fan_in = c * r * s
    p_lo, p_hi = ops.product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    acc_range = (fan_in * p_lo, fan_in * p_hi)
    if fields["acc_range"] != list(acc_range):
        raise ValueError(f"{what}: acc_range must be {list(acc_range)} (fan-in {fan_in} times "
                         f"the product range), not {fields['acc_range']!r}")
    layer = IntegerLayer(kind=kind, scheme=scheme, weights=weights, a_bits=a_bits,
                         w_bits=w_bits, stride=stride, padding=padding, in_shape=in_shape,
                         channels=channels, flatten=fields["flatten"], pool=pool,
                         acc_range=acc_range, output=output)
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
        count = 1 if output == "sign" else (1 << layer.out_bits) - 1
        layer.thresholds = _integer_array(arrays.get(f"layer{i}.thresholds"),
                                          f"{what} thresholds", (m, count))
        layer.flip = _flags(arrays.get(f"layer{i}.flip"), f"{what} flip", m)
        layer.constant = _flags(arrays.get(f"layer{i}.constant"), f"{what} constant", m)
    if present != expected:
        extra = sorted(present - expected)
        raise ValueError(f"{what}: unexpected array {extra[0]!r} for a {output!r} output"
                         if extra else f"{what}: {sorted(expected - present)[0]} is missing")
    return layer


def _output_codes(layer: IntegerLayer) -> tuple[int, int]:
    """Smallest and largest code a layer's output stage gives."""
    return (-1, 1) if layer.output == "sign" else (0, (1 << layer.out_bits) - 1)


def check_model(model: IntegerModel) -> None:
    """``ValueError`` (one line naming the layer and field) unless the layers chain: each
    takes the previous one's output shape and codes, the first the images, the last gives one
    score per class."""
    c, h, w = model.input_shape
    shape, codes = (c, h, w), (0, model.pixel_max)
    for i, layer in enumerate(model.layers):
        what = f"layer {i}"
        last = i == len(model.layers) - 1
        if (layer.output == "scores") != last:
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
               shift_bn=bool(checkpoint.meta.get("shift_bn", False))).load_state_dict(state)
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
    manifest, arrays = read_container(path, format=FORMAT, version=VERSION,
                                      what="mulfree model", again=" (train it again)")
    try:
        for key in ("kind", "input_shape", "pixel_max", "classes"):
            if key not in manifest:
                raise ValueError(f"manifest field {key!r} is missing")
        if manifest["kind"] == "float":
            return _float_checkpoint(manifest, arrays)
        if manifest["kind"] != "integer":
            raise ValueError(f"unknown kind {manifest['kind']!r}; allowed: integer, float")
        records = manifest.get("layers")
        if not isinstance(records, list) or not records:
            raise ValueError(f"layers must be a non-empty list, not {records!r}")
        known = {f"layer{i}.{name}" for i in range(len(records)) for name in _LAYER_ARRAYS}
        unknown = sorted(set(arrays) - known)
        if unknown:
            raise ValueError(f"unexpected array {unknown[0]!r}")
        layers = [_layer_from_manifest(i, fields, arrays) for i, fields in enumerate(records)]
        for i, (layer, fields) in enumerate(zip(layers, records)):
            if fields.get("weights_shape") != list(layer.weights.shape):
                raise ValueError(f"layer {i} weights_shape {fields.get('weights_shape')!r} is "
                                 f"not the weights' shape {list(layer.weights.shape)}")
        model = IntegerModel(layers, _ints(manifest["input_shape"], "input_shape", 3, 1),
                             _int(manifest["pixel_max"], "pixel_max", 1, 1 << 16),
                             _int(manifest["classes"], "classes", 2, 1 << 16),
                             _meta(manifest))
        check_model(model)
        return model
    except ValueError as exc:
        raise _corrupt(path, str(exc)) from None
