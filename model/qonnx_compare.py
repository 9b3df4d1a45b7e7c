"""An imported model against qonnx's executor, layer by layer (qonnx extra).

The reference is ``qonnx.core.onnx_exec.execute_onnx`` on the graph after qonnx's clean-up
(``qonnx.util.cleanup.cleanup_model``), one sample at a time (the graph's batch is 1), with
its full execution context. ``compare`` checks, for every sample:

- **codes**: the input quantizer's codes and every layer's output codes (after the graph's
  MaxPool where it pools the codes) equal the executor's quantizer outputs divided by their
  scale, bit for bit;
- **accumulators**: every layer's exact integer accumulator equals
  ``rint((output - bias) / (s_a * s_w))`` of the executor's ``Conv``/``MatMul``/``Gemm``
  output (``s_w`` negated in the channels ``LayerReport.weight_sign`` negates);
- **argmax** of the last layer equals the executor's (where two classes' integer scores tie
  exactly, the executor's float32 rounding, which depends on its order of summation, picks
  one of them and mulfree the first: counted apart as a tie), and **scores** are within a
  relative
  error of the executor's outputs (``max |ours - ref| / max |ref|`` per sample; exact
  equality when the graph ends in a quantizer);

and, independently of the samples, **thresholds**: for every accumulator value in the
layer's range and every channel, the thresholds give the code the executor's own output ops
and quantizer give for ``s_a * s_w * acc + bias``, laid out over the layer's real
``[*, M, E, F]`` output shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model

from model import deploy
from model.qonnx_graph import load_graph
from model.qonnx_ref import Quantizer, rounding_function

__all__ = ["Reference", "Comparison", "compare", "THRESHOLD_CHUNK"]

#: Accumulator values per executor run when checking thresholds over a whole range.
THRESHOLD_CHUNK = 1 << 20


class Reference:
    """qonnx's executor on the cleaned-up graph, tensors looked up by original node names."""

    def __init__(self, source):
        model = load_graph(source)          # names every node the way the importer does
        for node in model.graph.node:
            node.doc_string = node.name     # survives clean-up's renaming
        self.model = cleanup_model(model)
        self.nodes = {n.doc_string: n for n in self.model.graph.node}
        self.input = self.model.graph.input[0].name
        self.output = self.model.graph.output[0].name

    def node(self, name: str):
        return self.nodes[name]

    def run(self, x: np.ndarray) -> dict:
        """The full execution context of one sample ``x`` (the input without batch)."""
        return execute_onnx(self.model, {self.input: np.asarray(x, np.float32)[None]},
                            return_full_exec_context=True)

    def initializer(self, name: str):
        return self.model.get_initializer(name)


@dataclass
class Comparison:
    """The outcome of ``compare`` (the benchmark's table row)."""

    samples: int
    max_code_diff: int = 0                  # over every quantizer's codes and every sample
    codes_checked: int = 0
    acc_equal: int = 0                      # layers x samples whose accumulators equal
    acc_checked: int = 0
    acc_max_residual: float = 0.0           # max |(out - b) / unit - acc| over all outputs
    threshold_equal: int = 0                # (channel, accumulator) pairs that agree
    threshold_checked: int = 0
    ties: int = 0                           # (channel, accumulator) pairs whose quantizer
                                            # input is an exact tie between two codes
    ties_down: int = 0                      # (channel, accumulator) pairs whose quantizer
                                            # input is an exact tie the executor rounds
                                            # down (where thresholds that round ties up,
                                            # FINN's, would give one more)
    argmax_equal: int = 0
    argmax_ties: int = 0                    # ... of the rest: the executor picked another of
                                            # the classes whose integer scores tie exactly
    max_rel_score_error: float = 0.0
    failures: list = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return (self.max_code_diff == 0 and self.acc_equal == self.acc_checked
                and self.threshold_equal == self.threshold_checked
                and self.argmax_equal + self.argmax_ties == self.samples)


def _codes(values: np.ndarray, quantizer: Quantizer) -> np.ndarray:
    if quantizer.bipolar:
        return np.where(values >= 0, 1, -1).astype(np.int64)
    return np.rint(values.astype(np.float64) / quantizer.scale).astype(np.int64)


def _quantizer_of(rec: deploy.IntegerLayer) -> Quantizer:
    """Only the code range matters here; the scale is read from the graph."""
    if rec.output == "sign":
        return Quantizer("BipolarQuant", 1.0)
    return Quantizer("Quant", 1.0, rec.out_bits, rec.out_min < 0, False)


