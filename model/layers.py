"""NumPy layers with forward and backward passes, float and quantized (straight-through).

Every layer works on float64 batches: ``[N, C, H, W]`` images or ``[N, F]`` features. A layer
holds its trainable arrays in ``params`` and, after ``backward``, their gradients in
``grads`` (same keys); ``forward(x, training=...)`` caches what ``backward(grad)`` needs and
``backward`` returns the gradient with respect to the input.

Quantized layers keep float *shadow* weights (``params["weight"]``) and quantize them in
every forward pass with the quantizers of ``model.quant``; the gradient reaches the shadow
weights through the straight-through estimator of the paper the layer follows, and
``constrain()`` (called by the training loop after every optimiser step) clips the shadow
weights where the paper does. ``quantized_weight()`` gives the integer codes and scale that
the deployment model (``model.deploy``) stores.

Convolutions are im2col matrix products: no loop over pixels, only over the R*S kernel
offsets when the gradient is scattered back (``col2im``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "Layer", "Dense", "Conv2d", "BatchNorm", "MaxPool2d", "Flatten", "ReLU", "HardTanh",
    "Sign", "im2col", "col2im", "conv_output_size", "softmax_cross_entropy", "ap2",
]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling along one axis."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"kernel {kernel} with stride {stride} and padding {padding} does not "
                         f"fit an input of size {size}")
    return out


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: int, padding: int) -> np.ndarray:
    """Patches of ``x`` ``[N, C, H, W]`` as rows: ``[N*Ho*Wo, C*R*S]`` (zero padding).

    Row ``(n, i, j)`` holds the ``C x R x S`` window whose top-left corner is input pixel
    ``(i*stride - padding, j*stride - padding)``, in ``(c, r, s)`` order, so a convolution
    is ``im2col(x) @ w.reshape(M, -1).T``.
    """
    n, c, h, w = x.shape
    r, s = kernel
    ho = conv_output_size(h, r, stride, padding)
    wo = conv_output_size(w, s, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (r, s), axis=(2, 3))
    windows = windows[:, :, : (ho - 1) * stride + 1 : stride, : (wo - 1) * stride + 1 : stride]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * r * s)


def col2im(cols: np.ndarray, x_shape: tuple, kernel: tuple[int, int], stride: int,
           padding: int) -> np.ndarray:
    """Adjoint of ``im2col``: add every patch row back into an ``x_shape`` array."""
    n, c, h, w = x_shape
    r, s = kernel
    ho = conv_output_size(h, r, stride, padding)
    wo = conv_output_size(w, s, stride, padding)
    patches = cols.reshape(n, ho, wo, c, r, s).transpose(0, 3, 4, 5, 1, 2)
    xp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(r):
        for j in range(s):
            xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] += patches[:, :, i, j]
    return xp[:, :, padding : padding + h, padding : padding + w]


def ap2(x) -> np.ndarray:
    """Approximate power of two of the BNN paper: ``sign(x) * 2**round(log2|x|)``, 0 at 0.

    Used by the shift-based batch norm and AdaMax, where a product with ``ap2(y)`` is a
    shift; rounding of the exponent is half-to-even (``np.round``).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    nz = x != 0
    out[nz] = np.sign(x[nz]) * np.exp2(np.round(np.log2(np.abs(x[nz]))))
    return out


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of ``logits`` ``[N, K]`` and its gradient."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -float(log_p[np.arange(n), labels].mean())
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1.0
    return loss, grad / n


class Layer:
    """A layer: ``forward``/``backward``, trainable ``params`` with ``grads``, ``buffers``."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def constrain(self) -> None:
        """Project the parameters back where the method keeps them (after each update)."""

    def __call__(self, x, *, training: bool = False):
        return self.forward(x, training=training)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        return ""


def _glorot(rng: np.random.Generator, shape: tuple, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


class Dense(Layer):
    """Fully connected layer ``y = x @ W.T + b``; ``W`` is ``[out, in]`` (Glorot init)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 rng: np.random.Generator | None = None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.params["weight"] = _glorot(rng, (self.out_features, self.in_features),
                                        self.in_features, self.out_features)
        if bias:
            self.params["bias"] = np.zeros(self.out_features)

    def describe(self) -> str:
        return f"{self.in_features} -> {self.out_features}"

    def effective_weight(self, training: bool) -> np.ndarray:
        """The weight the forward pass multiplies with (quantized layers override)."""
        return self.params["weight"]

    def weight_gradient(self, grad_effective: np.ndarray) -> np.ndarray:
        """Gradient on the shadow weight from the one on the effective weight (STE)."""
        return grad_effective

    def input_transform(self, x: np.ndarray, training: bool) -> np.ndarray:
        """What the layer does to its input before the product (quantized inputs)."""
        return x

    def input_gradient(self, grad: np.ndarray) -> np.ndarray:
        return grad

    def forward(self, x, *, training=False):
        xq = self.input_transform(x, training)
        w = self.effective_weight(training)
        self._cache = xq, w
        y = xq @ w.T
        if "bias" in self.params:
            y = y + self.params["bias"]
        return y

    def backward(self, grad):
        xq, w = self._cache
        self.grads["weight"] = self.weight_gradient(grad.T @ xq)
        if "bias" in self.params:
            self.grads["bias"] = grad.sum(axis=0)
        return self.input_gradient(grad @ w)


