"""Relative-index sparse storage: the gap - 1 convention, fillers at the boundary, round trip."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.sparse import (
    RelativeIndexed,
    break_even_density,
    decode_relative,
    encode_relative,
    entries_per_weight,
    sparse_bits_per_weight,
)


def one_hot(size, *positions, value=7):
    x = np.zeros(size, dtype=np.int64)
    x[list(positions)] = value
    return x


@pytest.mark.parametrize("b", [4, 5, 8])
def test_field_is_gap_minus_one(b):
    # Non-zeros at 0 and 3: gaps 1 and 3 (previous position of the first is -1).
    sparse = encode_relative(one_hot(10, 0, 3), b)
    np.testing.assert_array_equal(sparse.fields, [0, 2])
    np.testing.assert_array_equal(sparse.values, [7, 7])


@pytest.mark.parametrize("b", [4, 5, 8])
def test_gap_of_two_to_the_b_needs_no_filler(b):
    span = 1 << b
    # First entry at span - 1 (gap span), second at 2*span - 1 (gap span): fields 2^b - 1.
    sparse = encode_relative(one_hot(3 * span, span - 1, 2 * span - 1), b)
    np.testing.assert_array_equal(sparse.fields, [span - 1, span - 1])
    assert sparse.n_fillers == 0


@pytest.mark.parametrize("b", [4, 5, 8])
def test_gap_one_past_two_to_the_b_inserts_one_filler(b):
    span = 1 << b
    dense = one_hot(3 * span, 0, span + 1)  # second gap = span + 1
    sparse = encode_relative(dense, b)
    np.testing.assert_array_equal(sparse.fields, [0, span - 1, 0])
    np.testing.assert_array_equal(sparse.values, [7, 0, 7])
    assert sparse.n_fillers == 1 and sparse.n_entries == 3
    np.testing.assert_array_equal(decode_relative(sparse), dense)


def test_hand_worked_paper_style_example():
    # 4-bit fields: non-zeros at 2 and 36 of 38. Gap 3 -> field 2. Gap 34 > 16: fillers at
    # 18 and 34 (fields 15, 15), then the real entry at 36 (field 1).
    dense = one_hot(38, 2, 36)
    dense[36] = -5
    sparse = encode_relative(dense, 4)
    np.testing.assert_array_equal(sparse.fields, [2, 15, 15, 1])
    np.testing.assert_array_equal(sparse.values, [7, 0, 0, -5])
    assert sparse.bits(value_bits=5) == 4 * (5 + 4)


def test_all_zero_and_all_dense_extremes():
    zeros = np.zeros((3, 4), dtype=np.int64)
    sparse = encode_relative(zeros, 4)
    assert sparse.n_entries == 0
    np.testing.assert_array_equal(decode_relative(sparse), zeros)
    dense = np.arange(1, 13).reshape(3, 4)
    sparse = encode_relative(dense, 4)
    np.testing.assert_array_equal(sparse.fields, np.zeros(12))
    np.testing.assert_array_equal(decode_relative(sparse), dense)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=-3, max_value=3).map(lambda v: v if abs(v) == 3 else 0),
                max_size=600),
       st.sampled_from([1, 2, 4, 5, 8]))
def test_round_trip_any_pattern(values, b):
    dense = np.array(values, dtype=np.int64)
    sparse = encode_relative(dense, b)
    assert sparse.fields.min(initial=0) >= 0 and sparse.fields.max(initial=0) < 1 << b
    np.testing.assert_array_equal(decode_relative(sparse), dense)
    # Entries: each non-zero once, plus (gap - 1) // 2^b fillers for each gap.
    positions = np.flatnonzero(dense)
    gaps = np.diff(positions, prepend=-1)
    assert sparse.n_entries == positions.size + int(((gaps - 1) // (1 << b)).sum())


def test_round_trip_float_matrix_seeded():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((50, 40)).astype(np.float32)
    w[rng.random(w.shape) < 0.93] = 0
    sparse = encode_relative(w, 5)
    back = decode_relative(sparse)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, w)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="index_bits"):
        encode_relative([1, 0, 2], 0)
    bad = RelativeIndexed((4,), 2, np.array([3, 3]), np.array([1, 1]))  # lands on position 7
    with pytest.raises(ValueError, match="past the 4 elements"):
        decode_relative(bad)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        decode_relative(RelativeIndexed((9,), 2, np.array([4]), np.array([1])))
    with pytest.raises(ValueError, match="density"):
        entries_per_weight(0.0, 4)


@pytest.mark.parametrize("b", [4, 5, 8])
def test_expected_entries_match_random_masks(b):
    rng = np.random.default_rng(b)
    n = 200_000
    for density in (0.002, 0.02, 0.1, 0.5):
        mask = rng.random(n) < density
        measured = encode_relative(mask.astype(np.int8), b).n_entries / n
        predicted = float(entries_per_weight(mask.mean(), b))
        assert abs(measured - predicted) < 0.03 * predicted + 5 / n


def test_entries_per_weight_limits():
    for b in (4, 5, 8):
        assert entries_per_weight(1.0, b) == 1.0
        assert abs(entries_per_weight(1e-12, b) - 2.0 ** -b) < 1e-12


@pytest.mark.parametrize("b", [4, 5, 8])
@pytest.mark.parametrize("value_bits", [32, 5, 4])
def test_break_even_density_is_where_sizes_cross(b, value_bits):
    d = break_even_density(b, value_bits)
    assert 0 < d < 1
    assert sparse_bits_per_weight(d * 0.999, b, value_bits) < value_bits
    assert sparse_bits_per_weight(min(1.0, d * 1.001), b, value_bits) > value_bits
    # Fillers are negligible near break-even, so it sits at value / (value + index) bits.
    assert abs(d - value_bits / (value_bits + b)) < 1e-3
