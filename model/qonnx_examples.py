"""Small QONNX graphs built with ``onnx.helper`` (no PyTorch): the import tests and benchmark.

Needs the ``qonnx`` extra (onnx). ``GraphBuilder`` writes the nodes Brevitas' ``export_qonnx``
writes (``Quant``/``BipolarQuant`` in qonnx's domain, ``Conv``, ``MatMul``, ``Gemm``,
``BatchNormalization``, ``Mul``, ``Add``, ``Relu``, ``MaxPool``, ``Flatten``) and keeps a
float64 calibration batch flowing through them, so that batch norms can be given the
statistics of the data they see (the codes after each quantizer then use their whole range).

``EXAMPLES`` names the networks: the five of the tests (``binary_conv``, ``ternary_conv``,
``bnn_mlp``, ``lut_conv``, ``dorefa``), a requantization on exact ties (``requant``, and
``requant_half_up`` with ``rounding_mode = HALF_UP``), the other output ops
(``output_ops``) and three larger ones for the
benchmark (``tfc_w1a1``, ``tfc_w2a2``, ``cnv_w1a2``); ``cnv_float_scales`` is ``cnv_w1a2``
with the arbitrary float per-channel weight scales Brevitas learns, and ``ambiguous_tie`` a
layer whose float result is not determined by its integer sum.
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from model.qonnx_graph import QUANT_DOMAIN
from model.qonnx_ref import Quantizer

__all__ = ["GraphBuilder", "EXAMPLES", "build", "sample_inputs"]

#: The ONNX opset of the standard ops (Brevitas exports 13 or later).
OPSET = 13


def _conv_f64(x, w, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwrs,mcrs->nmhw", win, w)


class GraphBuilder:
    """A QONNX graph under construction, with a float64 calibration batch through it."""

    def __init__(self, name: str, input_shape, *, seed: int = 0, low: float = 0.0,
                 high: float = 1.0, samples: int = 256):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.input_shape = [1] + list(input_shape)
        self.nodes: list = []
        self.inits: list = []
        self.cal = {"x": self.rng.uniform(low, high, (samples, *input_shape))}
        self._count = 0

    # -- plumbing -------------------------------------------------------------------------
    def const(self, value, name: str | None = None) -> str:
        self._count += 1
        name = name or f"c{self._count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list, name: str, *, domain: str = "", **attrs) -> str:
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, domain=domain,
                                           **attrs))
        return out

    def weights(self, shape, scale=1.0) -> np.ndarray:
        return self.rng.normal(0.0, scale, shape)

    # -- quantizers -----------------------------------------------------------------------
    def quant(self, x: str, *, scale, bits: int, signed: bool, narrow: bool, name: str,
              zeropt=0.0, rounding_mode: str | None = None, value=None) -> str:
        """A ``Quant``; ``value`` (an initializer's float array) makes it a weight quantizer."""
        src = self.const(value, f"{name}_w") if value is not None else x
        attrs = {"signed": int(signed), "narrow": int(narrow)}
        if rounding_mode:
            attrs["rounding_mode"] = rounding_mode
        out = self.node("Quant", [src, self.const(scale), self.const(zeropt), self.const(bits)],
                        name, domain=QUANT_DOMAIN, **attrs)
        if value is None:
            q = Quantizer("Quant", float(np.float32(np.asarray(scale).flat[0])), bits, signed,
                          narrow, (rounding_mode or "ROUND").upper())
            self.cal[out] = q.values(q.codes(self.cal[x].astype(np.float32))).astype(float)
        return out

    def bipolar(self, x: str, *, scale, name: str, value=None) -> str:
        src = self.const(value, f"{name}_w") if value is not None else x
        out = self.node("BipolarQuant", [src, self.const(scale)], name, domain=QUANT_DOMAIN)
        if value is None:
            self.cal[out] = np.where(self.cal[x] >= 0, 1.0, -1.0) * float(np.float32(scale))
        return out

    @staticmethod
    def weight_values(kind: str, w, scale, bits=2, zeropt=0.0, narrow=True, signed=True):
        """The float weights a quantizer gives (for the calibration batch), float64."""
        w = np.asarray(w, dtype=np.float32)
        scale = np.asarray(scale, dtype=np.float32)
        if kind == "bipolar":
            return np.where(w >= 0, 1.0, -1.0) * scale
        y = w / scale + np.float32(zeropt)
        lo = -(2 ** (bits - 1)) + (1 if narrow else 0) if signed else 0
        hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - (2 if narrow else 1)
        return ((np.round(np.clip(y, lo, hi)) - np.float32(zeropt)) * scale).astype(float)

    # -- layers ---------------------------------------------------------------------------
    def conv(self, x: str, wq: str, wvals, *, name: str, stride: int = 1, pad: int = 0,
             bias=None) -> str:
        inputs = [x, wq] + ([self.const(bias)] if bias is not None else [])
        k = list(np.shape(wvals)[2:])
        out = self.node("Conv", inputs, name, kernel_shape=k, strides=[stride, stride],
                        pads=[pad] * 4)
        y = _conv_f64(self.cal[x], np.asarray(wvals, float), stride, pad)
        if bias is not None:
            y = y + np.asarray(bias, float)[None, :, None, None]
        self.cal[out] = y
        return out

    def matmul(self, x: str, wq: str, wvals, *, name: str) -> str:
        out = self.node("MatMul", [x, wq], name)
        self.cal[out] = self.cal[x] @ np.asarray(wvals, float)
        return out

    def gemm(self, x: str, wq: str, wvals, *, name: str, bias=None) -> str:
        """``Gemm`` with ``transB = 1`` (weights [M, K], as PyTorch's Linear exports)."""
        inputs = [x, wq] + ([self.const(bias)] if bias is not None else [])
        out = self.node("Gemm", inputs, name, transB=1)
        y = self.cal[x] @ np.asarray(wvals, float).T
        self.cal[out] = y + (np.asarray(bias, float) if bias is not None else 0.0)
        return out

    def bn(self, x: str, *, name: str, flip: int | None = None, beta_scale: float = 0.5,
           eps: float = 1e-5) -> str:
        """Batch norm calibrated on the batch: mean and variance of the data it sees,
        random gains (channel ``flip`` negative) and offsets."""
        v = self.cal[x]
        axes = (0, 2, 3) if v.ndim == 4 else (0,)
        c = v.shape[1]
        mean, var = v.mean(axis=axes), v.var(axis=axes) + 1e-3
        gamma = self.rng.uniform(0.5, 1.5, c)
        if flip is not None:
            gamma[flip % c] *= -1
        beta = self.rng.normal(0.0, beta_scale, c)
        params = [self.const(p) for p in (gamma, beta, mean, var)]
        out = self.node("BatchNormalization", [x] + params, name, epsilon=eps)
        shape = (1, c) + (1,) * (v.ndim - 2)
        g, b, m, s = (np.asarray(np.float32(p), float).reshape(shape)
                      for p in (gamma, beta, mean, var))
        self.cal[out] = (v - m) / np.sqrt(s + eps) * g + b
        return out

    def channel_op(self, op: str, x: str, values, *, name: str) -> str:
        """``Mul`` or ``Add`` by one constant per channel (shape [1, C, 1, 1] or [1, C])."""
        v = self.cal[x]
        shape = (1, v.shape[1]) + (1,) * (v.ndim - 2)
        c = np.asarray(values, dtype=np.float32).reshape(shape)
        out = self.node(op, [x, self.const(c)], name)
        self.cal[out] = v * c if op == "Mul" else v + c
        return out

    def relu(self, x: str, *, name: str) -> str:
        out = self.node("Relu", [x], name)
        self.cal[out] = np.maximum(self.cal[x], 0.0)
        return out

    def maxpool(self, x: str, k: int, *, name: str) -> str:
        out = self.node("MaxPool", [x], name, kernel_shape=[k, k], strides=[k, k])
        v = self.cal[x]
        n, c, h, w = v.shape
        v = v[:, :, :h - h % k, :w - w % k].reshape(n, c, h // k, k, w // k, k)
        self.cal[out] = v.max(axis=(3, 5))
        return out

    def flatten(self, x: str, *, name: str) -> str:
        out = self.node("Flatten", [x], name, axis=1)
        self.cal[out] = self.cal[x].reshape(len(self.cal[x]), -1)
        return out

    def build(self, output: str) -> onnx.ModelProto:
        """The model (graph input ``x``, output ``output``, shapes inferred by qonnx)."""
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.input_shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                        helper.make_opsetid(QUANT_DOMAIN, 1)],
                                  producer_name="mulfree.qonnx_examples")
        return ModelWrapper(model).transform(InferShapes()).model


