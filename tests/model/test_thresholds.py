"""Batch norm folded into integer thresholds (``model.thresholds``, re-exported by ``model.ops``)
against the float computation written out in this file."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import ops, thresholds

PROPERTY = settings(max_examples=60, deadline=None)


# ----------------------------------------------------------------------------------------------
# The float computation, written independently: BN(scale * y), then sign or k-bit code
# ----------------------------------------------------------------------------------------------

def column(value, channels):
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (channels,))[:, None]


def float_bn(y, gamma, beta, mean, var, eps, scale):
    """z for accumulators y [C, K] (channel first)."""
    c = y.shape[0]
    x = column(scale, c) * y.astype(np.float64)
    return (x - column(mean, c)) / np.sqrt(column(var, c) + column(eps, c)) * column(gamma, c) \
        + column(beta, c)


def float_affine(y, gain, offset, scale):
    c = y.shape[0]
    return column(scale, c) * y.astype(np.float64) * column(gain, c) + column(offset, c)


def float_sign(z):
    return np.where(z >= 0, 1, -1)


def float_code(z, bits):
    n = 2**bits - 1
    return np.round(n * np.clip(z, 0.0, 1.0)).astype(np.int64)


def random_bn(rng, channels, wild=False):
    """Batch-norm parameters and scale; ``wild`` spreads magnitudes over many decades."""
    spread = (lambda lo, hi: 10.0 ** rng.uniform(lo, hi, channels)) if wild else \
        (lambda lo, hi: np.ones(channels))
    gamma = rng.normal(size=channels) * spread(-12, 3)
    gamma[rng.random(channels) < 0.15] = 0.0
    beta = rng.normal(size=channels) * spread(-3, 8)
    mean = rng.normal(size=channels) * 20 * spread(-3, 8)
    var = rng.uniform(0.0, 4.0, channels)
    eps = 1e-5
    scale = rng.choice([-1.0, 1.0], channels) * 10.0 ** rng.uniform(-6 if wild else -2, 0,
                                                                   channels)
    return gamma, beta, mean, var, eps, scale


def probe_values(steps, y_range, rng, count=300):
    """y [C, K]: random values in range plus every step's T - 1, T, T + 1 and the range ends."""
    lo, hi = y_range
    steps = np.asarray(steps).reshape(steps.shape[0], -1)
    near = np.concatenate([steps - 1, steps, steps + 1], axis=1)
    span = min(hi - lo, 2**20)
    random = rng.integers(-span // 2, span // 2, (steps.shape[0], count), endpoint=True)
    ends = np.tile([lo, hi], (steps.shape[0], 1))
    return np.clip(np.concatenate([near, random, ends], axis=1), lo, hi)


RANGES = [None, (-128, 127), (-2**15, 2**15 - 1), (-2**23, 2**23 - 1), (-5, 1000)]


# ----------------------------------------------------------------------------------------------
# Sign thresholds
# ----------------------------------------------------------------------------------------------

@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), y_range=st.sampled_from(RANGES), wild=st.booleans())
def test_sign_threshold_equals_float_batch_norm_and_sign(seed, y_range, wild):
    rng = np.random.default_rng(seed)
    params = random_bn(rng, 6, wild)
    th = ops.fold_sign_threshold(*params, y_range=y_range)
    y = probe_values(th.threshold, th.y_range, rng)
    expected = float_sign(float_bn(y, *params))
    np.testing.assert_array_equal(ops.apply_sign_threshold(y, th), expected)
    lo, hi = th.y_range
    flip = th.flip
    assert np.all(th.threshold[~flip] >= lo) and np.all(th.threshold[~flip] <= hi + 1)
    assert np.all(th.threshold[flip] >= lo - 1) and np.all(th.threshold[flip] <= hi)


