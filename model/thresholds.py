"""Batch norm folded into integer thresholds on the accumulator (NumPy only).

A quantized layer produces an integer accumulator ``y`` (``model.ops.conv2d``/``dense``)
whose real value is ``scale * y`` (``scale`` collects alpha and the DoReFa 1/n factors). The
float model then applies an inference batch norm per output channel and either the sign
(binary activations) or the k-bit DoReFa activation quantizer. Both are monotone in ``y``,
so each output is a comparison of ``y`` with integer thresholds: no multiplier, no float.

The float computations the thresholds reproduce *exactly* (bit for bit, in float64, per
channel) are pinned here; deployment and training code should use the same expressions:

- ``x = scale * float64(y)``
- the normalisation, one of
  ``z = (x - mean) / sqrt(var + eps) * gamma + beta`` (``batch_norm_inference``;
  ``fold_sign_threshold``, ``fold_multilevel_thresholds``) or
  ``z = x * gain + offset`` (``affine_inference``, e.g. a batch norm already reduced to
  gain/offset or its shift-based form; ``fold_affine_sign_threshold``,
  ``fold_affine_multilevel_thresholds``);
- the output, one of ``sign_pm1(z)`` = ``+1 if z >= 0 else -1`` (sign(0) = +1) or
  ``multilevel_code(z, k)`` = ``round(n * clip(z, 0, 1))`` with ``n = 2**k - 1`` and round half
  to even (``np.round``), i.e. ``quantize_k(clip(z, 0, 1)) * n``.

How the thresholds are found: every float operation above is correctly rounded, hence
monotone, so the output is a monotone step function of ``y`` whose direction is the sign of
``gamma * scale`` (``gain * scale``). The algebraic boundary (for the sign,
``y* = (mean - beta * sqrt(var + eps) / gamma) / scale``) gives a first guess
``T = ceil(y*)`` (``floor`` when the direction is negative); the guess is checked by
evaluating the float computation at ``T - 1`` and ``T``; where rounding moved the step, a
bisection on the float computation finds it. Finally ``T - 1``, ``T`` and ``T + 1`` are
verified for every threshold (``RuntimeError`` if that ever failed).

``fold_monotone_steps`` does the same for any monotone step function given only through
its values (a callable): how a computation that is not written here, such as another
framework's executor on its own float32 arithmetic, is folded (``model.qonnx_import``).

Domain: thresholds are exact for every integer ``y`` in ``y_range`` (default
``[-2**53, 2**53]``, where float64 holds every integer). Give the accumulator's range
(``(-2**(w-1), 2**(w-1) - 1)`` for a w-bit accumulator) to get thresholds that fit a
``w + 1``-bit register: a step outside the range is clipped to ``lo`` / ``hi + 1`` (or
``lo - 1`` / ``hi`` when flipped), which keeps every output inside the range unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EXACT_LIMIT",
    "SignThreshold",
    "MultilevelThresholds",
    "batch_norm_inference",
    "affine_inference",
    "sign_pm1",
    "multilevel_code",
    "fold_sign_threshold",
    "fold_affine_sign_threshold",
    "apply_sign_threshold",
    "fold_multilevel_thresholds",
    "fold_affine_multilevel_thresholds",
    "apply_multilevel_thresholds",
    "fold_monotone_steps",
]

#: Largest |y| for which float64(y) is exact; the default ``y_range`` is +/- this.
EXACT_LIMIT = 1 << 53


@dataclass(frozen=True)
class SignThreshold:
    """Per-channel integer form of ``sign_pm1(BN(scale * y))``.

    Members
    -------
    threshold : int64 [C]
        ``T``: the output is +1 iff ``y >= T`` (``y <= T`` where ``flip``).
    flip : bool [C]
        True where ``gamma * scale < 0`` (the comparison direction flips).
    constant : bool [C]
        True where ``gamma == 0`` or ``scale == 0``: the output does not depend on ``y``; the
        threshold then sits at the range edge (``lo`` for always +1, ``hi + 1`` for always
        -1), so ``apply_sign_threshold`` needs no special case.
    y_range : (int, int)
        The accumulator values for which the thresholds are exact.
    """

    threshold: np.ndarray
    flip: np.ndarray
    constant: np.ndarray
    y_range: tuple[int, int]


@dataclass(frozen=True)
class MultilevelThresholds:
    """Per-channel integer form of ``multilevel_code(BN(scale * y), bits)``.

    Members
    -------
    thresholds : int64 [C, n], n = 2**bits - 1
        ``T[c, i-1]`` for level i = 1..n: the code is ``sum_i (y >= T[c, i-1])``
        (``y <= T`` where ``flip``). Ascending per channel (descending where flipped).
    flip, constant, y_range
        As ``SignThreshold``; constant channels have every threshold at ``lo`` (passed) or
        ``hi + 1`` (not passed).
    bits : int
        k, the width of the output codes (``model.quant`` dorefa activation codes).
    """

    thresholds: np.ndarray
    flip: np.ndarray
    constant: np.ndarray
    bits: int
    y_range: tuple[int, int]


# --------------------------------------------------------------------------------------------
# The float computations (the references the thresholds reproduce)
# --------------------------------------------------------------------------------------------

def _channel_params(**named) -> dict[str, np.ndarray]:
    """Validate per-channel parameters (finite scalars or [C]) and broadcast to float64 [C]."""
    arrays = {}
    for name, value in named.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "iuf" or arr.ndim > 1:
            raise ValueError(f"{name} must be a real scalar or a 1-D per-channel array, "
                             f"not {arr.dtype} of shape {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf; allowed: finite numbers")
        arrays[name] = arr
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
        raise ValueError(f"per-channel parameters must share one length C; got {shapes}") \
            from None
    channels = shape[0] if shape else 1
    if channels == 0:
        raise ValueError("per-channel parameters are empty; allowed: at least one channel")
    return {k: np.broadcast_to(v, (channels,)) for k, v in arrays.items()}


def _batch_norm_params(gamma, beta, mean, var, eps, **extra) -> dict[str, np.ndarray]:
    p = _channel_params(gamma=gamma, beta=beta, mean=mean, var=var, eps=eps, **extra)
    if np.any(p["var"] < 0) or np.any(p["eps"] < 0):
        raise ValueError("var and eps must be >= 0")
    if np.any(p["var"] + p["eps"] <= 0):
        raise ValueError("var + eps must be > 0 in every channel")
    return p


def _along(param: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Reshape a [C] array to broadcast along ``axis`` of an ``ndim``-dimensional array."""
    shape = [1] * ndim
    shape[axis] = param.shape[0]
    return param.reshape(shape)