# --------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------

def _pow2_scales(rng, count, lo=-3, hi=0):
    return 2.0 ** rng.integers(lo, hi + 1, count)


def binary_conv(seed: int = 0) -> onnx.ModelProto:
    """Binary-weight conv on a 4-bit unsigned input, batch norm, 2-bit activations, max pool,
    then a binary dense layer with per-class Mul and Add."""
    g = GraphBuilder("binary_conv", (2, 6, 6), seed=seed, low=-0.2, high=1.2)
    x = g.quant("x", scale=2.0 ** -4, bits=4, signed=False, narrow=False, name="in_q")
    w = g.weights((4, 2, 3, 3))
    s = _pow2_scales(g.rng, 4).reshape(4, 1, 1, 1)
    wq = g.bipolar("", scale=s, name="w1_q", value=w)
    y = g.conv(x, wq, g.weight_values("bipolar", w, s), name="conv1", pad=1)
    y = g.bn(y, name="bn1", flip=1)
    y = g.quant(y, scale=0.5, bits=2, signed=False, narrow=False, name="act1_q")
    y = g.maxpool(y, 2, name="pool1")
    y = g.flatten(y, name="flat")
    w2 = g.weights((36, 3))
    wq2 = g.bipolar("", scale=0.125, name="w2_q", value=w2)
    y = g.matmul(y, wq2, g.weight_values("bipolar", w2, 0.125), name="fc2")
    y = g.channel_op("Mul", y, g.rng.uniform(0.3, 1.7, 3), name="fc2_mul")
    y = g.channel_op("Add", y, g.rng.normal(0, 0.3, 3), name="fc2_add")
    return g.build(y)


