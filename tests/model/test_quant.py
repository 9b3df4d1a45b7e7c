"""Tests of ``model.quant``: encodings, ``QTensor``, the quantizers, their STEs and profiles.

Expected values are worked out by hand from the papers' definitions (REFERENCES.md) in the
comments next to them; every pinned convention is tested on its tie input.
"""

import contextlib
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from model.quant import (
    LARQ_TERNARY_THRESHOLD,
    SCHEMES,
    QTensor,
    QuantizationWarning,
    activation_code_range,
    binarize,
    dorefa_activations,
    dorefa_gradients,
    dorefa_weights,
    encode_weight_levels,
    hard_sigmoid,
    pack_pm1,
    quantize_int,
    quantize_k,
    quantize_pow2,
    ste_dorefa_activations_grad,
    ste_dorefa_weights_grad,
    ste_htanh_mask,
    ste_identity_grad,
    ste_sign_grad,
    ste_ternary_grad,
    ternarize,
    to_unsigned_bits,
    unpack_pm1,
    weight_code_range,
    weight_level,
    xnor_input_scale,
)

assert_equal = np.testing.assert_array_equal
PROPERTY = settings(max_examples=60, deadline=None)


def _tidy(v: float) -> float:
    """Zero out magnitudes below 1e-6 so no scale becomes subnormal (not a realistic weight)."""
    return 0.0 if abs(v) < 1e-6 else v


FLOATS = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False).map(_tidy)
TENSORS = arrays(np.float64, array_shapes(min_dims=1, max_dims=3, max_side=5), elements=FLOATS)