class Conv2d(Layer):
    """2-D convolution (cross-correlation) of ``[N, C, H, W]`` with ``W`` ``[M, C, R, S]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, stride: int = 1,
                 padding: int = 0, bias: bool = True, rng: np.random.Generator | None = None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        r, s = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel = (int(r), int(s))
        self.stride, self.padding = int(stride), int(padding)
        fan_in, fan_out = in_channels * r * s, out_channels * r * s
        self.params["weight"] = _glorot(rng, (out_channels, in_channels, r, s), fan_in, fan_out)
        if bias:
            self.params["bias"] = np.zeros(out_channels)

    def describe(self) -> str:
        r, s = self.kernel
        return (f"{self.in_channels} -> {self.out_channels}, {r}x{s}, stride {self.stride}, "
                f"padding {self.padding}")

    effective_weight = Dense.effective_weight
    weight_gradient = Dense.weight_gradient
    input_transform = Dense.input_transform
    input_gradient = Dense.input_gradient

    def output_shape(self, in_shape: tuple) -> tuple:
        """``(M, Ho, Wo)`` for an input of shape ``(C, H, W)``."""
        _, h, w = in_shape
        return (self.out_channels, conv_output_size(h, self.kernel[0], self.stride, self.padding),
                conv_output_size(w, self.kernel[1], self.stride, self.padding))

    def forward(self, x, *, training=False):
        xq = self.input_transform(x, training)
        w = self.effective_weight(training)
        n = x.shape[0]
        m, ho, wo = self.output_shape(x.shape[1:])
        cols = im2col(xq, self.kernel, self.stride, self.padding)
        self._cache = cols, w, xq.shape
        y = cols @ w.reshape(m, -1).T
        if "bias" in self.params:
            y = y + self.params["bias"]
        return y.reshape(n, ho, wo, m).transpose(0, 3, 1, 2)

    def backward(self, grad):
        cols, w, x_shape = self._cache
        m = w.shape[0]
        g = grad.transpose(0, 2, 3, 1).reshape(-1, m)
        self.grads["weight"] = self.weight_gradient((g.T @ cols).reshape(w.shape))
        if "bias" in self.params:
            self.grads["bias"] = g.sum(axis=0)
        dcols = g @ w.reshape(m, -1)
        return self.input_gradient(col2im(dcols, x_shape, self.kernel, self.stride, self.padding))


class BatchNorm(Layer):
    """Batch normalisation over the channel axis 1 of ``[N, C]`` or ``[N, C, H, W]``.

    Training uses the batch statistics and updates running ones (``momentum`` is the weight
    of the old value); evaluation is the per-channel affine map of ``eval_affine()``.
    ``shift_based=True`` is the shift-based variant of the BNN paper (Algorithm 3): the
    variance is approximated as ``mean(c * ap2(c))`` with ``c = x - mean``, and both the
    inverse standard deviation and ``gamma`` are rounded to powers of two with ``ap2``, so
    each product is a shift; its gradient passes straight through ``ap2``.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.9, eps: float = 1e-4,
                 shift_based: bool = False):
        super().__init__()
        self.num_features = int(num_features)
        self.momentum, self.eps, self.shift_based = float(momentum), float(eps), bool(shift_based)
        self.params["gamma"] = np.ones(self.num_features)
        self.params["beta"] = np.zeros(self.num_features)
        self.buffers["running_mean"] = np.zeros(self.num_features)
        self.buffers["running_var"] = np.ones(self.num_features)

    def describe(self) -> str:
        return f"{self.num_features}" + (", shift-based" if self.shift_based else "")

    def _axes(self, x):
        return (0,) if x.ndim == 2 else (0, 2, 3)

    def _bshape(self, x):
        return (1, -1) if x.ndim == 2 else (1, -1, 1, 1)

    def _scale(self, var):
        inv = 1.0 / np.sqrt(var + self.eps)
        gamma = self.params["gamma"]
        if self.shift_based:
            return ap2(gamma), ap2(inv)
        return gamma, inv

    def eval_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(gain, offset)`` with evaluation output ``x * gain + offset``."""
        gamma, inv = self._scale(self.buffers["running_var"])
        gain = gamma * inv
        return gain, self.params["beta"] - self.buffers["running_mean"] * gain

    def forward(self, x, *, training=False):
        shape = self._bshape(x)
        if not training:
            gain, offset = self.eval_affine()
            return x * gain.reshape(shape) + offset.reshape(shape)
        axes = self._axes(x)
        mean = x.mean(axis=axes)
        centred = x - mean.reshape(shape)
        if self.shift_based:
            var = (centred * ap2(centred)).mean(axis=axes)
        else:
            var = (centred * centred).mean(axis=axes)
        gamma, inv = self._scale(var)
        xhat = centred * inv.reshape(shape)
        count = x.size // self.num_features
        unbiased = var * count / max(count - 1, 1)
        mom = self.momentum
        self.buffers["running_mean"] = mom * self.buffers["running_mean"] + (1 - mom) * mean
        self.buffers["running_var"] = mom * self.buffers["running_var"] + (1 - mom) * unbiased
        self._cache = xhat, gamma, inv, axes, shape, count
        return xhat * gamma.reshape(shape) + self.params["beta"].reshape(shape)

    def backward(self, grad):
        xhat, gamma, inv, axes, shape, count = self._cache
        self.grads["gamma"] = (grad * xhat).sum(axis=axes)
        self.grads["beta"] = grad.sum(axis=axes)
        dxhat = grad * gamma.reshape(shape)
        sum_d = dxhat.sum(axis=axes).reshape(shape)
        sum_dx = (dxhat * xhat).sum(axis=axes).reshape(shape)
        # For the shift-based variant xhat is not exactly unit-variance; the same formula is
        # its straight-through gradient.
        return inv.reshape(shape) / count * (count * dxhat - sum_d - xhat * sum_dx)


class MaxPool2d(Layer):
    """Max pooling of ``[N, C, H, W]`` over ``size x size`` windows (gradient to the max).

    On ties the first maximum in row-major window order receives the gradient.
    """

    def __init__(self, size: int = 2, stride: int | None = None):
        super().__init__()
        self.size = int(size)
        self.stride = int(stride) if stride is not None else self.size

    def describe(self) -> str:
        return f"{self.size}x{self.size}, stride {self.stride}"

    def output_shape(self, in_shape: tuple) -> tuple:
        c, h, w = in_shape
        return (c, conv_output_size(h, self.size, self.stride, 0),
                conv_output_size(w, self.size, self.stride, 0))

    def forward(self, x, *, training=False):
        n, c, h, w = x.shape
        _, ho, wo = self.output_shape(x.shape[1:])
        k, st = self.size, self.stride
        win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
        win = win[:, :, : (ho - 1) * st + 1 : st, : (wo - 1) * st + 1 : st].reshape(n, c, ho, wo, k * k)
        arg = win.argmax(axis=-1)
        self._cache = arg, x.shape
        return np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]

    def backward(self, grad):
        arg, x_shape = self._cache
        k, st = self.size, self.stride
        n, c, ho, wo = grad.shape
        dx = np.zeros(x_shape)
        for i in range(k):
            for j in range(k):
                hit = arg == i * k + j
                dx[:, :, i : i + st * ho : st, j : j + st * wo : st] += grad * hit
        return dx


class Flatten(Layer):
    """``[N, C, H, W]`` to ``[N, C*H*W]`` (channel-major, the order of ``reshape``)."""

    def forward(self, x, *, training=False):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self._shape)


class ReLU(Layer):
    """``max(x, 0)``."""

    def forward(self, x, *, training=False):
        self._mask = x > 0
        return x * self._mask

    def backward(self, grad):
        return grad * self._mask


class HardTanh(Layer):
    """``clip(x, -1, 1)``; gradient ``1{|x| <= 1}``."""

    def forward(self, x, *, training=False):
        self._mask = np.abs(x) <= 1
        return np.clip(x, -1.0, 1.0)

    def backward(self, grad):
        return grad * self._mask
