"""Canonical Huffman coding of integer symbols (Deep Compression's last stage).

Deep Compression (Han et al. 2016) Huffman-codes the cluster indices and the sparse index
gaps of each layer. A *canonical* code is fully described by the code length of each
symbol: symbols are ordered by (length, value) and codes are assigned by counting, so the
table that must be stored with the bit stream is only the list of (symbol, length) pairs.

Conventions pinned here:

- An empty input encodes to an empty stream with an empty table.
- An input with a single distinct symbol gets a 1-bit code (``0``), so the stream still
  carries the count explicitly in its length (one bit per value).
- Ties between equal frequencies are broken by the symbol value (smaller first), so the
  code is a function of the input only.
- The table is stored as ``n_symbols`` (32 bits), then per symbol its value in
  ``symbol_bits`` and its code length in ``length_bits`` (enough bits for the longest code);
  ``table_bits`` counts exactly that.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

__all__ = ["HuffmanStream", "code_lengths", "canonical_codes", "encode", "decode"]

# The stream keeps its header fields in fixed 32-bit words in the accounting.
_HEADER_BITS = 32


@dataclass(frozen=True)
class HuffmanStream:
    """A Huffman-coded sequence of integers and the canonical table that decodes it.

    Attributes
    ----------
    symbols : np.ndarray
        int64, the distinct symbols in canonical order (by code length, then value).
    lengths : np.ndarray
        int64, the code length of each entry of ``symbols`` (non-decreasing).
    data : np.ndarray
        uint8, the bit stream packed MSB first (``np.packbits``), zero-padded to a byte.
    n_bits : int
        Number of meaningful bits in ``data``.
    count : int
        Number of values encoded.
    """

    symbols: np.ndarray
    lengths: np.ndarray
    data: np.ndarray
    n_bits: int
    count: int

    def table_bits(self, symbol_bits: int) -> int:
        """Bits to store the canonical table when a symbol takes ``symbol_bits`` bits."""
        if not len(self.symbols):
            return _HEADER_BITS
        length_bits = int(self.lengths.max()).bit_length()
        return _HEADER_BITS + len(self.symbols) * (symbol_bits + length_bits)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The stream as named integer arrays, for ``np.savez`` (read back by ``from_arrays``)."""
        return {f"{prefix}symbols": self.symbols, f"{prefix}lengths": self.lengths,
                f"{prefix}data": self.data,
                f"{prefix}sizes": np.array([self.n_bits, self.count], dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "HuffmanStream":
        """Rebuild a stream saved by ``to_arrays``."""
        n_bits, count = (int(x) for x in arrays[f"{prefix}sizes"])
        return cls(np.asarray(arrays[f"{prefix}symbols"], dtype=np.int64),
                   np.asarray(arrays[f"{prefix}lengths"], dtype=np.int64),
                   np.asarray(arrays[f"{prefix}data"], dtype=np.uint8), n_bits, count)


def _as_int_array(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"Huffman coding takes integers, not {arr.dtype} values")
    return arr.astype(np.int64).ravel()


def code_lengths(values) -> dict[int, int]:
    """Huffman code length of each distinct symbol of ``values`` (a minimum-redundancy code).

    One distinct symbol gets length 1; an empty input gives an empty dict.
    """
    arr = _as_int_array(values)
    symbols, counts = np.unique(arr, return_counts=True)
    if len(symbols) == 0:
        return {}
    if len(symbols) == 1:
        return {int(symbols[0]): 1}
    # Heap entries: (frequency, smallest symbol in the subtree, tie counter, leaves).
    heap = [(int(c), int(s), i, [int(s)]) for i, (s, c) in enumerate(zip(symbols, counts))]
    heapq.heapify(heap)
    depth = {int(s): 0 for s in symbols}
    tie = len(heap)
    while len(heap) > 1:
        f1, s1, _, leaves1 = heapq.heappop(heap)
        f2, s2, _, leaves2 = heapq.heappop(heap)
        for s in leaves1 + leaves2:
            depth[s] += 1
        heapq.heappush(heap, (f1 + f2, min(s1, s2), tie, leaves1 + leaves2))
        tie += 1
    return depth


def canonical_codes(lengths: dict[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical codes for ``{symbol: length}``: (symbols, lengths, codes) in canonical order.

    Symbols are sorted by (length, value); the first code is all zeros and each next code is
    the previous plus one, shifted left when the length grows (DEFLATE's construction).
    """
    order = sorted(lengths.items(), key=lambda item: (item[1], item[0]))
    symbols = np.array([s for s, _ in order], dtype=np.int64)
    lens = np.array([n for _, n in order], dtype=np.int64)
    codes = np.zeros(len(order), dtype=np.uint64)
    code, prev_len = 0, int(lens[0]) if len(lens) else 0
    for i, n in enumerate(lens):
        code <<= int(n) - prev_len
        codes[i] = code
        code += 1
        prev_len = int(n)
    return symbols, lens, codes


def encode(values) -> HuffmanStream:
    """Huffman-code a sequence of integers; ``decode(encode(x))`` gives ``x`` back (flattened)."""
    arr = _as_int_array(values)
    symbols, lens, codes = canonical_codes(code_lengths(arr))
    if arr.size == 0:
        return HuffmanStream(symbols, lens, np.zeros(0, dtype=np.uint8), 0, 0)
    max_len = int(lens.max())
    if max_len > 64:  # needs more than Fibonacci(65) values: cannot happen in memory
        raise ValueError(f"a Huffman code of {max_len} bits is longer than 64")
    by_value = np.argsort(symbols)
    where = by_value[np.searchsorted(symbols, arr, sorter=by_value)]
    value_len, value_code = lens[where], codes[where]
    # Bit j (from the MSB) of each value's code, in a matrix masked to the code's length.
    shifts = (value_len[:, None] - 1 - np.arange(max_len)[None, :])
    valid = shifts >= 0
    bits = (value_code[:, None] >> np.where(valid, shifts, 0).astype(np.uint64)) & np.uint64(1)
    stream = bits[valid].astype(np.uint8)
    return HuffmanStream(symbols, lens, np.packbits(stream), int(stream.size), int(arr.size))


def decode(stream: HuffmanStream) -> np.ndarray:
    """Decode a ``HuffmanStream`` into its int64 values.

    Raises ``ValueError`` when the bits do not decode to exactly ``count`` values.
    """
    if stream.count == 0:
        if stream.n_bits:
            raise ValueError(f"an empty Huffman stream cannot carry {stream.n_bits} bits")
        return np.zeros(0, dtype=np.int64)
    if not len(stream.symbols):
        raise ValueError("a Huffman stream of values needs a non-empty table")
    bits = np.unpackbits(stream.data)[:stream.n_bits].tolist()
    lens = stream.lengths.tolist()
    # Canonical decoding: per length, the first code and the index of its first symbol.
    first_code, first_index, count_at = {}, {}, {}
    code, prev = 0, lens[0]
    for i, n in enumerate(lens):
        code <<= n - prev
        if n not in first_code:
            first_code[n], first_index[n], count_at[n] = code, i, 0
        count_at[n] += 1
        code += 1
        prev = n
    symbols = stream.symbols.tolist()
    out = []
    code = length = 0
    max_len = lens[-1]
    for bit in bits:
        code = (code << 1) | bit
        length += 1
        if length in first_code and 0 <= code - first_code[length] < count_at[length]:
            out.append(symbols[first_index[length] + code - first_code[length]])
            code = length = 0
        elif length >= max_len:
            raise ValueError("corrupt Huffman stream: a code matches no symbol")
    if length or len(out) != stream.count:
        raise ValueError(f"corrupt Huffman stream: decoded {len(out)} values, "
                         f"expected {stream.count}")
    return np.array(out, dtype=np.int64)
