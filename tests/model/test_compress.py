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
    layer = compress_layer("fc", shared, index_bits=4)
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
    assert s.density == 3 / 40


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


# --- through the real training loop -----------------------------------------------------

import model.train as train_module  # noqa: E402
from model.compress import (  # noqa: E402
    SharedWeightLayer,
    compressible_layers,
    deep_compress,
    prune_network,
    share_network,
)
from model.layers import softmax_cross_entropy  # noqa: E402
from model.nets import build  # noqa: E402


# The tests share this module's fixtures: one worker runs them all.
pytestmark = [pytest.mark.xdist_group("model.test_compress"),
              pytest.mark.usefixtures("one_blas_thread")]


@pytest.fixture(scope="module")
def small_digits(digits):
    """The first 400 training and 200 test images of the digits, as floats."""
    x_train, x_test = digits.x_train.astype(np.float64), digits.x_test.astype(np.float64)
    return x_train[:400], digits.y_train[:400], x_test[:200], digits.y_test[:200]


def small_lenet(seed=0):
    return build("lenet300", (1, 8, 8), pixel_max=16, seed=seed)


class RecordingAdam(Adam):
    """The training loop's optimiser, recording the gradients it is given."""

    seen: list = []

    def step(self, params, grads, lr):
        RecordingAdam.seen.append([g.copy() for g in grads])
        super().step(params, grads, lr)


def test_pruned_weights_get_no_gradient_and_stay_zero_in_the_training_loop(monkeypatch,
                                                                            small_digits):
    x, y, _, _ = small_digits
    monkeypatch.setattr(train_module, "make_optimizer", lambda name: RecordingAdam())
    RecordingAdam.seen = []
    net = small_lenet()
    masks = prune_network(net, sparsity=[0.8, 0.7, 0.5])
    names = [name for name, _, _ in net.named_parameters()]
    before = {name: layer.params[key].copy() for name, layer, key in net.named_parameters()}
    zero_at_every_step = []

    def check(step, net):
        zero_at_every_step.append(all(
            np.all(layer.params[key][~masks[name]] == 0)
            for name, layer, key in net.named_parameters() if name in masks))

    train_module.train(net, x, y, epochs=1, masks=masks, on_step=check, progress=False)
    assert len(RecordingAdam.seen) == len(zero_at_every_step) > 0 and all(zero_at_every_step)
    for grads in RecordingAdam.seen:
        for name, g in zip(names, grads):
            if name in masks:
                assert np.all(g[~masks[name]] == 0), name  # no gradient reaches a pruned weight
    for name, layer, key in net.named_parameters():  # while the kept weights did train
        if name in masks:
            kept = masks[name]
            moved = layer.params[key][kept] != before[name][kept]
            assert np.count_nonzero(moved) > 0.5 * kept.sum()  # (some inputs are always 0)


def test_centroid_gradient_through_a_shared_layer_matches_finite_differences(small_digits):
    x, y, _, _ = small_digits
    net = small_lenet()
    prune_network(net, sparsity=0.5)
    shared = share_network(net, 3)
    i, _, layer = compressible_layers(shared)[1]
    assert isinstance(layer, SharedWeightLayer)
    xb = x[:64].astype(np.float64)

    def loss():
        return softmax_cross_entropy(shared.forward(xb, training=True), y[:64])

    value, grad = loss()
    shared.backward(grad)
    g = layer.grads["codebook"].copy()
    assert g[0] == 0
    eps = 1e-6
    for code in range(1, 8):
        layer.params["codebook"][code] += eps
        up, _ = loss()
        layer.params["codebook"][code] -= 2 * eps
        down, _ = loss()
        layer.params["codebook"][code] += eps
        assert abs((up - down) / (2 * eps) - g[code]) < 1e-6 * max(1.0, abs(g[code]))


