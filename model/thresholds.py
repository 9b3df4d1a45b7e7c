"""Batch norm folded into integer thresholds on the accumulator (NumPy only).

A quantized layer produces an integer accumulator ``y`` (``model.ops.conv2d``/``dense``)
whose real value is ``scale * y`` (``scale`` collects alpha and the DoReFa 1/n factors). The
float model then applies an inference batch norm per output channel and either the sign
(binary activations) or the k-bit DoReFa activation quantizer. Both are monotone in ``y``,
so each output is a comparison of ``y`` with integer thresholds: no multiplier, no float.

The float computation the thresholds reproduce *exactly* (bit for bit, in float64) is pinned
here; deployment and training code should use the same expressions:

- ``x = scale * float64(y)``
- ``z = (x - mean) / sqrt(var + eps) * gamma + beta`` (``batch_norm_inference``)
- sign output: ``+1 if z >= 0 else -1`` (sign(0) = +1) (``reference_sign``)
- k-bit output code: ``round(n * clip(z, 0, 1))``, ``n = 2**k - 1``, round half to even
  (``np.round``), i.e. ``quantize_k(clip(z, 0, 1)) * n`` (``reference_multilevel``).

How the thresholds are found: every float operation above is correctly rounded, hence
monotone, so the output is a monotone step function of ``y`` whose direction is the sign of
``gamma * scale``. The algebraic boundary (e.g. ``y* = (mean - beta*sqrt(var+eps)/gamma) /
scale``) gives a first guess ``T = ceil(y*)`` (``floor`` when the direction is negative); the
guess is checked by evaluating the float computation at ``T - 1`` and ``T``; where rounding
moved the step, a bisection on the float computation finds it. Finally ``T - 1``, ``T`` and
``T + 1`` are verified for every threshold.

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
    "reference_sign",
    "reference_multilevel",
    "fold_sign_threshold",
    "apply_sign_threshold",
    "fold_multilevel_thresholds",
    "apply_multilevel_thresholds",
]

#: Largest |y| for which float64(y) is exact; the default ``y_range`` is +/- this.
EXACT_LIMIT = 1 << 53


@dataclass(frozen=True)
class SignThreshold:
    """Per-channel integer form of ``sign(BN(scale * y))``.

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
    """Per-channel integer form of the k-bit code ``round(n * clip(BN(scale * y), 0, 1))``.

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
# The float computation (the reference the thresholds reproduce)
# --------------------------------------------------------------------------------------------

def _channel_params(gamma, beta, mean, var, eps, scale):
    """Validate the batch-norm parameters and broadcast them to float64 [C]."""
    named = {"gamma": gamma, "beta": beta, "mean": mean, "var": var, "eps": eps,
             "scale": scale}
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
        raise ValueError(f"per-channel parameters must have one length C; got {shapes}") from None
    channels = shape[0] if shape else 1
    if channels == 0:
        raise ValueError("batch-norm parameters are empty; allowed: at least one channel")
    out = {k: np.broadcast_to(v, (channels,)) for k, v in arrays.items()}
    if np.any(out["var"] < 0) or np.any(out["eps"] < 0):
        raise ValueError("var and eps must be >= 0")
    if np.any(out["var"] + out["eps"] <= 0):
        raise ValueError("var + eps must be > 0 in every channel")
    return out


def _along(param: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Reshape a [C] array to broadcast along ``axis`` of an ``ndim``-dimensional array."""
    shape = [1] * ndim
    shape[axis] = param.shape[0]
    return param.reshape(shape)


def _channel_axis(y: np.ndarray, channels: int, axis: int) -> int:
    """Normalise ``axis`` and check that it holds ``channels`` channels."""
    if y.ndim == 0:
        raise ValueError("y must have a channel axis, not be a scalar")
    if not -y.ndim <= axis < y.ndim:
        raise ValueError(f"axis {axis} is out of range for y of shape {y.shape}")
    axis %= y.ndim
    if y.shape[axis] != channels and channels != 1:
        raise ValueError(f"y has {y.shape[axis]} channels on axis {axis} but the parameters "
                         f"have {channels}")
    return axis


