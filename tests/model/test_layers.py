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


# --------------------------------------------------------------------------------------------
# Quantized layers
# --------------------------------------------------------------------------------------------

from model import quant  # noqa: E402

QUANTIZED_CONVS = [
    (L.BinaryConv2d, {}, lambda w: quant.binarize(w), lambda w, g: quant.ste_sign_grad(w, g)),
    (L.TernaryConv2d, {}, lambda w: quant.ternarize(w), lambda w, g: quant.ste_ternary_grad(w, g)),
    (L.Pow2Conv2d, {}, lambda w: quant.quantize_pow2(w), quant.ste_identity_grad),
    (L.DorefaConv2d, {"bitW": 1, "bitA": 3}, lambda w: quant.dorefa_weights(w, 1),
     lambda w, g: quant.ste_dorefa_weights_grad(w, g, 1)),
    (L.DorefaConv2d, {"bitW": 2, "bitA": 2}, lambda w: quant.dorefa_weights(w, 2),
     lambda w, g: quant.ste_dorefa_weights_grad(w, g, 2)),
    (L.IntConv2d, {"bits": 4, "input_bits": 2}, lambda w: quant.quantize_int(w, 4),
     quant.ste_identity_grad),
]


@pytest.mark.parametrize("cls,kwargs,quantize,ste", QUANTIZED_CONVS,
                         ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_quantized_conv_is_the_float_conv_of_quantized_operands(cls, kwargs, quantize, ste):
    rng = np.random.default_rng(11)
    layer = cls(3, 4, 3, padding=1, rng=rng, **kwargs)
    layer.params["weight"] = rng.normal(size=layer.params["weight"].shape) * 0.5
    x = rng.normal(size=(2, 3, 5, 5)) * 0.8 + 0.3
    bits = layer.input_bits
    xq = quant.dorefa_activations(x, bits).dequantize() if bits else x
    wq = quantize(layer.params["weight"]).dequantize()
    ref = L.Conv2d(3, 4, 3, padding=1, bias=False)
    ref.params["weight"] = wq
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, ref.forward(xq, training=True), rtol=1e-12, atol=1e-12)
    # Backward: the float conv's gradients through the paper's straight-through estimators.
    g = rng.normal(size=y.shape)
    dx = layer.backward(g)
    dxq = ref.backward(g)
    np.testing.assert_allclose(layer.grads["weight"], ste(layer.params["weight"],
                                                          ref.grads["weight"]),
                               rtol=1e-10, atol=1e-12)
    expected_dx = quant.ste_dorefa_activations_grad(x, dxq) if bits else dxq
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-10, atol=1e-12)


def test_quantized_product_is_exact_integer_accumulator_times_scale():
    """The float forward is float64(acc) * scale with acc the exact integer convolution."""
    from model import ops
    rng = np.random.default_rng(12)
    layer = L.TernaryConv2d(2, 3, 3, padding=1, rng=rng, input_bits=3)
    x = rng.uniform(-0.2, 1.2, size=(2, 2, 6, 6))
    q = layer.quantized_weight()
    codes = quant.dorefa_activations(x, 3).codes
    acc = ops.conv2d("ternary", codes, q.codes, padding=1, a_bits=4, w_bits=2)
    scale = layer.output_scale()
    np.testing.assert_array_equal(layer.forward(x), acc.astype(np.float64) * scale)
    assert scale == q.scale / 7


def test_binary_layers_clip_shadow_weights_and_block_large_gradients():
    layer = L.BinaryDense(3, 2, rng=np.random.default_rng(0))
    layer.params["weight"] = np.array([[1.5, -0.2, 0.0], [-3.0, 1.0, -1.0]])
    y = layer.forward(np.array([[1.0, 1.0, 1.0]]), training=True)
    np.testing.assert_array_equal(y, [[1 - 1 + 1, -1 + 1 - 1]])  # sign(0) = +1
    layer.backward(np.ones((1, 2)))
    np.testing.assert_array_equal(layer.grads["weight"], [[0, 1, 1], [0, 1, 1]])
    layer.constrain()
    np.testing.assert_array_equal(layer.params["weight"], [[1.0, -0.2, 0.0], [-1.0, 1.0, -1.0]])


def test_sign_forward_ties_and_htanh_gradient():
    s = L.Sign()
    x = np.array([[-2.0, -1.0, -0.1, 0.0, 0.3, 1.0, 1.5]])
    np.testing.assert_array_equal(s(x), [[-1, -1, -1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(s.backward(np.full_like(x, 2.0)), [[0, 2, 2, 2, 2, 2, 0]])


def test_dense_input_scale_gradients():
    rng = np.random.default_rng(13)
    check_gradients(L.Dense(4, 3, rng=rng, input_scale=1 / 16), rng.normal(size=(2, 4)) * 8)


def test_bad_quantized_widths_are_rejected():
    with pytest.raises(ValueError, match="dorefa"):
        L.DorefaDense(4, 2, bitW=9)
    with pytest.raises(ValueError):
        L.DorefaDense(4, 2, bitA=0)
