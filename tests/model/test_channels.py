"""Structured (channel) pruning: removing channels is exactly zeroing what reads them, L1 and
LASSO selection pick the right channels, least squares reconstructs the next layer."""

import numpy as np
import pytest

from model import channels, nets
from model import layers as L

SHAPE = (1, 8, 8)


def eval_out(net, x):
    return net.forward(x, training=False)


def randomize_batch_norms(net, rng):
    for layer in net.layers:
        if isinstance(layer, L.BatchNorm):
            n = layer.num_features
            layer.params["gamma"] = rng.uniform(0.5, 2, n)
            layer.params["beta"] = rng.normal(size=n)
            layer.buffers["running_mean"] = rng.normal(size=n)
            layer.buffers["running_var"] = rng.uniform(0.5, 2, n)


def test_prunable_layers_of_the_conv_body():
    net = nets.build("binarynet", SHAPE, pixel_max=16)
    ps = channels.prunable_layers(net)
    assert [(p.index, p.next_index, p.channels, p.spatial) for p in ps] == [
        (0, 5, 32, 1), (5, 10, 64, 4), (10, 13, 256, 1)]
    assert [p.batch_norms for p in ps] == [(2,), (7,), (11,)]
    assert channels.keep_counts(0.25, ps) == [8, 16, 64]
    assert channels.keep_counts([0.5, 0.1, 1.0], ps) == [16, 6, 256]
    assert channels.keep_counts(0.01, ps) == [1, 1, 3]