def ternary_conv(seed: int = 0) -> onnx.ModelProto:
    """Ternary conv, stride 2, per-channel scales, on a signed 8-bit input; per-channel Mul,
    Add, Relu, 3-bit activations; a ternary Gemm with float per-channel scales and a bias."""
    g = GraphBuilder("ternary_conv", (3, 7, 7), seed=seed, low=-1.0, high=1.0)
    x = g.quant("x", scale=2.0 ** -6, bits=8, signed=True, narrow=True, name="in_q")
    w = g.weights((4, 3, 3, 3), 0.4)
    s = _pow2_scales(g.rng, 4, -2, 0).reshape(4, 1, 1, 1)
    wq = g.quant("", scale=s, bits=2, signed=True, narrow=True, name="w1_q", value=w)
    y = g.conv(x, wq, g.weight_values("int", w, s), name="conv1", stride=2, pad=1)
    y = g.channel_op("Mul", y, g.rng.uniform(0.2, 0.9, 4), name="mul1")
    y = g.channel_op("Add", y, g.rng.normal(0.5, 0.3, 4), name="add1")
    y = g.relu(y, name="relu1")
    y = g.quant(y, scale=0.25, bits=3, signed=False, narrow=False, name="act1_q")
    y = g.flatten(y, name="flat")
    w2 = g.weights((5, 64), 0.5)
    s2 = g.rng.uniform(0.05, 0.2, (5, 1))
    wq2 = g.quant("", scale=s2, bits=2, signed=True, narrow=True, name="w2_q", value=w2)
    y = g.gemm(y, wq2, g.weight_values("int", w2, s2), name="fc2", bias=g.rng.normal(0, 0.1, 5))
    return g.build(y)


def bnn_mlp(seed: int = 0, sizes=(64, 32, 32, 10), name: str = "bnn_mlp") -> onnx.ModelProto:
    """A BNN MLP: +/-1 inputs, binary weights, batch norm and ``BipolarQuant`` activations."""
    g = GraphBuilder(name, (sizes[0],), seed=seed, low=-1.0, high=1.0)
    y = g.bipolar("x", scale=1.0, name="in_q")
    for i, (k, m) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        w = g.weights((k, m))
        wq = g.bipolar("", scale=1.0, name=f"w{i}_q", value=w)
        y = g.matmul(y, wq, g.weight_values("bipolar", w, 1.0), name=f"fc{i}")
        y = g.bn(y, name=f"bn{i}", flip=i)
        if i < len(sizes) - 1:
            y = g.bipolar(y, scale=1.0, name=f"act{i}_q")
    return g.build(y)