def compare(source, model: deploy.IntegerModel, reports: list, inputs: np.ndarray, *,
            thresholds: bool = True, reference: Reference | None = None) -> Comparison:
    """Compare ``model`` (``model.qonnx_import.import_qonnx(source)``) with the executor on
    float ``inputs`` [N] + the graph input's shape without batch."""
    ref = reference or Reference(source)
    inputs = np.asarray(inputs, dtype=np.float32)
    ours = deploy.run_float(model, inputs)
    trace = deploy.run_integer(model, ours.input_codes)
    result = Comparison(samples=len(inputs))
    names = model.meta["qonnx_nodes"]
    in_node = ref.node(names["input"])
    in_scale = float(ref.initializer(in_node.input[1]).flat[0])
    in_q = model.float_io.quantizer
    scales = _scales(ref, model, reports)
    for i, x in enumerate(inputs):
        ctx = ref.run(x)
        got = _codes(ctx[in_node.output[0]][0], Quantizer(in_q.op, in_scale, in_q.bits,
                                                          in_q.signed, in_q.narrow))
        _codes_equal(result, f"input codes of sample {i}", got,
                     ours.input_codes[i].reshape(got.shape))
        for k, (rec, report) in enumerate(zip(model.layers, reports)):
            lt = trace.layers[k]
            linear = ref.node(report.linear)
            out = ctx[linear.output[0]][0].astype(np.float64)
            out = out.reshape(rec.out_channels, -1)
            unit, bias = scales[k]
            resid = (out - bias[:, None]) / unit[:, None]
            acc = lt.accumulators[i].reshape(rec.out_channels, -1)
            result.acc_checked += 1
            result.acc_max_residual = max(result.acc_max_residual,
                                          float(np.max(np.abs(resid - acc))))
            if np.array_equal(np.rint(resid).astype(np.int64), acc):
                result.acc_equal += 1
            else:
                result.failures.append(f"layer {k} accumulators of sample {i}")
            if report.output is not None:
                qnode = ref.node(report.output)
                tensor = qnode.output[0]
                pooled = ref.model.find_consumer(tensor)
                if pooled is not None and pooled.op_type == "MaxPool" and rec.pool and \
                        _pool_after_quant(ref, rec, report):
                    tensor = pooled.output[0]
                scale = float(ref.initializer(qnode.input[1]).flat[0])
                q = _quantizer_of(rec)
                q = Quantizer(q.op, scale, q.bits, q.signed, q.narrow)
                got = _codes(ctx[tensor][0], q)
                _codes_equal(result, f"layer {k} codes of sample {i}", got,
                             lt.outputs[i].reshape(got.shape))
        ref_out = np.asarray(ctx[ref.output][0], dtype=np.float64).reshape(-1)
        our_out = ours.outputs[i].astype(np.float64).reshape(-1)
        ints = trace.layers[-1].outputs[i].reshape(-1)
        best = int(np.argmax(ref_out))
        if best == int(ours.predictions[i]):
            result.argmax_equal += 1
        elif ints[best] == ints.max():
            result.argmax_ties += 1
        else:
            result.failures.append(f"argmax of sample {i}")
        top = float(np.max(np.abs(ref_out)))
        err = float(np.max(np.abs(our_out - ref_out))) / top if top else \
            float(np.max(np.abs(our_out)))
        result.max_rel_score_error = max(result.max_rel_score_error, err)
    if thresholds:
        for k, (rec, report) in enumerate(zip(model.layers, reports)):
            if report.output is not None:
                _thresholds(result, ref, rec, report, scales[k], k)
    return result


def _pool_after_quant(ref: Reference, rec, report) -> bool:
    """True if the layer's MaxPool comes after its quantizer in the graph."""
    return not any(ref.node(o).op_type == "MaxPool" for o in report.ops)


def _codes_equal(result: Comparison, what: str, got: np.ndarray, want: np.ndarray) -> None:
    diff = int(np.max(np.abs(got - want))) if got.size else 0
    result.codes_checked += 1
    result.max_code_diff = max(result.max_code_diff, diff)
    if diff:
        result.failures.append(what)


