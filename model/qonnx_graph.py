"""Read a QONNX graph into layers: the structure ``model.qonnx_import`` folds (qonnx extra).

``load_graph`` applies qonnx's shape inference and constant folding (quantizers kept, every
node named: ``<op type>_<k>`` for unnamed ones, the names qonnx's clean-up gives); ``walk``
follows the one chain from the graph input to its output and returns the input quantizer
and one ``GraphLayer`` per ``Conv``/``MatMul``/``Gemm``: its weights read through their
quantizer (``GraphWeights``: the executor's own quantized values, integer levels and codes,
the scheme they map to), geometry, bias, output ops and next quantizer. Anything outside
what ``model.qonnx_import`` accepts raises ``ImportRefused``, one line naming the node, its
op type and why.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.infer_shapes import InferShapes

from model import quant
from model.qonnx_ref import Quantizer, rounding_function

__all__ = ["ImportRefused", "refuse", "fmt", "load_graph", "Graph", "GraphWeights",
           "GraphLayer", "walk", "QUANT_DOMAIN", "MAX_WEIGHT_BITS", "MAX_HIDDEN_BITS",
           "MAX_INPUT_BITS"]

#: The domain qonnx's executor runs its quantizers in (set on every quantizer, as qonnx's
#: own clean-up does).
QUANT_DOMAIN = "qonnx.custom_op.general"
#: Widest weight quantizer (the look-up-table unit's ``w_bits``).
MAX_WEIGHT_BITS = 8
#: Widest quantizer between two layers (``2**k - 1`` thresholds per channel).
MAX_HIDDEN_BITS = 8
#: Widest input quantizer.
MAX_INPUT_BITS = 16

_INT_QUANT = ("Quant", "IntQuant")
_BIPOLAR = "BipolarQuant"
_QUANTIZERS = _INT_QUANT + (_BIPOLAR,)
_LINEAR = ("Conv", "MatMul", "Gemm")
_AFFINE = ("Mul", "Div", "Add", "Sub", "BatchNormalization")
_MONOTONE = _AFFINE + ("Relu", "Clip")
_RESHAPE = ("Flatten", "Reshape")
_SUPPORTED = _QUANTIZERS + _LINEAR + _MONOTONE + _RESHAPE + ("MaxPool", "Identity")


class ImportRefused(ValueError):
    """A graph that does not import: one line naming the node (or graph input) and why."""


def refuse(node, why: str) -> ImportRefused:
    """The refusal of ``node``: ``node '<name>' (<op type>): <why>``."""
    return ImportRefused(f"node {node.name!r} ({node.op_type}): {why}")


def fmt(v) -> str:
    """A float as the shortest text that gives back its float32."""
    return f"{float(v):.9g}"


# --------------------------------------------------------------------------------------------
# Reading the graph
# --------------------------------------------------------------------------------------------

def load_graph(source) -> ModelWrapper:
    """The graph of ``source`` (a path, an ``onnx.ModelProto`` or a ``ModelWrapper``) after
    qonnx's shape inference and constant folding, quantizers kept, every node named.

    Unnamed nodes are named ``<op type>_<k>`` (the names qonnx's clean-up would give);
    quantizers get qonnx's domain. Raises ``ImportRefused`` if the file is not ONNX or the
    shapes cannot be inferred.
    """
    if isinstance(source, ModelWrapper):
        proto = copy.deepcopy(source.model)
    elif isinstance(source, onnx.ModelProto):
        proto = copy.deepcopy(source)
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ImportRefused(f"ONNX file {path!r} not found")
        try:
            proto = onnx.load(path)
        except Exception as exc:  # protobuf decode errors have many types
            raise ImportRefused(f"{path!r} is not an ONNX model ({type(exc).__name__})") \
                from None
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        if not node.name:
            k = counts.get(node.op_type, 0)
            node.name = f"{node.op_type}_{k}"
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
        if node.op_type in _QUANTIZERS:
            node.domain = QUANT_DOMAIN
    if not any(op.domain == QUANT_DOMAIN for op in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(QUANT_DOMAIN, 1))
    model = ModelWrapper(proto)
    try:
        model = model.transform(InferShapes())
        model = model.transform(FoldConstants(exclude_op_types=list(_QUANTIZERS)))
    except Exception as exc:  # shape inference and folding raise anything
        raise ImportRefused(f"qonnx cannot infer the graph's shapes or fold its constants: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") \
            from None
    return model


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Graph:
    """Navigation over a loaded graph: single consumers, initializers, shapes."""

    def __init__(self, model: ModelWrapper):
        self.model = model
        graph = model.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            names = [i.name for i in graph.input]
            raise ImportRefused(f"the graph has {len(graph.input)} inputs ({', '.join(names)}) "
                                f"and {len(graph.output)} outputs; mulfree imports one input "
                                "and one output")
        self.input = graph.input[0].name
        self.output = graph.output[0].name

    def init(self, name):
        return self.model.get_initializer(name)

    def shape(self, name) -> list[int]:
        return list(self.model.get_tensor_shape(name) or [])

    def consumer(self, tensor: str):
        """The one node reading ``tensor``, or None at the graph output."""
        users = self.model.find_consumers(tensor)
        if len(users) > 1:
            raise refuse(users[1], f"tensor {tensor!r} feeds {len(users)} nodes "
                          f"({', '.join(repr(u.name) for u in users)}); mulfree imports a "
                          "chain of layers (no branches or residual connections)")
        if not users:
            if tensor != self.output:
                producer = self.model.find_producer(tensor)
                raise refuse(producer, f"its output {tensor!r} is not used")
            return None
        return users[0]

    def const(self, node, index: int, what: str) -> np.ndarray:
        """Input ``index`` of ``node`` as a float64 array; it must be an initializer."""
        if index >= len(node.input) or not node.input[index]:
            raise refuse(node, f"has no {what}")
        value = self.init(node.input[index])
        if value is None:
            raise refuse(node, f"its {what} {node.input[index]!r} is computed in the graph; "
                          "mulfree needs a constant")
        value = np.asarray(value)
        if value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)):
            raise refuse(node, f"its {what} must hold finite numbers")
        return value.astype(np.float64)


def _scalar(graph: Graph, node, index: int, what: str) -> float:
    """An input that must hold one value (a broadcast tensor whose elements are all equal)."""
    v = graph.const(node, index, what)
    if v.size == 0 or np.any(v != v.flat[0]):
        raise refuse(node, f"its {what} varies ({v.size} values); allowed: one value for "
                      "the whole tensor")
    return float(v.flat[0])


def _bits(graph: Graph, node) -> int:
    bits = _scalar(graph, node, 3, "bit width")
    if bits != int(bits) or bits < 1:
        raise refuse(node, f"bit width {fmt(bits)} is not a positive integer")
    return int(bits)


def _quant_attrs(node) -> tuple[bool, bool, str]:
    """``signed``, ``narrow``, ``rounding_mode`` as the executor reads them (it requires
    ``signed`` and ``narrow`` and defaults ``rounding_mode`` to ``ROUND``)."""
    op = getCustomOp(node)
    values = {}
    for name in ("signed", "narrow", "rounding_mode"):
        try:
            values[name] = op.get_nodeattr(name)
        except Exception:  # the executor's own refusal of a missing required attribute
            raise refuse(node, f"attribute {name!r} is not set, and qonnx's executor requires "
                         "it (set signed and narrow explicitly)") from None
    signed, narrow = bool(values["signed"]), bool(values["narrow"])
    mode = _text(values["rounding_mode"])
    try:
        rounding_function(mode)
    except ValueError as exc:
        raise refuse(node, str(exc)) from None
    return signed, narrow, mode.upper()


def _activation_quantizer(graph: Graph, node, *, max_bits: int, where: str) -> Quantizer:
    """The ``Quantizer`` of an activation ``Quant``/``BipolarQuant`` node."""
    scale = _scalar(graph, node, 1, "scale")
    if not scale > 0 or float(np.float32(scale)) != scale:
        raise refuse(node, f"activation scale {fmt(scale)} must be a float32 > 0")
    if node.op_type == _BIPOLAR:
        return Quantizer(_BIPOLAR, scale)
    zero = _scalar(graph, node, 2, "zero point")
    if zero != 0:
        raise refuse(node, f"activation zero point {fmt(zero)} is not supported (allowed: 0)")
    bits = _bits(graph, node)
    signed, narrow, mode = _quant_attrs(node)
    if bits > max_bits:
        raise refuse(node, f"{bits}-bit activations {where}; allowed: at most {max_bits} bits")
    if bits == 1 and not signed and narrow:
        raise refuse(node, "a 1-bit unsigned narrow quantizer has a single level")
    return Quantizer("Quant", scale, bits, signed, narrow, mode)


# --------------------------------------------------------------------------------------------
# One layer as found in the graph
# --------------------------------------------------------------------------------------------

@dataclass
class GraphWeights:
    """A layer's quantized weights in [M, C, R, S] layout."""

    node: object                 # the weight quantizer
    values: np.ndarray           # float32: the executor's quantized weights
    levels: np.ndarray           # int64 integer levels
    unit: np.ndarray             # float64 [M]: the value of one level, per output channel
    form: str                    # "binary", "ternary", "pow2", "lut", "dorefa"
    bits: int                    # the quantizer's bit width
    codes: np.ndarray            # int64 codes in the scheme's encoding (before xnor packing)
    codebook: np.ndarray | None  # LUT levels of each code

    def negated(self, channels: np.ndarray) -> "GraphWeights":
        """The same weights with the integer levels (and unit) of ``channels`` negated.

        The product ``level * unit`` is unchanged; the layer's accumulator changes sign in
        those channels. Raises ``ImportRefused`` if a negated level has no code.
        """
        sign = np.where(channels, -1, 1)
        levels = self.levels * sign[:, None, None, None]
        codebook = self.codebook
        if self.form == "lut":
            used = np.unique(levels)
            if not np.all(np.isin(used, codebook)):
                # A new table of the levels in use (padded with 0, which changes no range).
                if used.size > codebook.size:
                    raise refuse(self.node, f"negating the decreasing channels needs "
                                 f"{used.size} weight levels, more than the "
                                 f"{codebook.size} of a {self.bits}-bit look-up table")
                codebook = np.concatenate([used, np.zeros(codebook.size - used.size,
                                                          dtype=np.int64)])
            where = {}
            for q, v in enumerate(codebook.tolist()):
                where.setdefault(v, q)
            codes = np.vectorize(where.__getitem__, otypes=[np.int64])(levels)
        elif self.form == "dorefa":
            n = (1 << self.bits) - 1
            codes = np.where(channels[:, None, None, None], n - self.codes, self.codes)
        else:
            codes = quant.encode_weight_levels(self.form, levels)
        return GraphWeights(self.node, self.values, levels, self.unit * sign, self.form,
                            self.bits, codes, codebook)


@dataclass
class GraphLayer:
    """A conv/dense layer and its output ops as found in the graph."""

    node: object
    kind: str
    weights: GraphWeights
    stride: int
    padding: int
    flatten: bool
    in_shape: tuple              # (C, H, W) of the input codes (before xnor packing)
    out_tensor: str              # the linear op's output
    bias: np.ndarray             # float64 [M] (zeros if none)
    ops: list = field(default_factory=list)   # output ops, MaxPool included
    pool: int = 0
    pool_node: object = None
    pool_after: int = 0          # how many output ops come before the MaxPool
    quant_node: object = None    # the next activation quantizer (None: scores)
    quantizer: Quantizer | None = None
    pool_after_quant: bool = False


def _output_axis_layout(node, w: np.ndarray, attrs: dict):
    """(weights [M, C, R, S] view function, output axis) of a linear op's weight tensor."""
    if node.op_type == "Conv":
        return (lambda a: a), 0
    if node.op_type == "Gemm" and int(attrs.get("transB", 0)):
        return (lambda a: a[:, :, None, None]), 0
    return (lambda a: a.T[:, :, None, None]), 1


def _weights(graph: Graph, linear, index: int) -> GraphWeights:
    """Read, check and map the weight quantizer feeding input ``index`` of ``linear``."""
    producer = graph.model.find_producer(linear.input[index])
    if producer is None or producer.op_type not in _QUANTIZERS:
        what = "a constant" if producer is None else f"{producer.op_type} {producer.name!r}"
        raise refuse(linear, f"its weights come from {what}, not from a Quant or "
                      "BipolarQuant of an initializer")
    wq = producer
    w = graph.init(wq.input[0])
    if w is None:
        raise refuse(wq, "quantizes a computed tensor; weights must be an initializer")
    w = np.asarray(w, dtype=np.float32)
    attrs = _attrs(linear)
    if linear.op_type == "Conv" and w.ndim != 4:
        raise refuse(linear, f"weights of shape {list(w.shape)}; mulfree imports 2-D "
                      "convolutions ([M, C, R, S] weights)")
    if linear.op_type != "Conv" and w.ndim != 2:
        raise refuse(linear, f"weights of shape {list(w.shape)}; allowed: [K, M] matrices")
    layout, out_axis = _output_axis_layout(linear, w, attrs)
    scale = graph.const(wq, 1, "scale").astype(np.float32)
    try:
        scale_b = np.broadcast_to(scale, w.shape)
    except ValueError:
        raise refuse(wq, f"scale of shape {list(scale.shape)} does not broadcast to the "
                      f"weights {list(w.shape)}") from None
    if w.ndim == 4:
        per_out = scale_b[:, :1, :1, :1]
    else:
        per_out = scale_b[:, :1] if out_axis == 0 else scale_b[:1, :]
    if np.any(scale_b != per_out):
        raise refuse(wq, "weight scale varies along the input channels or kernel positions; "
                      "allowed: one scale per output channel")
    if np.any(~(scale_b > 0)):
        raise refuse(wq, f"weight scale {fmt(scale_b[~(scale_b > 0)].flat[0])} is not > 0")
    unit = layout(scale_b)[:, 0, 0, 0].astype(np.float64)
    scale32 = scale.astype(np.float32)
    if wq.op_type == _BIPOLAR:
        from qonnx.custom_op.general.bipolar_quant import binary_quant
        values = np.asarray(binary_quant(w, scale32), dtype=np.float32)
        levels = np.where(w >= 0, 1, -1).astype(np.int64)
        return _mapped(wq, values, levels, layout, unit, "binary", 1, None, None)
    from qonnx.custom_op.general.intquant import int_quant
    zero = _scalar(graph, wq, 2, "zero point")
    bits = _bits(graph, wq)
    signed, narrow, mode = _quant_attrs(wq)
    values = np.asarray(int_quant(w, scale32, np.float32(zero), np.float32(bits), signed,
                                  narrow, mode), dtype=np.float32)
    q = np.rint(values.astype(np.float64) / scale_b + zero).astype(np.int64)
    n = (1 << bits) - 1
    if bits == 1 and signed:
        if zero != 0:
            raise refuse(wq, f"weight zero point {fmt(zero)} is not supported (allowed: 0)")
        return _mapped(wq, values, q, layout, unit, "binary", 1, None, (values, q, scale32, 0))
    if bits > MAX_WEIGHT_BITS:
        raise refuse(wq, f"{bits}-bit weights; allowed: at most {MAX_WEIGHT_BITS} bits (the "
                      "look-up-table unit)")
    if zero == 0:
        if signed and bits == 2:
            form = "ternary" if narrow else "pow2"
            return _mapped(wq, values, q, layout, unit, form, 2, None, (values, q, scale32, 0))
        if signed:
            codebook = np.array([c - (1 << bits) if c >= 1 << (bits - 1) else c
                                 for c in range(1 << bits)], dtype=np.int64)
            codes = q & ((1 << bits) - 1)
        else:
            codebook = np.arange(1 << bits, dtype=np.int64)
            codes = q
        return _mapped(wq, values, q, layout, unit, "lut", bits, (codes, codebook),
                       (values, q, scale32, 0))
    if not signed and zero == n / 2:
        return _mapped(wq, values, 2 * q - n, layout, unit / 2, "dorefa", bits, (q, None),
                       (values, q, scale32, zero))
    dorefa = f", or n/2 = {fmt(n / 2)} for DoReFa's (2q - n)/n weights" if not signed else ""
    raise refuse(wq, f"weight zero point {fmt(zero)} is not supported (allowed: 0{dorefa})")


def _mapped(wq, values, levels, layout, unit, form, bits, lut, check) -> GraphWeights:
    if check is not None:   # the codes must give back the executor's values exactly
        vals, q, scale, zero = check
        again = ((q.astype(np.float32) - np.float32(zero)) * scale).astype(np.float32)
        if not np.array_equal(again, vals):
            raise refuse(wq, "its quantized weights are not (code - zero point) * scale in "
                          "float32; cannot read integer codes from them")
    levels4 = layout(levels).astype(np.int64)
    if lut is None:
        codes, codebook = quant.encode_weight_levels(form, levels4), None
    else:
        codes, codebook = layout(lut[0]).astype(np.int64), lut[1]
    return GraphWeights(wq, np.ascontiguousarray(layout(values)), levels4, unit, form, bits,
                    np.ascontiguousarray(codes), codebook)


def _conv_geometry(graph: Graph, node, w_shape) -> tuple[int, int]:
    """(stride, padding) of a ``Conv``; refuses what the array cannot run."""
    a = _attrs(node)
    if int(a.get("group", 1)) != 1:
        raise refuse(node, f"groups {a['group']} is not supported (groups = 1 only)")
    if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
        raise refuse(node, f"dilations {list(a['dilations'])} are not supported (1 only)")
    auto_pad = _text(a.get("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "VALID"):
        raise refuse(node, f"auto_pad {auto_pad} is not supported (give explicit pads)")
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])] if auto_pad == "NOTSET" else [0] * 4
    if len(set(pads)) != 1:
        raise refuse(node, f"pads {pads} are not supported (the same padding on every side)")
    strides = [int(s) for s in a.get("strides", [1, 1])]
    if len(set(strides)) != 1:
        raise refuse(node, f"strides {strides} are not supported (equal strides only)")
    if "kernel_shape" in a and list(a["kernel_shape"]) != list(w_shape[2:]):
        raise refuse(node, f"kernel_shape {list(a['kernel_shape'])} differs from the "
                      f"weights {list(w_shape)}")
    return strides[0], pads[0]