def lut_conv(seed: int = 0) -> onnx.ModelProto:
    """4-bit signed weights and 4-bit unsigned activations (a look-up-table layer)."""
    g = GraphBuilder("lut_conv", (2, 6, 6), seed=seed, low=-0.1, high=1.1)
    x = g.quant("x", scale=2.0 ** -4, bits=4, signed=False, narrow=False, name="in_q")
    w = g.weights((3, 2, 3, 3))
    s = _pow2_scales(g.rng, 3, -3, -1).reshape(3, 1, 1, 1)
    wq = g.quant("", scale=s, bits=4, signed=True, narrow=False, name="w1_q", value=w)
    y = g.conv(x, wq, g.weight_values("int", w, s, bits=4, narrow=False), name="conv1")
    y = g.bn(y, name="bn1", flip=2)
    y = g.quant(y, scale=0.125, bits=4, signed=False, narrow=False, name="act1_q")
    y = g.maxpool(y, 2, name="pool1")
    y = g.flatten(y, name="flat")
    w2 = g.weights((12, 4))
    s2 = _pow2_scales(g.rng, 4, -3, -1).reshape(1, 4)
    wq2 = g.quant("", scale=s2, bits=4, signed=True, narrow=True, name="w2_q", value=w2)
    y = g.matmul(y, wq2, g.weight_values("int", w2, s2, bits=4), name="fc2")
    y = g.bn(y, name="bn2")
    return g.build(y)


def dorefa(seed: int = 0, bits: int = 2) -> onnx.ModelProto:
    """DoReFa-Net weights ``(2q - n)/n`` as ``Quant(unsigned, k, scale 2/n, zeropt n/2)`` on
    ``quantize_k`` activations (scale 1/n): non-power-of-two scales throughout."""
    n = 2 ** bits - 1
    g = GraphBuilder("dorefa", (1, 6, 6), seed=seed, low=-0.1, high=1.1)
    x = g.quant("x", scale=1 / n, bits=bits, signed=False, narrow=False, name="in_q")
    w = np.tanh(g.weights((3, 1, 3, 3)))
    w = w / np.max(np.abs(w))
    wq = g.quant("", scale=2 / n, bits=bits, signed=False, narrow=False, zeropt=n / 2,
                 name="w1_q", value=w)
    wv = g.weight_values("int", w, 2 / n, bits=bits, zeropt=n / 2, narrow=False, signed=False)
    y = g.conv(x, wq, wv, name="conv1", pad=1)
    y = g.bn(y, name="bn1", flip=0)
    y = g.quant(y, scale=1 / n, bits=bits, signed=False, narrow=False, name="act1_q")
    y = g.flatten(y, name="flat")
    w2 = np.tanh(g.weights((108, 4)))
    w2 = w2 / np.max(np.abs(w2))
    wq2 = g.quant("", scale=2 / n, bits=bits, signed=False, narrow=False, zeropt=n / 2,
                  name="w2_q", value=w2)
    wv2 = g.weight_values("int", w2, 2 / n, bits=bits, zeropt=n / 2, narrow=False,
                          signed=False)
    y = g.matmul(y, wq2, wv2, name="fc2")
    return g.build(y)


def tfc(seed: int = 0, *, weights: str = "binary", act_bits: int = 1) -> onnx.ModelProto:
    """FINN's TFC shape: 28x28 input, three 64-unit layers, 10 classes."""
    name = f"tfc_w{1 if weights == 'binary' else 2}a{act_bits}"
    g = GraphBuilder(name, (1, 28, 28), seed=seed, low=-1.0 if act_bits == 1 else 0.0,
                     high=1.0)
    if act_bits == 1:
        y = g.bipolar("x", scale=1.0, name="in_q")
    else:
        y = g.quant("x", scale=2.0 ** -8, bits=8, signed=False, narrow=False, name="in_q")
    y = g.flatten(y, name="flat")
    sizes = (784, 64, 64, 64, 10)
    for i, (k, m) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        w = g.weights((k, m), 0.5)
        if weights == "binary":
            wq = g.bipolar("", scale=1.0, name=f"w{i}_q", value=w)
            wv = g.weight_values("bipolar", w, 1.0)
        else:
            wq = g.quant("", scale=0.5, bits=2, signed=True, narrow=True, name=f"w{i}_q",
                         value=w)
            wv = g.weight_values("int", w, 0.5)
        y = g.matmul(y, wq, wv, name=f"fc{i}")
        y = g.bn(y, name=f"bn{i}")
        if i < len(sizes) - 1:
            if act_bits == 1:
                y = g.bipolar(y, scale=1.0, name=f"act{i}_q")
            else:
                y = g.quant(y, scale=0.5, bits=act_bits, signed=False, narrow=False,
                            name=f"act{i}_q")
    return g.build(y)