def batch_norm_inference(x, gamma, beta, mean, var, eps, *, axis: int = 0) -> np.ndarray:
    """Inference batch norm in float64: ``(x - mean) / sqrt(var + eps) * gamma + beta``.

    Parameters are scalars or per-channel [C] arrays broadcast along ``axis`` of ``x``. This
    exact order of operations is the one the folded thresholds reproduce.
    """
    p = _channel_params(gamma, beta, mean, var, eps, 1.0)
    x = np.asarray(x, dtype=np.float64)
    axis = _channel_axis(x, p["gamma"].shape[0], axis)

    def along(v):
        return _along(v, x.ndim, axis)
    return (x - along(p["mean"])) / np.sqrt(along(p["var"] + p["eps"])) * along(p["gamma"]) \
        + along(p["beta"])


def _bn_of_accumulator(y: np.ndarray, p: dict, along) -> np.ndarray:
    """``batch_norm_inference(scale * float64(y))`` with parameters reshaped by ``along``."""
    x = along(p["scale"]) * y.astype(np.float64)
    return (x - along(p["mean"])) / np.sqrt(along(p["var"] + p["eps"])) * along(p["gamma"]) \
        + along(p["beta"])


def _multilevel_code(z: np.ndarray, bits: int) -> np.ndarray:
    """``round(n * clip(z, 0, 1))`` with n = 2**bits - 1 (round half to even)."""
    n = float((1 << bits) - 1)
    return np.round(n * np.clip(z, 0.0, 1.0)).astype(np.int64)


def reference_sign(y, gamma, beta, mean, var, eps, scale, *, axis: int = 0) -> np.ndarray:
    """Float reference: ``sign(BN(scale * y))`` with sign(0) = +1, as int64 +/-1."""
    p = _channel_params(gamma, beta, mean, var, eps, scale)
    y = np.asarray(y)
    axis = _channel_axis(y, p["gamma"].shape[0], axis)
    z = _bn_of_accumulator(y, p, lambda v: _along(v, y.ndim, axis))
    return np.where(z >= 0, 1, -1).astype(np.int64)


def reference_multilevel(y, gamma, beta, mean, var, eps, scale, bits: int, *,
                         axis: int = 0) -> np.ndarray:
    """Float reference: ``round(n * clip(BN(scale * y), 0, 1))``, int64 codes in [0, n]."""
    bits = _check_bits(bits)
    p = _channel_params(gamma, beta, mean, var, eps, scale)
    y = np.asarray(y)
    axis = _channel_axis(y, p["gamma"].shape[0], axis)
    z = _bn_of_accumulator(y, p, lambda v: _along(v, y.ndim, axis))
    return _multilevel_code(z, bits)


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


