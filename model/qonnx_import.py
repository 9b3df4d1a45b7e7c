"""Import a QONNX graph (Brevitas, FINN, hls4ml) as an integer deployment model.

Needs the ``qonnx`` extra (``pip install 'mulfree[qonnx]'``: qonnx, onnx, onnxruntime).
``import_qonnx(path)`` returns a ``model.deploy.IntegerModel`` whose every output equals what
qonnx's own executor (``qonnx.core.onnx_exec.execute_onnx``) computes for the graph, or
raises ``ImportRefused``: one line naming the node, its op type and why.

The graph, after qonnx's shape inference and constant folding (quantizers kept, node names
kept), must be one chain:

``Quant|BipolarQuant`` on the graph input (its *input quantizer*), then layers, each
``[MaxPool] [Flatten|Reshape]`` after the previous quantizer, one ``Conv``/``MatMul``/
``Gemm`` whose weights come from a ``Quant``/``BipolarQuant`` of an initializer, then its
*output ops* -- per-channel ``Mul``, ``Div``, ``Add``, ``Sub``, ``BatchNormalization``,
``Relu``, ``Clip``, at most one ``MaxPool`` -- and either the next activation quantizer or
the graph output (the last layer's float result becomes its scores).

Weights (one scale per output channel; zero point 0 unless stated):

============================================ =================================================
QONNX weight quantizer                       mulfree scheme
============================================ =================================================
``BipolarQuant``, 1-bit signed ``Quant``     ``binary`` (``xnor`` on +/-1 activations)
2-bit signed narrow ``Quant``                ``ternary``
2-bit signed ``Quant`` (not narrow)          ``pow2`` (levels -2..1)
k-bit signed ``Quant``, k = 3..8             ``dorefa`` with a codebook (look-up table) of the
                                             two's-complement levels; unsigned inputs only
k-bit unsigned ``Quant``, k <= 8             ``dorefa`` with the codebook 0..2**k - 1
unsigned ``Quant``, zero point n/2           ``dorefa``: DoReFa's (2q - n)/n weights,
(n = 2**k - 1), scale 2/n                    level 2q - n
============================================ =================================================

Activations: one scalar scale, zero point 0; the codes of the quantizer (unsigned, signed
or +/-1) are the next layer's input codes unchanged. A layer's output ops and its next
quantizer are a monotone step function of its accumulator in every channel, so they become
integer thresholds (``model.thresholds.fold_monotone_steps``) found by running qonnx's
executor itself on the accumulator values ``s_a * s_w * acc (+ bias)``: its float32
arithmetic, its ties and its rounding mode are reproduced, not re-derived. The accelerator
max-pools the accumulator; where the ops before a ``MaxPool`` (a quantizer included)
decrease with the accumulator in a channel (a negative batch-norm gain), that channel's
integer weights are negated, so that max pooling them is still the graph's max pooling.

When is that exact? The executor's ``Conv``/``MatMul`` output is a float32 sum whose
rounding depends on the order of summation, unless every product and partial sum is exact.
For each output channel the importer bounds how far the executor's sum can be from the
exact ``s_a * s_w * acc + bias`` (0 when everything is exact, as with power-of-two scales;
otherwise the float32 summation bound ``gamma_n * sum|x w|`` plus the rounding of the
quantized values) and checks every threshold against the whole interval: the import is
refused when an accumulator value lies so close to a step that the integer sum does not
determine the executor's code. The last layer's scores are the exact affine map of the
accumulator, within float32 rounding of the executor's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

from model import deploy, ops, quant
from model.qonnx_graph import Graph, GraphLayer, ImportRefused, fmt, load_graph, refuse, walk
from model.qonnx_ref import FloatInterface, Quantizer
from model.thresholds import fold_monotone_steps

__all__ = ["ImportRefused", "import_qonnx", "LayerReport"]

_F32_EPS = 2.0 ** -24   # unit roundoff of float32


# --------------------------------------------------------------------------------------------
# The executor on a layer's output ops
# --------------------------------------------------------------------------------------------

class _OutputOps:
    """qonnx's executor on some of a layer's output ops, one value per channel and sample.

    Calling it with float32 ``x [K, M]`` runs the ops (MaxPool and Identity as Identity) on
    ``x`` laid out as ``[K, M, 1, 1]`` (or ``[K, M]`` after a dense layer) and returns the
    result as [K, M]. The ops are per-channel, so each value meets exactly the arithmetic it
    meets in the graph.
    """

    def __init__(self, graph: Graph, nodes: list, in_name: str, rank: int):
        self.graph = graph
        self.nodes = []
        for node in nodes:
            if node.op_type in ("MaxPool", "Identity"):
                node = helper.make_node("Identity", [node.input[0]], [node.output[0]],
                                        name=node.name)
            self.nodes.append(node)
        self.in_name, self.rank = in_name, rank
        self.out_name = self.nodes[-1].output[0] if self.nodes else in_name
        self.inits = [t for t in graph.model.graph.initializer
                      if any(t.name in n.input for n in self.nodes)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if not self.nodes:
            return x
        k, m = x.shape
        shape = [k, m] + [1] * (self.rank - 2)
        g = helper.make_graph(
            self.nodes, "output_ops",
            [helper.make_tensor_value_info(self.in_name, onnx.TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(self.out_name, onnx.TensorProto.FLOAT, shape)],
            self.inits)
        proto = helper.make_model(g, opset_imports=list(self.graph.model.model.opset_import))
        proto.ir_version = self.graph.model.model.ir_version
        try:
            wrapper = ModelWrapper(proto).transform(InferShapes())
            out = execute_onnx(wrapper, {self.in_name: x.reshape(shape)})[self.out_name]
        except Exception as exc:  # onnxruntime and qonnx raise anything
            first = self.graph.model.get_node_from_name(self.nodes[0].name)
            raise refuse(first, f"qonnx's executor cannot run it on one value per channel: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
        return np.asarray(out, dtype=np.float32).reshape(k, m)


# --------------------------------------------------------------------------------------------
# How far the executor's sum can be from the integer accumulator
# --------------------------------------------------------------------------------------------

def _odd_mantissa(v: float) -> tuple[int, int]:
    """``(m, e)`` with ``|v| = m * 2**e`` and m odd (v != 0)."""
    m, e = math.frexp(abs(v))
    mi, ei = int(m * (1 << 53)), e - 53
    while mi % 2 == 0:
        mi //= 2
        ei += 1
    return mi, ei


@dataclass
class _Accumulation:
    """The executor's ``Conv``/``MatMul`` output in channel c lies within ``delta[c]`` of
    ``unit[c] * acc + bias[c]`` (exactly on it where ``delta[c] == 0``)."""

    unit: np.ndarray    # float64 [M], negative in negated channels
    bias: np.ndarray    # float64 [M]
    delta: np.ndarray   # float64 [M]

    @property
    def delta_units(self) -> np.ndarray:
        """``delta`` in accumulator units."""
        return self.delta / np.abs(self.unit)

    def center(self, acc: np.ndarray) -> np.ndarray:
        """float64 ``unit * acc + bias`` for acc [M, K]."""
        return self.unit[:, None] * acc.astype(np.float64) + self.bias[:, None]

    def band(self, acc: np.ndarray, side: int) -> np.ndarray:
        """float32 [M, K]: the lowest (side -1) or highest (+1) float the executor may give."""
        v = self.center(acc) + side * self.delta[:, None]
        f = v.astype(np.float32)
        toward = np.float32(-np.inf if side < 0 else np.inf)
        beyond = f.astype(np.float64) > v if side < 0 else f.astype(np.float64) < v
        return np.where(beyond, np.nextafter(f, toward), f).astype(np.float32)


def _accumulation(layer: GraphLayer, act: Quantizer) -> _Accumulation:
    """Bound the executor's float32 ``Conv``/``MatMul`` output around the exact value.

    The executor multiplies the quantized values ``x = fl(code * s_a)`` and
    ``w = fl(level * s_w)`` and sums n products (and the bias) in float32, in an order of its
    own: the result is within ``gamma_n * (sum |x w| + |b|)`` of the exact sum, itself within
    ``n * (max|x - code s_a| max|w| + s_a max|code| max|w - level s_w|)`` of
    ``s_a s_w acc + b``. Where every ``x`` and ``w`` is exact and every product and partial
    sum is an integer multiple of ``2**(e_a + e_w)`` below ``2**24`` of them (``s = m 2**e``,
    m odd: power-of-two scales and small codes), the sum is exact whatever the order.
    """
    lo, hi = act.code_range
    codes = np.array([-1, 1]) if act.bipolar else np.arange(lo, hi + 1)
    xvals = act.values(codes).astype(np.float64)
    ex = float(np.max(np.abs(xvals - codes * act.scale)))
    xmax = float(np.max(np.abs(xvals)))
    amax = int(np.max(np.abs(codes)))
    w = layer.weights
    m = w.levels.shape[0]
    wv = w.values.reshape(m, -1).astype(np.float64)
    lv = w.levels.reshape(m, -1)
    ew = np.max(np.abs(wv - lv * w.unit[:, None]), axis=1)
    total = np.sum(np.abs(wv), axis=1) * xmax + np.abs(layer.bias)
    n = lv.shape[1] + 1
    gamma = n * _F32_EPS / (1 - n * _F32_EPS)
    delta = gamma * total + lv.shape[1] * (ex * np.max(np.abs(wv), axis=1)
                                           + act.scale * amax * ew)
    delta = delta * (1 + 1e-6) + total * 2.0 ** -60
    ma, ea = _odd_mantissa(act.scale)
    for c in range(m):
        if ex or ew[c]:
            continue
        mw, ew_c = _odd_mantissa(float(w.unit[c]))
        b = float(layer.bias[c]) / math.ldexp(1.0, ea + ew_c)
        units = int(np.sum(np.abs(lv[c]))) * amax * ma * mw + abs(b)
        if b == int(b) and units <= 1 << 24:
            delta[c] = 0.0
    return _Accumulation(act.scale * w.unit, layer.bias.astype(np.float64), delta)


# --------------------------------------------------------------------------------------------
# Integer layers
# --------------------------------------------------------------------------------------------

def _scheme(layer: GraphLayer, act: Quantizer) -> tuple[str, int, int]:
    """(scheme, a_bits, w_bits) of a layer on inputs quantized by ``act``."""
    form = layer.weights.form
    if form in ("lut", "dorefa"):
        if act.bipolar or act.signed:
            kind = "+/-1" if act.bipolar else f"signed {act.bits}-bit"
            raise refuse(layer.weights.node, f"{layer.weights.bits}-bit weights become a "
                         "look-up table, which needs unsigned activations; the input of "
                         f"{layer.node.name!r} is {kind}")
        return "dorefa", act.bits, layer.weights.bits
    if act.bipolar:
        if form == "binary":
            return "xnor", 0, 0
        return form, 2, quant.weight_bits(form)
    a_bits = max(act.bits, 2) if act.signed else act.bits + 1
    return form, a_bits, quant.weight_bits(form)


def _acc_range(scheme, a_bits, w_bits, fan_in, codebook) -> tuple[int, int]:
    """The layer's worst-case accumulators (``model.ops`` and the codebook width rules)."""
    if codebook is not None:
        from model.compress import codebook_acc_range
        return codebook_acc_range(codebook, a_bits=a_bits, fan_in=fan_in)
    p_lo, p_hi = ops.product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    return fan_in * p_lo, fan_in * p_hi