def cnv(seed: int = 0, *, float_scales: bool = False) -> onnx.ModelProto:
    """A small CNV: 3x16x16 input (8-bit), binary 3x3 convs 16-16-32 with 2-bit
    activations and max pooling, a binary dense layer. ``float_scales``: per-channel weight
    scales that are arbitrary floats (as Brevitas learns them) instead of 1."""
    g = GraphBuilder("cnv_float_scales" if float_scales else "cnv_w1a2", (3, 16, 16),
                     seed=seed)
    y = g.quant("x", scale=2.0 ** -8, bits=8, signed=False, narrow=False, name="in_q")
    c_in = 3
    for i, (c, pool) in enumerate([(16, False), (16, True), (32, True)], start=1):
        w = g.weights((c, c_in, 3, 3))
        s = g.rng.uniform(0.05, 0.15, (c, 1, 1, 1)) if float_scales else np.ones((c, 1, 1, 1))
        wq = g.bipolar("", scale=s, name=f"w{i}_q", value=w)
        y = g.conv(y, wq, g.weight_values("bipolar", w, s), name=f"conv{i}")
        y = g.bn(y, name=f"bn{i}")
        y = g.quant(y, scale=0.5, bits=2, signed=False, narrow=False, name=f"act{i}_q")
        if pool:
            y = g.maxpool(y, 2, name=f"pool{i}")
        c_in = c
    y = g.flatten(y, name="flat")
    w = g.weights((32 * 2 * 2, 10))
    wq = g.bipolar("", scale=1.0, name="w4_q", value=w)
    y = g.matmul(y, wq, g.weight_values("bipolar", w, 1.0), name="fc4")
    y = g.bn(y, name="bn4")
    return g.build(y)


def requant(seed: int = 0, rounding_mode: str | None = None) -> onnx.ModelProto:
    """A ternary conv whose accumulator goes straight into the next quantizer (FINN-style
    requantization, no batch norm): ``x / scale = acc / 2``, an exact tie at every odd
    accumulator, rounded by ``rounding_mode`` (default half to even)."""
    g = GraphBuilder("requant", (2, 6, 6), seed=seed, low=-0.1, high=1.1)
    x = g.quant("x", scale=2.0 ** -4, bits=4, signed=False, narrow=False, name="in_q")
    w = g.weights((4, 2, 3, 3), 0.6)
    wq = g.quant("", scale=0.5, bits=2, signed=True, narrow=True, name="w1_q", value=w)
    y = g.conv(x, wq, g.weight_values("int", w, 0.5), name="conv1", pad=1)
    y = g.quant(y, scale=2.0 ** -4, bits=3, signed=True, narrow=False, name="act1_q",
                rounding_mode=rounding_mode)
    y = g.flatten(y, name="flat")
    w2 = g.weights((144, 3), 0.6)
    wq2 = g.quant("", scale=0.25, bits=2, signed=True, narrow=True, name="w2_q", value=w2)
    y = g.matmul(y, wq2, g.weight_values("int", w2, 0.25), name="fc2")
    return g.build(y)


def output_ops(seed: int = 4) -> onnx.ModelProto:
    """The other output ops: a conv bias, ``Sub`` from a constant (decreasing in every
    channel, before a max pool: the weights are negated), ``Div``, ``Clip``, signed narrow
    3-bit activations, and ``Sub`` from a constant after the last layer."""
    g = GraphBuilder("output_ops", (2, 5, 5), seed=seed, low=-0.1, high=1.1)
    x = g.quant("x", scale=2.0 ** -3, bits=3, signed=False, narrow=False, name="in_q")
    w = g.weights((3, 2, 3, 3))
    wq = g.quant("", scale=0.5, bits=2, signed=True, narrow=True, name="w1_q", value=w)
    y = g.conv(x, wq, g.weight_values("int", w, 0.5), name="conv1", pad=1,
               bias=np.array([0.25, -0.5, 0.125]))
    c = np.array([0.3, 0.2, -0.4]).reshape(1, 3, 1, 1)
    y0 = y
    y = g.node("Sub", [g.const(c), y], "sub1")
    d = np.array([1.5, 0.7, 2.0]).reshape(1, 3, 1, 1)
    y1 = y
    y = g.node("Div", [y, g.const(d)], "div1")
    y2 = y
    y = g.node("Clip", [y, g.const(-1.0), g.const(0.8)], "clip1")
    g.cal[y1] = c - g.cal[y0]
    g.cal[y2] = g.cal[y1] / d
    g.cal[y] = np.clip(g.cal[y2], -1.0, 0.8)
    y = g.quant(y, scale=0.25, bits=3, signed=True, narrow=True, name="act1_q")
    y = g.maxpool(y, 2, name="pool1")
    y = g.flatten(y, name="flat")
    w2 = g.weights((12, 4))
    wq2 = g.bipolar("", scale=0.5, name="w2_q", value=w2)
    y = g.matmul(y, wq2, g.weight_values("bipolar", w2, 0.5), name="fc2")
    y = g.node("Sub", [g.const(np.array([[3.0, -2.0, 1.0, 0.5]])), y], "sub2")
    return g.build(y)