def test_deep_compress_pipeline(monkeypatch, small_digits):
    x, y, xt, yt = small_digits
    monkeypatch.setattr(train_module, "make_optimizer", lambda name: RecordingAdam())
    RecordingAdam.seen = []
    net = small_lenet()
    train_module.train(net, x, y, epochs=2, progress=False)
    result = deep_compress(net, x, y, xt, yt, sparsity=0.8, prune_steps=2, retrain_epochs=1,
                           share_bits=4, finetune_epochs=1, index_bits=5)
    assert set(result.accuracy) == {"original", "pruned", "shared, before fine-tuning",
                                    "shared", "stored"}
    assert result.accuracy["stored"] == result.accuracy["shared"]  # Huffman is lossless
    layers = result.compressed.layers
    # Fine-tuning gave code 0 no gradient, so pruned weights stayed zero.
    codebook_grads = [g for grads in RecordingAdam.seen for g in grads if g.shape == (16,)]
    assert len(codebook_grads) == 3 * -(-len(x) // 64)  # three layers, one epoch
    assert all(g[0] == 0 for g in codebook_grads)
    for (_, name, layer), stored in zip(compressible_layers(result.net), layers):
        w = layer.params["weight"]
        i = [i for i, n, _ in compressible_layers(net) if n == name][0]
        mask = result.masks[f"{i}.weight"]
        assert np.all(w[~mask] == 0)
        assert np.unique(w[w != 0]).size <= 15
        np.testing.assert_array_equal(w, stored.codebook[stored.indices()])
        assert stored.storage().density <= 0.2 + 1e-9
    totals = result.compressed.totals()
    assert totals["huffman"] < totals["shared"] < totals["pruned"] < totals["dense"]
    # The input network is untouched.
    assert np.count_nonzero(compressible_layers(net)[0][2].params["weight"]) == 64 * 300


def test_deep_compress_refuses_a_network_with_nothing_to_compress(small_digits):
    x, y, xt, yt = small_digits
    net = build("binarymlp", (1, 8, 8), pixel_max=16)
    with pytest.raises(ValueError, match="no float Dense or Conv2d"):
        deep_compress(net, x, y, xt, yt, sparsity=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        prune_network(small_lenet(), quality=1.0, sparsity=0.5)
    with pytest.raises(ValueError, match="3 compressible layers"):
        prune_network(small_lenet(), sparsity=[0.5, 0.5])


# --- the compressed model file ----------------------------------------------------------

from model.compress import load_compressed  # noqa: E402
from model.train import predict  # noqa: E402


@pytest.fixture(scope="module")
def compressed(small_digits):
    x, y, xt, yt = small_digits
    net = small_lenet(seed=3)
    train_module.train(net, x, y, epochs=1, progress=False)
    result = deep_compress(net, x, y, xt, yt, quality=1.0, prune_steps=1, retrain_epochs=1,
                           share_bits=[4, 4, 5], finetune_epochs=1, index_bits=[4, 5, 8])
    result.compressed.meta.update(net="lenet300", input_shape=[1, 8, 8], pixel_max=16,
                                  classes=10)
    return result


@pytest.mark.parametrize("huffman", [True, False])
def test_file_round_trip_gives_the_same_network(tmp_path, compressed, small_digits, huffman):
    path = tmp_path / "out.npz"
    compressed.compressed.save(path, huffman=huffman)
    back = load_compressed(path)
    assert [layer.name for layer in back.layers] == ["fc1", "fc2", "fc3"]
    assert [layer.sparse.index_bits for layer in back.layers] == [4, 5, 8]
    for a, b in zip(back.layers, compressed.compressed.layers):
        np.testing.assert_array_equal(a.sparse.fields, b.sparse.fields)
        np.testing.assert_array_equal(a.sparse.values, b.sparse.values)
        np.testing.assert_array_equal(a.codebook, b.codebook)
    assert back.totals() == compressed.compressed.totals()
    net = back.network()
    for (_, _, a), (_, _, b) in zip(compressible_layers(net), compressible_layers(compressed.net)):
        np.testing.assert_array_equal(a.params["weight"], b.params["weight"])
        np.testing.assert_array_equal(a.params["bias"], b.params["bias"])
    _, _, xt, _ = small_digits
    np.testing.assert_array_equal(predict(net, xt), predict(compressed.net, xt))


def test_file_is_never_overwritten_or_half_written(tmp_path, compressed):
    path = tmp_path / "out.npz"
    path.write_text("precious")
    with pytest.raises(ValueError, match="--force"):
        compressed.compressed.save(path)
    assert path.read_text() == "precious"
    compressed.compressed.save(path, overwrite=True)
    assert load_compressed(path).layers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_corrupt_or_foreign_files_are_refused(tmp_path, compressed):
    with pytest.raises(ValueError, match="not found"):
        load_compressed(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        load_compressed(junk)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, manifest=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="format is"):
        load_compressed(foreign)
    path = tmp_path / "out.npz"
    compressed.compressed.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["fc1.codebook"] = arrays["fc1.codebook"] + np.float32(1)
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    with pytest.raises(ValueError, match="checksum"):
        load_compressed(tampered)
