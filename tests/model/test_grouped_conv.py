"""Grouped and depthwise convolution in the golden model (``model.ops.conv2d(groups=G)``)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import ops
from model.quant import SCHEMES, activation_code_range, weight_code_range, weight_level
from tests.model.test_ops import WIDTHS, pm1_lanes, random_codes, reference_conv

PROPERTY = settings(max_examples=60, deadline=None)


def per_group_loop(levels, acts, groups, stride, padding):
    """The grouped convolution as ``groups`` plain-loop convolutions, one per group."""
    m_per, c_per = levels.shape[0] // groups, acts.shape[0] // groups
    return np.concatenate([
        reference_conv(levels[g * m_per:(g + 1) * m_per], acts[g * c_per:(g + 1) * c_per],
                       stride, padding)
        for g in range(groups)])


def reference_grouped(scheme, inputs, weights, groups, stride, padding, a_bits, w_bits):
    """``per_group_loop`` on integer levels; xnor words are unpacked into +/-1 lanes, each
    group's words staying in its group."""
    if scheme == "xnor":
        lanes = a_bits
        acts = np.moveaxis(pm1_lanes(inputs, lanes), -1, 1)       # [Cw, lanes, H, W]
        levels = np.moveaxis(pm1_lanes(weights, lanes), -1, 2)    # [M, Cwg, lanes, R, S]
        acts = acts.reshape((-1,) + acts.shape[2:])
        levels = levels.reshape(levels.shape[:1] + (-1,) + levels.shape[3:])
        return per_group_loop(levels, acts, groups, stride, padding)
    return per_group_loop(weight_level(scheme, weights, w_bits), inputs, groups, stride,
                          padding)


@st.composite
def grouped_cases(draw, scheme):
    groups = draw(st.integers(1, 4))
    c_per = draw(st.integers(1, 2))
    m_per = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.integers(0, 2))
    stride = draw(st.integers(1, 2))
    height = draw(st.integers(max(1, kh - 2 * padding), 5))
    width = draw(st.integers(max(1, kw - 2 * padding), 5))
    batch = draw(st.sampled_from([None, 2]))
    seed = draw(st.integers(0, 2**32 - 1))
    a_bits, w_bits = WIDTHS[scheme]
    rng = np.random.default_rng(seed)
    a_shape = (groups * c_per, height, width)
    inputs, weights = random_codes(scheme, rng, a_shape if batch is None else (batch,) + a_shape,
                                   (groups * m_per, c_per, kh, kw), a_bits, w_bits)
    return inputs, weights, groups, stride, padding, a_bits, w_bits


@pytest.mark.parametrize("scheme", SCHEMES)
@PROPERTY
@given(data=st.data())
def test_grouped_conv2d_equals_a_loop_over_groups(scheme, data):
    inputs, weights, groups, stride, padding, a_bits, w_bits = data.draw(grouped_cases(scheme))
    got = ops.conv2d(scheme, inputs, weights, stride=stride, padding=padding, a_bits=a_bits,
                     w_bits=w_bits, groups=groups)
    assert got.dtype == np.int64
    images = inputs if inputs.ndim == 4 else inputs[None]
    expected = np.stack([reference_grouped(scheme, x, weights, groups, stride, padding, a_bits,
                                           w_bits) for x in images])
    np.testing.assert_array_equal(got, expected if inputs.ndim == 4 else expected[0])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_depthwise_extremes_every_scheme(scheme):
    """G = C = M at the extreme codes: each output channel is its own channel's 3x3 sum."""
    a_bits, w_bits = WIDTHS[scheme]
    channels = 4
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits if scheme != "xnor" else a_bits)
    x = np.empty((channels, 5, 5), dtype=np.int64)
    x[0::2], x[1::2] = a_lo, a_hi
    w = np.empty((channels, 1, 3, 3), dtype=np.int64)
    w[:2], w[2:] = w_lo, w_hi
    got = ops.conv2d(scheme, x, w, padding=1, a_bits=a_bits, w_bits=w_bits, groups=channels)
    expected = reference_grouped(scheme, x, w, channels, 1, 1, a_bits, w_bits)
    np.testing.assert_array_equal(got, expected)
    # Channel m sees only channel m: the centre output is 9 products of its own codes.
    for m in range(channels):
        if scheme == "xnor":
            dot = int((pm1_lanes(x[m, 0, 0], a_bits) * pm1_lanes(w[m, 0, 0, 0], a_bits)).sum())
        else:
            dot = int(weight_level(scheme, w[m, 0, 0, 0], w_bits)) * int(x[m, 0, 0])
        assert got[m, 2, 2] == 9 * dot