def test_sign_threshold_exact_where_rounding_moves_the_algebraic_boundary():
    rng = np.random.default_rng(2024)
    params = random_bn(rng, 400, wild=True)
    gamma, beta, mean, var, eps, scale = params
    th = ops.fold_sign_threshold(*params)
    with np.errstate(divide="ignore", invalid="ignore"):
        y_star = (mean - beta * np.sqrt(var + eps) / gamma) / scale
    naive = np.where(th.flip, np.floor(y_star), np.ceil(y_star))
    inside = (gamma != 0) & (np.abs(y_star) < 2**52)
    assert np.any((naive != th.threshold) & inside), "the case must exercise the correction"
    y = probe_values(th.threshold, th.y_range, rng, count=20)
    np.testing.assert_array_equal(ops.apply_sign_threshold(y, th),
                                  float_sign(float_bn(y, *params)))


def test_sign_threshold_tie_at_zero_is_plus_one():
    # var + eps = 1 exactly and scale 1/4: z = y/4 - mean, zero exactly at y = 4*mean.
    th = ops.fold_sign_threshold([1.0, -1.0, 1.0], 0.0, [0.0, 0.0, 0.5], 0.75, 0.25, 0.25)
    np.testing.assert_array_equal(th.threshold, [0, 0, 2])
    np.testing.assert_array_equal(th.flip, [False, True, False])
    y = np.array([[-1, 0, 1], [-1, 0, 1], [1, 2, 3]])
    np.testing.assert_array_equal(ops.apply_sign_threshold(y, th),
                                  [[-1, 1, 1], [1, 1, -1], [-1, 1, 1]])


def test_sign_threshold_direction_follows_gamma_times_scale():
    gamma = np.array([2.0, -2.0, 2.0, -2.0])
    scale = np.array([0.1, 0.1, -0.1, -0.1])
    th = ops.fold_sign_threshold(gamma, 0.5, 1.0, 1.0, 1e-3, scale, y_range=(-100, 100))
    np.testing.assert_array_equal(th.flip, [False, True, True, False])
    y = np.tile(np.arange(-100, 101), (4, 1))
    np.testing.assert_array_equal(ops.apply_sign_threshold(y, th),
                                  float_sign(float_bn(y, gamma, 0.5, 1.0, 1.0, 1e-3, scale)))


def test_sign_threshold_constant_channels():
    # gamma == 0 (output sign(beta), sign(0) = +1) and scale == 0 (output sign(BN(0))).
    gamma = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    beta = np.array([0.3, -0.3, 0.0, 0.0, 0.0])
    mean = np.array([5.0, 5.0, 5.0, -1.0, 1.0])
    scale = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    th = ops.fold_sign_threshold(gamma, beta, mean, 1.0, 0.0, scale, y_range=(-50, 49))
    np.testing.assert_array_equal(th.constant, [True] * 5)
    np.testing.assert_array_equal(th.threshold, [-50, 50, -50, -50, 50])
    y = np.tile(np.arange(-50, 50), (5, 1))
    np.testing.assert_array_equal(ops.apply_sign_threshold(y, th),
                                  np.repeat([[1], [-1], [1], [1], [-1]], 100, axis=1))


def test_affine_sign_threshold_equals_float():
    rng = np.random.default_rng(17)
    gain = rng.normal(size=8) * 10.0 ** rng.uniform(-6, 2, 8)
    gain[0] = 0.0
    offset = rng.normal(size=8) * 100
    scale = rng.choice([-1.0, 1.0], 8) * 10.0 ** rng.uniform(-3, 0, 8)
    th = ops.fold_affine_sign_threshold(gain, offset, scale, y_range=(-2**20, 2**20))
    y = probe_values(th.threshold, th.y_range, rng)
    np.testing.assert_array_equal(ops.apply_sign_threshold(y, th),
                                  float_sign(float_affine(y, gain, offset, scale)))


def test_apply_sign_threshold_on_conv_outputs_and_batches():
    rng = np.random.default_rng(23)
    params = random_bn(rng, 3)
    th = ops.fold_sign_threshold(*params, y_range=(-300, 300))
    y = rng.integers(-300, 300, (2, 3, 4, 5), endpoint=True)           # [N, M, E, F]
    got = ops.apply_sign_threshold(y, th, axis=1)
    np.testing.assert_array_equal(got[1], ops.apply_sign_threshold(y[1], th))
    expected = float_sign(float_bn(np.moveaxis(y, 1, 0).reshape(3, -1), *params))
    np.testing.assert_array_equal(np.moveaxis(got, 1, 0).reshape(3, -1), expected)


