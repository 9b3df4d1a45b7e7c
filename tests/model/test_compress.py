"""Deep Compression model side: pruning masks, weight sharing, storage accounting."""

import numpy as np
import pytest

from model.compress import (
    FLOAT_BITS,
    centroid_gradients,
    compress_layer,
    integer_codebook,
    prune_by_std,
    prune_to_sparsity,
    share_weights,
    sharing_rate,
    tie_gradients,
)
from model.optim import Adam


# --- pruning ----------------------------------------------------------------------------

def test_std_threshold_hand_worked_with_tie():
    w = np.array([1.0, -1.0, 7.0, -7.0])  # mean 0, variance 25, std 5 exactly
    np.testing.assert_array_equal(prune_by_std(w, 1.0), [False, False, True, True])
    np.testing.assert_array_equal(prune_by_std(w, 0.2), [False, False, True, True])  # tie: |1| == 1
    np.testing.assert_array_equal(prune_by_std(w, 0.19), [True, True, True, True])
    np.testing.assert_array_equal(prune_by_std(w, 1.4), [False, False, False, False])  # 7 == 7


def test_std_threshold_matches_definition_seeded():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((30, 20))
    mask = prune_by_std(w, 0.8)
    np.testing.assert_array_equal(mask, np.abs(w) > 0.8 * w.std())
    assert mask.shape == w.shape


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.9, 1.0])
def test_target_sparsity_prunes_exactly_the_smallest(sparsity):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 25))
    mask = prune_to_sparsity(w, sparsity)
    n_pruned = round(sparsity * w.size)
    assert np.count_nonzero(~mask) == n_pruned
    if 0 < n_pruned < w.size:
        assert np.abs(w[mask]).min() > np.abs(w[~mask]).max()


def test_target_sparsity_breaks_ties_by_position():
    w = np.array([2.0, 1.0, -1.0, 1.0, 3.0])
    np.testing.assert_array_equal(prune_to_sparsity(w, 0.4), [True, False, False, True, True])


def test_bad_pruning_parameters_are_refused():
    with pytest.raises(ValueError, match="quality"):
        prune_by_std(np.ones(3), -1.0)
    with pytest.raises(ValueError, match="sparsity"):
        prune_to_sparsity(np.ones(3), 1.5)
    with pytest.raises(ValueError, match="NaN"):
        prune_by_std(np.array([1.0, np.nan]), 1.0)


# --- weight sharing ---------------------------------------------------------------------

def test_tight_groups_are_found_exactly():
    # Three tight groups and three centroids (2 bits): linear init over [min, max] puts one
    # centroid in each group, and Lloyd's iteration lands on the group means.
    groups = [np.full(5, -0.5) + np.arange(5) * 1e-3, np.full(4, 0.1), np.full(6, 0.9)]
    w = np.concatenate(groups + [np.zeros(7)])
    shared = share_weights(w, 2)
    assert shared.codebook[0] == 0.0
    np.testing.assert_allclose(shared.codebook[1:], [g.mean() for g in groups], rtol=1e-12)
    np.testing.assert_array_equal(shared.indices, [1] * 5 + [2] * 4 + [3] * 6 + [0] * 7)


def test_zeros_keep_code_zero_and_every_weight_sits_at_its_nearest_centroid():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((40, 30))
    w *= prune_by_std(w, 0.7)
    shared = share_weights(w, 4)
    assert shared.codebook.shape == (16,) and shared.codebook[0] == 0.0
    np.testing.assert_array_equal(shared.indices == 0, w == 0)
    used = shared.codebook[1:]
    assert np.all(np.diff(used) > 0)  # codes numbered by centroid value
    nz = w != 0
    nearest = np.argmin(np.abs(w[nz][:, None] - used[None, :]), axis=1) + 1
    np.testing.assert_array_equal(shared.indices[nz], nearest)  # a k-means fixed point
    for code in range(1, 16):  # and each centroid is the mean of its cluster
        np.testing.assert_allclose(used[code - 1], w[shared.indices == code].mean(), rtol=1e-9)


def test_sharing_is_deterministic():
    rng = np.random.default_rng(3)
    w = rng.standard_normal(2000)
    a, b = share_weights(w, 5), share_weights(w.copy(), 5)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.codebook, b.codebook)


def test_fewer_distinct_weights_than_centroids_is_exact():
    w = np.array([[0.0, 0.5, -0.25], [0.5, 0.0, 0.75]])
    shared = share_weights(w, 3)
    np.testing.assert_array_equal(shared.weights(), w)
    np.testing.assert_array_equal(shared.codebook, [0, -0.25, 0.5, 0.75, 0, 0, 0, 0])


