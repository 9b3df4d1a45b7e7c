"""Layers: im2col against a direct convolution, finite-difference gradient checks of every
float layer, and the quantized layers' forward passes and straight-through gradients."""

import numpy as np
import pytest

from model import layers as L
from model.thresholds import batch_norm_inference


def direct_conv(x, w, stride, padding):
    """Convolution straight from its definition (loops over outputs; test reference only)."""
    n, c, h, wd = x.shape
    m, _, r, s = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - r) // stride + 1
    wo = (wd + 2 * padding - s) // stride + 1
    out = np.zeros((n, m, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + r, j * stride:j * stride + s]
            out[:, :, i, j] = np.einsum("ncrs,mcrs->nm", patch, w)
    return out


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def check_gradients(layer, x, *, training=True, seed=0, rtol=1e-5, atol=1e-7):
    """Compare backward() with central differences of sum(forward(x) * g) for x and params."""
    rng = np.random.default_rng(seed)
    y = layer.forward(x, training=training)
    g = rng.normal(size=y.shape)
    dx = layer.backward(g)
    analytic = {k: v.copy() for k, v in layer.grads.items()}

    def loss():
        return float(np.sum(layer.forward(x, training=training) * g))

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=rtol, atol=atol)
    assert set(analytic) == set(layer.params)
    for name, p in layer.params.items():
        np.testing.assert_allclose(analytic[name], numeric_grad(loss, p), rtol=rtol, atol=atol,
                                   err_msg=name)


@pytest.mark.parametrize("stride,padding,kernel", [(1, 0, 3), (1, 2, 5), (2, 1, 3), (3, 0, 2)])
def test_conv_forward_matches_direct_definition(stride, padding, kernel):
    rng = np.random.default_rng(1)
    conv = L.Conv2d(3, 4, kernel, stride=stride, padding=padding, bias=False, rng=rng)
    x = rng.normal(size=(2, 3, 7, 8))
    np.testing.assert_allclose(conv(x), direct_conv(x, conv.params["weight"], stride, padding),
                               rtol=1e-12, atol=1e-12)


def test_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 6, 5))
    cols = rng.normal(size=L.im2col(x, (3, 2), 2, 1).shape)
    lhs = np.sum(L.im2col(x, (3, 2), 2, 1) * cols)
    rhs = np.sum(x * L.col2im(cols, x.shape, (3, 2), 2, 1))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_conv_kernel_too_large_is_rejected():
    with pytest.raises(ValueError, match="does not fit"):
        L.conv_output_size(3, 5, 1, 0)


def test_dense_gradients():
    rng = np.random.default_rng(3)
    check_gradients(L.Dense(5, 4, rng=rng), rng.normal(size=(3, 5)))


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (1, 2)])
def test_conv_gradients(stride, padding):
    rng = np.random.default_rng(4)
    layer = L.Conv2d(2, 3, 3, stride=stride, padding=padding, rng=rng)
    check_gradients(layer, rng.normal(size=(2, 2, 5, 5)))


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 3, 3)])
def test_batchnorm_gradients(shape):
    rng = np.random.default_rng(5)
    bn = L.BatchNorm(shape[1])
    bn.params["gamma"] = rng.uniform(0.5, 2.0, size=shape[1])
    bn.params["beta"] = rng.normal(size=shape[1])
    check_gradients(bn, rng.normal(size=shape) * 3 + 1)


def test_maxpool_gradients():
    rng = np.random.default_rng(6)
    # Distinct values spaced far beyond the finite-difference step: no argmax can change.
    x = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) * 0.01
    check_gradients(L.MaxPool2d(2), x)
    check_gradients(L.MaxPool2d(3, 2), x[:, :, :5, :5].copy())


def test_maxpool_forward_and_first_max_on_ties():
    x = np.array([[[[1., 5., 2., 2.], [3., 4., 2., 2.], [0., 0., -1., -3.], [0., 7., -2., -4.]]]])
    pool = L.MaxPool2d(2)
    np.testing.assert_array_equal(pool(x), [[[[5., 2.], [7., -1.]]]])
    dx = pool.backward(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(dx, [[[[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]]])


def test_flatten_relu_hardtanh_gradients():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 2, 2))
    x[np.abs(x) < 0.05] += 0.1          # keep away from the kink at 0
    x[np.abs(np.abs(x) - 1) < 0.05] += 0.1  # and from the clip points +/-1
    for layer in (L.Flatten(), L.ReLU(), L.HardTanh()):
        check_gradients(layer, x.copy())


def test_hardtanh_values_and_boundary_gradient():
    ht = L.HardTanh()
    x = np.array([[-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]])
    np.testing.assert_array_equal(ht(x), [[-1, -1, 0, 0.5, 1, 1]])
    np.testing.assert_array_equal(ht.backward(np.ones_like(x)), [[0, 1, 1, 1, 1, 0]])


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(4, 5))
    labels = np.array([0, 4, 2, 2])
    loss, grad = L.softmax_cross_entropy(logits, labels)
    num = numeric_grad(lambda: L.softmax_cross_entropy(logits, labels)[0], logits)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)
    assert loss == pytest.approx(-np.mean(np.log(
        np.exp(logits[np.arange(4), labels]) / np.exp(logits).sum(axis=1))))


def test_ap2_values():
    np.testing.assert_array_equal(L.ap2([0.0, 1.0, -3.0, 0.3, 5.0, 6.0, -0.75]),
                                  [0.0, 1.0, -4.0, 0.25, 4.0, 8.0, -1.0])


def test_batchnorm_eval_is_the_running_affine():
    rng = np.random.default_rng(9)
    bn = L.BatchNorm(3, momentum=0.0)
    x = rng.normal(size=(50, 3)) * [1.0, 2.0, 3.0] + [0.0, 1.0, -1.0]
    bn.forward(x, training=True)
    np.testing.assert_allclose(bn.buffers["running_mean"], x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], x.var(axis=0, ddof=1), rtol=1e-12)
    gain, offset = bn.eval_affine()
    y = bn.forward(x, training=False)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + bn.eps),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, x * gain + offset, rtol=1e-12, atol=1e-12)
    # Bit for bit the expression the integer thresholds are folded from.
    np.testing.assert_array_equal(y, batch_norm_inference(x, **bn.inference_params(), axis=1))


def test_shift_based_batchnorm_uses_powers_of_two():
    rng = np.random.default_rng(10)
    bn = L.BatchNorm(4, shift_based=True)
    bn.params["gamma"] = np.array([0.7, -1.3, 3.0, 0.2])
    x = rng.normal(size=(32, 4, 2, 2)) * 3
    y = bn.forward(x, training=True)
    c = x - x.mean(axis=(0, 2, 3), keepdims=True)
    apx_var = (c * L.ap2(c)).mean(axis=(0, 2, 3), keepdims=True)
    inv = L.ap2(1 / np.sqrt(apx_var + bn.eps))
    np.testing.assert_allclose(y, L.ap2(bn.params["gamma"]).reshape(1, -1, 1, 1) * c * inv,
                               rtol=1e-12, atol=1e-12)
    gain, _ = bn.eval_affine()
    assert np.all(np.log2(np.abs(gain)) == np.round(np.log2(np.abs(gain))))
    # The straight-through gradient has the standard shape and flows into every parameter.
    dx = bn.backward(np.ones_like(y))
    assert dx.shape == x.shape and set(bn.grads) == {"gamma", "beta"}