def _integer_layer(layer: GraphLayer, act: Quantizer) -> deploy.IntegerLayer:
    """The ``IntegerLayer`` of a graph layer, its output stage still to fold."""
    scheme, a_bits, w_bits = _scheme(layer, act)
    codes = layer.weights.levels if scheme == "xnor" else layer.weights.codes
    in_shape = layer.in_shape
    channels = in_shape[0]
    if scheme == "xnor":
        lanes = deploy.xnor_lanes(channels)
        m, c, r, s = codes.shape
        grouped = codes.reshape(m, c // lanes, lanes, r, s).transpose(0, 1, 3, 4, 2)
        codes = quant.pack_pm1(grouped)
        a_bits = w_bits = lanes
        in_shape = (channels // lanes,) + tuple(in_shape[1:])
    fan_in = int(np.prod(codes.shape[1:]))
    acc_range = _acc_range(scheme, a_bits, w_bits, fan_in, layer.weights.codebook)
    return deploy.IntegerLayer(
        kind=layer.kind, scheme=scheme, weights=np.asarray(codes, dtype=np.int64),
        a_bits=a_bits, w_bits=w_bits, stride=layer.stride, padding=layer.padding,
        in_shape=tuple(int(v) for v in in_shape), channels=channels, flatten=layer.flatten,
        pool=layer.pool, acc_range=acc_range, output="scores",
        codebook=layer.weights.codebook)


def _code_reader(quantizer: Quantizer):
    """float32 quantizer outputs -> int64 codes (+/-1 for bipolar)."""
    if quantizer.bipolar:
        return lambda out: np.where(out >= 0, 1, -1).astype(np.int64)
    return lambda out: np.rint(out.astype(np.float64) / quantizer.scale).astype(np.int64)


@dataclass
class LayerReport:
    """How one imported layer came about (``mulfree import``'s summary, tests, docs)."""

    linear: str                  # the Conv/MatMul/Gemm node
    weights: str                 # its weight quantizer
    output: str | None           # the next activation quantizer (None: scores)
    ops: list[str]               # the output ops folded
    max_delta_units: float       # largest float32 uncertainty of the executor's sum, in
                                 # accumulator units (0: its sum is exact)
    weight_sign: np.ndarray      # int64 [M]: -1 where the integer weights are negated (a
                                 # MaxPool after ops that decrease in those channels)


def _pooled_ops(layer: GraphLayer) -> list:
    """The output ops before the layer's MaxPool (all of them and the quantizer if the pool
    comes after the quantizer; none without a pool)."""
    if not layer.pool:
        return []
    if layer.pool_after_quant:
        return layer.ops + [layer.quant_node]
    return [o for o in layer.ops if o.op_type != "Identity"][:layer.pool_after]


def _decreasing(graph: Graph, layer: GraphLayer, act: Quantizer,
                rec: deploy.IntegerLayer) -> np.ndarray:
    """bool [M]: channels where the ops before the MaxPool decrease with the accumulator
    (max pooling them is min pooling the accumulator: those channels get negated weights)."""
    before = _pooled_ops(layer)
    if not before:
        return np.zeros(rec.out_channels, dtype=bool)
    rank = len(graph.shape(layer.out_tensor))
    acc = _accumulation(layer, act)
    lo, hi = rec.acc_range
    ends = acc.center(np.tile(np.array([[lo, hi]]), (rec.out_channels, 1)))
    vals = _OutputOps(graph, before, layer.out_tensor, rank)(ends.T.astype(np.float32)).T
    return vals[:, 0] > vals[:, 1]


def _fold_output(graph: Graph, layer: GraphLayer, act: Quantizer, rec: deploy.IntegerLayer,
                 acc: _Accumulation) -> None:
    """Thresholds of a layer's output ops and next quantizer, found with the executor."""
    rank = len(graph.shape(layer.out_tensor))
    chain = _OutputOps(graph, layer.ops + [layer.quant_node], layer.out_tensor, rank)
    read = _code_reader(layer.quantizer)
    q = layer.quantizer
    m = rec.out_channels

    def codes_at(values32: np.ndarray) -> np.ndarray:       # [M, K] floats -> [M, K] codes
        return read(chain(values32.T)).T

    def codes_of(y):
        return codes_at(acc.center(y).astype(np.float32))

    if q.bipolar:
        thresholds, flip, constant = fold_monotone_steps(
            lambda y: (codes_of(y) > 0).astype(np.int64), channels=m, levels=1,
            y_range=rec.acc_range)
        rec.output = "sign"
    else:
        code_min = q.code_range[0]
        thresholds, flip, constant = fold_monotone_steps(
            codes_of, channels=m, levels=(1 << q.bits) - 1, code_min=code_min,
            y_range=rec.acc_range)
        rec.output, rec.out_bits, rec.out_min = "levels", q.bits, code_min
    rec.thresholds, rec.flip, rec.constant = thresholds, flip, constant
    if layer.pool_after_quant and np.any(flip & ~constant):
        raise RuntimeError(f"{layer.node.name}: a pooled channel still decreases")
    _check_determined(layer, acc, rec, codes_at)


def _check_determined(layer: GraphLayer, acc: _Accumulation, rec: deploy.IntegerLayer,
                      codes_at) -> None:
    """Refuse unless, at every step and both ends of the range, every float the executor may
    give has the thresholds' code (the codes being monotone, every accumulator then has)."""
    lo, hi = rec.acc_range
    t = rec.thresholds
    pts = np.clip(np.concatenate([t - 1, t, t + 1, np.full((t.shape[0], 2), [lo, hi])],
                                 axis=1), lo, hi).astype(np.int64)          # [M, P]
    want = rec.activate(pts[None])[0]
    bad = (codes_at(acc.band(pts, -1)) != want) | (codes_at(acc.band(pts, +1)) != want)
    if not np.any(bad):
        return
    c, p = (int(v) for v in np.argwhere(bad)[0])
    if acc.delta[c] == 0:
        raise RuntimeError(f"{layer.node.name}: thresholds disagree with the executor at "
                           f"accumulator {pts[c, p]} of channel {c}")
    raise refuse(layer.node, f"the integer sum does not determine the float result: in "
                 f"channel {c}, accumulator {int(pts[c, p])} lies within the float32 rounding "
                 f"of the sum (+/-{acc.delta_units[c]:.3g} accumulator units) of a step of "
                 f"{layer.quant_node.name!r} (non-power-of-two scales: input "
                 f"{fmt(abs(acc.unit[c] / layer.weights.unit[c]))}, weights "
                 f"{fmt(abs(layer.weights.unit[c]))}); use power-of-two scales")


def _affine(graph: Graph, node, tensor: str, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) float64 [M] of an affine output op applied to ``tensor``."""
    op = node.op_type
    if op == "BatchNormalization":
        gamma, beta, mean, var = (graph.const(node, i, "parameter") for i in range(1, 5))
        eps = float(np.float32(helper.get_attribute_value(
            next((a for a in node.attribute if a.name == "epsilon"),
                 helper.make_attribute("epsilon", 1e-5)))))
        inv = gamma / np.sqrt(var + eps)
        return inv, beta - mean * inv
    if op not in ("Mul", "Div", "Add", "Sub"):
        raise refuse(node, f"{op} after the last layer is not an affine map; the last "
                     "layer's float output must be an affine function of its accumulator "
                     "(scores)")
    other = 1 if node.input[0] == tensor else 0
    c = np.broadcast_to(graph.const(node, other, "constant operand").reshape(-1), (m,))
    ones, zeros = np.ones(m), np.zeros(m)
    if op == "Mul":
        return c.astype(np.float64), zeros
    if op == "Div":
        return 1.0 / c, zeros
    if op == "Add":
        return ones, c.astype(np.float64)
    return (ones, -c) if other == 1 else (-ones, c.astype(np.float64))


def _score_map(graph: Graph, layer: GraphLayer, acc: _Accumulation,
               upto: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float64 (gain, offset) of the output ops (the first ``upto`` of them) on the
    accumulator: ``ops(unit * acc + bias)``."""
    m = layer.weights.levels.shape[0]
    gain, offset = acc.unit.copy(), acc.bias.copy()
    tensor = layer.out_tensor
    affine = [o for o in layer.ops if o.op_type not in ("MaxPool", "Identity")]
    for node in layer.ops:
        if node.op_type not in ("MaxPool", "Identity"):
            if upto is not None and affine.index(node) >= upto:
                break
            g, o = _affine(graph, node, tensor, m)
            gain, offset = gain * g, offset * g + o
        tensor = node.output[0]
    return gain, offset


def import_qonnx(source, *, name: str | None = None) -> tuple[deploy.IntegerModel,
                                                             list[LayerReport]]:
    """Import a QONNX graph (path, ``onnx.ModelProto`` or qonnx ``ModelWrapper``).

    Returns the ``IntegerModel`` and one ``LayerReport`` per layer; raises ``ImportRefused``
    (one line) for anything the module docstring does not accept.
    """
    graph = Graph(load_graph(source))
    in_quant, in_node, layers = walk(graph)
    act = in_quant
    records, reports = [], []
    for layer in layers:
        rec = _integer_layer(layer, act)
        _check_shape(graph, layer, rec)
        if layer.quant_node is not None:
            negate = _decreasing(graph, layer, act, rec)
        elif layer.pool:
            gain, _ = _score_map(graph, layer, _accumulation(layer, act), layer.pool_after)
            negate = gain < 0
        else:
            negate = np.zeros(rec.out_channels, dtype=bool)
        if np.any(negate):
            layer.weights = layer.weights.negated(negate)
            rec = _integer_layer(layer, act)
        acc = _accumulation(layer, act)
        if layer.quant_node is not None:
            _fold_output(graph, layer, act, rec, acc)
            act = layer.quantizer
        else:
            gain, offset = _score_map(graph, layer, acc)
            rec.score_gain, rec.score_offset, rec.score_shift = deploy.score_head(
                gain, offset, rec.acc_range)
        records.append(rec)
        reports.append(LayerReport(
            layer.node.name, layer.weights.node.name,
            layer.quant_node.name if layer.quant_node is not None else None,
            [o.name for o in layer.ops if o.op_type != "Identity"],
            float(np.max(acc.delta_units)), np.where(negate, -1, 1).astype(np.int64)))
    return _model(graph, in_quant, in_node, layers, records, reports, name), reports


def _check_shape(graph: Graph, layer: GraphLayer, rec: deploy.IntegerLayer) -> None:
    """Refuse if the graph's tensor after the layer does not have the layer's shape."""
    if layer.pool_after_quant:
        tensor = layer.pool_node.output[0]
    elif layer.quant_node is not None:
        tensor = layer.quant_node.output[0]
    else:
        tensor = layer.ops[-1].output[0] if layer.ops else layer.out_tensor
    want = graph.shape(tensor)[1:]
    out = list(rec.out_shape())
    if want != out and not (rec.kind == "dense" and want == out[:1]):
        raise refuse(layer.node, f"the graph gives {want} where mulfree computes {out}")


def _model(graph: Graph, in_quant: Quantizer, in_node, layers: list[GraphLayer],
           records: list, reports: list, name: str | None) -> deploy.IntegerModel:
    last = records[-1]
    if last.out_shape()[1:] != (1, 1):
        raise refuse(layers[-1].node, f"the last layer gives {list(last.out_shape())} per "
                     "sample; mulfree needs one value per class (E = F = 1)")
    in_shape = graph.shape(graph.input)
    if len(in_shape) not in (2, 4):
        raise ImportRefused(f"graph input {graph.input!r} of shape {in_shape}; allowed: "
                            "[1, C, H, W] or [1, F]")
    first = layers[0]
    model_in = tuple(in_shape[1:]) if len(in_shape) == 4 else (in_shape[1], 1, 1)
    if first.kind == "conv" and model_in != tuple(first.in_shape):
        raise refuse(first.node, f"its input {list(first.in_shape)} is not the graph input "
                     f"{in_shape[1:]}")
    lo, hi = in_quant.code_range
    graph_name = graph.model.graph.name or "qonnx"
    meta = {"net": name or graph_name, "source": "qonnx", "graph": graph_name,
            "producer": graph.model.model.producer_name or None,
            "qonnx_nodes": {"input": in_node.name,
                            "layers": [{"linear": r.linear, "weights": r.weights,
                                        "output": r.output, "ops": r.ops,
                                        "negated_channels": np.flatnonzero(
                                            r.weight_sign < 0).tolist()}
                                       for r in reports]}}
    io = FloatInterface(tuple(in_shape[1:]), tuple(graph.shape(graph.output)[1:]), in_quant,
                        layers[-1].quantizer)
    return deploy.IntegerModel(records, model_in, hi, last.out_channels, meta,
                               pixel_min=lo, float_io=io)