def test_all_zero_layer_shares_to_zero():
    shared = share_weights(np.zeros((3, 3)), 2)
    np.testing.assert_array_equal(shared.indices, np.zeros((3, 3)))
    np.testing.assert_array_equal(shared.codebook, np.zeros(4))


@pytest.mark.parametrize("bits", [1, 9])
def test_share_bits_outside_2_to_8_are_refused(bits):
    with pytest.raises(ValueError, match=r"\[2, 8\]"):
        share_weights(np.ones(4), bits)


def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    idx = np.array([[0, 1, 2], [2, 1, 3]])
    grad = np.array([[5.0, 0.5, 1.0], [2.0, -0.25, 4.0]])
    np.testing.assert_array_equal(centroid_gradients(idx, grad, 4), [0.0, 0.25, 3.0, 4.0])
    np.testing.assert_array_equal(tie_gradients(idx, grad),
                                  [[0.0, 0.25, 3.0], [3.0, 0.25, 4.0]])


def test_tied_gradients_under_adam_keep_clusters_tied_and_zeros_zero():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((20, 10))
    w *= prune_to_sparsity(w, 0.6)
    shared = share_weights(w, 3)
    weights = shared.weights()
    centroids = shared.codebook.copy()
    opt_w, opt_c = Adam(), Adam()
    for _ in range(5):
        grad = rng.standard_normal(w.shape)
        opt_w.step([weights], [tie_gradients(shared.indices, grad)], 0.01)
        opt_c.step([centroids], [centroid_gradients(shared.indices, grad, 8)], 0.01)
    # Per-weight Adam on tied gradients == Adam on the centroids with summed gradients.
    np.testing.assert_array_equal(weights, centroids[shared.indices])
    assert np.all(weights[shared.indices == 0] == 0)


def test_sharing_rate_of_the_papers_example():
    # Han et al. Fig. 3: 16 weights, 4 clusters, 32-bit weights -> 16*32 / (16*2 + 4*32) = 3.2.
    assert sharing_rate(16, 4) == 3.2


def test_integer_codebook():
    levels, scale = integer_codebook([0.0, -0.3, 0.1, 0.6, 0.05], 4)  # levels in [-7, 7]
    assert scale == 0.6 / 7
    np.testing.assert_array_equal(levels, [0, -4, 1, 7, 1])  # -3.5 -> -4 (even), 0.583 -> 1
    assert np.all(np.abs(levels * scale - [0.0, -0.3, 0.1, 0.6, 0.05]) <= scale / 2 + 1e-15)
    levels, scale = integer_codebook(np.zeros(4), 8)
    np.testing.assert_array_equal(levels, np.zeros(4))
    assert scale == 1.0


# --- stored form and accounting ---------------------------------------------------------

def test_compressed_layer_decodes_to_the_shared_weights_and_counts_its_bits():
    w = np.zeros((4, 10))
    w[0, 1], w[1, 5], w[3, 9] = 0.5, -0.5, 0.5  # positions 1, 15, 39
    shared = share_weights(w, 2)  # codebook [0, -0.5, 0.5, 0]
    layer = compress_layer("fc", shared, index_bits=4, n_biases=4)
    np.testing.assert_array_equal(layer.weights(), w)
    # Gaps 2, 14, 24 -> fields 1, 13, then a filler (15) at 31 and the entry at 39 (field 7).
    np.testing.assert_array_equal(layer.sparse.fields, [1, 13, 15, 7])
    np.testing.assert_array_equal(layer.sparse.values, [2, 1, 0, 2])
    s = layer.storage()
    assert (s.n_weights, s.n_nonzero, s.n_entries) == (40, 3, 4)
    assert s.dense_bits == 40 * FLOAT_BITS
    assert s.pruned_bits == 4 * (32 + 4)
    assert s.shared_bits == 4 * (2 + 4) + 4 * 32
    # Values 2,1,0,2 -> lengths {2:1, 0:2, 1:2}: 1+2+2+1 = 6 bits; fields all distinct: 2 each.
    assert s.value_stream_bits == 6 and s.field_stream_bits == 8
    assert s.table_bits == (32 + 3 * (2 + 2)) + (32 + 4 * (4 + 2))
    assert s.huffman_bits == 6 + 8 + s.table_bits + 4 * 32
    assert s.bias_bits == 4 * 32 and s.density == 3 / 40


def test_compressed_layer_round_trip_seeded():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((100, 64))
    w *= prune_by_std(w, 1.2)
    shared = share_weights(w, 5)
    for b in (4, 5, 8):
        layer = compress_layer("fc1", shared, b)
        np.testing.assert_array_equal(layer.indices(), shared.indices)
        s = layer.storage()
        assert s.huffman_bits < s.shared_bits < s.pruned_bits < s.dense_bits
