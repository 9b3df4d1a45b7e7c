"""Filter columns split into channel copies: the same convolution (``model.ops.conv2d``)."""

import numpy as np
import pytest

from model.column_split import split_columns_layer, split_filter_columns, zero_weight_code
from model.layer_file import Layer
from model.ops import conv2d
from model.quant import SCHEMES, activation_code_range, weight_code_range, weight_level
from tests.model.test_batching import WIDTHS


def test_zero_weight_codes():
    assert zero_weight_code("ternary") == 0 and zero_weight_code("pow2") == 0
    assert zero_weight_code("int", 4) == 0
    for scheme, bits in (("binary", None), ("dorefa", 2), ("xnor", 6)):
        assert zero_weight_code(scheme, bits) is None
    assert zero_weight_code("dorefa", 2, codebook=[-3, 0, 0, 5]) == 1
    assert zero_weight_code("dorefa", 2, codebook=[-3, 1, 2, 5]) is None
    assert weight_level("int", np.array([zero_weight_code("int", 4)]), 4)[0] == 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_split_convolution_equals_the_layer(scheme):
    """Every allowed k for 5- and 3-wide filters, strides 1 and 2, padding 0 to 2, one and
    two channels, codes at the extremes of their ranges."""
    rng = np.random.default_rng(SCHEMES.index(scheme) + 50)
    a_bits, w_bits = WIDTHS[scheme]
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits)
    tried = 0
    for C, R, S, H, W, U, P in [(1, 5, 5, 9, 11, 1, 2), (2, 3, 3, 7, 8, 2, 1),
                                (1, 2, 5, 4, 6, 1, 0)]:
        x = rng.integers(a_lo, a_hi + 1, size=(C, H, W))
        w = rng.integers(w_lo, w_hi + 1, size=(3, C, R, S))
        x[0, 0, :], w[0, 0, 0, :] = a_hi, w_lo            # extremes on the borders
        want = conv2d(scheme, x, w, stride=U, padding=P, a_bits=a_bits, w_bits=w_bits)
        for k in range(1, S + 1):
            needs_zero = S % k != 0 and zero_weight_code(scheme, w_bits) is None
            if needs_zero or (P and scheme == "xnor"):
                with pytest.raises(ValueError):
                    split_filter_columns(x, w, k, scheme=scheme, stride=U, padding=P,
                                         w_bits=w_bits)
                continue
            x2, w2 = split_filter_columns(x, w, k, scheme=scheme, stride=U, padding=P,
                                          w_bits=w_bits)
            assert x2.shape[0] == w2.shape[1] == C * k and w2.shape[3] == -(-S // k)
            got = conv2d(scheme, x2, w2, stride=U, padding=0, a_bits=a_bits, w_bits=w_bits)
            np.testing.assert_array_equal(got, want)
            tried += 1
    assert tried >= 2


def test_split_layer_and_refusals():
    rng = np.random.default_rng(2)
    layer = Layer("ternary", rng.integers(-1, 2, (2, 1, 5, 5)), rng.integers(-8, 8, (1, 6, 6)),
                  1, 2, a_bits=4)
    split = split_columns_layer(layer, 2)
    assert split.weights.shape == (2, 2, 5, 3) and split.padding == 0
    np.testing.assert_array_equal(
        conv2d("ternary", split.inputs, split.weights, a_bits=4),
        conv2d("ternary", layer.inputs, layer.weights, padding=2, a_bits=4))
    with pytest.raises(ValueError, match="allowed: 1 to 5, not 6"):
        split_columns_layer(layer, 6)
    with pytest.raises(ValueError, match="scheme 'binary' lacks; allowed k: divisors of 5"):
        split_filter_columns(np.zeros((1, 6, 6), int), np.zeros((2, 1, 5, 5), int), 2,
                             scheme="binary")