# ----------------------------------------------------------------------------------------------
# Multi-level thresholds
# ----------------------------------------------------------------------------------------------

@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(1, 4), y_range=st.sampled_from(RANGES),
       wild=st.booleans())
def test_multilevel_thresholds_equal_float_quantize(seed, bits, y_range, wild):
    rng = np.random.default_rng(seed)
    params = random_bn(rng, 5, wild)
    if not wild:   # put the interesting part of [0, 1] inside the probed values
        gamma, beta, mean, var, eps, scale = params
        params = (gamma, beta * 0.1 + 0.5, mean * 0.0, var, eps, scale * 0.01)
    th = ops.fold_multilevel_thresholds(*params, bits, y_range=y_range)
    assert th.thresholds.shape == (5, 2**bits - 1)
    y = probe_values(th.thresholds, th.y_range, rng)
    expected = float_code(float_bn(y, *params), bits)
    np.testing.assert_array_equal(ops.apply_multilevel_thresholds(y, th), expected)
    steps = np.diff(th.thresholds, axis=1)
    assert np.all(steps[~th.flip] >= 0) and np.all(steps[th.flip] <= 0)


def test_multilevel_thresholds_round_ties_to_even():
    # var + eps = 1 and scale 1/4: z = y/4 exactly, so n*z hits the .5 ties exactly.
    def codes(bits):
        th = ops.fold_multilevel_thresholds(1.0, 0.0, 0.0, 0.75, 0.25, 0.25, bits,
                                            y_range=(-4, 8))
        return th, ops.apply_multilevel_thresholds(np.arange(-4, 9)[None], th)[0]

    th, got = codes(1)     # round(y/4): y = 2 -> round(0.5) = 0; y = 3 -> 1
    np.testing.assert_array_equal(th.thresholds, [[3]])
    np.testing.assert_array_equal(got, [0] * 7 + [1] * 6)
    th, got = codes(2)     # round(3y/4): 0, 0.75 -> 1, 1.5 -> 2, 2.25 -> 2, 3
    np.testing.assert_array_equal(th.thresholds, [[1, 2, 4]])
    np.testing.assert_array_equal(got[4:9], [0, 1, 2, 2, 3])
    th, got = codes(3)     # round(7y/4): 0, 1.75 -> 2, 3.5 -> 4, 5.25 -> 5, 7
    np.testing.assert_array_equal(th.thresholds, [[1, 1, 2, 2, 3, 4, 4]])
    np.testing.assert_array_equal(got[4:9], [0, 2, 4, 5, 7])


def test_multilevel_thresholds_flipped_and_constant_channels():
    gamma = np.array([-1.0, 0.0, 0.0])
    beta = np.array([0.0, 0.5, 2.0])
    th = ops.fold_multilevel_thresholds(gamma, beta, 0.0, 0.75, 0.25, 0.25, 2, y_range=(-9, 9))
    np.testing.assert_array_equal(th.flip, [True, False, False])
    np.testing.assert_array_equal(th.constant, [False, True, True])
    y = np.tile(np.arange(-9, 10), (3, 1))
    got = ops.apply_multilevel_thresholds(y, th)
    np.testing.assert_array_equal(got, float_code(float_bn(y, gamma, beta, 0.0, 0.75, 0.25,
                                                           0.25), 2))
    # round(3 * 0.5) = 2 (tie to even) and clip(2.0) = 1 -> 3, for every y
    np.testing.assert_array_equal(got[1:], np.repeat([[2], [3]], 19, axis=1))


def test_affine_multilevel_thresholds_equal_float():
    rng = np.random.default_rng(29)
    gain = rng.normal(size=4)
    offset = rng.uniform(-0.5, 1.5, 4)
    scale = rng.choice([-1.0, 1.0], 4) * 0.003
    th = ops.fold_affine_multilevel_thresholds(gain, offset, scale, 3, y_range=(-2**12, 2**12))
    y = np.tile(np.arange(-2**12, 2**12 + 1), (4, 1))
    np.testing.assert_array_equal(ops.apply_multilevel_thresholds(y, th),
                                  float_code(float_affine(y, gain, offset, scale), 3))