def _channel_axis(y: np.ndarray, channels: int, axis: int) -> int:
    """Normalise ``axis`` and check that it holds ``channels`` channels (or params are 1)."""
    if y.ndim == 0:
        raise ValueError("the input must have a channel axis, not be a scalar")
    if not -y.ndim <= axis < y.ndim:
        raise ValueError(f"axis {axis} is out of range for shape {y.shape}")
    axis %= y.ndim
    if y.shape[axis] != channels and channels != 1:
        raise ValueError(f"the input has {y.shape[axis]} channels on axis {axis} but the "
                         f"parameters have {channels}")
    return axis


def _bn(x, p, along):
    return (x - along(p["mean"])) / np.sqrt(along(p["var"] + p["eps"])) * along(p["gamma"]) \
        + along(p["beta"])


def _affine(x, p, along):
    return x * along(p["gain"]) + along(p["offset"])


def batch_norm_inference(x, gamma, beta, mean, var, eps, *, axis: int = 0) -> np.ndarray:
    """Inference batch norm in float64: ``(x - mean) / sqrt(var + eps) * gamma + beta``.

    Parameters are scalars or per-channel [C] arrays broadcast along ``axis`` of ``x`` (0 for
    [C, H, W] or [C], 1 for batches). This order of operations is the one
    ``fold_sign_threshold`` and ``fold_multilevel_thresholds`` reproduce.
    """
    p = _batch_norm_params(gamma, beta, mean, var, eps)
    x = np.asarray(x, dtype=np.float64)
    axis = _channel_axis(x, p["gamma"].shape[0], axis)
    return _bn(x, p, lambda v: _along(v, x.ndim, axis))


def affine_inference(x, gain, offset, *, axis: int = 0) -> np.ndarray:
    """Per-channel affine map in float64: ``x * gain + offset`` (the ``fold_affine_*`` form)."""
    p = _channel_params(gain=gain, offset=offset)
    x = np.asarray(x, dtype=np.float64)
    axis = _channel_axis(x, p["gain"].shape[0], axis)
    return _affine(x, p, lambda v: _along(v, x.ndim, axis))


def sign_pm1(z) -> np.ndarray:
    """``+1 where z >= 0 else -1`` as int64 (sign(0) = +1)."""
    return np.where(np.asarray(z) >= 0, 1, -1).astype(np.int64)