@contextlib.contextmanager
def no_warnings():
    """Context in which any QuantizationWarning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuantizationWarning)
        yield


# ----------------------------------------------------------------------------------------------
# Encodings (existing contract): round trips
# ----------------------------------------------------------------------------------------------

ENCODED = [("binary", None), ("ternary", None), ("pow2", None), ("dorefa", 1), ("dorefa", 3),
           ("dorefa", 8), ("int", 2), ("int", 8), ("int", 16)]


@pytest.mark.parametrize("scheme,bits", ENCODED)
@PROPERTY
@given(data=st.data())
def test_encode_and_level_round_trip(scheme, bits, data):
    lo, hi = weight_code_range(scheme, bits)
    codes = data.draw(arrays(np.int64, array_shapes(max_dims=2), elements=st.integers(lo, hi)))
    levels = weight_level(scheme, codes, bits)
    assert_equal(encode_weight_levels(scheme, levels, bits), codes)
    assert_equal(weight_level(scheme, encode_weight_levels(scheme, levels, bits), bits), levels)


@pytest.mark.parametrize("lanes", [1, 7, 32, 63, 64])
@PROPERTY
@given(data=st.data())
def test_pack_and_unpack_round_trip(lanes, data):
    signs = data.draw(arrays(np.int64, (3, lanes), elements=st.sampled_from([-1, 1])))
    packed = pack_pm1(signs)
    assert_equal(unpack_pm1(packed, lanes), signs)
    assert_equal(pack_pm1(unpack_pm1(packed, lanes)), packed)


def test_pack_64_lanes_all_minus_one():
    # lane 63 set: 2**64 - 1 does not fit an int64, the uint64 code must still unpack
    signs = -np.ones((1, 64), dtype=np.int64)
    packed = pack_pm1(signs)
    assert packed[0] == 2**64 - 1
    assert_equal(unpack_pm1(packed, 64), signs)


def test_to_unsigned_bits_extremes():
    assert_equal(to_unsigned_bits([-8, -1, 0, 7], 4), [8, 15, 0, 7])
    assert to_unsigned_bits([-1, -2**63, 0, 2**63 - 1], 64).tolist() == [
        2**64 - 1, 2**63, 0, 2**63 - 1]  # 64-bit patterns (xnor, 64 lanes) beyond int64


# ----------------------------------------------------------------------------------------------
# QTensor
# ----------------------------------------------------------------------------------------------

def test_qtensor_dequantize_per_scheme():
    assert_equal(QTensor([0, 1], 0.5, "binary").dequantize(), [0.5, -0.5])
    assert_equal(QTensor([-1, 0, 1], 2.0, "ternary").dequantize(), [-2.0, 0.0, 2.0])
    assert_equal(QTensor([-2, 2], 0.25, "pow2").dequantize(), [-0.5, 0.5])
    # dorefa k=2, n=3: level 2q - 3
    assert_equal(QTensor([0, 1, 2, 3], 1.0, "dorefa", 2).dequantize(), [-3.0, -1.0, 1.0, 3.0])
    assert_equal(QTensor([-8, 7], 1.0, "int", 4).dequantize(), [-8.0, 7.0])
    # dorefa activation codes are their own level: j * (1/n)
    act = QTensor([0, 3], 1 / 3, "dorefa", 2, kind="activation")
    assert_equal(act.dequantize(), [0.0, 1.0])


def test_qtensor_xnor_levels_per_lane_and_channel_scale():
    # code 0b0110 over 4 lanes: lanes 1 and 2 are -1
    q = QTensor([[0b0110], [0b0000]], np.array([2.0, 3.0]), "xnor", 4)
    assert q.shape == (2, 1)
    assert_equal(q.dequantize(), [[[2.0, -2.0, -2.0, 2.0]], [[3.0, 3.0, 3.0, 3.0]]])


def test_qtensor_per_channel_scale_is_broadcastable():
    q = QTensor(np.zeros((2, 3, 1, 1), dtype=np.int64), [1.0, 2.0], "ternary")
    assert q.scale.shape == (2, 1, 1, 1)
    assert q.bits == 2
    assert_equal(QTensor([[1, -1], [1, 1]], [1.0, 2.0], "ternary").dequantize(),
                 [[1.0, -1.0], [2.0, 2.0]])


def test_qtensor_codes_are_read_only_int64():
    q = QTensor(np.array([1, 0], dtype=np.int8), 1.0, "ternary")
    assert q.codes.dtype == np.int64
    with pytest.raises(ValueError):
        q.codes[0] = 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(codes=[2], scale=1.0, scheme="binary"), r"holds 2; allowed: integers in \[0, 1\]"),
    (dict(codes=[-3], scale=1.0, scheme="pow2"), r"holds -3"),
    (dict(codes=[16], scale=1.0, scheme="dorefa", bits=4), r"\[0, 15\]"),
    (dict(codes=[4], scale=1.0, scheme="dorefa", bits=2, kind="activation"), r"\[0, 3\]"),
    (dict(codes=[0.5], scale=1.0, scheme="ternary"), "integers"),
    (dict(codes=[1], scale=np.nan, scheme="ternary"), "finite"),
    (dict(codes=[1], scale=np.inf, scheme="ternary"), "finite"),
    (dict(codes=[1], scale=-1.0, scheme="ternary"), ">= 0"),
    (dict(codes=[1, 1], scale=[1.0, 2.0, 3.0], scheme="ternary"), "does not fit"),
    (dict(codes=[1], scale=1.0, scheme="quaternary"), "unknown scheme 'quaternary'"),
    (dict(codes=[1], scale=1.0, scheme="ternary", kind="bias"), "unknown kind 'bias'"),
    (dict(codes=[1], scale=1.0, scheme="dorefa"), r"needs a weight width in \[1, 8\]"),
    (dict(codes=[1], scale=1.0, scheme="dorefa", bits=9), r"\[1, 8\], not 9"),
    (dict(codes=[1], scale=1.0, scheme="dorefa", kind="activation"), "need bits"),
    (dict(codes=np.zeros(0, dtype=np.int64), scale=1.0, scheme="ternary"), "empty"),
])
def test_qtensor_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QTensor(**kwargs)


def test_qtensor_is_frozen():
    q = QTensor([1], 1.0, "ternary")
    with pytest.raises(AttributeError):
        q.scale = 2.0


# ----------------------------------------------------------------------------------------------
# binarize
# ----------------------------------------------------------------------------------------------

def test_binarize_sign_of_zero_is_plus_one():
    q = binarize([0.0, -0.0, -1e-300, 1e-300])
    assert q.scheme == "binary"
    assert_equal(q.codes, [0, 0, 1, 0])  # code 1 means -1
    assert_equal(q.dequantize(), [1.0, 1.0, -1.0, 1.0])


def test_binarize_tensorlayer_sign_of_zero_is_zero():
    w = [0.0, -2.0, 3.0]
    paper = binarize(w)
    tl = binarize(w, profile="tensorlayer")
    assert_equal(paper.dequantize(), [1.0, -1.0, 1.0])
    assert tl.scheme == "ternary"  # 0 has no binary code
    assert_equal(tl.codes, [0, -1, 1])
    assert_equal(tl.dequantize(), [0.0, -1.0, 1.0])


def test_binarize_larq_equals_paper_on_the_tie():
    w = [0.0, -0.5, 0.5]
    assert_equal(binarize(w, profile="larq").codes, binarize(w).codes)


def test_binarize_bwn_scales_by_hand():
    w = np.array([[[1.0, -3.0]], [[0.0, 2.0]]])  # 2 filters of 1x2
    layer = binarize(w, alpha="layer")
    assert layer.scale == (1 + 3 + 0 + 2) / 4  # ||W||_1 / n = 1.5
    channel = binarize(w, alpha="channel")
    assert_equal(channel.scale.ravel(), [2.0, 1.0])  # (1 + 3)/2, (0 + 2)/2
    assert_equal(channel.dequantize(), [[[2.0, -2.0]], [[1.0, 1.0]]])
    assert binarize(w).scale == 1.0


def test_binarize_all_zero_weights_has_scale_zero():
    q = binarize(np.zeros((2, 2)), alpha="layer")
    assert_equal(q.codes, np.zeros((2, 2)))
    assert q.scale == 0.0


def test_hard_sigmoid_by_hand():
    assert_equal(hard_sigmoid([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0]), [0, 0, 0.5, 0.75, 1, 1])


def test_binarize_stochastic_extremes_and_reproducibility():
    w = np.array([-1.0, -5.0, 1.0, 5.0])  # probabilities of +1: 0, 0, 1, 1
    for seed in range(5):
        q = binarize(w, stochastic=True, rng=np.random.default_rng(seed))
        assert_equal(q.codes, [1, 1, 0, 0])
    x = np.random.default_rng(0).normal(size=50)
    a = binarize(x, stochastic=True, rng=np.random.default_rng(7)).codes
    b = binarize(x, stochastic=True, rng=np.random.default_rng(7)).codes
    assert_equal(a, b)


def test_binarize_stochastic_follows_hard_sigmoid():
    # the rule is u < hard_sigmoid(w) with u = rng.random(shape): check against the same draws
    w = np.linspace(-1.5, 1.5, 31)
    u = np.random.default_rng(3).random(w.shape)
    expected_codes = np.where(u < np.clip((w + 1) / 2, 0, 1), 0, 1)
    q = binarize(w, stochastic=True, rng=np.random.default_rng(3))
    assert_equal(q.codes, expected_codes)
    # and the frequency at the tie w = 0 is one half (seeded, 20000 draws)
    ties = binarize(np.zeros(20000), stochastic=True, rng=np.random.default_rng(11))
    assert abs(np.mean(ties.codes == 0) - 0.5) < 0.015


@pytest.mark.parametrize("kwargs,match", [
    (dict(stochastic=True), "needs rng"),
    (dict(stochastic=True, rng=np.random.RandomState(0)), "needs rng"),
    (dict(rng=np.random.default_rng(0)), "only with stochastic=True"),
    (dict(stochastic=True, rng=np.random.default_rng(0), profile="larq"), "profile 'paper'"),
    (dict(alpha="filter"), "unknown alpha 'filter'"),
    (dict(profile="keras"), "unknown profile 'keras'"),
])
def test_binarize_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        binarize([1.0, -1.0], **kwargs)


def test_binarize_channel_alpha_needs_axis_zero():
    with pytest.raises(ValueError, match="not a scalar"):
        binarize(1.0, alpha="channel")


@PROPERTY
@given(w=TENSORS, alpha=st.sampled_from([None, "layer", "channel"]))
def test_binarize_property(w, alpha):
    q = binarize(w, alpha=alpha)
    assert set(np.unique(q.codes)) <= {0, 1}
    magnitude = np.broadcast_to(q.scale, w.shape)
    assert_equal(q.dequantize(), np.where(w >= 0, magnitude, -magnitude))


# ----------------------------------------------------------------------------------------------
# XNOR-Net input scale K
# ----------------------------------------------------------------------------------------------

def test_xnor_input_scale_valid_by_hand():
    x = np.array([[[1, -2, 3], [0, 4, -1], [2, 2, 2]],
                  [[-3, 0, 1], [2, 0, 1], [0, -2, 4]]], dtype=float)
    # A = mean_c |I| = [[2, 1, 2], [1, 2, 1], [1, 2, 3]]; 2x2 box = window sum / 4
    expected = np.array([[(2 + 1 + 1 + 2) / 4, (1 + 2 + 2 + 1) / 4],
                         [(1 + 2 + 1 + 2) / 4, (2 + 1 + 2 + 3) / 4]])
    assert_equal(xnor_input_scale(x, (2, 2)), expected)
    assert_equal(xnor_input_scale(x, 2, stride=2), expected[:1, :1])
    assert_equal(xnor_input_scale(x[None], 2), expected[None])  # batch axis


def test_xnor_input_scale_same_padding_by_hand():
    x = np.ones((3, 3, 3))  # A = 1 everywhere; zero padding counts in the 1/9 box
    k = xnor_input_scale(x, 3, padding=1)
    assert_equal(k, np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)


def test_xnor_input_scale_rectangular_kernel():
    x = np.arange(12, dtype=float).reshape(1, 3, 4)
    # kh=1, kw=3 window means of each row
    expected = np.array([[1, 2], [5, 6], [9, 10]], dtype=float)
    assert_equal(xnor_input_scale(x, (1, 3)), expected)


@pytest.mark.parametrize("args,kwargs,match", [
    ((np.ones((3, 3)), 2), {}, r"\[C, H, W\]"),
    ((np.ones((1, 2, 2)), 3), {}, "does not fit"),
    ((np.ones((1, 2, 2)), (1, 2, 3)), {}, "pair"),
    ((np.ones((1, 2, 2)), 0), {}, "positive integer"),
    ((np.ones((1, 2, 2)), 1), {"stride": 0}, "stride"),
    ((np.ones((1, 2, 2)), 1), {"padding": -1}, "padding"),
    ((np.full((1, 2, 2), np.nan), 1), {}, "NaN"),
])
def test_xnor_input_scale_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        xnor_input_scale(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# ternarize
# ----------------------------------------------------------------------------------------------

TIE = np.array([0.7, -0.7, 1.3, -1.3])  # mean|W| = 1, so D = 0.7 = |w| for the first two


def test_ternarize_threshold_is_exactly_at_the_tie():
    # D = 0.7 * mean|W| is exactly 0.7 here: an explicit threshold of 0.7 gives the same
    # codes, one just below it takes the tie into the mask.
    assert_equal(ternarize(TIE).codes, ternarize(TIE, threshold=0.7).codes)
    assert_equal(ternarize(TIE, threshold=np.nextafter(0.7, 0)).codes, [1, -1, 1, -1])


def test_ternarize_strict_threshold_at_the_tie():
    q = ternarize(TIE)
    assert_equal(q.codes, [0, 0, 1, -1])  # |w| = D is not above D
    assert q.scale == 1.3  # alpha over the strict set only


def test_ternarize_tensorlayer_inclusive_mask_at_the_tie():
    paper = ternarize(TIE)
    tl = ternarize(TIE, profile="tensorlayer")
    assert_equal(paper.codes, [0, 0, 1, -1])
    assert_equal(tl.codes, [1, -1, 1, -1])  # sign(sign(w + D) + sign(w - D)) includes |w| = D
    assert tl.scale == 1.3  # its alpha stays strict


def test_ternarize_larq_default_threshold_and_no_scale():
    assert LARQ_TERNARY_THRESHOLD == 0.05
    w = np.array([0.05, -0.05, 0.04, -0.06, 0.0])
    larq = ternarize(w, profile="larq")
    assert_equal(larq.codes, [1, -1, 0, -1, 0])  # inclusive at |w| = 0.05
    assert larq.scale == 1.0
    paper = ternarize(w, threshold=0.05)
    assert_equal(paper.codes, [0, 0, 0, -1, 0])  # strict at |w| = 0.05
    assert paper.scale == 0.06


def test_ternarize_larq_twn_threshold_at_the_tie():
    larq = ternarize(TIE, profile="larq", threshold="twn")
    assert_equal(larq.codes, [1, -1, 1, -1])
    assert larq.scale == 1.0


def test_ternarize_by_hand():
    w = np.array([0.1, -0.9, 0.5, 0.2, -0.3, 0.0, 1.0, -0.2])
    # mean|W| = 3.2 / 8 = 0.4, D = 0.28; |w| > D: -0.9, 0.5, -0.3, 1.0
    q = ternarize(w)
    assert_equal(q.codes, [0, -1, 1, 0, -1, 0, 1, 0])
    assert q.scale == pytest.approx((0.9 + 0.5 + 0.3 + 1.0) / 4, rel=1e-15)


def test_ternarize_per_channel_by_hand():
    w = np.array([[[4.0, -1.0, 0.0, 1.0]], [[0.2, 0.2, -0.2, 0.6]]])
    # channel 0: D = 0.7 * 1.5 = 1.05 -> only 4; channel 1: D = 0.7 * 0.3 = 0.21 -> only 0.6
    q = ternarize(w, per_channel=True)
    assert_equal(q.codes, [[[1, 0, 0, 0]], [[0, 0, 0, 1]]])
    assert_equal(q.scale.ravel(), [4.0, 0.6])


def test_ternarize_empty_alpha_is_zero_with_warning():
    with pytest.warns(QuantizationWarning, match="empty set"):
        q = ternarize(np.zeros((2, 3)))
    assert_equal(q.codes, np.zeros((2, 3)))
    assert q.scale == 0.0
    # a factor so large that nothing exceeds D (w = 1 only reaches mean|W| * 4)
    with pytest.warns(QuantizationWarning):
        q = ternarize([1.0, 0.0, 0.0, 0.0], factor=4.0)
    assert_equal(q.codes, [0, 0, 0, 0])
    assert q.scale == 0.0


def test_ternarize_empty_channel_warns_and_names_it():
    w = np.array([[1.0, -2.0], [0.0, 0.0], [3.0, 0.0]])
    with pytest.warns(QuantizationWarning, match=r"channel\(s\) \[1\]"):
        q = ternarize(w, per_channel=True)
    assert_equal(q.scale.ravel(), [2.0, 0.0, 3.0])  # channel 0: D = 1.05 keeps only -2
    assert_equal(q.codes, [[0, -1], [0, 0], [1, 0]])
    assert not np.any(np.isnan(q.dequantize()))


def test_ternarize_tensorlayer_empty_alpha_keeps_zero_not_nan():
    # TensorLayer's alpha is 0/0 = NaN here; its mask (sign(sign(0)+sign(0))) is 0
    with pytest.warns(QuantizationWarning):
        tl = ternarize(np.zeros(4), profile="tensorlayer")
    assert_equal(tl.codes, [0, 0, 0, 0])
    assert tl.scale == 0.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(per_channel=True, profile="larq"), "profile 'paper'"),
    (dict(per_channel=True, profile="tensorlayer"), "profile 'paper'"),
    (dict(factor=-0.7), "factor"),
    (dict(factor=float("nan")), "factor"),
    (dict(threshold="mean"), "unknown threshold 'mean'"),
    (dict(threshold=-0.1), "threshold"),
    (dict(profile="brevitas"), "unknown profile 'brevitas'"),
])
def test_ternarize_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ternarize(TIE, **kwargs)


@PROPERTY
@given(w=TENSORS, per_channel=st.booleans())
def test_ternarize_property(w, per_channel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantizationWarning)
        q = ternarize(w, per_channel=per_channel)
    axes = tuple(range(1, w.ndim)) if per_channel else None
    delta = 0.7 * np.mean(np.abs(w), axis=axes, keepdims=True)
    assert set(np.unique(q.codes)) <= {-1, 0, 1}
    assert np.all(np.abs(w)[q.codes == 0] <= np.broadcast_to(delta, w.shape)[q.codes == 0])
    nonzero = q.codes != 0
    assert_equal(np.sign(w[nonzero]), q.codes[nonzero])
    # alpha lies between the smallest and largest |w| it averages, and is 0 over an empty set
    scale = np.broadcast_to(q.scale, w.shape)
    groups = [(c,) for c in range(w.shape[0])] if per_channel else [(Ellipsis,)]
    for group in groups:
        a, mask, s = np.abs(w)[group], nonzero[group], np.unique(scale[group])
        assert s.size == 1
        if mask.any():
            assert a[mask].min() * (1 - 1e-12) <= s[0] <= a[mask].max() * (1 + 1e-12)
        else:
            assert s[0] == 0.0
    assert np.all(np.isfinite(q.dequantize()))


# ----------------------------------------------------------------------------------------------
# Five levels (pow2): INQ and L2
# ----------------------------------------------------------------------------------------------

def test_pow2_inq_by_hand_with_ties():
    w = np.array([1.0, -0.3, 0.25, 0.74, 0.75, -0.8, 0.1, -0.25])
    # s = 1, 4s/3 = 1.33, n1 = floor(log2 1.33) = 0, alpha = 2**-1 = 0.5;
    # thresholds alpha/2 = 0.25 and 3 alpha/2 = 0.75, ties go to the larger magnitude
    q = quantize_pow2(w)
    assert q.scale == 0.5
    assert_equal(q.codes, [2, -1, 1, 1, 2, -2, 0, -1])


def test_pow2_inq_alpha_at_powers_of_two():
    # s = 0.75: 4s/3 = 1 exactly, n1 = 0, alpha = 0.5; s = 0.7499: n1 = -1, alpha = 0.25
    assert quantize_pow2([0.75, 0.1]).scale == 0.5
    assert quantize_pow2([0.7499, 0.1]).scale == 0.25
    assert quantize_pow2([-3.0]).scale == 2.0  # 4s/3 = 4, n1 = 2, alpha = 2, s = 1.5 alpha -> 2
    assert_equal(quantize_pow2([-3.0]).codes, [-2])


def test_pow2_l2_by_hand_converged_at_once():
    w = np.array([1.0, 0.5, 0.4])
    # INQ: alpha 0.5, codes [2, 1, 1]; L2 alpha = (0.5 + 0.4 + 2 * 1.0) / (2 + 4) = 2.9 / 6;
    # thresholds 0.2417 and 0.725 keep the codes: converged
    q = quantize_pow2(w, method="l2")
    assert_equal(q.codes, [2, 1, 1])
    assert q.scale == ((0.5 + 0.4) + 2.0 * 1.0) / 6


def test_pow2_l2_moves_away_from_inq():
    w = np.array([1.0] + [0.7] * 30)
    # INQ: alpha 0.5, codes 2 and thirty 1s. L2: alpha = (21 + 2) / 34 = 0.676, 3 alpha/2 = 1.015
    # so 1.0 drops to 1; then alpha = (21 + 1) / 31 = 0.7097 and nothing changes.
    inq = quantize_pow2(w)
    l2 = quantize_pow2(w, method="l2")
    assert_equal(inq.codes, [2] + [1] * 30)
    assert_equal(l2.codes, [1] * 31)
    assert l2.scale == pytest.approx(22 / 31, rel=1e-14)
    assert np.sum((w - l2.dequantize()) ** 2) < np.sum((w - inq.dequantize()) ** 2)


def test_pow2_all_zero_is_scale_zero_with_warning():
    for method in ("inq", "l2"):
        with pytest.warns(QuantizationWarning, match="every weight is 0"):
            q = quantize_pow2(np.zeros(5), method=method)
        assert_equal(q.codes, np.zeros(5))
        assert q.scale == 0.0


def test_pow2_iteration_limit_warns():
    w = np.array([1.0] + [0.7] * 30)  # needs 2 rounds to converge (see above)
    with pytest.warns(QuantizationWarning, match="not a fixed point"):
        quantize_pow2(w, method="l2", iters=1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="apot"), "unknown method 'apot'"),
    (dict(iters=0), "iters"),
    (dict(iters=2.5), "iters"),
])
def test_pow2_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_pow2([1.0], **kwargs)


@PROPERTY
@given(w=TENSORS)
def test_pow2_inq_property(w):
    if not np.any(w):
        return
    q = quantize_pow2(w)
    alpha, s = q.scale, np.max(np.abs(w))
    assert math.frexp(alpha)[0] == 0.5  # a power of two
    assert 1.5 * alpha <= s < 3 * alpha
    assert set(np.unique(q.codes)) <= {-2, -1, 0, 1, 2}
    assert np.all(np.abs(w - q.dequantize()) <= max(alpha / 2, s - 2 * alpha))


@PROPERTY
@given(w=TENSORS)
def test_pow2_l2_property(w):
    if not np.any(w):
        return
    with no_warnings():
        inq = quantize_pow2(w)
        l2 = quantize_pow2(w, method="l2")
    # a fixed point: nearest levels of its alpha, and the L2-optimal alpha of its codes
    assert_equal(quantize_pow2_codes_for(w, l2.scale), l2.codes)
    m, a = np.abs(l2.codes), np.abs(w)
    optimal = (np.sum(a[m == 1]) + 2 * np.sum(a[m == 2])) / (np.sum(m == 1) + 4 * np.sum(m == 2))
    assert l2.scale == pytest.approx(optimal, rel=1e-12)
    err_inq = np.sum((w - inq.dequantize()) ** 2)
    err_l2 = np.sum((w - l2.dequantize()) ** 2)
    assert err_l2 <= err_inq * (1 + 1e-9) + 1e-300


def quantize_pow2_codes_for(w, alpha):
    """Nearest of {0, +/-alpha, +/-2 alpha}, ties to the larger magnitude (written out)."""
    a = np.abs(w)
    mag = np.zeros(w.shape, dtype=np.int64)
    mag[a >= alpha / 2] = 1
    mag[a >= 1.5 * alpha] = 2
    return np.sign(w).astype(np.int64) * mag


# ----------------------------------------------------------------------------------------------
# DoReFa
# ----------------------------------------------------------------------------------------------

def test_quantize_k_ties_round_half_to_even():
    # n = 3: 0.5 * 3 = 1.5 -> 2; n = 1: 0.5 -> 0; n = 7: 0.5 * 7 = 3.5 -> 4
    assert_equal(quantize_k([0.5, 0.0, 1.0], 2), [2 / 3, 0.0, 1.0])
    assert_equal(quantize_k([0.5], 1), [0.0])
    assert_equal(quantize_k([0.5], 3), [4 / 7])
    with pytest.raises(ValueError, match=r"holds 1.5; allowed: \[0, 1\]"):
        quantize_k([1.5], 2)


def test_dorefa_weights_by_hand():
    w = np.array([0.0, 1.0, -1.0, 0.5])
    # k=2, n=3; max|tanh w| = tanh 1; r = tanh(w) / (2 tanh 1) + 1/2 = [0.5, 1, 0, 0.8034]
    # q = round(3 r) = [round(1.5) = 2, 3, 0, round(2.41) = 2]
    assert 0.5 + math.tanh(0.5) / (2 * math.tanh(1.0)) == pytest.approx(0.8034, abs=1e-4)
    q = dorefa_weights(w, 2)
    assert (q.scheme, q.bits, q.scale) == ("dorefa", 2, 1 / 3)
    assert_equal(q.codes, [2, 3, 0, 2])
    assert_equal(q.levels(), [1, 3, -3, 1])  # 2q - n
    assert_equal(q.dequantize(), np.array([1, 3, -3, 1]) * (1 / 3))


@pytest.mark.parametrize("k", range(2, 9))
def test_dorefa_weights_zero_is_the_even_tie(k):
    # w = 0: r = 1/2 exactly, n r = (2**k - 1) / 2 rounds to the even 2**(k-1): level +1
    q = dorefa_weights([0.0, -2.0, 2.0], k)
    assert q.codes[0] == 2 ** (k - 1)
    assert q.levels()[0] == 1
    assert_equal(q.codes[1:], [0, 2**k - 1])


def test_dorefa_weights_k1_is_scaled_sign():
    w = np.array([0.0, -3.0, 1.0, -1.0])
    q = dorefa_weights(w, 1)
    assert (q.scheme, q.scale) == ("binary", 5.0 / 4)  # E|w| = (0 + 3 + 1 + 1) / 4
    assert_equal(q.dequantize(), [1.25, -1.25, 1.25, -1.25])  # sign(0) = +1


def test_dorefa_weights_tensorlayer_k1_zero_is_zero():
    w = np.array([0.0, -3.0, 1.0, -1.0])
    tl = dorefa_weights(w, 1, profile="tensorlayer")
    assert (tl.scheme, tl.scale) == ("ternary", 1.25)
    assert_equal(tl.dequantize(), [0.0, -1.25, 1.25, -1.25])
    with pytest.warns(QuantizationWarning, match="NaN"):
        zero = dorefa_weights(np.zeros(3), 1, profile="tensorlayer")
    assert_equal(zero.dequantize(), [0.0, 0.0, 0.0])


def test_dorefa_weights_larq_k1_has_no_special_case():
    w = np.array([0.0, -3.0, 1.0])
    # r = tanh(w) / (2 tanh 3) + 1/2 = [0.5, 0, 0.8368]; q = round(r) = [0 (even tie), 0, 1]
    larq = dorefa_weights(w, 1, profile="larq")
    assert (larq.scheme, larq.bits, larq.scale) == ("dorefa", 1, 1.0)
    assert_equal(larq.levels(), [-1, -1, 1])  # w = 0 gives -1
    assert_equal(dorefa_weights(w, 1).dequantize(), [4 / 3, -4 / 3, 4 / 3])  # paper: +E


def test_dorefa_weights_tensorlayer_no_tanh_no_max():
    # k=2, n=3. Both profiles put the tie w = 0 at r = 1/2, 3r = 1.5 -> 2.
    w = np.array([0.0, 0.2, -0.5, 3.0, -1.0])
    # tensorlayer: r = clip(w/2 + 1/2, 0, 1) = [0.5, 0.6, 0.25, 1, 0];
    # q = round(3r) = round([1.5, 1.8, 0.75, 3, 0]) = [2, 2, 1, 3, 0]
    assert_equal(dorefa_weights(w, 2, profile="tensorlayer").codes, [2, 2, 1, 3, 0])
    # paper: r = tanh(w) / (2 tanh 3) + 1/2 = [0.5, 0.5992, 0.2678, 1, 0.1173];
    # q = round([1.5, 1.798, 0.803, 3, 0.352]) = [2, 2, 1, 3, 0]
    assert_equal(dorefa_weights(w, 2).codes, [2, 2, 1, 3, 0])
    # the max normalisation separates them on a layer whose largest weight is small:
    w2 = np.array([0.0, 0.4, -0.1])
    # paper: r = [0.5, 1, 0.5 - tanh(0.1) / (2 tanh 0.4) = 0.3688]; 3r = [1.5, 3, 1.107]
    assert_equal(dorefa_weights(w2, 2).codes, [2, 3, 1])
    # tensorlayer: r = [0.5, 0.7, 0.45]; 3r = [1.5, 2.1, 1.35]
    assert_equal(dorefa_weights(w2, 2, profile="tensorlayer").codes, [2, 2, 1])


def test_dorefa_weights_larq_k2_equals_paper():
    w = np.random.default_rng(4).normal(size=(3, 4))
    assert_equal(dorefa_weights(w, 2, profile="larq").codes, dorefa_weights(w, 2).codes)


def test_dorefa_weights_all_zero_warns_and_takes_the_tie():
    with pytest.warns(QuantizationWarning, match="max"):
        q = dorefa_weights(np.zeros(3), 3)
    assert_equal(q.codes, [4, 4, 4])  # r = 1/2 for all (divide_no_nan), 3.5 -> 4


@pytest.mark.parametrize("k", [0, 9, 2.0, True, None])
def test_dorefa_weights_rejects_bad_width(k):
    with pytest.raises(ValueError, match=r"\[1, 8\]"):
        dorefa_weights([0.5], k)


@pytest.mark.parametrize("k", [2, 3, 4, 8])
@PROPERTY
@given(w=TENSORS)
def test_dorefa_weights_property(k, w):
    if not np.any(w):
        return
    q = dorefa_weights(w, k)
    n = 2**k - 1
    assert q.codes.min() >= 0 and q.codes.max() <= n
    target = np.tanh(w) / np.max(np.abs(np.tanh(w)))
    assert np.all(np.abs(q.dequantize() - target) <= 1 / n + 1e-12)


def test_dorefa_activations_ties_and_clip():
    x = np.array([0.5, -0.5, 2.0, 1.0, 0.0, 1 / 6 + 1e-9])
    # k=2, n=3: [1.5 -> 2, clip 0, clip 1 -> 3, 3, 0, 0.5+ -> 1]
    q = dorefa_activations(x, 2)
    assert (q.kind, q.scheme, q.bits, q.scale) == ("activation", "dorefa", 2, 1 / 3)
    assert_equal(q.codes, [2, 0, 3, 3, 0, 1])
    assert_equal(dorefa_activations([0.5, 1.5], 1).codes, [0, 1])  # n=1: round(0.5) = 0


def test_dorefa_activations_tensorlayer_folds_negative_inputs():
    x = np.array([-0.5, -2.0, 0.5])
    paper = dorefa_activations(x, 2)
    tl = dorefa_activations(x, 2, profile="tensorlayer")
    assert_equal(paper.codes, [0, 0, 2])
    assert_equal(tl.codes, [2, 3, 2])  # round(3 min(1, |x|)): 1.5 -> 2, 3, 1.5 -> 2
    assert_equal(dorefa_activations(x, 2, profile="larq").codes, paper.codes)


@pytest.mark.parametrize("k", [0, 17, 1.5])
def test_dorefa_activations_rejects_bad_width(k):
    with pytest.raises(ValueError, match=r"\[1, 16\]"):
        dorefa_activations([0.5], k)


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16])
@PROPERTY
@given(x=TENSORS)
def test_dorefa_activations_property(k, x):
    q = dorefa_activations(x, k)
    lo, hi = activation_code_range("dorefa", k)
    assert q.codes.min() >= lo and q.codes.max() <= hi
    n = 2**k - 1
    assert np.all(np.abs(q.dequantize() - np.clip(x, 0, 1)) <= 1 / (2 * n) + 1e-12)


def test_dorefa_gradients_formula_with_the_same_noise():
    g = np.array([[0.4, -0.2, 0.0, 0.1], [-3.0, 1.0, 0.5, 2.0]])
    k, n = 3, 7
    noise = np.random.default_rng(9).uniform(-0.5, 0.5, size=g.shape) / n
    m = np.array([[0.4], [3.0]])  # max|g| per sample
    expected = 2 * m * (np.round(np.clip(g / (2 * m) + 0.5 + noise, 0, 1) * n) / n - 0.5)
    assert_equal(dorefa_gradients(g, k, np.random.default_rng(9)), expected)


def test_dorefa_gradients_grid_range_and_per_sample_max():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(4, 3, 5)) * np.array([1e-3, 1.0, 10.0, 1e3])[:, None, None]
    out = dorefa_gradients(g, 4, np.random.default_rng(1))
    m = np.max(np.abs(g), axis=(1, 2), keepdims=True)
    assert np.all(np.abs(out) <= m)
    steps = (out / (2 * m) + 0.5) * 15  # on the grid 2M (j/15 - 1/2), up to float rounding
    assert np.all(np.abs(steps - np.round(steps)) < 1e-9)
    # scaling one sample by 4 (exact in float) scales its result by 4 and leaves the others
    g2 = g.copy()
    g2[2] *= 4
    out2 = dorefa_gradients(g2, 4, np.random.default_rng(1))
    assert_equal(out2[2], 4 * out[2])
    assert_equal(np.delete(out2, 2, axis=0), np.delete(out, 2, axis=0))


def test_dorefa_gradients_zero_sample_and_unbiased():
    g = np.array([[0.0, 0.0, 0.0], [0.3, -0.1, 1.0]])
    rng = np.random.default_rng(5)
    runs = np.stack([dorefa_gradients(g, 2, rng) for _ in range(4000)])
    assert_equal(runs[:, 0], 0.0)
    # interior elements (not clipped) are unbiased: mean within 0.01 of g (4000 draws)
    assert np.all(np.abs(runs[:, 1, :2].mean(axis=0) - g[1, :2]) < 0.01)


@pytest.mark.parametrize("args,match", [
    ((np.ones((2, 2)), 0, np.random.default_rng(0)), r"\[1, 16\]"),
    ((np.ones((2, 2)), 2, None), "needs rng"),
    ((np.float64(1.0), 2, np.random.default_rng(0)), "batch axis"),
    ((np.array([[np.inf]]), 2, np.random.default_rng(0)), "NaN or inf"),
])
def test_dorefa_gradients_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        dorefa_gradients(*args)


# ----------------------------------------------------------------------------------------------
# Symmetric integers
# ----------------------------------------------------------------------------------------------

def test_quantize_int_by_hand_with_ties():
    q = quantize_int([3.0, 1.5, 0.5, -2.5, -3.0], 3)
    # scale = 3 / (2**2 - 1) = 1; round half to even: 1.5 -> 2, 0.5 -> 0, -2.5 -> -2
    assert q.scale == 1.0
    assert_equal(q.codes, [3, 2, 0, -2, -3])


def test_quantize_int_given_scale_clips_symmetrically():
    q = quantize_int([100.0, -100.0, 3.5, -0.5], 4, scale=1.0)
    assert_equal(q.codes, [7, -7, 4, 0])  # never -8
    assert q.dequantize()[1] == -7.0


def test_quantize_int_all_zero():
    q = quantize_int(np.zeros(3), 8)
    assert_equal(q.codes, [0, 0, 0])
    assert q.scale == 0.0


def test_quantize_int_activation_range():
    q = quantize_int([1.0, -1.0], 32, kind="activation")
    assert_equal(q.codes, [2**31 - 1, -(2**31 - 1)])


@pytest.mark.parametrize("kwargs,match", [
    (dict(bits=1), r"\[2, 16\], not 1"),
    (dict(bits=17), r"\[2, 16\], not 17"),
    (dict(bits=33, kind="activation"), r"\[2, 32\]"),
    (dict(bits=8, scale=0.0), "> 0"),
    (dict(bits=8, scale=-1.0), ">= 0"),
    (dict(bits=8, scale=float("nan")), "finite"),
    (dict(bits=8, kind="bias"), "unknown kind"),
])
def test_quantize_int_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_int([1.0], **kwargs)


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@PROPERTY
@given(x=TENSORS)
def test_quantize_int_property(bits, x):
    q = quantize_int(x, bits)
    qmax = 2 ** (bits - 1) - 1
    assert q.codes.min() >= -qmax and q.codes.max() <= qmax
    assert np.all(np.abs(q.dequantize() - x) <= q.scale * (0.5 + 1e-9))


# ----------------------------------------------------------------------------------------------
# Straight-through estimators
# ----------------------------------------------------------------------------------------------

def test_htanh_mask_is_inclusive_at_one():
    x = np.array([-1.0, 1.0, np.nextafter(1.0, 2.0), -1.5, 0.0])
    assert_equal(ste_htanh_mask(x), [1.0, 1.0, 0.0, 0.0, 1.0])
    assert ste_htanh_mask(x).dtype == np.float64


def test_ste_sign_grad_paper_and_larq_mask_tensorlayer_clips():
    x = np.array([1.0, -1.0, 1.5, 0.0])
    g = np.array([3.0, -0.5, 2.0, -4.0])
    assert_equal(ste_sign_grad(x, g), [3.0, -0.5, 0.0, -4.0])
    assert_equal(ste_sign_grad(x, g, profile="larq"), [3.0, -0.5, 0.0, -4.0])
    assert_equal(ste_sign_grad(x, g, profile="tensorlayer"), [1.0, -0.5, 1.0, -1.0])


def test_ste_ternary_grad():
    w = np.array([1.0, 1.5, -2.0])
    g = np.array([1.0, 2.0, 3.0])
    assert_equal(ste_ternary_grad(w, g), g)
    assert_equal(ste_ternary_grad(w, g, profile="larq"), [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="allowed: paper, larq"):
        ste_ternary_grad(w, g, profile="tensorlayer")


def test_ste_dorefa_weights_grad_matches_the_smooth_part():
    # with rounding passed straight through, the value is tanh(w) / max|tanh w| (max constant)
    w = np.array([-0.8, -0.1, 0.0, 0.3, 1.2])
    g = np.array([1.0, -2.0, 0.5, 3.0, 1.0])
    m = np.tanh(1.2)
    h = 1e-6
    numeric = (np.tanh(w + h) - np.tanh(w - h)) / (2 * h) / m
    np.testing.assert_allclose(ste_dorefa_weights_grad(w, g, 3), g * numeric, rtol=1e-8)
    assert_equal(ste_dorefa_weights_grad(w, g, 1), g)  # sign(w) * E: identity
    np.testing.assert_allclose(ste_dorefa_weights_grad(w, g, 1, profile="larq"),
                               g * numeric, rtol=1e-8)
    assert_equal(ste_dorefa_weights_grad(w, g, 3, profile="tensorlayer"), [1, -2, 0.5, 3, 0])
    assert_equal(ste_dorefa_weights_grad(np.zeros(2), np.ones(2), 3), [0.0, 0.0])


def test_ste_dorefa_activations_grad_ties():
    x = np.array([0.0, 1.0, -0.5, 0.5, 1.5, -1.0])
    g = np.ones(6)
    assert_equal(ste_dorefa_activations_grad(x, g), [1, 1, 0, 1, 0, 0])  # inclusive [0, 1]
    assert_equal(ste_dorefa_activations_grad(x, g, profile="larq"), [1, 1, 0, 1, 0, 0])
    # d/dx min(1, |x|) = sign(x) for |x| < 1: 0 at x = 0, 0 at |x| = 1
    assert_equal(ste_dorefa_activations_grad(x, g, profile="tensorlayer"), [0, 0, -1, 1, 0, 0])


def test_ste_identity_grad():
    assert_equal(ste_identity_grad([5.0, -5.0], [1.0, 2.0]), [1.0, 2.0])


@pytest.mark.parametrize("fn", [ste_sign_grad, ste_ternary_grad, ste_identity_grad,
                                ste_dorefa_activations_grad,
                                lambda x, g: ste_dorefa_weights_grad(x, g, 2)])
def test_ste_rejects_mismatched_shapes(fn):
    with pytest.raises(ValueError, match=r"shape \(3,\).*allowed: equal shapes"):
        fn(np.zeros(2), np.zeros(3))


# ----------------------------------------------------------------------------------------------
# Bad input common to every quantizer
# ----------------------------------------------------------------------------------------------

QUANTIZERS = {
    "binarize": binarize,
    "ternarize": ternarize,
    "pow2": quantize_pow2,
    "dorefa_weights": lambda x: dorefa_weights(x, 2),
    "dorefa_activations": lambda x: dorefa_activations(x, 2),
    "dorefa_gradients": lambda x: dorefa_gradients(x, 2, np.random.default_rng(0)),
    "int": lambda x: quantize_int(x, 8),
    "htanh": ste_htanh_mask,
    "hard_sigmoid": hard_sigmoid,
}


@pytest.mark.parametrize("name", QUANTIZERS)
@pytest.mark.parametrize("bad,match", [
    (np.array([0.5, np.nan]), "NaN or inf"),
    (np.array([np.inf, 0.5]), "NaN or inf"),
    (np.array([-np.inf]), "NaN or inf"),
    (np.zeros((0, 3)), r"empty \(shape \(0, 3\)\)"),
    (np.array(["a", "b"]), "real numbers"),
    (np.array([True, False]), "real numbers"),
])
def test_quantizers_reject_bad_tensors(name, bad, match):
    with pytest.raises(ValueError, match=match):
        QUANTIZERS[name](bad)


@pytest.mark.parametrize("fn", [binarize, ternarize, lambda x, profile: dorefa_weights(
    x, 2, profile=profile), lambda x, profile: dorefa_activations(x, 2, profile=profile),
    lambda x, profile: ste_sign_grad(x, x, profile=profile)])
def test_unknown_profile_is_named(fn):
    with pytest.raises(ValueError, match="unknown profile 'Paper'.*allowed: paper, tensorlayer"):
        fn(np.ones(2), profile="Paper")


def test_integer_inputs_are_accepted():
    assert_equal(quantize_int(np.array([3, -3], dtype=np.int32), 3).codes, [3, -3])
    assert_equal(binarize(np.array([0, -1], dtype=np.int8)).codes, [0, 1])


def test_all_schemes_are_covered_by_a_quantizer():
    made = {binarize([1.0]).scheme, ternarize([1.0]).scheme, quantize_pow2([1.0]).scheme,
            dorefa_weights([1.0], 2).scheme, quantize_int([1.0], 8).scheme,
            QTensor(pack_pm1([[1, -1]]), 1.0, "xnor", 2).scheme}
    assert made == set(SCHEMES)
