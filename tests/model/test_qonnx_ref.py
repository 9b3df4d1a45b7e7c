"""``model.qonnx_ref``: the QONNX quantizers in NumPy equal qonnx's executor bit for bit,
ties, clamping, narrow ranges, every rounding mode and the 1-bit cases included."""

import numpy as np
import pytest

pytest.importorskip("qonnx", reason="the QONNX tests need the qonnx extra: "
                                    "pip install -e '.[test,qonnx]'")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.core.onnx_exec import execute_onnx  # noqa: E402
from qonnx.util.cleanup import cleanup_model  # noqa: E402

from model.qonnx_ref import (ROUNDING_MODES, FloatInterface, Quantizer,  # noqa: E402
                             quant_limits)

DOMAIN = "qonnx.custom_op.general"


def executor(op: str, x: np.ndarray, scale: float, *, bits=1, signed=True, narrow=False,
             mode=None, attrs=True) -> np.ndarray:
    """One quantizer node run by qonnx's executor (after its clean-up) on a 1-D input.
    ``attrs=False`` leaves ``signed``/``narrow`` unset (the executor's defaults)."""
    inits = [numpy_helper.from_array(np.float32(scale), "s")]
    if op == "BipolarQuant":
        node = helper.make_node(op, ["x", "s"], ["y"], domain=DOMAIN)
    else:
        inits += [numpy_helper.from_array(np.float32(0), "z"),
                  numpy_helper.from_array(np.float32(bits), "b")]
        kw = {"signed": int(signed), "narrow": int(narrow)} if attrs else {}
        if mode:
            kw["rounding_mode"] = mode
        node = helper.make_node(op, ["x", "s", "z", "b"], ["y"], domain=DOMAIN, **kw)
    shape = [len(x)]
    graph = helper.make_graph([node], "q", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, shape)], inits)
    model = cleanup_model(ModelWrapper(helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])))
    out = execute_onnx(model, {model.graph.input[0].name: x.astype(np.float32)})
    return out[model.graph.output[0].name]


def inputs(scale: float, lo: int, hi: int) -> np.ndarray:
    """Every half step from below the range to above it (ties), random values, signed zeros,
    tiny values."""
    steps = np.arange(2 * lo - 5, 2 * hi + 6) / 2
    rng = np.random.default_rng(0)
    rand = rng.uniform(lo - 3, hi + 3, 200)
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-45, -1e-45])
    return np.concatenate([(steps * np.float64(np.float32(scale))), rand * scale,
                           special]).astype(np.float32)


@pytest.mark.parametrize("mode", sorted(ROUNDING_MODES))
@pytest.mark.parametrize("bits, signed, narrow", [
    (1, True, False), (1, False, False), (2, True, True), (2, True, False), (3, False, True),
    (4, False, False), (8, True, False)])
@pytest.mark.parametrize("scale", [2.0 ** -4, 0.1, 1 / 3])
def test_quant_codes_and_values_equal_the_executor(mode, bits, signed, narrow, scale):
    q = Quantizer("Quant", scale, bits, signed, narrow, mode)
    lo, hi = q.code_range
    x = inputs(scale, lo, hi)
    ref = executor("Quant", x, scale, bits=bits, signed=signed, narrow=narrow, mode=mode)
    codes = q.codes(x)
    np.testing.assert_array_equal(q.values(codes), ref)
    np.testing.assert_array_equal(codes, np.rint(ref.astype(np.float64) / q.scale))
    assert codes.min() >= lo and codes.max() <= hi
    if bits > 1:        # the range is used, clamped at both ends
        assert codes.min() == lo and codes.max() == hi


def test_ties_round_half_to_even_by_default_and_half_up_when_asked():
    q = Quantizer("Quant", 1.0, 4, False, False)
    x = np.array([0.5, 1.5, 2.5, 3.5], dtype=np.float32)
    np.testing.assert_array_equal(q.codes(x), [0, 2, 2, 4])
    np.testing.assert_array_equal(Quantizer("Quant", 1.0, 4, False, False, "HALF_UP").codes(x),
                                  [1, 2, 3, 4])
    np.testing.assert_array_equal(executor("Quant", x, 1.0, bits=4, signed=False), [0, 2, 2, 4])


def test_the_executor_requires_signed_and_narrow():
    """The written spec gives defaults; qonnx's executor refuses a Quant without them."""
    x = np.array([-9.0, -8.0, 7.0, 9.0], dtype=np.float32)
    with pytest.raises(Exception, match="Required attribute signed unspecified"):
        executor("Quant", x, 1.0, bits=4, attrs=False)
    ref = executor("Quant", x, 1.0, bits=4, signed=True, narrow=True)
    np.testing.assert_array_equal(ref, [-7, -7, 7, 7])
    np.testing.assert_array_equal(Quantizer("Quant", 1.0, 4, True, True).codes(x), ref)


@pytest.mark.parametrize("scale", [1.0, 0.25, 0.3])
def test_bipolar_quant_maps_zero_to_plus_one(scale):
    x = inputs(scale, -1, 1)
    ref = executor("BipolarQuant", x, scale)
    q = Quantizer("BipolarQuant", scale)
    codes = q.codes(x)
    np.testing.assert_array_equal(q.values(codes), ref)
    assert set(np.unique(codes)) == {-1, 1}
    assert q.codes(np.array([0.0, -0.0], np.float32)).tolist() == [1, 1]
    assert q.bipolar and q.code_range == (-1, 1)


def test_quant_limits_are_the_executors():
    assert quant_limits(True, True, 8) == (-127, 127)
    assert quant_limits(True, False, 8) == (-128, 127)
    assert quant_limits(False, True, 8) == (0, 254)
    assert quant_limits(False, False, 8) == (0, 255)


@pytest.mark.parametrize("kwargs, message", [
    ({"op": "Trunc", "scale": 1.0}, "quantizer op must be"),
    ({"op": "Quant", "scale": 0.0}, "scale must be a finite float32 > 0"),
    ({"op": "Quant", "scale": float("nan")}, "scale must be a finite float32 > 0"),
    ({"op": "Quant", "scale": 1.0, "bits": 0}, "bits must be an integer in [1, 32]"),
    ({"op": "Quant", "scale": 1.0, "rounding_mode": "NEAREST"}, "rounding mode 'NEAREST'"),
    ({"op": "BipolarQuant", "scale": 1.0, "bits": 2}, "a BipolarQuant is 1-bit signed"),
])
def test_bad_quantizers_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Quantizer(**kwargs)


def test_float_interface_round_trips_through_a_dict():
    io = FloatInterface((1, 8, 8), (10,), Quantizer("Quant", 1 / 3, 2, False, False, "floor"),
                        Quantizer("BipolarQuant", 0.5))
    back = FloatInterface.from_dict(io.to_dict())
    assert back == io
    assert back.quantizer.rounding_mode == "FLOOR"
    assert back.quantizer.scale == float(np.float32(1 / 3))
