"""A dense batch as a 1x1 convolution equals ``model.ops.dense`` on every input."""

import numpy as np
import pytest

from model.batching import batched_dense_layer, conv_outputs_as_dense_batch, dense_batch_as_conv
from model.ops import conv2d, dense
from model.quant import SCHEMES, activation_code_range, weight_code_range

#: (a_bits, w_bits) per scheme (xnor: lanes)
WIDTHS = {"binary": (4, 1), "xnor": (6, 6), "ternary": (4, 2), "pow2": (3, 3),
          "dorefa": (3, 2), "int": (4, 4)}


def codes(rng, scheme, n, c, m):
    a_bits, w_bits = WIDTHS[scheme]
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits)
    inputs = rng.integers(a_lo, a_hi + 1, size=(n, c))
    weights = rng.integers(w_lo, w_hi + 1, size=(m, c))
    # extremes: an all-lowest and an all-highest input, an all-lowest and all-highest filter
    inputs[0], inputs[-1] = a_lo, a_hi
    weights[0], weights[-1] = w_lo, w_hi
    return inputs, weights


@pytest.mark.parametrize("scheme", SCHEMES)
def test_batched_convolution_equals_dense_per_input(scheme):
    """Batches laid out in 1, 2 or N rows, with and without extra filters."""
    rng = np.random.default_rng(SCHEMES.index(scheme))
    a_bits, w_bits = WIDTHS[scheme]
    for n, c, m, rows, filters in [(1, 1, 1, 1, None), (16, 7, 5, 1, None),
                                   (3, 40, 2, 1, 3), (16, 7, 5, 2, 7), (6, 3, 4, 6, 4)]:
        inputs, weights = codes(rng, scheme, n, c, m)
        image, filt = dense_batch_as_conv(inputs, weights, rows=rows, filters=filters)
        assert image.shape == (c, rows, n // rows) and filt.shape == (filters or m, c, 1, 1)
        out = conv2d(scheme, image, filt, a_bits=a_bits, w_bits=w_bits)
        got = conv_outputs_as_dense_batch(out, m)
        want = np.stack([dense(scheme, x, weights, a_bits=a_bits, w_bits=w_bits)
                         for x in inputs])
        np.testing.assert_array_equal(got, want)


def test_batched_layer_holds_the_image_and_filters():
    rng = np.random.default_rng(5)
    inputs, weights = codes(rng, "ternary", 4, 3, 2)
    layer = batched_dense_layer("ternary", inputs, weights, a_bits=4, w_bits=2)
    assert (layer.stride, layer.padding, layer.output_shape) == (1, 0, (2, 1, 4))
    np.testing.assert_array_equal(layer.inputs[:, 0, :], inputs.T)
    np.testing.assert_array_equal(layer.weights[:, :, 0, 0], weights)


def test_bad_shapes_name_the_shapes():
    with pytest.raises(ValueError, match=r"inputs \[N, C\] and weights \[M, C\], not \(3,\)"):
        dense_batch_as_conv(np.zeros(3, int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"expect 3 inputs per vector, the inputs \(2, 4\)"):
        dense_batch_as_conv(np.zeros((2, 4), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="must not be empty"):
        dense_batch_as_conv(np.zeros((0, 3), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"rows must be a divisor of the batch size 4, not 3"):
        dense_batch_as_conv(np.zeros((4, 3), int), np.zeros((2, 3), int), rows=3)
    with pytest.raises(ValueError, match=r"filters must be an integer >= the 2 filters, not 1"):
        dense_batch_as_conv(np.zeros((4, 3), int), np.zeros((2, 3), int), filters=1)
    with pytest.raises(ValueError, match=r"\[M, rows, N / rows\], not \(2, 3\)"):
        conv_outputs_as_dense_batch(np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"m must be in \[1, 2\], not 3"):
        conv_outputs_as_dense_batch(np.zeros((2, 1, 3), int), 3)
