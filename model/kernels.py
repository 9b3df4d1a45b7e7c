"""Repeated binary kernels (BinaryNet): distinct kernels and filter rows, and what reuse saves.

With +/-1 weights, two filters that share a kernel -- or a kernel and its negation -- give
the same partial sums up to sign, so the work of one can be reused for the other. BinaryNet
(Courbariaux et al. 2016) finds about 42 % of the 3x3 kernels of a trained CIFAR-10 network
unique. This module counts, exactly and from the weights alone:

- ``kernel_stats``: distinct ``R x S`` kernels per input channel (BinaryNet's measure; for
  ``xnor`` every lane is its own +/-1 channel), as they are and up to sign;
- ``row_stats``: distinct filter rows up to sign -- the unit of the row-stationary array, a
  PE holding one filter row: ``S`` weights for ``binary``, ``S`` packed words of ``lanes``
  +/-1 weights for ``xnor`` (a word and its complement give results equal up to sign);
- ``reuse_counts``: the MACs of a layer when each distinct row is computed once and its
  partial sums reused (negated where needed) by every filter row equal to it up to sign,
  and the additions that reuse costs (each reusing row adds the shared partial sum into its
  own output row: one addition per output column).

Rows are compared as bit patterns (bit 1 = weight -1, ``model.quant``'s encoding): a binary
weight code is one bit, an ``xnor`` word ``lanes`` bits. Up to sign, a row is replaced by
its complement when its first bit is 1 (so a row and its negation meet).

Two reuse scopes (``scope``):

``input_row``
    Every distinct row applied to one input row is computed once: all filters and all filter
    rows ``r`` whose output row exists (the issue's mapping; on the array it needs the PEs
    of a diagonal, which share an input row, to share their partial sums).
``pe``
    Reuse only among the filters of one filter row ``r`` and channel ``c`` (what one PE of a
    row-stationary column sees: it holds row ``r``, so nothing moves between PE rows).

Counts assume stride and padding as ``model.ops.conv2d``; taps that fall in the padding are
not MACs (as ``sim.cycle_model`` counts them). ``reuse_conv2d`` is the golden model of the
reuse mapping itself: it computes the layer that way, counting what it does, and its
outputs equal ``model.ops.conv2d``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.ops import conv_output_size, popcount
from model.quant import activation_code_range, check_codes

__all__ = ["BINARY_SCHEMES", "SCOPES", "row_bits", "canonical_up_to_sign", "KernelStats",
           "kernel_stats", "RowStats", "row_stats", "ReuseCounts", "reuse_counts",
           "unpacked_bits", "reuse_conv2d"]

#: The schemes whose weights are +/-1 (``binary``: one bit per weight; ``xnor``: packed).
BINARY_SCHEMES = ("binary", "xnor")

#: Reuse scopes of ``reuse_counts``.
SCOPES = ("input_row", "pe")


def _check(scheme: str, weights) -> np.ndarray:
    if scheme not in BINARY_SCHEMES:
        raise ValueError(f"scheme {scheme!r} has no +/-1 weights; allowed: "
                         f"{', '.join(BINARY_SCHEMES)}")
    w = np.asarray(weights)
    if w.ndim != 4 or w.size == 0:
        raise ValueError(f"weights must be a non-empty [M, C, R, S] array, not {w.shape}")
    return w.astype(np.uint64)


def row_bits(scheme: str, weights, lanes: int = 1) -> tuple[np.ndarray, int]:
    """Weight codes as bit patterns ``[M, C, R, S]`` (uint64) and the bits per element.

    ``binary`` codes are one bit (1 = -1); ``xnor`` words are ``lanes`` bits.
    """
    w = _check(scheme, weights)
    bits = 1 if scheme == "binary" else int(lanes)
    if not 1 <= bits <= 64:
        raise ValueError(f"lanes must be in [1, 64], not {lanes!r}")
    if bits < 64 and np.any(w >> np.uint64(bits)):
        raise ValueError(f"{scheme} weight codes exceed {bits} bit(s)")
    return w, bits


def unpacked_bits(scheme: str, weights, lanes: int = 1) -> np.ndarray:
    """One bit per +/-1 weight, ``[M, C * lanes, R, S]`` (``xnor`` words unpacked by lane)."""
    w, bits = row_bits(scheme, weights, lanes)
    if bits == 1:
        return w
    lane = (w[..., None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)  # [M,Cw,R,S,L]
    m, cw, r, s, _ = lane.shape
    return np.moveaxis(lane, -1, 2).reshape(m, cw * bits, r, s)


def canonical_up_to_sign(rows: np.ndarray, bits: int) -> np.ndarray:
    """Each row ``[..., K]`` of ``bits``-bit elements, or its complement when its first bit
    is 1: a row and its negation get the same canonical form."""
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    rows = np.asarray(rows, dtype=np.uint64)
    flip = (rows[..., :1] & np.uint64(1)).astype(bool)
    return np.where(flip, rows ^ mask, rows)


def _ids(rows: np.ndarray) -> np.ndarray:
    """An integer id per row of ``rows`` [N, K]: equal rows, equal ids."""
    return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)


@dataclass(frozen=True)
class KernelStats:
    """Distinct ``R x S`` kernels over the filters, per input channel, summed over channels."""

    kernels: int            # M * C (+/-1 channels)
    distinct: int
    distinct_up_to_sign: int

    @property
    def unique_share(self) -> float:
        return self.distinct / self.kernels


def kernel_stats(scheme: str, weights, lanes: int = 1) -> KernelStats:
    """BinaryNet's measure: for each +/-1 input channel, how many of the ``M`` kernels
    ``R x S`` are distinct (and distinct up to sign); summed over the channels."""
    bits = unpacked_bits(scheme, weights, lanes)
    m, c, r, s = bits.shape
    flat = bits.transpose(1, 0, 2, 3).reshape(c, m, r * s)
    distinct = sum(len(np.unique(flat[i], axis=0)) for i in range(c))
    canon = canonical_up_to_sign(flat, 1)
    up_to_sign = sum(len(np.unique(canon[i], axis=0)) for i in range(c))
    return KernelStats(m * c, distinct, up_to_sign)


@dataclass(frozen=True)
class RowStats:
    """Filter rows (the array's unit) and how many are distinct up to sign."""

    rows: int                # M * C * R rows of S elements
    element_bits: int        # 1 for binary, lanes for xnor
    per_channel: int         # sum over channels of the distinct rows of that channel
    per_pe: int              # sum over (channel, r) of the distinct rows among the filters

    @property
    def per_channel_share(self) -> float:
        return self.per_channel / self.rows


def row_stats(scheme: str, weights, lanes: int = 1) -> RowStats:
    """Distinct filter rows up to sign per channel (over filters and rows) and per PE."""
    w, bits = row_bits(scheme, weights, lanes)
    m, c, r, s = w.shape
    canon = canonical_up_to_sign(w, bits)                          # [M, C, R, S]
    per_channel = sum(len(np.unique(canon[:, i].reshape(m * r, s), axis=0)) for i in range(c))
    per_pe = sum(len(np.unique(canon[:, i, j], axis=0)) for i in range(c) for j in range(r))
    return RowStats(m * c * r, bits, per_channel, per_pe)


@dataclass(frozen=True)
class ReuseCounts:
    """MACs of a layer without and with reuse, and the additions reuse costs.

    ``macs`` counts every product of the plain layer (``xnor``: word products, one per MAC
    slot); ``products`` those left when each distinct row is computed once per input row
    (``scope``); ``adds`` the partial-sum additions of the reusing rows. ``saved`` is the
    share of the MACs reuse avoids, ``net_saved`` the share of MAC slots saved once each
    addition takes a slot too.
    """

    scope: str
    macs: int
    products: int
    adds: int

    @property
    def saved(self) -> float:
        return 1.0 - self.products / self.macs

    @property
    def net_saved(self) -> float:
        return 1.0 - (self.products + self.adds) / self.macs


def _valid(size: int, kernel: int, stride: int, padding: int, out: int) -> np.ndarray:
    """For each kernel offset, how many of the ``out`` outputs see an input position."""
    offsets = np.arange(kernel)[:, None] + stride * np.arange(out)[None, :] - padding
    return ((offsets >= 0) & (offsets < size)).sum(axis=1)


def reuse_counts(scheme: str, weights, *, height: int, width: int, stride: int = 1,
                 padding: int = 0, lanes: int = 1, scope: str = "input_row") -> ReuseCounts:
    """Exact MACs, products and reuse additions of a binary layer on ``height x width`` inputs.

    ``input_row``: for every input row ``h`` of channel ``c``, the filter rows applied to it
    are ``(m, r)`` with ``(h + padding - r) / stride`` an output row; each distinct one (up
    to sign) costs its valid taps once; every row applied costs one addition per output
    column that has a valid tap. ``pe``: the same with distinct rows counted per
    ``(c, r)`` over the filters only.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown reuse scope {scope!r}; allowed: {', '.join(SCOPES)}")
    w, bits = row_bits(scheme, weights, lanes)
    m, c, r, s = w.shape
    e = conv_output_size(height, r, stride, padding)
    f = conv_output_size(width, s, stride, padding)
    cols = np.arange(s)[:, None] + stride * np.arange(f)[None, :] - padding
    inside = (cols >= 0) & (cols < width)
    taps = int(inside.sum())                     # valid taps of one row over the output row
    columns = int(inside.any(axis=0).sum())      # output columns with a valid tap
    canon = canonical_up_to_sign(w, bits)
    macs = m * c * taps * int(_valid(height, r, stride, padding, e).sum())
    products = adds = 0
    for ch in range(c):
        ids = _ids(canon[:, ch].reshape(m * r, s)).reshape(m, r)      # [M, R]
        if scope == "pe":
            for j, count in enumerate(_valid(height, r, stride, padding, e)):
                distinct = len(np.unique(ids[:, j]))
                products += distinct * taps * int(count)
                adds += m * columns * int(count)
            continue
        for h in range(height):
            rows = [j for j in range(r) if (h + padding - j) % stride == 0
                    and 0 <= (h + padding - j) // stride < e]
            if rows:
                products += len(np.unique(ids[:, rows])) * taps
                adds += m * len(rows) * columns
    return ReuseCounts(scope, macs, products, adds)


def _row_products(scheme: str, a_row: np.ndarray, w_row: np.ndarray, bits: int, stride: int,
                  padding: int, out: int) -> tuple[np.ndarray, int]:
    """1-D convolution of one input row with one filter row (codes): ``[out]`` partial sums
    and the number of products (taps inside the row)."""
    width = len(a_row)
    psum = np.zeros(out, dtype=np.int64)
    count = 0
    for s, w in enumerate(w_row):
        cols = s + stride * np.arange(out) - padding
        ok = (cols >= 0) & (cols < width)
        a = a_row[cols[ok]]
        if scheme == "binary":
            psum[ok] += (1 - 2 * int(w)) * a
        else:
            psum[ok] += bits - 2 * popcount(a.astype(np.uint64) ^ np.uint64(w))
        count += int(ok.sum())
    return psum, count


def reuse_conv2d(scheme: str, inputs, weights, *, stride: int = 1, padding: int = 0,
                 a_bits: int, lanes: int = 1, scope: str = "input_row"):
    """The layer computed by the reuse mapping: ``(outputs [M, E, F], products, adds)``.

    For each input row (``scope="input_row"``; per ``(c, r)`` with ``"pe"``) every distinct
    filter row up to sign is convolved with it once; each filter row then adds that partial
    sum, negated if it is the complement, into its output row. The outputs equal
    ``model.ops.conv2d``'s; ``products`` and ``adds`` equal ``reuse_counts``. ``binary``
    inputs are signed ``a_bits`` codes, ``xnor`` inputs words of ``lanes`` lanes.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown reuse scope {scope!r}; allowed: {', '.join(SCOPES)}")
    w, bits = row_bits(scheme, weights, lanes)
    a = np.asarray(inputs)
    if scheme == "binary":
        a = check_codes("binary activation codes", a, *activation_code_range("binary", a_bits))
    else:
        a = check_codes("xnor activation words", a, 0, (1 << bits) - 1)
    m, c, r, s = w.shape
    if a.ndim != 3 or a.shape[0] != c:
        raise ValueError(f"inputs must be [{c}, H, W], not {a.shape}")
    _, height, width = a.shape
    e = conv_output_size(height, r, stride, padding)
    f = conv_output_size(width, s, stride, padding)
    canon = canonical_up_to_sign(w, bits)
    sign = np.where((w[..., 0] & np.uint64(1)).astype(bool), -1, 1)         # [M, C, R]
    out = np.zeros((m, e, f), dtype=np.int64)
    products = adds = 0
    for ch in range(c):
        ids = _ids(canon[:, ch].reshape(m * r, s)).reshape(m, r)
        for h in range(height):
            rows = [j for j in range(r) if (h + padding - j) % stride == 0
                    and 0 <= (h + padding - j) // stride < e]
            groups = [[j] for j in rows] if scope == "pe" else [rows]
            for group in groups:
                shared = {}
                for j in group:
                    for mm in range(m):
                        key = ids[mm, j]
                        if key not in shared:
                            shared[key], count = _row_products(
                                scheme, a[ch, h], canon[mm, ch, j], bits, stride, padding, f)
                            products += count
                        row = (h + padding - j) // stride
                        out[mm, row] += sign[mm, ch, j] * shared[key]
                        adds += int(np.count_nonzero(_columns_with_taps(width, s, stride,
                                                                        padding, f)))
    return out, products, adds


def _columns_with_taps(width: int, kernel: int, stride: int, padding: int,
                       out: int) -> np.ndarray:
    cols = np.arange(kernel)[:, None] + stride * np.arange(out)[None, :] - padding
    return ((cols >= 0) & (cols < width)).any(axis=0)