def test_one_group_is_the_plain_convolution_and_groups_are_independent():
    rng = np.random.default_rng(3)
    x = rng.integers(-7, 8, (6, 5, 5))
    w = rng.integers(-4, 4, (6, 3, 3, 3))
    plain = ops.conv2d("int", x, w[:, :3].repeat(2, axis=1), padding=1, a_bits=4, w_bits=3)
    np.testing.assert_array_equal(
        plain, ops.conv2d("int", x, w[:, :3].repeat(2, axis=1), padding=1, a_bits=4, w_bits=3,
                          groups=1))
    grouped = ops.conv2d("int", x, w, padding=1, a_bits=4, w_bits=3, groups=2)
    # Changing group 1's inputs leaves group 0's outputs alone, and the other way round.
    x2 = x.copy()
    x2[3:] = -x2[3:]
    again = ops.conv2d("int", x2, w, padding=1, a_bits=4, w_bits=3, groups=2)
    np.testing.assert_array_equal(again[:3], grouped[:3])
    np.testing.assert_array_equal(again[3:], -grouped[3:])


def test_grouped_equals_block_diagonal_dense_weights():
    """A grouped convolution is the plain one with zero weights off the diagonal blocks."""
    rng = np.random.default_rng(5)
    groups, c_per, m_per = 3, 2, 2
    x = rng.integers(-8, 8, (groups * c_per, 6, 6))
    w = rng.integers(-1, 2, (groups * m_per, c_per, 3, 3))
    full = np.zeros((groups * m_per, groups * c_per, 3, 3), dtype=np.int64)
    for g in range(groups):
        full[g * m_per:(g + 1) * m_per, g * c_per:(g + 1) * c_per] = w[g * m_per:(g + 1) * m_per]
    np.testing.assert_array_equal(
        ops.conv2d("ternary", x, w, stride=2, padding=1, a_bits=4, groups=groups),
        ops.conv2d("ternary", x, full, stride=2, padding=1, a_bits=4))


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups=0), "groups must be an integer >= 1, not 0"),
    (dict(groups=True), "groups must be an integer"),
    (dict(groups=4), "groups 4 must divide the input channels \\(6\\) and the filters \\(6\\)"),
    (dict(groups=3, weights=np.ones((4, 2, 3, 3), dtype=np.int64)),
     "must divide the input channels \\(6\\) and the filters \\(4\\)"),
    (dict(groups=2), "must have C / groups = 6 / 2 = 3 channels"),
    (dict(groups=3, inputs=np.full((6, 4, 4), 9)), "holds 9"),
])
def test_grouped_conv2d_rejects_bad_input(kwargs, message):
    args = dict(inputs=np.ones((6, 4, 4), dtype=np.int64),
                weights=np.ones((6, 2, 3, 3), dtype=np.int64))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ops.conv2d("ternary", args.pop("inputs"), args.pop("weights"), a_bits=4, **args)


# ----------------------------------------------------------------------------------------------
# LAYER.npz: the groups key
# ----------------------------------------------------------------------------------------------

def test_layer_file_keeps_groups_and_defaults_to_one(tmp_path):
    from model.layer_file import Layer, load_layer, save_layer

    w = np.ones((8, 1, 3, 3), dtype=np.int64)
    layer = Layer("ternary", w, np.ones((8, 5, 5), dtype=np.int64), padding=1, groups=8)
    save_layer(tmp_path / "dw.npz", layer)
    back = load_layer(tmp_path / "dw.npz")
    assert back.groups == 8 and back.weights.shape == (8, 1, 3, 3)
    assert back.output_shape == (8, 5, 5)
    # A file written without the key (as before groups existed) is one group.
    np.savez(tmp_path / "old.npz", scheme=np.array("ternary"), weights=np.ones((2, 3, 1, 1)),
             inputs=np.ones((3, 2, 2)), stride=1, padding=0)
    assert load_layer(tmp_path / "old.npz").groups == 1


@pytest.mark.parametrize("groups, w_shape, message", [
    (0, (6, 2, 1, 1), "groups must be a positive integer, not 0"),
    (4, (8, 1, 1, 1), "groups 4 must divide the input channels C = 6 and the filters M = 8"),
    (3, (4, 2, 1, 1), "groups 3 must divide the input channels C = 6 and the filters M = 4"),
    (2, (6, 2, 1, 1), "expect 2 x 2 groups = 4 input channels, the inputs \\(6, 2, 2\\) have 6"),
])
def test_layer_file_refuses_bad_groups(tmp_path, groups, w_shape, message):
    from model.layer_file import load_layer

    path = tmp_path / "bad.npz"
    np.savez(path, scheme=np.array("int"), weights=np.ones(w_shape, dtype=np.int64),
             inputs=np.ones((6, 2, 2), dtype=np.int64), groups=groups)
    with pytest.raises(ValueError, match=message):
        load_layer(path)