def test_multilevel_apply_on_batches():
    rng = np.random.default_rng(31)
    th = ops.fold_multilevel_thresholds(rng.normal(size=3), 0.5, 0.0, 1.0, 1e-5, 0.01, 2,
                                        y_range=(-200, 200))
    y = rng.integers(-200, 200, (4, 3, 2, 2), endpoint=True)
    got = ops.apply_multilevel_thresholds(y, th, axis=1)
    for n in range(4):
        np.testing.assert_array_equal(got[n], ops.apply_multilevel_thresholds(y[n], th))


# ----------------------------------------------------------------------------------------------
# The float references and bad input
# ----------------------------------------------------------------------------------------------

def test_float_references_are_the_pinned_expressions():
    rng = np.random.default_rng(37)
    x = rng.normal(size=(3, 4, 5)) * 10
    gamma, beta, mean, var = (rng.normal(size=3) for _ in range(4))
    var = np.abs(var)
    got = ops.batch_norm_inference(x, gamma, beta, mean, var, 1e-3)
    expected = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3) \
        * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_array_equal(got, expected)
    got = ops.affine_inference(x[None], gamma, beta, axis=1)
    np.testing.assert_array_equal(got[0], x * gamma[:, None, None] + beta[:, None, None])
    np.testing.assert_array_equal(ops.sign_pm1([-0.5, -0.0, 0.0, 2.0]), [-1, 1, 1, 1])
    np.testing.assert_array_equal(ops.multilevel_code([-1, 1 / 6, 0.5, 5 / 6, 2], 2),
                                  [0, 0, 2, 2, 3])


