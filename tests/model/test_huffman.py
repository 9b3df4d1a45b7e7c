"""Canonical Huffman coding: exact round trip for any input, optimal lengths, canonical form."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.huffman import HuffmanStream, canonical_codes, code_lengths, decode, encode


def assert_round_trip(values):
    stream = encode(values)
    decoded = decode(stream)
    np.testing.assert_array_equal(decoded, np.asarray(values, dtype=np.int64).ravel())
    assert decoded.dtype == np.int64
    return stream


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(2**62), max_value=2**62), max_size=300))
def test_round_trip_any_integers(values):
    assert_round_trip(values)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=400))
def test_round_trip_small_alphabet_and_kraft_equality(values):
    stream = assert_round_trip(values)
    lengths = code_lengths(values)
    if len(lengths) > 1:  # a Huffman code is complete: sum 2^-l == 1 exactly
        assert sum(2.0 ** -n for n in lengths.values()) == 1.0
    _, counts = np.unique(values, return_counts=True)
    assert stream.n_bits == sum(lengths[s] * c for s, c in zip(np.unique(values), counts))


def test_empty_input():
    stream = assert_round_trip([])
    assert stream.n_bits == 0 and stream.count == 0 and len(stream.symbols) == 0
    assert stream.table_bits(8) == 32  # only the symbol count


@pytest.mark.parametrize("n", [1, 2, 9, 1000])
def test_one_symbol_only_takes_one_bit_each(n):
    stream = assert_round_trip([-3] * n)
    assert stream.n_bits == n
    np.testing.assert_array_equal(stream.lengths, [1])


def test_lengths_match_a_hand_worked_code():
    # Frequencies a=5, b=2, c=1, d=1: merge c+d (2), then b+(cd) (4), then a+(bcd):
    # lengths a=1, b=2, c=3, d=3; canonical codes 0, 10, 110, 111.
    values = [10] * 5 + [20] * 2 + [30, 40]
    assert code_lengths(values) == {10: 1, 20: 2, 30: 3, 40: 3}
    symbols, lengths, codes = canonical_codes(code_lengths(values))
    np.testing.assert_array_equal(symbols, [10, 20, 30, 40])
    np.testing.assert_array_equal(codes, [0b0, 0b10, 0b110, 0b111])
    stream = assert_round_trip([20, 10, 40, 30])
    assert stream.n_bits == 4 * 2  # uniform over four symbols: every code has 2 bits
    stream = assert_round_trip(values)
    # 10 10 10 10 10 20 20 30 40 -> 0 0 0 0 0 10 10 110 111
    bits = np.unpackbits(stream.data)[:stream.n_bits]
    np.testing.assert_array_equal(bits, [0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1])


def test_ties_broken_by_symbol_value():
    # Four equal frequencies: every code has two bits; canonical order is by value.
    symbols, lengths, codes = canonical_codes(code_lengths([7, 3, 5, 1]))
    np.testing.assert_array_equal(symbols, [1, 3, 5, 7])
    np.testing.assert_array_equal(codes, [0, 1, 2, 3])


def test_skewed_distribution_beats_fixed_width():
    rng = np.random.default_rng(6)
    values = rng.geometric(0.5, size=5000)  # entropy about 2 bits, alphabet about 12 symbols
    stream = assert_round_trip(values)
    fixed = int(np.ceil(np.log2(len(np.unique(values))))) * values.size
    assert stream.n_bits < 0.6 * fixed


def test_fibonacci_frequencies_give_the_deepest_code():
    counts = [1, 1, 2, 3, 5, 8, 13, 21]
    values = np.repeat(np.arange(8), counts)
    lengths = code_lengths(values)
    assert sorted(lengths.values()) == [1, 2, 3, 4, 5, 6, 7, 7]
    assert_round_trip(values)


def test_saved_arrays_round_trip():
    values = np.random.default_rng(1).integers(0, 16, size=777)
    stream = encode(values)
    again = HuffmanStream.from_arrays(stream.to_arrays("x_"), "x_")
    np.testing.assert_array_equal(decode(again), values)


def test_table_bits_count_symbols_and_lengths():
    stream = encode([0, 0, 0, 1, 2, 2])  # lengths 1, 2, 2: max length 2 needs 2 bits
    assert stream.table_bits(symbol_bits=5) == 32 + 3 * (5 + 2)


def test_corrupt_stream_is_refused():
    stream = encode([1, 2, 2, 3, 3, 3])
    truncated = HuffmanStream(stream.symbols, stream.lengths, stream.data, stream.n_bits - 1,
                              stream.count)
    with pytest.raises(ValueError, match="corrupt"):
        decode(truncated)
    too_many = HuffmanStream(stream.symbols, stream.lengths, stream.data, stream.n_bits,
                             stream.count + 1)
    with pytest.raises(ValueError, match="corrupt"):
        decode(too_many)


def test_float_input_is_refused():
    with pytest.raises(ValueError, match="integers"):
        encode([0.5, 1.0])
