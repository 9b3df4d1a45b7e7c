"""Integer golden ops (``model.ops``) against hand-worked sums and independent loops."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import ops
from model.quant import (
    SCHEMES,
    activation_code_range,
    pack_pm1,
    weight_code_range,
    weight_level,
)

PROPERTY = settings(max_examples=100, deadline=None)

# Widths used for every scheme: (a_bits, w_bits); xnor has a_bits == w_bits == lanes.
WIDTHS = {
    "binary": (4, None),
    "xnor": (5, 5),
    "ternary": (3, None),
    "pow2": (4, None),
    "dorefa": (3, 2),
    "int": (4, 3),
}


# ----------------------------------------------------------------------------------------------
# Independent references (plain loops, written for the tests)
# ----------------------------------------------------------------------------------------------

def pm1_lanes(words, lanes):
    """+/-1 levels of packed words along a new trailing axis (bit i = lane i, 1 = -1)."""
    w = np.asarray(words).astype(np.uint64)
    bits = (w[..., None] >> np.arange(lanes, dtype=np.uint64)) & np.uint64(1)
    return 1 - 2 * bits.astype(np.int64)


def reference_conv(levels, acts, stride, padding):
    """Loop over every output position and tap; taps outside the image contribute 0."""
    m_count, c_count, kh, kw = levels.shape
    _, height, width = acts.shape
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    out = np.zeros((m_count, out_h, out_w), dtype=np.int64)
    for m in range(m_count):
        for e in range(out_h):
            for f in range(out_w):
                total = 0
                for c in range(c_count):
                    for r in range(kh):
                        for s in range(kw):
                            i = e * stride + r - padding
                            j = f * stride + s - padding
                            if 0 <= i < height and 0 <= j < width:
                                total += int(levels[m, c, r, s]) * int(acts[c, i, j])
                out[m, e, f] = total
    return out


def reference_layer(scheme, inputs, weights, stride, padding, a_bits, w_bits):
    """``reference_conv`` on integer levels; xnor is unpacked into +/-1 channels first."""
    if scheme == "xnor":
        lanes = a_bits
        acts = np.moveaxis(pm1_lanes(inputs, lanes), -1, 1)       # [Cw, lanes, H, W]
        levels = np.moveaxis(pm1_lanes(weights, lanes), -1, 2)    # [M, Cw, lanes, R, S]
        acts = acts.reshape((-1,) + acts.shape[2:])
        levels = levels.reshape(levels.shape[:1] + (-1,) + levels.shape[3:])
        return reference_conv(levels, acts, stride, padding)
    return reference_conv(weight_level(scheme, weights, w_bits), inputs, stride, padding)


def random_codes(scheme, rng, a_shape, w_shape, a_bits, w_bits):
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits if w_bits is not None else
                                   (a_bits if scheme == "xnor" else None))
    return (rng.integers(a_lo, a_hi, a_shape, endpoint=True),
            rng.integers(w_lo, w_hi, w_shape, endpoint=True))


# ----------------------------------------------------------------------------------------------
# conv2d and dense
# ----------------------------------------------------------------------------------------------

def test_conv2d_hand_worked_one_channel_3x3():
    x = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    w = np.array([[[[2, -1], [0, 3]]]])                 # int codes are their levels
    expected = np.array([[[2 * 1 - 1 * 2 + 3 * 5, 2 * 2 - 1 * 3 + 3 * 6],
                          [2 * 4 - 1 * 5 + 3 * 8, 2 * 5 - 1 * 6 + 3 * 9]]])
    np.testing.assert_array_equal(ops.conv2d("int", x, w, a_bits=5, w_bits=3), expected)


def test_conv2d_hand_worked_binary_padding():
    # Every weight +1 (code 0) but the centre -1 (code 1): a 3x3 neighbourhood sum of the
    # in-image pixels minus twice the centre; the padded border contributes nothing.
    x = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    w = np.zeros((1, 1, 3, 3), dtype=np.int64)
    w[0, 0, 1, 1] = 1
    expected = np.array([[[12 - 2 * 1, 21 - 2 * 2, 16 - 2 * 3],
                          [27 - 2 * 4, 45 - 2 * 5, 33 - 2 * 6],
                          [24 - 2 * 7, 39 - 2 * 8, 28 - 2 * 9]]])
    got = ops.conv2d("binary", x, w, padding=1, a_bits=5)
    np.testing.assert_array_equal(got, expected)


def test_conv2d_hand_worked_stride_two_two_channels():
    x = np.array([[[3, -1, 4, 1, -5], [9, 2, -6, 5, 3], [5, -8, 9, 7, -9],
                   [3, 2, -3, 8, 4], [6, 2, -6, 4, 3]],
                  [[1, 0, -1, 2, 2], [0, 1, 1, -2, 0], [2, 2, 0, 1, -1],
                   [1, 1, 1, 1, 1], [0, -2, 0, 2, 0]]])
    w = np.zeros((1, 2, 3, 3), dtype=np.int64)           # ternary codes are their levels
    w[0, 0, 0, 0] = 1
    w[0, 0, 2, 1] = -1
    w[0, 1, 1, 2] = 1
    # out[e, f] = x0[2e, 2f] - x0[2e+2, 2f+1] + x1[2e+1, 2f+2]
    expected = np.array([[[3 - (-8) + 1, 4 - 7 + 0],
                          [5 - 2 + 1, 9 - 4 + 1]]])
    got = ops.conv2d("ternary", x, w, stride=2, a_bits=5)
    np.testing.assert_array_equal(got, expected)


@st.composite
def conv_geometries(draw, max_stride):
    """``(kh, kw, padding, stride, height, width)``: a kernel of up to 3x3 that fits an input
    of up to 6x6 once padded."""
    kh = draw(st.integers(1, 3))
    kw = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 2))
    stride = draw(st.integers(1, max_stride))
    height = draw(st.integers(max(1, kh - 2 * padding), 6))
    width = draw(st.integers(max(1, kw - 2 * padding), 6))
    return kh, kw, padding, stride, height, width


@st.composite
def conv_cases(draw, scheme):
    kh, kw, padding, stride, height, width = draw(conv_geometries(max_stride=3))
    channels = draw(st.integers(1, 3))
    filters = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    a_bits, w_bits = WIDTHS[scheme]
    rng = np.random.default_rng(seed)
    inputs, weights = random_codes(scheme, rng, (channels, height, width),
                                   (filters, channels, kh, kw), a_bits, w_bits)
    return inputs, weights, stride, padding, a_bits, w_bits


@pytest.mark.parametrize("scheme", SCHEMES)
@PROPERTY
@given(data=st.data())
def test_conv2d_equals_reference_loop(scheme, data):
    inputs, weights, stride, padding, a_bits, w_bits = data.draw(conv_cases(scheme))
    got = ops.conv2d(scheme, inputs, weights, stride=stride, padding=padding,
                     a_bits=a_bits, w_bits=w_bits)
    expected = reference_layer(scheme, inputs, weights, stride, padding, a_bits, w_bits)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_conv2d_batch_equals_each_sample(scheme):
    rng = np.random.default_rng(7)
    a_bits, w_bits = WIDTHS[scheme]
    batch, weights = random_codes(scheme, rng, (3, 2, 5, 6), (4, 2, 3, 2), a_bits, w_bits)
    got = ops.conv2d(scheme, batch, weights, stride=2, padding=1, a_bits=a_bits, w_bits=w_bits)
    each = [ops.conv2d(scheme, x, weights, stride=2, padding=1, a_bits=a_bits, w_bits=w_bits)
            for x in batch]
    np.testing.assert_array_equal(got, np.stack(each))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dense_equals_conv2d_one_by_one_and_matrix_product(scheme):
    rng = np.random.default_rng(11)
    a_bits, w_bits = WIDTHS[scheme]
    batch, weights = random_codes(scheme, rng, (5, 7), (3, 7), a_bits, w_bits)
    got = ops.dense(scheme, batch, weights, a_bits=a_bits, w_bits=w_bits)
    as_conv = ops.conv2d(scheme, batch[:, :, None, None], weights[:, :, None, None],
                         a_bits=a_bits, w_bits=w_bits)[:, :, 0, 0]
    np.testing.assert_array_equal(got, as_conv)
    single = ops.dense(scheme, batch[2], weights, a_bits=a_bits, w_bits=w_bits)
    np.testing.assert_array_equal(single, got[2])
    if scheme == "xnor":
        by_hand = np.einsum("ncl,mcl->nm", pm1_lanes(batch, a_bits), pm1_lanes(weights, a_bits))
    else:
        by_hand = np.array([[sum(int(lv) * int(a) for lv, a in zip(row, x))
                             for row in weight_level(scheme, weights, w_bits)] for x in batch])
    np.testing.assert_array_equal(got, by_hand)


def test_conv2d_all_zero_weights_give_zero():
    x = np.full((2, 4, 4), 3)
    zeros = np.zeros((3, 2, 3, 3), dtype=np.int64)
    for scheme in ("ternary", "pow2", "int"):
        out = ops.conv2d(scheme, x, zeros, padding=1, a_bits=3, w_bits=WIDTHS[scheme][1])
        np.testing.assert_array_equal(out, np.zeros((3, 4, 4), dtype=np.int64))


def test_conv2d_int_extremes_reach_the_product_bound():
    a_bits, w_bits = 8, 8
    x = np.full((4, 3, 3), -128)
    w = np.full((2, 4, 3, 3), -128)
    out = ops.conv2d("int", x, w, a_bits=a_bits, w_bits=w_bits)
    np.testing.assert_array_equal(out, np.full((2, 1, 1), 36 * 128 * 128))
    w_max = np.full((2, 4, 3, 3), 127)
    out = ops.conv2d("int", x, w_max, a_bits=a_bits, w_bits=w_bits)
    np.testing.assert_array_equal(out, np.full((2, 1, 1), -36 * 128 * 127))


def _conv_call(**overrides):
    args = dict(scheme="ternary", inputs=np.ones((2, 4, 4), dtype=np.int64),
                weights=np.ones((3, 2, 3, 3), dtype=np.int64), stride=1, padding=0, a_bits=4)
    args.update(overrides)
    return ops.conv2d(args.pop("scheme"), args.pop("inputs"), args.pop("weights"), **args)


@pytest.mark.parametrize("overrides, message", [
    (dict(weights=np.ones((3, 5, 3, 3), dtype=np.int64)), "2 channels but"),
    (dict(stride=0), "stride must be an integer >= 1, not 0"),
    (dict(stride=1.5), "stride must be an integer"),
    (dict(padding=-1), "padding must be an integer >= 0, not -1"),
    (dict(inputs=np.ones((2, 0, 4), dtype=np.int64)), "must not be empty"),
    (dict(weights=np.ones((3, 2, 6, 3), dtype=np.int64)), "kernel size 6 exceeds"),
    (dict(inputs=np.full((2, 4, 4), 8)), "holds 8; allowed: integers in \\[-8, 7\\]"),
    (dict(weights=np.full((3, 2, 3, 3), 2)), "holds 2; allowed: integers in \\[-1, 1\\]"),
    (dict(inputs=np.full((2, 4, 4), np.nan)), "NaN"),
    (dict(inputs=np.full((2, 4, 4), 0.5)), "must hold integers"),
    (dict(inputs=np.ones((4, 4), dtype=np.int64)), "must have 3 or 4 dimensions"),
    (dict(weights=np.ones((3, 2, 3), dtype=np.int64)), "\\[M, C, R, S\\]"),
    (dict(scheme="float"), "unknown scheme 'float'"),
    (dict(a_bits=1), "in \\[2, 32\\], not 1"),
    (dict(scheme="xnor", a_bits=4, w_bits=5), "a_bits == w_bits"),
])
def test_conv2d_rejects_bad_input(overrides, message):
    with pytest.raises(ValueError, match=message):
        _conv_call(**overrides)


def test_conv2d_refuses_sums_that_could_exceed_int64():
    x = np.zeros((140000, 1, 1), dtype=np.int64)
    w = np.zeros((1, 140000, 1, 1), dtype=np.int64)
    with pytest.raises(ValueError, match="at most 64 bits"):
        ops.conv2d("int", x, w, a_bits=32, w_bits=16)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.dense("int", np.ones(4, int), np.ones((2, 5), int), a_bits=3, w_bits=3),
     "4 channels but"),
    (lambda: ops.dense("int", np.ones(4, int), np.ones((2, 4, 1), int), a_bits=3, w_bits=3),
     "\\[M, C\\]"),
    (lambda: ops.dense("int", np.ones((1, 1, 4), int), np.ones((2, 4), int), a_bits=3,
                       w_bits=3), "1 or 2 dimensions"),
    (lambda: ops.dense("dorefa", np.full(4, 8), np.ones((2, 4), int), a_bits=3, w_bits=2),
     "holds 8"),
    (lambda: ops.dense("int", np.ones(0, int), np.ones((2, 0), int), a_bits=3, w_bits=3),
     "must not be empty"),
])
def test_dense_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------------------------
# maxpool2d
# ----------------------------------------------------------------------------------------------

def test_maxpool2d_hand_worked():
    x = np.array([[[1, -3, 2, 0], [4, 0, -1, 7], [-8, -2, 5, 5], [-9, -4, 6, -1]]])
    np.testing.assert_array_equal(ops.maxpool2d(x, 2), [[[4, 7], [-2, 6]]])
    np.testing.assert_array_equal(ops.maxpool2d(x, 3, stride=1), [[[5, 7], [6, 7]]])


def test_maxpool2d_equals_reference_loop_with_int_extremes():
    rng = np.random.default_rng(3)
    x = rng.integers(-2**63, 2**63 - 1, (2, 3, 7, 8), endpoint=True)
    x[0, 0, 0, 0] = -2**63
    x[1, 2, 6, 7] = 2**63 - 1
    for size, stride in [(2, None), (3, 2), (2, 1), (7, 1)]:
        step = size if stride is None else stride
        got = ops.maxpool2d(x, size, stride)
        out_h, out_w = (7 - size) // step + 1, (8 - size) // step + 1
        expected = np.empty(x.shape[:2] + (out_h, out_w), dtype=np.int64)
        for e in range(out_h):
            for f in range(out_w):
                window = x[:, :, e * step:e * step + size, f * step:f * step + size]
                expected[:, :, e, f] = window.max(axis=(2, 3))
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("args, message", [
    ((np.ones((4, 4), int), 0), "pool size must be an integer >= 1, not 0"),
    ((np.ones((4, 4), int), 2, 0), "pool stride must be an integer >= 1, not 0"),
    ((np.ones((4, 4), int), 5), "kernel size 5 exceeds"),
    ((np.ones(4, int), 2), "\\[..., H, W\\]"),
    ((np.full((4, 4), np.nan), 2), "NaN"),
])
def test_maxpool2d_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        ops.maxpool2d(*args)


# ----------------------------------------------------------------------------------------------
# Bit-packed +/-1 arithmetic
# ----------------------------------------------------------------------------------------------

def test_popcount_matches_python_bit_count():
    rng = np.random.default_rng(5)
    words = rng.integers(0, 2**64 - 1, 200, dtype=np.uint64, endpoint=True)
    words[:3] = [0, 2**64 - 1, 2**63]
    expected = [bin(int(w)).count("1") for w in words]
    np.testing.assert_array_equal(ops.popcount(words), expected)
    np.testing.assert_array_equal(ops.popcount_swar(words), expected)


def test_product_xnor_is_lanes_minus_twice_the_mismatches():
    a = np.array([0b1010, 0b0000, 0b1111])
    w = np.array([0b0110, 0b1111, 0b1111])
    # lanes 4: 2 mismatches -> 0; 4 mismatches -> -4; none -> +4
    np.testing.assert_array_equal(ops.product("xnor", a, w, a_bits=4), [0, -4, 4])


@PROPERTY
@given(lanes=st.integers(1, 64), words=st.integers(1, 4), filters=st.integers(1, 3),
       batch=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_xnor_dense_equals_pm1_integer_dot(lanes, words, filters, batch, seed):
    rng = np.random.default_rng(seed)
    a_levels = rng.choice([-1, 1], (batch, words, lanes))
    w_levels = rng.choice([-1, 1], (filters, words, lanes))
    got = ops.xnor_dense(pack_pm1(a_levels), pack_pm1(w_levels), lanes)
    expected = np.einsum("ncl,mcl->nm", a_levels, w_levels)
    np.testing.assert_array_equal(got, expected)


def test_xnor_dense_64_lane_extremes():
    minus = pack_pm1(-np.ones((2, 64), dtype=np.int64))       # every bit set: 2**64 - 1
    plus = pack_pm1(np.ones((2, 64), dtype=np.int64))
    assert minus.dtype == np.uint64 and int(minus[0]) == 2**64 - 1
    np.testing.assert_array_equal(ops.xnor_dense(minus, minus[None], 64), [128])
    np.testing.assert_array_equal(ops.xnor_dense(plus, minus[None], 64), [-128])


@st.composite
def xnor_conv_cases(draw):
    lanes = draw(st.integers(1, 64))
    kh, kw, padding, stride, height, width = draw(conv_geometries(max_stride=2))
    words = draw(st.integers(1, 2))
    filters = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a_levels = rng.choice([-1, 1], (words, height, width, lanes))
    w_levels = rng.choice([-1, 1], (filters, words, kh, kw, lanes))
    return lanes, a_levels, w_levels, stride, padding


@PROPERTY
@given(case=xnor_conv_cases())
def test_xnor_conv2d_equals_pm1_conv_with_zero_contributing_padding(case):
    lanes, a_levels, w_levels, stride, padding = case
    a_packed, w_packed = pack_pm1(a_levels), pack_pm1(w_levels)
    got = ops.xnor_conv2d(a_packed, w_packed, lanes, stride=stride, padding=padding)
    acts = np.moveaxis(a_levels, -1, 1).reshape((-1,) + a_levels.shape[1:3])
    levels = np.moveaxis(w_levels, -1, 2).reshape(w_levels.shape[:1] + (-1,) +
                                                  w_levels.shape[2:4])
    np.testing.assert_array_equal(got, reference_conv(levels, acts, stride, padding))
    via_conv2d = ops.conv2d("xnor", a_packed, w_packed, stride=stride, padding=padding,
                            a_bits=lanes)
    np.testing.assert_array_equal(via_conv2d, got)


def test_xnor_conv2d_border_counts_only_valid_taps():
    # All activations and weights -1: every valid word contributes +lanes, padding nothing.
    lanes, words = 8, 2
    a = pack_pm1(-np.ones((words, 4, 5, lanes), dtype=np.int64))
    w = pack_pm1(-np.ones((1, words, 3, 3, lanes), dtype=np.int64))
    got = ops.xnor_conv2d(a, w, lanes, padding=1)[0]
    corner, edge, centre = lanes * words * 4, lanes * words * 6, lanes * words * 9
    assert got[0, 0] == corner and got[3, 4] == corner
    assert got[0, 2] == edge and got[2, 0] == edge
    assert got[1, 1] == centre and got[2, 3] == centre


def test_xnor_conv2d_accepts_single_word_images_and_batches():
    rng = np.random.default_rng(9)
    a_levels = rng.choice([-1, 1], (2, 1, 5, 5, 6))
    w_levels = rng.choice([-1, 1], (3, 1, 3, 3, 6))
    a, w = pack_pm1(a_levels), pack_pm1(w_levels)
    batch = ops.xnor_conv2d(a, w, 6, padding=1, stride=2)
    assert batch.shape == (2, 3, 3, 3)
    plain = ops.xnor_conv2d(a[0, 0], w[:, 0], 6, padding=1, stride=2)
    np.testing.assert_array_equal(plain, batch[0])


def test_valid_tap_counts_and_padding_correction_formula():
    height, width, kh, kw, stride, padding, lanes = 5, 4, 3, 2, 2, 2, 7
    counts = ops.valid_tap_counts(height, width, (kh, kw), stride=stride, padding=padding)
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    expected = np.zeros((out_h, out_w), dtype=np.int64)
    for e in range(out_h):
        for f in range(out_w):
            for r in range(kh):
                for s in range(kw):
                    i, j = e * stride + r - padding, f * stride + s - padding
                    expected[e, f] += 0 <= i < height and 0 <= j < width
    np.testing.assert_array_equal(counts, expected)

    # The documented identity: feeding padding as the zero word, the popcount sum over all
    # taps minus the correction leaves the valid taps' mismatches.
    rng = np.random.default_rng(13)
    a = rng.integers(0, 2**lanes - 1, (2, height, width), endpoint=True)
    w = rng.integers(0, 2**lanes - 1, (3, 2, kh, kw), endpoint=True)
    padded = np.pad(a, ((0, 0), (padding, padding), (padding, padding)))  # zero word
    mismatches_all = np.zeros((3, out_h, out_w), dtype=np.int64)
    for m in range(3):
        for e in range(out_h):
            for f in range(out_w):
                window = padded[:, e * stride:e * stride + kh, f * stride:f * stride + kw]
                mismatches_all[m, e, f] = sum(bin(int(v)).count("1")
                                              for v in (window ^ w[m]).ravel())
    correction = ops.xnor_padding_correction(w, height, width, stride=stride, padding=padding)
    got = ops.xnor_conv2d(a, w, lanes, stride=stride, padding=padding)
    np.testing.assert_array_equal(got, lanes * 2 * counts - 2 * (mismatches_all - correction))


@pytest.mark.parametrize("call, message", [
    (lambda: ops.xnor_conv2d(np.ones((2, 4, 4), int), np.ones((1, 3, 3, 3), int), 4),
     "2 channels but"),
    (lambda: ops.xnor_conv2d(np.full((1, 4, 4), 16), np.ones((1, 1, 3, 3), int), 4),
     "holds 16; allowed: integers in \\[0, 15\\]"),
    (lambda: ops.xnor_conv2d(np.ones((1, 4, 4), int), np.ones((1, 1, 3, 3), int), 4,
                             stride=0), "stride must be"),
    (lambda: ops.xnor_conv2d(np.ones((1, 4, 4), int), np.ones((1, 1, 3, 3), int), 65),
     "in \\[1, 64\\], not 65"),
    (lambda: ops.xnor_conv2d(np.ones(4, int), np.ones((1, 1, 3, 3), int), 4),
     "\\[H, W\\], \\[Cw, H, W\\]"),
    (lambda: ops.xnor_dense(np.ones(3, int), np.full((2, 3), -1), 4), "holds -1"),
])
def test_xnor_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------------------------
# DoReFa bit-serial dot products
# ----------------------------------------------------------------------------------------------

@PROPERTY
@given(x_bits=st.integers(1, 8), y_bits=st.integers(1, 8), length=st.integers(1, 150),
       batch=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_bitserial_dot_equals_integer_dot(x_bits, y_bits, length, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**x_bits - 1, (batch, length), endpoint=True)
    y = rng.integers(0, 2**y_bits - 1, (length,), endpoint=True)
    np.testing.assert_array_equal(ops.bitserial_dot(x, y, x_bits, y_bits), x @ y)


def test_bitserial_dot_extremes():
    x = np.full(70, 2**32 - 1)
    y = np.full(70, 2**20 - 1)
    assert int(ops.bitserial_dot(x, y, 32, 20)) == 70 * (2**32 - 1) * (2**20 - 1)
    assert int(ops.bitserial_dot(np.zeros(5, int), np.full(5, 7), 1, 3)) == 0


@PROPERTY
@given(w_bits=st.integers(1, 8), a_bits=st.integers(1, 8), length=st.integers(1, 100),
       seed=st.integers(0, 2**32 - 1))
def test_dorefa_bitserial_dot_equals_level_dot(w_bits, a_bits, length, seed):
    rng = np.random.default_rng(seed)
    n = 2**w_bits - 1
    q = rng.integers(0, n, (2, length), endpoint=True)
    a = rng.integers(0, 2**a_bits - 1, (length,), endpoint=True)
    q[0, :] = 0                                                  # every level -n
    expected = (2 * q - n) @ a
    np.testing.assert_array_equal(ops.dorefa_bitserial_dot(q, a, w_bits, a_bits), expected)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.bitserial_dot(np.ones(3, int), np.ones(4, int), 2, 2), "same non-empty"),
    (lambda: ops.bitserial_dot(np.full(3, 4), np.ones(3, int), 2, 2), "holds 4"),
    (lambda: ops.bitserial_dot(np.ones(3, int), np.ones(3, int), 0, 2), "x_bits must be"),
    (lambda: ops.bitserial_dot(np.ones(3, int), np.ones(3, int), 33, 2), "\\[1, 32\\]"),
    (lambda: ops.bitserial_dot(np.ones(3), np.array([1, np.nan, 1]), 2, 2), "NaN"),
    (lambda: ops.dorefa_bitserial_dot(np.full(3, 4), np.ones(3, int), 2, 2), "holds 4"),
])
def test_bitserial_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------------------------
# The accumulator width rule
# ----------------------------------------------------------------------------------------------

WIDTH_CASES = [
    ("binary", 2, None), ("binary", 8, None), ("xnor", 1, 1), ("xnor", 9, 9), ("xnor", 64, 64),
    ("ternary", 2, None), ("ternary", 8, None), ("pow2", 4, None), ("pow2", 16, None),
    ("dorefa", 1, 1), ("dorefa", 3, 2), ("dorefa", 8, 8), ("int", 2, 2), ("int", 8, 8),
    ("int", 32, 16),
]


def fits(value, width):
    return -(1 << (width - 1)) <= value <= (1 << (width - 1)) - 1


def extreme_code_pairs(scheme, a_bits, w_bits):
    """Every (activation, weight) corner code pair and its exact product, by brute force."""
    if scheme == "xnor":
        ones = (1 << a_bits) - 1
        return {(0, 0): a_bits, (0, ones): -a_bits}
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits)
    codes = np.arange(w_lo, w_hi + 1)
    levels = weight_level(scheme, codes, w_bits)
    return {(a, int(w)): int(level) * a
            for a in (a_lo, a_hi) for w, level in zip(codes, levels)}


@pytest.mark.parametrize("scheme, a_bits, w_bits", WIDTH_CASES)
def test_product_range_is_the_brute_force_extreme(scheme, a_bits, w_bits):
    products = extreme_code_pairs(scheme, a_bits, w_bits).values()
    assert ops.product_range(scheme, a_bits=a_bits, w_bits=w_bits) == (min(products),
                                                                        max(products))
    if scheme != "xnor" and a_bits <= 4:                       # every pair, not only corners
        a_lo, a_hi = activation_code_range(scheme, a_bits)
        w_lo, w_hi = weight_code_range(scheme, w_bits)
        a, w = np.meshgrid(np.arange(a_lo, a_hi + 1), np.arange(w_lo, w_hi + 1))
        every = ops.product(scheme, a, w, a_bits=a_bits, w_bits=w_bits)
        assert (int(every.min()), int(every.max())) == (min(products), max(products))


@pytest.mark.parametrize("scheme, a_bits, w_bits", WIDTH_CASES)
@pytest.mark.parametrize("fan_in", [1, 2, 9, 27, 1000, 4608])
def test_accumulator_width_holds_the_extremes_and_is_minimal(scheme, a_bits, w_bits, fan_in):
    width = ops.accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
    products = extreme_code_pairs(scheme, a_bits, w_bits).values()
    low, high = fan_in * min(products), fan_in * max(products)
    assert fits(low, width) and fits(high, width)
    assert not (fits(low, width - 1) and fits(high, width - 1))


@pytest.mark.parametrize("scheme, a_bits, w_bits", WIDTH_CASES)
def test_conv2d_attains_the_width_rule_extremes(scheme, a_bits, w_bits):
    channels, kh, kw = 3, 3, 3
    fan_in = channels * kh * kw
    width = ops.accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
    pairs = extreme_code_pairs(scheme, a_bits, w_bits)
    for target in (min(pairs.values()), max(pairs.values())):
        a_code, w_code = next(k for k, v in pairs.items() if v == target)
        x = np.full((channels, kh, kw), a_code, dtype=np.uint64 if a_bits == 64 else np.int64)
        w = np.full((1, channels, kh, kw), w_code, dtype=x.dtype)
        out = ops.conv2d(scheme, x, w, a_bits=a_bits, w_bits=w_bits)
        assert int(out[0, 0, 0]) == fan_in * target and fits(int(out[0, 0, 0]), width)


@pytest.mark.parametrize("channels", [1, 3, 32, 64, 512])
def test_accumulator_width_of_a_binary_3x3_conv(channels):
    expected = int(np.ceil(np.log2(9 * channels + 1))) + 1
    lanes = min(channels, 64)
    width = ops.accumulator_width("xnor", a_bits=lanes, fan_in=9 * channels // lanes)
    assert width == expected


@pytest.mark.parametrize("fan_in", [0, -3, 2.0, True])
def test_accumulator_width_rejects_bad_fan_in(fan_in):
    with pytest.raises(ValueError, match="fan_in must be a positive integer"):
        ops.accumulator_width("int", a_bits=8, w_bits=8, fan_in=fan_in)