def multilevel_code(z, bits: int) -> np.ndarray:
    """``round(n * clip(z, 0, 1))`` as int64 codes in [0, n], n = 2**bits - 1 (half to even)."""
    n = float((1 << _check_bits(bits)) - 1)
    return np.round(n * np.clip(np.asarray(z, dtype=np.float64), 0.0, 1.0)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Finding the integer steps of a monotone float computation
# --------------------------------------------------------------------------------------------

def _check_range(y_range) -> tuple[int, int]:
    if y_range is None:
        return -EXACT_LIMIT, EXACT_LIMIT
    try:
        lo, hi = (int(v) for v in y_range)
    except (TypeError, ValueError):
        raise ValueError(f"y_range must be a pair of integers (lo, hi), not {y_range!r}") \
            from None
    if not -EXACT_LIMIT <= lo <= hi <= EXACT_LIMIT:
        raise ValueError(f"y_range must satisfy -2**53 <= lo <= hi <= 2**53, not {y_range!r}")
    return lo, hi


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ValueError(f"output bits must be an integer in [1, 16], not {bits!r}")
    return int(bits)


def _first_passing(passes, guess: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Smallest integer t in ``[lo, hi + 1]`` with ``passes(t)``, elementwise.

    ``passes(t)`` (int64 array -> bool array of the same shape, only called with t in
    ``[lo, hi]``) must be non-decreasing in t; ``hi + 1`` stands for "no t in range passes".
    ``ceil(guess)`` (the algebraic boundary) is tried first; bisection fixes wrong guesses.
    """
    def passes_at(t):
        """``passes`` extended beyond the range: hi + 1 passes, lo - 1 does not."""
        result = passes(np.clip(t, lo, hi))
        return np.where(t > hi, True, np.where(t < lo, False, result))

    finite = np.nan_to_num(guess, nan=0.0)
    t = np.ceil(np.clip(finite, float(lo - 1), float(hi + 1))).astype(np.int64)
    t = np.clip(t, lo, hi + 1)
    wrong = ~passes_at(t) | passes_at(t - 1)
    if np.any(wrong):
        low = np.where(wrong, lo, t)
        high = np.where(wrong, hi + 1, t)
        while np.any(low < high):
            mid = low + (high - low) // 2
            ok = passes_at(mid)
            active = low < high
            high = np.where(active & ok, mid, high)
            low = np.where(active & ~ok, mid + 1, low)
        t = low
    step_ok = passes_at(t) & ~passes_at(t - 1) & passes_at(np.minimum(t + 1, hi + 1))
    if not np.all(step_ok):
        raise RuntimeError("the float computation is not monotone in y; cannot fold it into "
                           "thresholds")
    return t


def _fold(normalise, z_to_y, slope, passes_z, boundary_z, channels, y_range):
    """Integer steps of ``passes_z(normalise(scale * y))`` per channel and level.

    ``normalise(x)`` maps x [C, L] to z; ``passes_z(z)`` -> bool [C, L] is non-decreasing in
    z; ``boundary_z`` [1, L] is where it switches and ``z_to_y(z)`` its algebraic y (first
    guess only); ``slope`` [C] is the sign of dz/dy (0: constant channel).
    Returns (thresholds int64 [C, L], flip bool [C], constant bool [C]).
    """
    lo, hi = y_range
    constant = slope == 0
    flip = slope < 0
    flip_col = flip[:, None]
    levels = boundary_z.shape[1]
    # Search in t, in which passing is non-decreasing: t = y where not flipped and
    # t = lo + hi - y where flipped (maps [lo, hi] onto itself reversed; t = hi + 1, "never
    # passes", becomes T = lo - 1).
    mirror = lo + hi

    def y_of(t):
        return np.where(flip_col, mirror - t, t)

    def passes_t(t):
        return passes_z(normalise(y_of(t).astype(np.float64)))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        y_star = np.broadcast_to(z_to_y(boundary_z), (channels, levels))
        # ceil in t is ceil(y*) unflipped and mirror - floor(y*) flipped.
        guess = np.where(flip_col, mirror - np.floor(y_star), y_star)
    guess = np.where(constant[:, None], 0.0, guess)
    t = _first_passing(passes_t, guess, lo, hi)
    return y_of(t), flip, constant


def _fold_sign(normalise, z_to_y, slope, channels, y_range) -> SignThreshold:
    thresholds, flip, constant = _fold(normalise, z_to_y, slope, lambda z: z >= 0,
                                       np.zeros((1, 1)), channels, y_range)
    return SignThreshold(threshold=thresholds[:, 0], flip=flip, constant=constant,
                         y_range=y_range)


def _fold_multilevel(normalise, z_to_y, slope, channels, bits, y_range):
    n = (1 << bits) - 1
    levels = np.arange(1, n + 1, dtype=np.int64)[None, :]          # [1, n]

    def passes_z(z):
        return multilevel_code(z, bits) >= levels

    thresholds, flip, constant = _fold(normalise, z_to_y, slope, passes_z, (levels - 0.5) / n,
                                       channels, y_range)
    return MultilevelThresholds(thresholds=thresholds, flip=flip, constant=constant,
                                bits=bits, y_range=y_range)


def _column(v: np.ndarray) -> np.ndarray:
    return v[:, None]


def _batch_norm_form(gamma, beta, mean, var, eps, scale):
    """(normalise, z_to_y, slope, channels) of ``batch_norm_inference(scale * y)``."""
    p = _batch_norm_params(gamma, beta, mean, var, eps, scale=scale)

    def normalise(y):
        return _bn(_column(p["scale"]) * y, p, _column)

    def z_to_y(z):
        sd = np.sqrt(p["var"] + p["eps"])
        return (_column(p["mean"]) + (z - _column(p["beta"])) * _column(sd / p["gamma"])) \
            / _column(p["scale"])

    slope = (np.sign(p["gamma"]) * np.sign(p["scale"])).astype(np.int64)
    return normalise, z_to_y, slope, p["gamma"].shape[0]


def _affine_form(gain, offset, scale):
    """(normalise, z_to_y, slope, channels) of ``affine_inference(scale * y)``."""
    p = _channel_params(gain=gain, offset=offset, scale=scale)

    def normalise(y):
        return _affine(_column(p["scale"]) * y, p, _column)

    def z_to_y(z):
        return (z - _column(p["offset"])) / _column(p["gain"]) / _column(p["scale"])

    slope = (np.sign(p["gain"]) * np.sign(p["scale"])).astype(np.int64)
    return normalise, z_to_y, slope, p["gain"].shape[0]


# --------------------------------------------------------------------------------------------
# Public folding and application
# --------------------------------------------------------------------------------------------

def fold_sign_threshold(gamma, beta, mean, var, eps, scale, *,
                        y_range=None) -> SignThreshold:
    """Fold ``sign_pm1(batch_norm_inference(scale * y))`` into one threshold per channel.

    Parameters
    ----------
    gamma, beta, mean, var : float scalar or array [C]
        The inference batch norm (running mean and variance).
    eps : float scalar or array [C]
        Batch-norm epsilon.
    scale : float scalar or array [C]
        The real value of one accumulator unit (e.g. alpha / n), any sign.
    y_range : (int, int), optional
        The accumulator values to be exact for; default ``(-2**53, 2**53)``.

    Returns
    -------
    SignThreshold
        Apply with ``apply_sign_threshold``; for every integer y in ``y_range`` it equals the
        float computation. Raises ``ValueError`` on NaN/inf, negative var or eps, mismatched
        channel counts or a bad ``y_range``.
    """
    form = _batch_norm_form(gamma, beta, mean, var, eps, scale)
    return _fold_sign(*form, _check_range(y_range))


def fold_affine_sign_threshold(gain, offset, scale, *, y_range=None) -> SignThreshold:
    """Fold ``sign_pm1(affine_inference(scale * y, gain, offset))`` (see ``fold_sign_threshold``).

    ``gain`` and ``offset`` are finite scalars or [C] arrays; the direction flips where
    ``gain * scale < 0`` and the output is constant where it is 0.
    """
    return _fold_sign(*_affine_form(gain, offset, scale), _check_range(y_range))


def fold_multilevel_thresholds(gamma, beta, mean, var, eps, scale, bits: int, *,
                               y_range=None) -> MultilevelThresholds:
    """Fold ``multilevel_code(batch_norm_inference(scale * y), bits)`` into thresholds.

    Parameters as ``fold_sign_threshold``; ``bits`` is k (1..16), ``n = 2**k - 1``. Returns
    ``MultilevelThresholds`` with n integer thresholds per channel such that the number of
    thresholds passed equals ``round(n * clip(z, 0, 1))`` (``quantize_k(clip(z, 0, 1)) * n``)
    for every integer y in ``y_range``; ties at ``n*z = i + 1/2`` round half to even.
    """
    bits = _check_bits(bits)
    form = _batch_norm_form(gamma, beta, mean, var, eps, scale)
    return _fold_multilevel(*form, bits, _check_range(y_range))


def fold_affine_multilevel_thresholds(gain, offset, scale, bits: int, *,
                                      y_range=None) -> MultilevelThresholds:
    """Fold ``multilevel_code(affine_inference(scale * y, gain, offset), bits)``.

    As ``fold_multilevel_thresholds`` with the affine form of ``fold_affine_sign_threshold``.
    """
    bits = _check_bits(bits)
    return _fold_multilevel(*_affine_form(gain, offset, scale), bits, _check_range(y_range))


def fold_monotone_steps(codes_of, *, channels: int, levels: int, code_min: int = 0,
                        y_range=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer thresholds of any per-channel monotone step function of the accumulator.

    ``codes_of(y)`` takes int64 accumulators ``[channels, K]`` (row c for channel c, values in
    ``y_range``) and returns the integer codes of each; in each channel the code must be a
    monotone function of ``y`` with values in ``[code_min, code_min + levels]``. This is how
    a computation that is not written here (e.g. another framework's own float arithmetic,
    evaluated by its own executor) is folded: only its values at integer accumulators are
    used, found by bisection, and every step is checked at ``T - 1``, ``T`` and ``T + 1``.

    Returns ``(thresholds int64 [channels, levels], flip bool [channels], constant bool
    [channels])``, the fields of ``MultilevelThresholds``: the code is ``code_min`` plus the
    number of thresholds passed (``y >= T``, ``y <= T`` where ``flip``) for every integer
    ``y`` in ``y_range``; a level never reached sits at ``hi + 1`` (``lo - 1`` flipped).
    Raises ``RuntimeError`` if the function is not monotone at a step.
    """
    lo, hi = _check_range(y_range)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, not {levels!r}")
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) \
            or channels < 1:
        raise ValueError(f"channels must be an integer >= 1, not {channels!r}")
    ends = np.asarray(codes_of(np.tile(np.array([[lo, hi]], dtype=np.int64), (channels, 1))))
    flip = ends[:, 0] > ends[:, 1]
    constant = ends[:, 0] == ends[:, 1]
    need = code_min + np.arange(1, levels + 1, dtype=np.int64)[None, :]      # [1, L]
    mirror = lo + hi

    def y_of(t):
        return np.where(flip[:, None], mirror - t, t)

    def passes(t):
        return np.asarray(codes_of(y_of(t).astype(np.int64))) >= need

    guess = np.full((channels, levels), float(lo))
    t = _first_passing(passes, guess, lo, hi)
    return y_of(t).astype(np.int64), flip, constant


def _check_accumulator(y, y_range) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"y must be an integer accumulator array, not {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = y_range
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = arr[(arr < lo) | (arr > hi)].flat[0]
        raise ValueError(f"y holds {bad}, outside the thresholds' exact range [{lo}, {hi}]")
    return arr


def apply_sign_threshold(y, th: SignThreshold, *, axis: int = 0) -> np.ndarray:
    """+/-1 outputs (int64) of integer accumulators ``y`` through folded thresholds.

    ``axis`` is the channel axis of ``y``: 0 for ``conv2d``'s [M, E, F] and ``dense``'s [M],
    1 for batches [N, M, ...]. Output is +1 where ``y >= T`` (``y <= T`` where flipped).
    Raises ``ValueError`` on non-integer ``y`` or values outside ``th.y_range``.
    """
    y = _check_accumulator(y, th.y_range)
    axis = _channel_axis(y, th.threshold.shape[0], axis)
    t = _along(th.threshold, y.ndim, axis)
    passed = np.where(_along(th.flip, y.ndim, axis), y <= t, y >= t)
    return np.where(passed, 1, -1).astype(np.int64)


def apply_multilevel_thresholds(y, th: MultilevelThresholds, *, axis: int = 0) -> np.ndarray:
    """k-bit output codes (int64 in [0, 2**k - 1]): the number of thresholds ``y`` passes.

    ``axis`` as ``apply_sign_threshold``.
    """
    y = _check_accumulator(y, th.y_range)
    axis = _channel_axis(y, th.thresholds.shape[0], axis)
    y_last = np.moveaxis(y, axis, -1)[..., None]                    # [..., C, 1]
    passed = np.where(th.flip[:, None], y_last <= th.thresholds, y_last >= th.thresholds)
    return np.moveaxis(passed.sum(axis=-1), -1, axis).astype(np.int64)
