"""Sparse storage with relative indices, and when it pays (Deep Compression section 2).

A pruned layer is stored as its non-zero entries in row-major (C) order, each with the
distance to the previous stored entry in ``index_bits`` bits instead of an absolute index.

Convention (pinned, tested at the boundary): the field stored is **gap - 1**, the number of
zeros skipped since the previous stored entry, where ``gap = position - previous position``
and the previous position of the first entry is -1. A field of ``b`` bits holds 0 to
``2**b - 1``, so gaps up to ``2**b`` need no filler; when the field would exceed
``2**b - 1`` (gap > ``2**b``) a *filler* entry of value zero is stored ``2**b`` positions on
(field ``2**b - 1``), as often as needed. This is the convention of the authors' demo; it
wastes no code on a gap of 0, which cannot occur. Trailing zeros need nothing: the shape is
stored.

With independent positions of density ``d``, a gap is geometric and the expected number of
fillers per non-zero is ``q / (1 - q)`` with ``q = (1 - d)**(2**b)``, so a layer of ``n``
weights takes about ``n * d / (1 - q)`` entries of ``value_bits + b`` bits. The dense form
takes ``n * value_bits``; ``break_even_density`` gives the density above which the sparse
form is the larger one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.quant import check_bits

__all__ = [
    "RelativeIndexed",
    "encode_relative",
    "decode_relative",
    "entries_per_weight",
    "sparse_bits_per_weight",
    "break_even_density",
]

# Index widths the encoder accepts (the paper uses 4, 5 and 8).
MAX_INDEX_BITS = 16


@dataclass(frozen=True)
class RelativeIndexed:
    """A tensor stored as (gap - 1, value) entries; fillers are entries of value zero.

    Attributes
    ----------
    shape : tuple of int
        Shape of the dense tensor.
    index_bits : int
        Width ``b`` of each stored index field.
    fields : np.ndarray
        int64, the stored ``gap - 1`` of each entry, each in ``[0, 2**b - 1]``.
    values : np.ndarray
        The value of each entry (the dense dtype); fillers hold zero.
    """

    shape: tuple
    index_bits: int
    fields: np.ndarray
    values: np.ndarray

    @property
    def n_entries(self) -> int:
        """Stored entries, fillers included."""
        return int(self.fields.size)

    @property
    def n_fillers(self) -> int:
        """Entries that only bridge a gap longer than ``2**index_bits``."""
        return int(np.count_nonzero(self.values == 0))

    def bits(self, value_bits: int) -> int:
        """Storage in bits when each value takes ``value_bits``: entries x (value + index)."""
        return self.n_entries * (value_bits + self.index_bits)


def encode_relative(dense, index_bits: int) -> RelativeIndexed:
    """Store the non-zeros of ``dense`` (row-major) with ``index_bits``-bit relative indices."""
    b = check_bits("index_bits", index_bits, 1, MAX_INDEX_BITS)
    arr = np.asarray(dense)
    flat = arr.ravel()
    positions = np.flatnonzero(flat)
    gaps = np.diff(positions, prepend=-1)
    span = 1 << b
    fillers = (gaps - 1) // span
    counts = fillers + 1
    last = np.cumsum(counts) - 1  # where each real entry lands among the entries
    fields = np.full(int(counts.sum()), span - 1, dtype=np.int64)
    fields[last] = gaps - 1 - fillers * span
    values = np.zeros(fields.size, dtype=flat.dtype)
    values[last] = flat[positions]
    return RelativeIndexed(tuple(arr.shape), b, fields, values)


def decode_relative(sparse: RelativeIndexed) -> np.ndarray:
    """The dense tensor of a ``RelativeIndexed`` (exact inverse of ``encode_relative``)."""
    fields = np.asarray(sparse.fields, dtype=np.int64)
    if fields.size and (fields.min() < 0 or fields.max() >= 1 << sparse.index_bits):
        raise ValueError(f"index fields must lie in [0, {(1 << sparse.index_bits) - 1}]")
    if fields.size != np.asarray(sparse.values).size:
        raise ValueError(f"{fields.size} index fields for {np.asarray(sparse.values).size} values")
    size = int(np.prod(sparse.shape, dtype=np.int64))
    positions = np.cumsum(fields + 1) - 1
    if positions.size and positions[-1] >= size:
        raise ValueError(f"relative indices reach position {int(positions[-1])}, "
                         f"past the {size} elements of shape {sparse.shape}")
    flat = np.zeros(size, dtype=np.asarray(sparse.values).dtype)
    flat[positions] = sparse.values
    return flat.reshape(sparse.shape)


def _check_density(density) -> np.ndarray:
    d = np.asarray(density, dtype=np.float64)
    if np.any(~np.isfinite(d)) or np.any(d <= 0) or np.any(d > 1):
        raise ValueError(f"density must lie in (0, 1], not {density!r}")
    return d


def entries_per_weight(density, index_bits: int) -> np.ndarray:
    """Expected stored entries per dense weight at ``density`` (independent positions).

    ``d / (1 - (1 - d)**(2**b))``: one entry per non-zero plus the expected fillers; it
    rises monotonically from ``1 / 2**b`` (all fillers) at d -> 0 to 1 at d = 1.
    """
    d = _check_density(density)
    b = check_bits("index_bits", index_bits, 1, MAX_INDEX_BITS)
    with np.errstate(divide="ignore"):  # d = 1: log1p(-1) = -inf, and 1 - q = 1 exactly
        return d / -np.expm1((1 << b) * np.log1p(-d))


def sparse_bits_per_weight(density, index_bits: int, value_bits: int) -> np.ndarray:
    """Expected bits per dense weight of the relative-index form: entries x (value + index)."""
    value_bits = check_bits("value_bits", value_bits, 1, 64)
    return entries_per_weight(density, index_bits) * (value_bits + index_bits)


def break_even_density(index_bits: int, value_bits: int) -> float:
    """The density at which the sparse form is as large as the dense one.

    Below it the sparse form is smaller; above it the index overhead makes it larger than
    storing every weight densely (``value_bits`` each). Found by bisection, which is exact
    to float precision because the sparse size rises monotonically with density.
    """
    value_bits = check_bits("value_bits", value_bits, 1, 64)
    lo, hi = 1e-12, 1.0
    if sparse_bits_per_weight(lo, index_bits, value_bits) >= value_bits:
        return 0.0  # never pays (only when 2**b is tiny against value + index)
    for _ in range(200):
        mid = (lo + hi) / 2
        if sparse_bits_per_weight(mid, index_bits, value_bits) < value_bits:
            lo = mid
        else:
            hi = mid
    return lo
