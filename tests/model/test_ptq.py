"""Post-training quantization: the transfer copies exactly, recalibration averages batches."""

import numpy as np
import pytest

from model import layers as L
from model import nets, ptq, quant


def _nets(target, *, shift_bn=False):
    source = nets.build("float", (1, 8, 8), 10, pixel_max=16, seed=1, shift_bn=shift_bn)
    rng = np.random.default_rng(7)
    for layer in source.layers:  # trained-looking batch norms, not the initial 0/1
        if isinstance(layer, L.BatchNorm):
            n = layer.num_features
            layer.params["gamma"] = rng.uniform(0.5, 2, n)
            layer.params["beta"] = rng.normal(size=n)
            layer.buffers["running_mean"] = rng.normal(size=n)
            layer.buffers["running_var"] = rng.uniform(0.1, 3, n)
    return source, nets.build(target, (1, 8, 8), 10, pixel_max=16, seed=2, shift_bn=shift_bn)


@pytest.mark.parametrize("target", ["binarynet", "ternarynet", "dorefanet"])
def test_transfer_copies_every_weight_and_batch_norm_in_order(target):
    source, dest = _nets(target)
    ptq.transfer(source, dest)
    src_w = [ly for ly in source.layers if isinstance(ly, L.Linear)]
    dst_w = [ly for ly in dest.layers if isinstance(ly, L.Linear)]
    assert len(src_w) == len(dst_w) == 4
    for s, d in zip(src_w, dst_w):
        np.testing.assert_array_equal(d.params["weight"], s.params["weight"])
        assert d.params["weight"] is not s.params["weight"]  # a copy
    src_bn = [ly for ly in source.layers if isinstance(ly, L.BatchNorm)]
    dst_bn = [ly for ly in dest.layers if isinstance(ly, L.BatchNorm)]
    for s, d in zip(src_bn, dst_bn):
        for key in ("gamma", "beta"):
            np.testing.assert_array_equal(d.params[key], s.params[key])
        for key in ("running_mean", "running_var"):
            np.testing.assert_array_equal(d.buffers[key], s.buffers[key])


def test_transferred_ternary_weights_are_the_ternarized_float_weights():
    source, dest = _nets("ternarynet")
    ptq.transfer(source, dest)
    first_src = source.layers[0].params["weight"]
    expected = quant.ternarize(first_src)
    got = dest.layers[0].quantized_weight()
    np.testing.assert_array_equal(got.codes, expected.codes)
    assert got.scale == expected.scale


def test_transfer_refuses_networks_of_another_shape():
    source, _ = _nets("binarynet")
    with pytest.raises(ValueError, match="4 weight layers, the target 2"):
        ptq.transfer(source, nets.build("binarymlp", (1, 8, 8), 10, pixel_max=16))
    with pytest.raises(ValueError, match="weight layer 0: .* has weights"):
        ptq.transfer(source, nets.build("ternarynet", (3, 8, 8), 10, pixel_max=16))
    lenet = nets.build("lenet300", (1, 8, 8), 10, pixel_max=16)
    mlp = L.Sequential([L.Flatten(), L.BinaryDense(64, 300), L.BinaryDense(300, 100),
                        L.BinaryDense(100, 10)])
    with pytest.raises(ValueError, match="weight layer 0: .* has a bias"):
        ptq.transfer(lenet, mlp)
    with pytest.raises(ValueError, match="batch norm 0"):
        ptq.transfer(_nets("binarynet", shift_bn=True)[0], _nets("binarynet")[1])


def test_recalibration_sets_the_average_of_the_batch_statistics():
    rng = np.random.default_rng(3)
    dense = L.Dense(4, 3, bias=False, rng=rng)
    bn = L.BatchNorm(3, momentum=0.9)
    bn.buffers["running_mean"] = np.full(3, 100.0)  # stale statistics are forgotten
    net = L.Sequential([dense, bn])
    x = rng.normal(size=(10, 4))
    gamma = bn.params["gamma"].copy()
    ptq.recalibrate_batch_norm(net, x, batch_size=4)  # batches of 4, 4 and 2
    y = x @ dense.params["weight"].T
    batches = [y[0:4], y[4:8], y[8:10]]
    np.testing.assert_allclose(bn.buffers["running_mean"],
                               np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"],
                               np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0),
                               rtol=1e-12)
    assert bn.momentum == 0.9
    np.testing.assert_array_equal(bn.params["gamma"], gamma)


def test_recalibration_refuses_bad_arguments():
    net = L.Sequential([L.Dense(2, 2), L.BatchNorm(2)])
    with pytest.raises(ValueError, match="batch_size must be at least 1, not 0"):
        ptq.recalibrate_batch_norm(net, np.zeros((4, 2)), batch_size=0)
    with pytest.raises(ValueError, match="no data"):
        ptq.recalibrate_batch_norm(net, np.zeros((0, 2)))