def ambiguous_tie(seed: int = 0) -> onnx.ModelProto:
    """Ternary weights with scale 0.1 on integer inputs, then a 2-bit quantizer of scale 0.2:
    an accumulator of 3 is ``0.1 + 0.1 + 0.1``, which float32 sums to 0.3 or 0.30000001
    depending on the order, exactly at the quantizer's tie 1.5: not determined."""
    g = GraphBuilder("ambiguous_tie", (1, 1, 4), seed=seed, low=0.0, high=3.0)
    x = g.quant("x", scale=1.0, bits=3, signed=False, narrow=False, name="in_q")
    w = np.ones((2, 1, 1, 4), dtype=np.float32) * 0.1
    w[1, 0, 0, :2] = -0.1
    wq = g.quant("", scale=0.1, bits=2, signed=True, narrow=True, name="w1_q", value=w)
    y = g.conv(x, wq, g.weight_values("int", w, 0.1), name="conv1")
    y = g.quant(y, scale=0.2, bits=2, signed=False, narrow=False, name="act1_q")
    y = g.flatten(y, name="flat")
    w2 = g.weights((2, 2))
    wq2 = g.bipolar("", scale=1.0, name="w2_q", value=w2)
    y = g.matmul(y, wq2, g.weight_values("bipolar", w2, 1.0), name="fc2")
    return g.build(y)


#: name -> (builder, low, high): the range the benchmark's and the tests' float inputs come
#: from (a little beyond the input quantizer's range, so that it clamps).
EXAMPLES = {
    "binary_conv": (binary_conv, -0.2, 1.2),
    "ternary_conv": (ternary_conv, -1.2, 1.2),
    "bnn_mlp": (bnn_mlp, -1.0, 1.0),
    "lut_conv": (lut_conv, -0.1, 1.1),
    "dorefa": (dorefa, -0.1, 1.1),
    "requant": (requant, -0.1, 1.1),
    "requant_half_up": (lambda seed=0: requant(seed, "HALF_UP"), -0.1, 1.1),
    "output_ops": (lambda seed=4: output_ops(seed), -0.1, 1.1),
    "tfc_w1a1": (lambda seed=0: tfc(seed, weights="binary", act_bits=1), -1.0, 1.0),
    "tfc_w2a2": (lambda seed=0: tfc(seed, weights="ternary", act_bits=2), 0.0, 1.0),
    "cnv_w1a2": (cnv, 0.0, 1.0),
    "cnv_float_scales": (lambda seed=0: cnv(seed, float_scales=True), 0.0, 1.0),
    "ambiguous_tie": (ambiguous_tie, 0.0, 3.0),
}


def build(name: str, seed: int = 0) -> onnx.ModelProto:
    """The example network ``name`` (a key of ``EXAMPLES``)."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; allowed: {', '.join(EXAMPLES)}")
    return EXAMPLES[name][0](seed)


def sample_inputs(name: str, model: onnx.ModelProto, count: int, seed: int = 1) -> np.ndarray:
    """``count`` float32 inputs [count] + the graph input's shape without its batch
    dimension: uniform over the example's range, plus exact quantizer ties."""
    _, low, high = EXAMPLES[name]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, (count, *dims)).astype(np.float32)
    # A quarter of the values sit on half-steps of a power-of-two grid (ties of the input
    # quantizer when its scale is one of them).
    grid = np.round(x * 64) / 64 + 1 / 128
    mask = rng.random(x.shape) < 0.25
    return np.where(mask, grid, x).astype(np.float32)
