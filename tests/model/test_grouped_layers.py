"""Grouped and depthwise layers for training, and DoReFa's gradient quantizer as a layer."""

import numpy as np
import pytest

from model import layers as L
from model import ops, quant
from tests.model.test_layers import check_gradients, direct_conv


def direct_grouped(x, w, groups, stride, padding):
    """A grouped convolution as one ``direct_conv`` per group (test reference)."""
    c_per, m_per = x.shape[1] // groups, w.shape[0] // groups
    return np.concatenate([direct_conv(x[:, g * c_per:(g + 1) * c_per],
                                       w[g * m_per:(g + 1) * m_per], stride, padding)
                           for g in range(groups)], axis=1)


@pytest.mark.parametrize("cin,cout,groups,stride,padding", [
    (4, 4, 4, 1, 1),      # depthwise
    (4, 8, 4, 2, 1),      # depthwise, channel multiplier 2, stride 2
    (6, 9, 3, 1, 0),      # ShuffleNet-style grouped
    (3, 5, 1, 1, 1),      # one group
])
def test_grouped_conv_forward_and_gradients(cin, cout, groups, stride, padding):
    rng = np.random.default_rng(21)
    layer = L.Conv2d(cin, cout, 3, stride=stride, padding=padding, groups=groups, rng=rng)
    assert layer.params["weight"].shape == (cout, cin // groups, 3, 3)
    x = rng.normal(size=(2, cin, 5, 5))
    expected = direct_grouped(x, layer.params["weight"], groups, stride, padding)
    np.testing.assert_allclose(layer(x), expected + layer.params["bias"][None, :, None, None],
                               rtol=1e-12, atol=1e-12)
    check_gradients(layer, x)


@pytest.mark.parametrize("cls,kwargs", [
    (L.TernaryConv2d, {}), (L.BinaryConv2d, {}), (L.Pow2Conv2d, {}),
    (L.DorefaConv2d, {"bitW": 2, "bitA": 2}), (L.IntConv2d, {"bits": 4, "input_bits": 2}),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_quantized_depthwise_conv_is_the_exact_integer_accumulator_times_scale(cls, kwargs):
    rng = np.random.default_rng(22)
    layer = cls(6, 6, 3, padding=1, groups=6, rng=rng, **kwargs)
    x = rng.uniform(-0.2, 1.2, size=(2, 6, 5, 5))
    bits = layer.input_bits
    codes = quant.dorefa_activations(x, bits).codes if bits else np.round(x * 4)
    if not bits:
        x = codes  # integer codes as the input of a first layer
    q = layer.quantized_weight()
    scheme = layer.scheme
    a_bits = bits if scheme == "dorefa" else (bits + 1 if bits else 4)
    w_codes = q.codes
    acc = ops.conv2d(scheme, codes.astype(np.int64), w_codes, padding=1, a_bits=a_bits,
                     w_bits=q.bits, groups=6)
    np.testing.assert_allclose(layer.forward(x), acc.astype(np.float64) * layer.output_scale(),
                               rtol=1e-12, atol=1e-12)
    # The straight-through gradient reaches the [M, C / G, R, S] shadow weights.
    layer.backward(np.ones((2, 6, 5, 5)))
    assert layer.grads["weight"].shape == (6, 1, 3, 3)


def test_grouped_conv_refuses_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="groups must be a positive integer dividing the input "
                                         "channels \\(6\\) and the filters \\(4\\), not 3"):
        L.Conv2d(6, 4, 3, groups=3)
    with pytest.raises(ValueError, match="not 0"):
        L.TernaryConv2d(4, 4, 3, groups=0)


def test_quantize_gradients_is_identity_forward_and_dorefa_backward():
    rng = np.random.default_rng(23)
    g = rng.normal(size=(4, 3, 2, 2))
    layer = L.QuantizeGradients(4, seed=7)
    x = rng.normal(size=g.shape)
    assert layer.forward(x, training=True) is x
    got = layer.backward(g)
    np.testing.assert_array_equal(got, quant.dorefa_gradients(g, 4, np.random.default_rng(7)))
    # On the grid 2M (j/15 - 1/2) of each sample's max-abs M.
    m = np.abs(g).max(axis=(1, 2, 3), keepdims=True)
    j = (got / (2 * m) + 0.5) * 15
    np.testing.assert_allclose(j, np.round(j), atol=1e-9)
    assert not np.array_equal(got, g)
    # 32 bits: float gradients, untouched.
    assert L.QuantizeGradients(32).backward(g) is g


@pytest.mark.parametrize("bits", [0, 17, 31, 33, 2.5, True])
def test_quantize_gradients_refuses_bad_widths(bits):
    with pytest.raises(ValueError, match="gradient bits must be in \\[1, 16\\] or 32"):
        L.QuantizeGradients(bits)


# ----------------------------------------------------------------------------------------------
# The deployment model of grouped and depthwise networks
# ----------------------------------------------------------------------------------------------

from model import data, deploy, nets, train  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


def _small_grouped_net(seed=0):
    """Depthwise (ternary), grouped binary on +/-1 (xnor, 2 groups), pointwise, dense."""
    rng = np.random.default_rng(seed)
    return L.Sequential([
        L.TernaryConv2d(1, 8, 3, padding=1, rng=rng, input_scale=1 / 16), L.BatchNorm(8),
        L.Sign(),
        L.TernaryConv2d(8, 8, 3, stride=2, padding=1, groups=8, rng=rng), L.BatchNorm(8),
        L.Sign(),
        L.BinaryConv2d(8, 8, 3, padding=1, groups=2, rng=rng), L.MaxPool2d(2), L.BatchNorm(8),
        L.Sign(),
        L.TernaryConv2d(8, 16, 1, rng=rng), L.BatchNorm(16), L.Flatten(), L.Sign(),
        L.TernaryDense(64, 10, rng=rng), L.BatchNorm(10),
    ])


@pytest.fixture(scope="module")
def grouped_model(digits):
    from threadpoolctl import threadpool_limits
    net = _small_grouped_net()
    with threadpool_limits(limits=1, user_api="blas"):
        train.train(net, digits.x_train.astype(float), digits.y_train, epochs=2, lr=1e-2,
                    progress=False)
    return net, deploy.fold(net, input_shape=digits.input_shape, pixel_max=16)


def test_grouped_network_folds_exactly(grouped_model, digits):
    net, model = grouped_model
    assert [ly.groups for ly in model.layers] == [1, 8, 2, 1, 1]
    assert [ly.scheme for ly in model.layers] == ["ternary", "ternary", "xnor", "ternary",
                                                  "ternary"]
    # The xnor words pack 4 channels: a word never straddles the two groups.
    assert model.layers[2].a_bits == 4 and model.layers[2].weights.shape == (8, 1, 3, 3)
    pred = deploy.predict(model, digits.x_test)
    np.testing.assert_array_equal(pred, train.predict(net, digits.x_test.astype(float)))
    trace = deploy.run_integer(model, digits.x_test[:5])
    for rec, t in zip(model.layers, trace.layers):
        np.testing.assert_array_equal(t.accumulators, rec.accumulate(t.inputs))
    # The depthwise accumulator is each channel's own 3x3 sum, stride 2.
    dw = model.layers[1]
    a = trace.layers[1].inputs[0]
    levels = dw.weights  # ternary codes are their levels
    direct = np.zeros((8, 4, 4), dtype=np.int64)
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    for m in range(8):
        for e in range(4):
            for f in range(4):
                direct[m, e, f] = int((padded[m, 2 * e:2 * e + 3, 2 * f:2 * f + 3]
                                       * levels[m, 0]).sum())
    np.testing.assert_array_equal(trace.layers[1].accumulators[0], direct)


def test_grouped_model_file_and_layer_file_keep_groups(grouped_model, digits, tmp_path):
    from model.layer_file import load_layer, save_layer

    _, model = grouped_model
    deploy.save(model, tmp_path / "g.npz")
    back = deploy.load(tmp_path / "g.npz")
    assert [ly.groups for ly in back.layers] == [1, 8, 2, 1, 1]
    np.testing.assert_array_equal(deploy.predict(back, digits.x_test),
                                  deploy.predict(model, digits.x_test))
    assert any("groups 8" in line for line in back.summary())
    layer = deploy.hardware_layer(model, 1, digits.x_test[0])
    assert layer.groups == 8
    save_layer(tmp_path / "dw.npz", layer)
    again = load_layer(tmp_path / "dw.npz")
    acc = deploy.run_integer(model, digits.x_test[:1]).layers[1].accumulators[0]
    np.testing.assert_array_equal(
        ops.conv2d(again.scheme, again.inputs, again.weights, stride=again.stride,
                   padding=again.padding, a_bits=again.a_bits, w_bits=again.w_bits,
                   groups=again.groups), acc)


def test_mobilenet_tiny_is_depthwise_separable_and_folds(digits):
    net = nets.build("mobilenet_tiny", digits.input_shape, pixel_max=16, seed=0)
    convs = [ly for ly in net.layers if isinstance(ly, L.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel, c.stride, c.groups) for c in convs] == [
        (1, 32, (3, 3), 1, 1), (32, 32, (3, 3), 1, 32), (32, 64, (1, 1), 1, 1),
        (64, 64, (3, 3), 2, 64), (64, 128, (1, 1), 1, 1), (128, 128, (3, 3), 2, 128),
        (128, 128, (1, 1), 1, 1)]
    model = deploy.fold(net, input_shape=digits.input_shape, pixel_max=16)
    assert [ly.groups for ly in model.layers] == [1, 32, 1, 64, 1, 128, 1, 1]
    assert {ly.scheme for ly in model.layers} == {"ternary"}
    np.testing.assert_array_equal(deploy.predict(model, digits.x_test[:50]),
                                  train.predict(net, digits.x_test[:50].astype(float)))


def test_gradient_quantizers_fold_away(digits):
    net = nets.build("dorefanet", digits.input_shape, pixel_max=16, seed=0, bits=(1, 2, 4))
    assert sum(isinstance(ly, L.QuantizeGradients) for ly in net.layers) == 2
    plain = nets.build("dorefanet", digits.input_shape, pixel_max=16, seed=0, bits=(1, 2, 32))
    assert not any(isinstance(ly, L.QuantizeGradients) for ly in plain.layers)
    model = deploy.fold(net, input_shape=digits.input_shape, pixel_max=16)
    assert [ly.a_bits for ly in model.layers] == [5, 2, 2, 3]
    np.testing.assert_array_equal(deploy.predict(model, digits.x_test[:50]),
                                  train.predict(net, digits.x_test[:50].astype(float)))


def test_grouped_models_are_version_2_files_and_others_stay_version_1(grouped_model, tmp_path):
    import json

    from model.container import read_container

    _, model = grouped_model
    deploy.save(model, tmp_path / "g.npz")
    manifest, _ = read_container(tmp_path / "g.npz", format=deploy.FORMAT,
                                 version=deploy.VERSIONS, what="mulfree model")
    assert manifest["version"] == 2
    assert [layer["groups"] for layer in manifest["layers"]] == [1, 8, 2, 1, 1]
    plain = deploy.fold(nets.build("binarymlp", (1, 8, 8), pixel_max=16), input_shape=(1, 8, 8),
                        pixel_max=16)
    deploy.save(plain, tmp_path / "p.npz")
    manifest, _ = read_container(tmp_path / "p.npz", format=deploy.FORMAT,
                                 version=deploy.VERSIONS, what="mulfree model")
    assert manifest["version"] == 1 and "groups" not in json.dumps(manifest["layers"])
    assert [ly.groups for ly in deploy.load(tmp_path / "p.npz").layers] == [1, 1]