def _float_ceil(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``ceil(values)`` clipped into ``[lo, hi]`` as int64 (NaN and inf land on the edges)."""
    v = np.nan_to_num(values, nan=0.0, posinf=np.inf, neginf=-np.inf)
    v = np.clip(v, lo.astype(np.float64), hi.astype(np.float64))
    return np.clip(np.ceil(v).astype(np.int64), lo, hi)


def _first_passing(passes, guess: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Smallest integer t in ``[lo, hi + 1]`` with ``passes(t)``, elementwise.

    ``passes(t)`` (int64 array -> bool array of the same shape, only called with t in
    ``[lo, hi]``) must be non-decreasing in t; ``hi + 1`` stands for "no t in range passes".
    ``guess`` (float, the algebraic boundary) is tried first; bisection fixes wrong guesses.
    """
    t_lo = np.full(guess.shape, lo, dtype=np.int64)
    t_end = np.full(guess.shape, hi + 1, dtype=np.int64)

    def passes_at(t):
        """``passes`` clipped to the range: t == hi + 1 passes, t == lo - 1 does not."""
        result = passes(np.clip(t, lo, hi))
        return np.where(t > hi, True, np.where(t < lo, False, result))

    t = _float_ceil(guess, t_lo, t_end)
    wrong = ~passes_at(t) | passes_at(t - 1)
    if np.any(wrong):
        low = np.where(wrong, t_lo, t)
        high = np.where(wrong, t_end, t)
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


def _fold(passes_z, boundary_z, p, bits_shape, y_range):
    """Thresholds where ``passes_z(BN(scale * y))`` switches, per channel (and per level).

    ``passes_z`` maps BN outputs z (shape [C, L]) to bool and is non-decreasing in z;
    ``boundary_z`` [C or 1, L] is the z where it switches (for the first guess only).
    Returns (thresholds int64 [C, L], flip bool [C], constant bool [C]).
    """
    lo, hi = y_range
    channels = p["gamma"].shape[0]
    direction = (np.sign(p["gamma"]) * np.sign(p["scale"])).astype(np.int64)  # [C]
    constant = direction == 0
    flip = direction < 0
    d = np.where(constant, 1, direction)[:, None]                  # [C, 1]

    def along(v):
        return v[:, None]

    # Search in t = d * y, in which passing is non-decreasing: t in [lo', hi'] with
    # lo' = lo, hi' = hi for d = +1 and lo' = -hi, hi' = -lo for d = -1.
    flip_col = flip[:, None]

    def passes_t(t):
        y = np.where(flip_col, -t, t)
        return passes_z(_bn_of_accumulator(y, p, along))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sd = np.sqrt(p["var"] + p["eps"])
        y_star = (along(p["mean"]) + (boundary_z - along(p["beta"])) * along(sd)
                  / along(p["gamma"])) / along(p["scale"])
    guess = np.broadcast_to(np.where(constant[:, None], 0.0, d * y_star),
                            (channels,) + bits_shape)

    # Both directions at once: shift the flipped channels' range so one call serves all.
    t_lo = np.where(flip_col, -hi, lo)
    shift = t_lo - lo                                               # [C, 1]

    def passes_shifted(u):
        return passes_t(u + shift)

    u = _first_passing(passes_shifted, np.asarray(guess - shift, dtype=np.float64), lo, hi)
    t = u + shift
    thresholds = np.where(flip_col, -t, t)
    # Constant channels: always passing -> lo; never passing -> hi + 1 (not flipped).
    return thresholds, flip, constant


# --------------------------------------------------------------------------------------------
# Public folding and application
# --------------------------------------------------------------------------------------------

def fold_sign_threshold(gamma, beta, mean, var, eps, scale, *,
                        y_range=None) -> SignThreshold:
    """Fold ``sign(BN(scale * y))`` into one integer threshold per channel.

    Parameters
    ----------
    gamma, beta, mean, var : float scalar or array [C]
        The inference batch norm (running mean and variance).
    eps : float
        Batch-norm epsilon (scalar or [C]).
    scale : float scalar or array [C]
        The real value of one accumulator unit (e.g. alpha / n), any sign.
    y_range : (int, int), optional
        The accumulator values to be exact for; default ``(-2**53, 2**53)``.

    Returns
    -------
    SignThreshold
        Apply with ``apply_sign_threshold``; for every integer y in ``y_range`` it equals
        ``reference_sign`` (the float computation). Raises ``ValueError`` on NaN/inf,
        negative var/eps, mismatched channel counts or a bad ``y_range``.
    """
    p = _channel_params(gamma, beta, mean, var, eps, scale)
    y_range = _check_range(y_range)
    thresholds, flip, constant = _fold(lambda z: z >= 0, np.zeros((1, 1)), p, (1,), y_range)
    return SignThreshold(threshold=thresholds[:, 0], flip=flip, constant=constant,
                         y_range=y_range)


def fold_multilevel_thresholds(gamma, beta, mean, var, eps, scale, bits: int, *,
                               y_range=None) -> MultilevelThresholds:
    """Fold the k-bit activation ``round(n * clip(BN(scale * y), 0, 1))`` into thresholds.

    Parameters as ``fold_sign_threshold``; ``bits`` is k (1..16), ``n = 2**k - 1``. Returns
    ``MultilevelThresholds`` with n integer thresholds per channel such that the number of
    thresholds passed equals ``reference_multilevel`` (``quantize_k(clip(z, 0, 1)) * n``)
    for every integer y in ``y_range``; ties at ``n*z = i + 1/2`` round half to even.
    """
    bits = _check_bits(bits)
    p = _channel_params(gamma, beta, mean, var, eps, scale)
    y_range = _check_range(y_range)
    n = (1 << bits) - 1
    levels = np.arange(1, n + 1, dtype=np.int64)[None, :]           # [1, n]

    def passes_z(z):
        return _multilevel_code(z, bits) >= levels

    boundary_z = (levels - 0.5) / n
    thresholds, flip, constant = _fold(passes_z, boundary_z, p, (n,), y_range)
    return MultilevelThresholds(thresholds=thresholds, flip=flip, constant=constant,
                                bits=bits, y_range=y_range)


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