def _linear_layer(graph: Graph, node, tensor: str, flatten: bool) -> GraphLayer:
    """The layer of a ``Conv``/``MatMul``/``Gemm`` whose activation input is ``tensor``."""
    if not node.input or node.input[0] != tensor:
        raise refuse(node, "its first input must be the quantized activations")
    in_shape = graph.shape(tensor)
    w = _weights(graph, node, 1)
    m = w.levels.shape[0]
    bias = np.zeros(m)
    if node.op_type == "Conv":
        if len(in_shape) != 4:
            raise refuse(node, f"input of shape {in_shape}; allowed: [1, C, H, W]")
        if flatten:
            raise refuse(node, "a convolution after Flatten/Reshape is not supported")
        stride, padding = _conv_geometry(graph, node, w.levels.shape)
        if len(node.input) > 2 and node.input[2]:
            bias = graph.const(node, 2, "bias")
        kind, shape = "conv", tuple(in_shape[1:])
    else:
        if len(in_shape) != 2:
            raise refuse(node, f"input of shape {in_shape}; flatten it to [1, K] first "
                          "(Flatten or Reshape)")
        if node.op_type == "Gemm":
            a = _attrs(node)
            if int(a.get("transA", 0)):
                raise refuse(node, "transA = 1 is not supported")
            if float(a.get("alpha", 1.0)) != 1.0:
                raise refuse(node, f"alpha {fmt(a['alpha'])} is not supported (1 only; "
                              "put the factor in the weight scale)")
            if len(node.input) > 2 and node.input[2]:
                if float(a.get("beta", 1.0)) != 1.0:
                    raise refuse(node, f"beta {fmt(a['beta'])} is not supported (1 only)")
                c = graph.const(node, 2, "bias C")
                if c.size not in (1, m) or (c.ndim == 2 and c.shape[0] != 1):
                    raise refuse(node, f"bias C of shape {list(c.shape)} is not one value "
                                  "per output")
                bias = np.broadcast_to(c.reshape(-1), (m,)).astype(np.float64)
        stride, padding, kind, shape = 1, 0, "dense", (in_shape[1], 1, 1)
    if bias.shape != (m,):
        raise refuse(node, f"bias of shape {list(bias.shape)}; allowed: one per output")
    if w.levels.shape[1] != shape[0]:
        raise refuse(node, f"weights {list(w.levels.shape)} do not match the input "
                      f"{in_shape}")
    if in_shape[0] != 1:
        raise refuse(node, f"batch dimension {in_shape[0]}; mulfree imports batch 1")
    return GraphLayer(node, kind, w, stride, padding, flatten, tuple(int(v) for v in shape),
                  node.output[0], bias)