def _scales(ref: Reference, model: deploy.IntegerModel, reports) -> list:
    """Per layer: (unit [M] = s_a * s_w with the weight sign, bias [M]) from the graph."""
    out = []
    act_scale = float(ref.initializer(ref.node(model.meta["qonnx_nodes"]["input"]).input[1])
                      .flat[0])
    for rec, report in zip(model.layers, reports):
        wq = ref.node(report.weights)
        s = np.asarray(ref.initializer(wq.input[1]), dtype=np.float64)
        w = ref.initializer(wq.input[0])
        s = np.broadcast_to(s, w.shape)
        linear = ref.node(report.linear)
        if linear.op_type == "Conv" or (linear.op_type == "Gemm" and any(
                a.name == "transB" and a.i for a in linear.attribute)):
            s_w = s.reshape(s.shape[0], -1)[:, 0]
        else:
            s_w = s[0, :]
        if wq.op_type != "BipolarQuant" and not getCustomOp(wq).get_nodeattr("signed") and \
                float(ref.initializer(wq.input[2]).flat[0]) != 0:
            s_w = s_w / 2                  # DoReFa: level 2q - n is worth scale / 2
        unit = act_scale * s_w * report.weight_sign
        bias = np.zeros(rec.out_channels)
        if len(linear.input) > 2 and linear.input[2]:
            bias = np.broadcast_to(np.asarray(ref.initializer(linear.input[2]),
                                              np.float64).reshape(-1), (rec.out_channels,))
        out.append((unit, bias))
        if report.output is not None:
            act_scale = float(ref.initializer(ref.node(report.output).input[1]).flat[0])
    return out


def _rounding(qnode) -> str:
    if qnode.op_type == "BipolarQuant":
        return "ROUND"
    return str(getCustomOp(qnode).get_nodeattr("rounding_mode")).upper()


def _ties(pre: np.ndarray, q: Quantizer, mode: str) -> tuple[int, int]:
    """How many quantizer inputs sit exactly half-way between two codes inside the range, and
    how many of those the executor rounds to the lower code (its float32 ``x / scale``)."""
    y = pre / np.float32(q.scale) + np.float32(0.0)
    lo, hi = q.code_range
    tie = (y - np.floor(y) == 0.5) & (y > lo) & (y < hi)
    down = tie & (rounding_function(mode)(y) == np.floor(y))
    return int(np.sum(tie)), int(np.sum(down))


def _thresholds(result: Comparison, ref: Reference, rec, report, scale, k: int) -> None:
    """Every accumulator in range through the executor's output ops and quantizer."""
    unit, bias = scale
    linear = ref.node(report.linear)
    chain = [ref.node(o) for o in report.ops] + [ref.node(report.output)]
    nodes = [helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name)
             if n.op_type == "MaxPool" else n for n in chain]
    shape = list(ref.model.get_tensor_shape(linear.output[0]))
    m = rec.out_channels
    spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    lo, hi = rec.acc_range
    accs = np.arange(lo, hi + 1, dtype=np.int64)
    qnode = ref.node(report.output)
    scale_q = float(ref.initializer(qnode.input[1]).flat[0])
    q = _quantizer_of(rec)
    q = Quantizer(q.op, scale_q, q.bits, q.signed, q.narrow)
    inits = [t for t in ref.model.graph.initializer if any(t.name in n.input for n in nodes)]
    per_run = max(spatial, THRESHOLD_CHUNK // max(m, 1) // spatial * spatial)
    for start in range(0, len(accs), per_run):
        chunk = accs[start:start + per_run]
        pad = (-len(chunk)) % spatial
        vals = np.concatenate([chunk, np.full(pad, chunk[-1])])
        batch = len(vals) // spatial
        x = (unit[None, :, None] * vals.reshape(batch, 1, spatial) + bias[None, :, None])
        x = x.astype(np.float32).reshape([batch, m] + shape[2:])
        g = helper.make_graph(
            nodes, "thresholds",
            [helper.make_tensor_value_info(linear.output[0], onnx.TensorProto.FLOAT,
                                           list(x.shape))],
            [helper.make_tensor_value_info(nodes[-1].output[0], onnx.TensorProto.FLOAT,
                                           list(x.shape))], inits)
        proto = helper.make_model(g, opset_imports=list(ref.model.model.opset_import))
        proto.ir_version = ref.model.model.ir_version
        wrapper = ModelWrapper(proto).transform(InferShapes())
        ctx = execute_onnx(wrapper, {linear.output[0]: x}, return_full_exec_context=True)
        got = _codes(np.asarray(ctx[nodes[-1].output[0]]).reshape(batch, m, spatial), q)
        got = got.transpose(1, 0, 2).reshape(m, -1)[:, :len(chunk)]
        if not q.bipolar:
            pre = np.asarray(ctx[qnode.input[0]], dtype=np.float32).reshape(batch, m, spatial)
            pre = pre.transpose(1, 0, 2).reshape(m, -1)[:, :len(chunk)]
            ties, down = _ties(pre, q, _rounding(qnode))
            result.ties += ties
            result.ties_down += down
        want = rec.activate(np.broadcast_to(chunk, (m, len(chunk)))[None])[0]
        equal = got == want
        result.threshold_checked += equal.size
        result.threshold_equal += int(np.sum(equal))
        if not np.all(equal):
            c, j = (int(v) for v in np.argwhere(~equal)[0])
            result.failures.append(f"layer {k} threshold: channel {c}, accumulator "
                                   f"{int(chunk[j])}")
