"""A convolution with few input channels as one with more: filter columns split (NumPy only).

The row-stationary array puts channels x filter rows down the PE rows, so one input channel
and a 5-row filter use 5 PE rows of 12. Splitting the ``S`` filter columns into ``k`` parts
of ``S' = ceil(S / k)`` taps, each part with its own copy of the input shifted by ``j * S'``
columns, gives ``C * k`` channels of ``R x S'`` filters: ``C * k * R`` PE rows, ``S'`` slots
per output instead of ``S``. With ``xp`` the input padded by ``P`` (explicitly; zeros also
beyond its right edge)::

    x'[c * k + j, h, w] = xp[c, h, w + j * S']
    w'[m, c * k + j, r, t] = w[m, c, r, j * S' + t]      (a level-0 weight where j * S' + t >= S)
    conv2d(x, w, stride=U, padding=P) == conv2d(x', w', stride=U, padding=0)

The split needs a weight code of level 0 when ``k`` does not divide ``S`` (``ternary``,
``pow2``, ``int``, or a codebook with a 0 level) and activation code 0 to mean 0 when
``P > 0`` (every scheme but ``xnor``, whose padding is excluded, not zero).
Model: ``model.ops.conv2d`` (both sides).
"""

from __future__ import annotations

import numpy as np

from model.layer_file import Layer
from model.ops import conv_output_size
from model.quant import weight_code_range, weight_level

__all__ = ["zero_weight_code", "split_filter_columns", "split_columns_layer"]


def zero_weight_code(scheme: str, w_bits: int | None = None, codebook=None) -> int | None:
    """The weight code whose level is 0 (with ``codebook``: its index of 0), or None."""
    if codebook is not None:
        zeros = np.flatnonzero(np.asarray(codebook) == 0)
        return int(zeros[0]) if zeros.size else None
    if scheme == "xnor":
        return None
    lo, hi = weight_code_range(scheme, w_bits)
    codes = np.arange(lo, hi + 1)
    zeros = codes[weight_level(scheme, codes, w_bits) == 0]
    return int(zeros[0]) if zeros.size else None


def split_filter_columns(inputs, weights, k: int, *, scheme: str, stride: int = 1,
                         padding: int = 0, w_bits: int | None = None,
                         codebook=None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs [C, H, W] and weights [M, C, R, S] as [C * k, H + 2P, W'] and
    [M, C * k, R, ceil(S / k)] for a convolution with stride ``stride`` and no padding.

    Raises ``ValueError`` naming the value: ``k`` outside [1, S], a split that needs a
    level-0 weight the scheme lacks, padding for ``xnor``.
    """
    x, w = np.asarray(inputs), np.asarray(weights)
    if x.ndim != 3 or w.ndim != 4 or x.shape[0] != w.shape[1]:
        raise ValueError(f"need inputs [C, H, W] and weights [M, C, R, S] with one C, not "
                         f"{x.shape} and {w.shape}")
    M, C, R, S = w.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= S:
        raise ValueError(f"the filter columns split into k parts; allowed: 1 to {S}, not {k!r}")
    s2 = -(-S // k)
    zero = zero_weight_code(scheme, w_bits, codebook)
    if k * s2 != S and zero is None:
        raise ValueError(f"splitting {S} filter columns into {k} parts needs a weight of "
                         f"level 0, which scheme {scheme!r} lacks; allowed k: divisors of {S}")
    if padding and scheme == "xnor":
        raise ValueError("xnor padding is excluded, not zero: split a padded xnor layer "
                         "only with padding 0")
    F = conv_output_size(x.shape[2], S, stride, padding)
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding + k * s2)))
    width = (F - 1) * stride + s2
    x2 = np.stack([xp[:, :, j * s2:j * s2 + width] for j in range(k)], axis=1)
    w2 = np.pad(w, ((0, 0), (0, 0), (0, 0), (0, k * s2 - S)),
                constant_values=0 if zero is None else zero)
    w2 = w2.reshape(M, C, R, k, s2).transpose(0, 1, 3, 2, 4)
    return (np.ascontiguousarray(x2.reshape(C * k, *x2.shape[2:])),
            np.ascontiguousarray(w2.reshape(M, C * k, R, s2)))


def split_columns_layer(layer: Layer, k: int) -> Layer:
    """``layer`` with its filter columns split into ``k`` parts (same outputs)."""
    x, w = split_filter_columns(layer.inputs, layer.weights, k, scheme=layer.scheme,
                                stride=layer.stride, padding=layer.padding,
                                w_bits=layer.w_bits, codebook=layer.codebook)
    return Layer(layer.scheme, w, x, layer.stride, 0, a_bits=layer.a_bits,
                 w_bits=layer.w_bits, codebook=layer.codebook)