@pytest.mark.parametrize("call, message", [
    (lambda: ops.fold_sign_threshold([1.0, np.nan], 0, 0, 1, 1e-5, 1), "gamma contains NaN"),
    (lambda: ops.fold_sign_threshold(1.0, np.inf, 0, 1, 1e-5, 1), "beta contains NaN or inf"),
    (lambda: ops.fold_sign_threshold(1.0, 0, 0, -1.0, 1e-5, 1), "var and eps must be >= 0"),
    (lambda: ops.fold_sign_threshold(1.0, 0, 0, 0.0, 0.0, 1), "var \\+ eps must be > 0"),
    (lambda: ops.fold_sign_threshold([1.0, 2.0], [0, 0, 0], 0, 1, 1e-5, 1), "one length C"),
    (lambda: ops.fold_sign_threshold(np.ones((2, 2)), 0, 0, 1, 1e-5, 1), "1-D per-channel"),
    (lambda: ops.fold_sign_threshold([], 0, 0, 1, 1e-5, 1), "empty"),
    (lambda: ops.fold_sign_threshold(1.0, 0, 0, 1, 1e-5, "a"), "scale must be a real"),
    (lambda: ops.fold_sign_threshold(1.0, 0, 0, 1, 1e-5, 1, y_range=(5, 1)), "lo <= hi"),
    (lambda: ops.fold_sign_threshold(1.0, 0, 0, 1, 1e-5, 1, y_range=(0, 2**60)), "2\\*\\*53"),
    (lambda: ops.fold_sign_threshold(1.0, 0, 0, 1, 1e-5, 1, y_range=3), "pair of integers"),
    (lambda: ops.fold_multilevel_thresholds(1.0, 0, 0, 1, 1e-5, 1, 0), "in \\[1, 16\\], not 0"),
    (lambda: ops.fold_multilevel_thresholds(1.0, 0, 0, 1, 1e-5, 1, 17), "not 17"),
    (lambda: ops.fold_affine_sign_threshold(np.nan, 0, 1), "gain contains NaN"),
])
def test_folding_rejects_bad_parameters(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_apply_rejects_bad_accumulators():
    th = ops.fold_sign_threshold([1.0, 2.0], 0, 0, 1, 1e-5, 1, y_range=(-8, 7))
    mt = ops.fold_multilevel_thresholds([1.0, 2.0], 0, 0, 1, 1e-5, 1, 2, y_range=(-8, 7))
    for apply, t in ((ops.apply_sign_threshold, th), (ops.apply_multilevel_thresholds, mt)):
        with pytest.raises(ValueError, match="y holds 8, outside .* \\[-8, 7\\]"):
            apply(np.array([[0, 8], [1, 1]]), t)
        with pytest.raises(ValueError, match="integer accumulator"):
            apply(np.array([[0.0, np.nan], [1, 1]]), t)
        with pytest.raises(ValueError, match="3 channels on axis 0 but the parameters have 2"):
            apply(np.zeros((3, 4), dtype=np.int64), t)
        with pytest.raises(ValueError, match="axis 2 is out of range"):
            apply(np.zeros((2, 4), dtype=np.int64), t, axis=2)


def test_module_and_ops_export_the_same_functions():
    for name in thresholds.__all__:
        if name != "EXACT_LIMIT":
            assert getattr(ops, name) is getattr(thresholds, name)
    # ops.__all__ is built from thresholds.__all__: every name it lists must exist.
    assert [name for name in ops.__all__ if not hasattr(ops, name)] == []


# ----------------------------------------------------------------------------------------------
# fold_monotone_steps: any monotone step function, seen only through its values
# ----------------------------------------------------------------------------------------------

def test_monotone_steps_equal_every_value_of_the_function():
    """Signed 3-bit codes of increasing, decreasing and constant channels, with levels never
    reached at either end, over every accumulator of the range."""
    y_range = (-40, 37)
    slopes = np.array([0.31, -0.17, 0.0, 0.05])
    offsets = np.array([0.4, -1.0, 2.0, 0.0])

    def codes_of(y):
        z = slopes[:, None] * y + offsets[:, None]
        return np.clip(np.round(z), -3, 3).astype(np.int64)   # levels -3..3 of -4..3

    t, flip, constant = ops.fold_monotone_steps(codes_of, channels=4, levels=7, code_min=-4,
                                                y_range=y_range)
    assert t.shape == (4, 7)
    assert flip.tolist() == [False, True, False, False]
    assert constant.tolist() == [False, False, True, False]
    y = np.tile(np.arange(y_range[0], y_range[1] + 1), (4, 1))
    th = ops.MultilevelThresholds(thresholds=t, flip=flip, constant=constant, bits=3,
                                  y_range=y_range)
    np.testing.assert_array_equal(-4 + ops.apply_multilevel_thresholds(y, th), codes_of(y))


def test_monotone_steps_agree_with_the_batch_norm_fold():
    gamma, beta = np.array([0.7, -1.3, 0.2]), np.array([0.1, 0.5, -0.2])
    mean, var, eps, scale, bits = np.array([3.0, -2.0, 0.5]), 2.5, 1e-5, 0.05, 2
    y_range = (-100, 100)

    def codes_of(y):
        return ops.multilevel_code(ops.batch_norm_inference(
            scale * y, gamma, beta, mean, var, eps), bits)

    t, flip, constant = ops.fold_monotone_steps(codes_of, channels=3, levels=3,
                                                y_range=y_range)
    want = ops.fold_multilevel_thresholds(gamma, beta, mean, var, eps, scale, bits,
                                          y_range=y_range)
    np.testing.assert_array_equal(t, want.thresholds)
    np.testing.assert_array_equal(flip, want.flip)


def test_monotone_steps_refuse_a_function_that_is_not_monotone_at_a_step():
    def bump(y):
        return (y == 15).astype(np.int64)          # the bisection's first probe passes


    with pytest.raises(RuntimeError, match="not monotone"):
        ops.fold_monotone_steps(bump, channels=1, levels=1, y_range=(0, 30))
    with pytest.raises(ValueError, match="levels must be an integer >= 1"):
        ops.fold_monotone_steps(bump, channels=1, levels=0, y_range=(0, 30))