@pytest.mark.parametrize("name", ["float", "lenet300"])
def test_removing_channels_equals_zeroing_their_readers(name):
    """A removed channel contributes nothing: the pruned network's outputs are the original
    network's with the next layer's weights on that channel set to zero."""
    rng = np.random.default_rng(1)
    net = nets.build(name, SHAPE, pixel_max=16, seed=2)
    randomize_batch_norms(net, rng)
    for p in channels.prunable_layers(net):
        kept = np.sort(rng.choice(p.channels, size=p.channels // 3, replace=False))
        zeroed = nets.build(name, SHAPE, pixel_max=16)
        zeroed.load_state_dict(net.state_dict())
        w = zeroed.layers[p.next_index].params["weight"]
        gone = np.setdiff1d(np.arange(p.channels), kept)
        if w.ndim == 4:
            w[:, gone] = 0
        else:
            w.reshape(w.shape[0], p.channels, p.spatial)[:, gone] = 0
        pruned = nets.build(name, SHAPE, pixel_max=16)
        pruned.load_state_dict(net.state_dict())
        channels.remove_channels(pruned, p, kept)
        x = rng.integers(0, 17, size=(6,) + SHAPE).astype(float)
        np.testing.assert_allclose(eval_out(pruned, x), eval_out(zeroed, x), rtol=1e-10,
                                   atol=1e-10)
        assert pruned.layers[p.index].params["weight"].shape[0] == len(kept)


def test_l1_keeps_the_filters_of_largest_norm():
    net = nets.build("binarymlp", SHAPE, pixel_max=16, seed=0)
    w = net.layers[1].params["weight"]
    w[:] = 0.01
    w[[7, 3, 200]] = 0.5                    # three filters of large L1 norm
    w[100, 0] = -40.0                        # one large weight: the largest norm
    res = channels.prune_channels(net, np.zeros((4,) + SHAPE), 4 / 256, method="l1",
                                  net_name="binarymlp", input_shape=SHAPE, classes=10,
                                  pixel_max=16)
    assert res.widths == (4,)
    np.testing.assert_array_equal(res.kept[0], [3, 7, 100, 200])
    np.testing.assert_array_equal(res.net.layers[1].params["weight"], w[[3, 7, 100, 200]])
    assert res.net.layers[4].params["weight"].shape == (10, 4)
    assert net.layers[1].params["weight"].shape == (256, 64)  # the input is left alone


def test_lasso_selects_the_channels_the_response_needs():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(400, 6 * 2))                     # 6 channels, 2 columns each
    channel_of = np.repeat(np.arange(6), 2)
    weights = rng.normal(size=(5, 12))
    used = np.isin(channel_of, [1, 4])
    target = rows[:, used] @ weights[:, used].T
    np.testing.assert_array_equal(
        channels.lasso_select(rows, target, weights, channel_of, 2), [1, 4])
    assert list(channels.lasso_select(rows, target, weights, channel_of, 6)) == list(range(6))


def test_reconstruct_is_the_least_squares_fit():
    rng = np.random.default_rng(4)
    layer = L.Dense(6, 3, rng=rng, input_scale=0.25)
    rows = rng.normal(size=(50, 6))
    exact = rng.normal(size=(3, 6))
    channels.reconstruct(layer, rows, rows @ exact.T)
    np.testing.assert_allclose(channels._effective_weights(layer), exact, rtol=1e-10)
    np.testing.assert_allclose(layer.params["weight"], exact / 0.25, rtol=1e-10)
    # A binary layer keeps the fit's signs and its former mean magnitude (then the clip).
    binary = L.BinaryDense(6, 3, rng=rng)
    before = float(np.mean(np.abs(binary.params["weight"])))
    channels.reconstruct(binary, rows, rows @ exact.T)
    np.testing.assert_array_equal(np.sign(binary.params["weight"]), np.sign(exact))
    assert np.mean(np.abs(binary.params["weight"])) <= before + 1e-12


def test_lasso_reconstruction_beats_plain_removal_of_the_same_channels():
    """On the sampled inputs, the reconstructed next layer reproduces the unpruned response
    better than removing the same channels without reconstruction."""
    rng = np.random.default_rng(5)
    net = nets.build("lenet300", SHAPE, pixel_max=16, seed=5, widths=(40, 20))
    x = rng.integers(0, 17, size=(300,) + SHAPE).astype(float)
    res = channels.prune_channels(net, x, [0.5, 1.0], method="lasso", net_name="lenet300",
                                  input_shape=SHAPE, classes=10, pixel_max=16)
    plain = nets.build("lenet300", SHAPE, pixel_max=16, widths=(40, 20))
    plain.load_state_dict(net.state_dict())
    channels.remove_channels(plain, channels.prunable_layers(plain)[0], res.kept[0])

    def response(n):  # the second dense layer's output before its bias
        h = channels._inputs_of(n, 3, x)
        return channels._rows(n.layers[3], h) @ channels._effective_weights(n.layers[3]).T

    want = response(net)
    residual = response(res.net) - want
    assert np.linalg.norm(residual) < np.linalg.norm(response(plain) - want)
    # The least-squares optimum: the residual is orthogonal to every kept input.
    kept_rows = channels._rows(res.net.layers[3], channels._inputs_of(res.net, 3, x))
    np.testing.assert_allclose(kept_rows.T @ residual, 0, atol=1e-8 * np.abs(want).sum())


def test_quantized_lasso_pruning_keeps_the_network_foldable():
    from model import deploy, train

    net = nets.build("dorefanet", SHAPE, pixel_max=16, seed=0, bits=(1, 2, 4))
    x = np.random.default_rng(6).integers(0, 17, size=(64,) + SHAPE).astype(float)
    res = channels.prune_channels(net, x, 0.25, method="lasso", net_name="dorefanet",
                                  input_shape=SHAPE, classes=10, pixel_max=16,
                                  options={"bits": (1, 2, 4)})
    assert res.widths == (8, 16, 64)
    assert sum(isinstance(ly, L.QuantizeGradients) for ly in res.net.layers) == 2
    model = deploy.fold(res.net, input_shape=SHAPE, pixel_max=16)
    assert [ly.weights.shape[0] for ly in model.layers] == [8, 16, 64, 10]
    np.testing.assert_array_equal(deploy.predict(model, x.astype(np.int64)),
                                  train.predict(res.net, x))


def test_layer_sizes_count_weights_and_macs():
    net = nets.build("binarynet", SHAPE, pixel_max=16, widths=(8, 16, 32))
    sizes = channels.layer_sizes(net, SHAPE)
    assert [s["name"] for s in sizes] == ["conv1", "conv2", "fc3", "fc4"]
    assert [s["weights"] for s in sizes] == [8 * 25, 16 * 8 * 25, 32 * 64, 10 * 32]
    assert [s["macs"] for s in sizes] == [8 * 64 * 25, 16 * 16 * 8 * 25, 32 * 64, 320]


@pytest.mark.parametrize("call, message", [
    (lambda: channels.keep_counts(0, channels.prunable_layers(
        nets.build("binarymlp", SHAPE))), "fraction in \\(0, 1\\]"),
    (lambda: channels.keep_counts([0.5, 0.5], channels.prunable_layers(
        nets.build("binarymlp", SHAPE))), "2 channel ratios for 1 prunable layers"),
    (lambda: channels.prunable_layers(nets.build("mobilenet_tiny", SHAPE)),
     "grouped convolution"),
    (lambda: channels.prune_channels(nets.build("binarymlp", SHAPE), np.zeros((1,) + SHAPE),
                                     0.5, method="random", net_name="binarymlp",
                                     input_shape=SHAPE, classes=10, pixel_max=16),
     "unknown channel selection 'random'"),
    (lambda: nets.build("mobilenet_tiny", SHAPE, widths=(4, 4)), "has fixed widths"),
    (lambda: nets.build("binarynet", SHAPE, widths=(4, 4)), "takes 3 positive hidden widths"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