def _maxpool(node) -> int:
    a = _attrs(node)
    k = [int(v) for v in a.get("kernel_shape", [])]
    s = [int(v) for v in a.get("strides", [1] * len(k))]
    pads = [int(v) for v in a.get("pads", [0] * 2 * len(k))]
    if len(k) != 2 or len(set(k)) != 1:
        raise refuse(node, f"kernel_shape {k}; allowed: a square 2-D window")
    if s != k or any(pads) or int(a.get("ceil_mode", 0)) or \
            any(int(d) != 1 for d in a.get("dilations", [1, 1])) or \
            _text(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
        raise refuse(node, f"window {k}, strides {s}, pads {pads}: mulfree pools with "
                      "strides equal to the window, no padding, floor mode")
    if len(node.output) > 1 and node.output[1]:
        raise refuse(node, "its Indices output is not supported")
    return k[0]


def _reshape_is_flatten(graph: Graph, node) -> bool:
    """True if a ``Flatten``/``Reshape`` turns [1, ...] into [1, product]."""
    before = graph.shape(node.input[0])
    after = graph.shape(node.output[0])
    if node.op_type == "Flatten" and int(_attrs(node).get("axis", 1)) != 1:
        return False
    return len(after) == 2 and after[0] == 1 and before[:1] == [1] and \
        after[1] == int(np.prod(before[1:]))


def _per_channel(graph: Graph, node, index: int, channels: int, rank: int) -> None:
    """Refuse unless input ``index`` is a constant that is one value per channel (axis 1)."""
    v = graph.const(node, index, "constant operand")
    shape = [1] * (rank - v.ndim) + list(v.shape)
    ok = len(shape) == rank and all(d == 1 for i, d in enumerate(shape) if i != 1) and \
        shape[1] in (1, channels)
    if not ok:
        raise refuse(node, f"its constant of shape {list(v.shape)} is not one value per "
                      f"channel of the [{', '.join(['1', str(channels)] + ['.'] * (rank - 2))}]"
                      " output; only per-channel biases and scales fold into thresholds")


def _check_output_op(graph: Graph, node, tensor: str, channels: int, rank: int) -> None:
    """Refuse an output op that is not a per-channel monotone map of ``tensor``."""
    op = node.op_type
    if op in ("Mul", "Add", "Sub", "Div"):
        if len(node.input) != 2:
            raise refuse(node, "needs two inputs")
        other = 1 if node.input[0] == tensor else 0
        if graph.init(node.input[other]) is None:
            raise refuse(node, f"combines two computed tensors ({node.input[0]!r}, "
                          f"{node.input[1]!r}); only a constant per-channel operand folds")
        if op == "Div" and other == 0:
            raise refuse(node, "divides a constant by the activations; not monotone")
        _per_channel(graph, node, other, channels, rank)
        if op in ("Mul", "Div"):
            v = graph.const(node, other, "constant operand")
            if op == "Div" and np.any(v == 0):
                raise refuse(node, "divides by zero")
    elif op == "BatchNormalization":
        if len([o for o in node.output if o]) > 1 or int(_attrs(node).get("training_mode", 0)):
            raise refuse(node, "training mode is not supported (inference only)")
        for i, what in enumerate(("scale", "bias", "mean", "variance"), start=1):
            v = graph.const(node, i, what)
            if v.shape != (channels,):
                raise refuse(node, f"its {what} has shape {list(v.shape)}; allowed: "
                              f"[{channels}] (one per channel)")
    elif op == "Clip":
        for i in (1, 2):
            if len(node.input) > i and node.input[i]:
                _scalar(graph, node, i, ("min", "max")[i - 1])


# --------------------------------------------------------------------------------------------
# The graph walk
# --------------------------------------------------------------------------------------------

def walk(graph: Graph) -> tuple[Quantizer, object, list[GraphLayer]]:
    """(input quantizer, its node, the layers) of the graph's one chain."""
    shape = graph.shape(graph.input)
    if not shape or shape[0] != 1:
        dims = graph.model.graph.input[0].type.tensor_type.shape.dim
        first = (dims[0].dim_param or dims[0].dim_value) if dims else None
        why = ("a symbolic batch dimension " f"{first!r}" if isinstance(first, str) else
               f"batch dimension {first}")
        raise ImportRefused(f"graph input {graph.input!r}: {why}; mulfree imports graphs with "
                            "batch dimension 1 (qonnx-cleanup --override-inpsize 1)")
    node = graph.consumer(graph.input)
    if node is None or node.op_type not in _QUANTIZERS:
        what = "nothing" if node is None else f"{node.op_type} {node.name!r}"
        raise ImportRefused(f"graph input {graph.input!r} feeds {what}; mulfree needs a Quant "
                            "or BipolarQuant on the graph input (its codes are the first "
                            "layer's inputs)")
    in_node = node
    in_quant = _activation_quantizer(graph, node, max_bits=MAX_INPUT_BITS,
                                     where="on the graph input")
    tensor = node.output[0]
    layers: list[GraphLayer] = []
    quant_node = node
    while True:
        flatten = False
        node = graph.consumer(tensor)
        while node is not None and node.op_type in _RESHAPE + ("MaxPool", "Identity"):
            if node.op_type == "MaxPool":
                if not layers or flatten:
                    raise refuse(node, "pools a quantizer's codes that no layer produced "
                                  "(only after a layer's quantizer, before any Flatten)")
                prev = layers[-1]
                if prev.pool:
                    raise refuse(node, "a second MaxPool for one layer is not supported")
                prev.pool, prev.pool_node, prev.pool_after_quant = _maxpool(node), node, True
            elif node.op_type in _RESHAPE:
                if not _reshape_is_flatten(graph, node):
                    raise refuse(node, f"reshapes {graph.shape(node.input[0])} to "
                                  f"{graph.shape(node.output[0])}; only flattening to [1, K] "
                                  "is supported")
                flatten = True
            tensor = node.output[0]
            node = graph.consumer(tensor)
        if node is None:
            if not layers:
                raise ImportRefused("the graph has no Conv, MatMul or Gemm layer")
            return in_quant, in_node, layers
        if node.op_type not in _LINEAR:
            if node.op_type in _SUPPORTED:
                raise refuse(node, f"comes between the quantizer {quant_node.name!r} and the "
                              "next Conv/MatMul/Gemm, where only MaxPool, Flatten and Reshape "
                              "may be")
            raise _unknown(node)
        layer = _linear_layer(graph, node, tensor, flatten)
        layers.append(layer)
        tensor = layer.out_tensor
        m = layer.weights.levels.shape[0]
        rank = len(graph.shape(tensor))
        while True:
            node = graph.consumer(tensor)
            if node is None:
                return in_quant, in_node, layers
            if node.op_type in _QUANTIZERS:
                layer.quant_node = node
                layer.quantizer = _activation_quantizer(
                    graph, node, max_bits=MAX_HIDDEN_BITS,
                    where="between layers (2**k - 1 thresholds per channel)")
                quant_node = node
                tensor = node.output[0]
                break
            if node.op_type == "MaxPool":
                if layer.pool:
                    raise refuse(node, "a second MaxPool for one layer is not supported")
                layer.pool, layer.pool_node = _maxpool(node), node
                layer.pool_after = len([o for o in layer.ops if o.op_type != "Identity"])
            elif node.op_type in _MONOTONE:
                _check_output_op(graph, node, tensor, m, rank)
            elif node.op_type in _RESHAPE and _trailing(graph, node):
                return in_quant, in_node, layers
            elif node.op_type != "Identity":
                if node.op_type in _SUPPORTED:
                    raise refuse(node, f"comes among the output ops of {layer.node.name!r}, "
                                  "where only per-channel Mul, Div, Add, Sub, "
                                  "BatchNormalization, Relu, Clip and MaxPool may be")
                raise _unknown(node)
            layer.ops.append(node)
            tensor = node.output[0]


def _trailing(graph: Graph, node) -> bool:
    """True if ``node`` and what follows it up to the graph output are only Flatten, Reshape
    and Identity nodes; refuses one of them that does more than flatten to [1, K]."""
    nodes = []
    while node is not None:
        if node.op_type not in _RESHAPE + ("Identity",):
            return False
        nodes.append(node)
        node = graph.consumer(node.output[0])
    for node in nodes:
        if node.op_type in _RESHAPE and not _reshape_is_flatten(graph, node):
            raise refuse(node, f"reshapes {graph.shape(node.input[0])} to "
                         f"{graph.shape(node.output[0])}; only flattening to [1, K] is "
                         "supported")
    return True


def _unknown(node) -> ImportRefused:
    return refuse(node, f"op {node.op_type} is not supported; mulfree imports Quant, "
                   "BipolarQuant, Conv, MatMul, Gemm, per-channel Mul/Div/Add/Sub/"
                   "BatchNormalization, Relu, Clip, MaxPool, Flatten, Reshape and Identity")


