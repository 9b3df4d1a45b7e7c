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
offsets when the gradient is scattered back (``col2im``); grouped and depthwise
convolutions (``groups``) are one batched product per group (``einsum``).

``QuantizeGradients`` is the identity going forward and DoReFa-Net's k-bit stochastic
gradient quantizer (``model.quant.dorefa_gradients``) going back.
"""

from __future__ import annotations

import numpy as np

from model import quant

__all__ = [
    "Layer", "Sequential", "Linear", "QuantizedWeights", "Dense", "Conv2d", "BinaryDense",
    "BinaryConv2d", "TernaryDense", "TernaryConv2d", "Pow2Dense", "Pow2Conv2d", "DorefaDense",
    "DorefaConv2d", "IntDense", "IntConv2d", "Sign", "BatchNorm", "MaxPool2d", "Flatten", "ReLU",
    "HardTanh", "QuantizeGradients", "im2col", "col2im", "conv_output_size",
    "softmax_cross_entropy", "ap2", "QUANTIZED_LAYERS",
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
            rows = slice(i, i + stride * ho, stride)
            cols_ = slice(j, j + stride * wo, stride)
            xp[:, :, rows, cols_] += patches[:, :, i, j]
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


class Linear(Layer):
    """What ``Dense`` and ``Conv2d`` share: ``y = (codes @ levels.T) * scale (+ bias)``.

    A float layer's "codes" are its input and its "levels" its weights (``input_scale``
    multiplies the product; 1 by default). A quantized layer overrides ``weight_levels``
    (integer levels and their scale, from a ``model.quant`` quantizer) and, when it has
    ``input_bits``, quantizes its input to DoReFa activation codes; the product of integer
    levels and integer codes is then exact in float64 and ``y = float64(acc) * scale`` is the
    very computation the folded thresholds of ``model.thresholds`` reproduce.
    """

    input_bits: int | None = None
    #: Independent channel groups (``Conv2d`` only; a dense layer is one group).
    groups: int = 1

    def _init_linear(self, weight_shape, fan_in, fan_out, bias, rng, input_scale):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.params["weight"] = _glorot(rng, weight_shape, fan_in, fan_out)
        if bias:
            self.params["bias"] = np.zeros(weight_shape[0])
        self.input_scale = float(input_scale)

    def weight_levels(self) -> tuple[np.ndarray, float | np.ndarray]:
        """``(levels, scale)``: the weight is ``levels * scale`` (scale: scalar or [M])."""
        return self.params["weight"], 1.0

    def weight_gradient(self, weight, grad_value: np.ndarray) -> np.ndarray:
        """Gradient on the shadow weight from the one on the weight value (the STE)."""
        return grad_value

    def input_codes(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``(codes, scale)`` of the input: its value is ``codes * scale``."""
        return x, self.input_scale

    def input_gradient(self, x: np.ndarray, grad_value: np.ndarray) -> np.ndarray:
        """Gradient on the input from the one on the input value ``codes * scale``."""
        return grad_value * self.input_scale

    def output_scale(self) -> float | np.ndarray:
        """The real value of one accumulator unit: weight scale times input-code scale."""
        _, w_scale = self.weight_levels()
        return self._output_scale(w_scale, self.input_codes_scale())

    def input_codes_scale(self) -> float:
        return self.input_scale

    @staticmethod
    def _output_scale(w_scale, code_scale):
        return np.asarray(w_scale, dtype=np.float64).reshape(-1) * code_scale \
            if np.ndim(w_scale) else float(w_scale) * code_scale

    def _product(self, cols, x_for_grad):
        """``cols`` [P, K] of input codes -> [P, M] outputs; caches what backward needs."""
        levels, w_scale = self.weight_levels()
        codes_scale = self.input_codes_scale()
        m = levels.shape[0]
        lv = levels.reshape(m, -1).astype(np.float64)
        scale = self._output_scale(w_scale, codes_scale)
        w_value = lv * (np.asarray(w_scale, dtype=np.float64).reshape(-1, 1)
                        if np.ndim(w_scale) else float(w_scale))
        y = self._grouped_matmul(cols, lv) * scale
        if "bias" in self.params:
            y = y + self.params["bias"]
        self._cache = cols, w_value, codes_scale, x_for_grad
        return y

    def _product_backward(self, g):
        """From ``g`` [P, M]: set the weight gradients, return the gradient on the codes' values."""
        cols, w_value, codes_scale, _ = self._cache
        weight = self.params["weight"]
        G = self.groups
        if G == 1:
            grad_value = (g * codes_scale).T @ cols
        else:
            gg = (g * codes_scale).reshape(len(g), G, -1)
            grad_value = np.einsum("pgm,pgk->gmk", gg, cols.reshape(len(cols), G, -1))
        self.grads["weight"] = self.weight_gradient(weight, grad_value.reshape(weight.shape))
        if "bias" in self.params:
            self.grads["bias"] = g.sum(axis=0)
        if G == 1:
            return g @ w_value
        wv = w_value.reshape(G, -1, w_value.shape[1])
        return np.einsum("pgm,gmk->pgk", g.reshape(len(g), G, -1), wv).reshape(len(g), -1)

    def _grouped_matmul(self, cols, lv):
        """``cols`` [P, G*K] times ``lv`` [M, K] group by group: [P, M] (``cols @ lv.T`` if
        one group; filter ``m`` of group ``m // (M / G)`` sees that group's K columns)."""
        G = self.groups
        if G == 1:
            return cols @ lv.T
        p = cols.shape[0]
        return np.einsum("pgk,gmk->pgm", cols.reshape(p, G, -1),
                         lv.reshape(G, -1, lv.shape[1])).reshape(p, -1)


class Dense(Linear):
    """Fully connected layer ``y = x @ W.T + b``; ``W`` is ``[out, in]`` (Glorot init)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 rng: np.random.Generator | None = None, input_scale: float = 1.0):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._init_linear((self.out_features, self.in_features), self.in_features,
                          self.out_features, bias, rng, input_scale)

    def describe(self) -> str:
        return f"{self.in_features} -> {self.out_features}"

    def forward(self, x, *, training=False):
        codes, _ = self.input_codes(x)
        return self._product(codes, x)

    def backward(self, grad):
        x = self._cache[3]
        return self.input_gradient(x, self._product_backward(grad))


class Conv2d(Linear):
    """2-D convolution (cross-correlation) of ``[N, C, H, W]`` with ``W`` ``[M, C / G, R, S]``.

    ``groups`` (G) splits channels and filters into independent groups, as
    ``model.ops.conv2d``: filter ``m`` sees only the ``C / G`` channels of group
    ``m // (M / G)``. Depthwise: ``groups == in_channels == out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, stride: int = 1,
                 padding: int = 0, bias: bool = True, rng: np.random.Generator | None = None,
                 input_scale: float = 1.0, groups: int = 1):
        super().__init__()
        r, s = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1 \
                or self.in_channels % groups or self.out_channels % groups:
            raise ValueError(f"groups must be a positive integer dividing the input channels "
                             f"({self.in_channels}) and the filters ({self.out_channels}), "
                             f"not {groups!r}")
        self.groups = int(groups)
        self.kernel = (int(r), int(s))
        self.stride, self.padding = int(stride), int(padding)
        c_per, m_per = self.in_channels // self.groups, self.out_channels // self.groups
        self._init_linear((self.out_channels, c_per, r, s), c_per * r * s, m_per * r * s, bias,
                          rng, input_scale)

    def describe(self) -> str:
        r, s = self.kernel
        groups = f", groups {self.groups}" if self.groups > 1 else ""
        return (f"{self.in_channels} -> {self.out_channels}, {r}x{s}, stride {self.stride}, "
                f"padding {self.padding}{groups}")

    def output_shape(self, in_shape: tuple) -> tuple:
        """``(M, Ho, Wo)`` for an input of shape ``(C, H, W)``."""
        _, h, w = in_shape
        return (self.out_channels, conv_output_size(h, self.kernel[0], self.stride, self.padding),
                conv_output_size(w, self.kernel[1], self.stride, self.padding))

    def forward(self, x, *, training=False):
        n = x.shape[0]
        m, ho, wo = self.output_shape(x.shape[1:])
        codes, _ = self.input_codes(x)
        y = self._product(im2col(codes, self.kernel, self.stride, self.padding), x)
        return y.reshape(n, ho, wo, m).transpose(0, 3, 1, 2)

    def backward(self, grad):
        x = self._cache[3]
        g = grad.transpose(0, 2, 3, 1).reshape(-1, grad.shape[1])
        dcols = self._product_backward(g)
        dcodes = col2im(dcols, x.shape, self.kernel, self.stride, self.padding)
        return self.input_gradient(x, dcodes)


class QuantizedWeights:
    """Mixin for quantized ``Dense``/``Conv2d``: shadow weights, quantized every forward pass.

    Subclasses set ``scheme`` and implement ``quantized_weight()`` (a ``model.quant.QTensor``
    of the current shadow weights) and ``weight_gradient`` (the paper's straight-through
    estimator). ``input_bits`` (optional) quantizes the layer's input with
    ``model.quant.dorefa_activations`` (``quantize_k(clip(x, 0, 1))``) first, as DoReFa-Net's
    layers do; without it the input must already be integer codes (the +/-1 output of
    ``Sign``, or pixel codes with ``input_scale = 1 / pixel_max`` in a first layer).
    No bias: the batch norm that follows provides the offset.
    """

    scheme = ""

    def _init_quantized(self, input_bits):
        if input_bits is not None:
            quant.activation_code_range("dorefa", input_bits)  # validates the width
        self.input_bits = input_bits

    def quantized_weight(self) -> quant.QTensor:
        raise NotImplementedError

    def weight_levels(self):
        q = self.quantized_weight()
        scale = q.scale if np.ndim(q.scale) == 0 else np.asarray(q.scale).reshape(-1)
        return q.levels().astype(np.float64), scale

    def input_codes_scale(self) -> float:
        if self.input_bits is None:
            return self.input_scale
        return 1.0 / ((1 << self.input_bits) - 1)

    def input_codes(self, x):
        if self.input_bits is None:
            return x, self.input_scale
        q = quant.dorefa_activations(x, self.input_bits)
        return q.codes.astype(np.float64), self.input_codes_scale()

    def input_gradient(self, x, grad_value):
        if self.input_bits is None:
            return grad_value * self.input_scale
        return quant.ste_dorefa_activations_grad(x, grad_value)

    def describe(self) -> str:
        extra = f", input {self.input_bits}-bit" if self.input_bits is not None else ""
        base = Conv2d if isinstance(self, Conv2d) else Dense
        return base.describe(self) + extra


class _QuantizedDense(QuantizedWeights, Dense):
    """A ``Dense`` layer without bias whose weights a subclass quantizes."""

    def __init__(self, in_features, out_features, *, rng=None, input_bits=None,
                 input_scale=1.0):
        Dense.__init__(self, in_features, out_features, bias=False, rng=rng,
                       input_scale=input_scale)
        self._init_quantized(input_bits)


class _QuantizedConv2d(QuantizedWeights, Conv2d):
    """A ``Conv2d`` layer without bias whose weights a subclass quantizes."""

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0,
                 rng=None, input_bits=None, input_scale=1.0, groups=1):
        Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                        padding=padding, bias=False, rng=rng, input_scale=input_scale,
                        groups=groups)
        self._init_quantized(input_bits)


class BinaryDense(_QuantizedDense):
    """Dense layer with binary weights ``sign(W)`` (BinaryConnect / BinaryNet).

    Forward: ``binarize(W)`` (+/-1, sign(0) = +1, no scale: the batch norm that follows
    absorbs it). Backward: ``ste_sign_grad`` (``grad * 1{|W| <= 1}``); ``constrain`` clips the
    shadow weights to [-1, 1] after each update, as the paper does.
    """

    scheme = "binary"

    def quantized_weight(self):
        return quant.binarize(self.params["weight"])

    def weight_gradient(self, weight, grad_value):
        return quant.ste_sign_grad(weight, grad_value)

    def constrain(self):
        np.clip(self.params["weight"], -1.0, 1.0, out=self.params["weight"])


class BinaryConv2d(_QuantizedConv2d):
    """Convolution with binary weights; as ``BinaryDense`` (BinaryNet)."""

    scheme = "binary"
    quantized_weight = BinaryDense.quantized_weight
    weight_gradient = BinaryDense.weight_gradient
    constrain = BinaryDense.constrain


class TernaryDense(_QuantizedDense):
    """Dense layer with ternary weights ``alpha * {-1, 0, +1}`` (TWN, ``quant.ternarize``).

    ``Delta = 0.7 mean|W|`` per layer (strict ``|w| > Delta``), alpha the mean of the kept
    magnitudes. Backward: the gradient passes straight to the shadow weights
    (``ste_ternary_grad``); no clipping.
    """

    scheme = "ternary"

    def quantized_weight(self):
        return quant.ternarize(self.params["weight"])

    def weight_gradient(self, weight, grad_value):
        return quant.ste_ternary_grad(weight, grad_value)


class TernaryConv2d(_QuantizedConv2d):
    """Convolution with ternary weights; as ``TernaryDense`` (TWN)."""

    scheme = "ternary"
    quantized_weight = TernaryDense.quantized_weight
    weight_gradient = TernaryDense.weight_gradient


class Pow2Dense(_QuantizedDense):
    """Dense layer with five-level weights ``alpha * {-2, -1, 0, +1, +2}`` (``quantize_pow2``).

    INQ's rule at b = 3: alpha a power of two from ``max|W|``, nearest level. Backward: the
    gradient passes straight through (``ste_identity_grad``).
    """

    scheme = "pow2"

    def quantized_weight(self):
        return quant.quantize_pow2(self.params["weight"])

    def weight_gradient(self, weight, grad_value):
        return quant.ste_identity_grad(weight, grad_value)


class Pow2Conv2d(_QuantizedConv2d):
    """Convolution with five-level weights; as ``Pow2Dense``."""

    scheme = "pow2"
    quantized_weight = Pow2Dense.quantized_weight
    weight_gradient = Pow2Dense.weight_gradient


class DorefaDense(_QuantizedDense):
    """DoReFa-Net dense layer: ``bitW``-bit weights, input quantized to ``bitA`` bits.

    Weights: ``dorefa_weights(W, bitW)`` (k = 1: ``sign(W) mean|W|``; k > 1: the tanh form);
    input: ``dorefa_activations(x, bitA)`` = ``quantize_k(clip(x, 0, 1))`` (``bitA=None``:
    the input is used as it is, e.g. pixel codes in a first layer). Backward:
    ``ste_dorefa_weights_grad`` and ``ste_dorefa_activations_grad``.
    """

    scheme = "dorefa"

    def __init__(self, in_features, out_features, *, bitW=1, bitA=None, rng=None,
                 input_scale=1.0):
        self.bitW = quant.weight_bits("dorefa", bitW)
        super().__init__(in_features, out_features, rng=rng, input_bits=bitA,
                         input_scale=input_scale)

    def quantized_weight(self):
        return quant.dorefa_weights(self.params["weight"], self.bitW)

    def weight_gradient(self, weight, grad_value):
        return quant.ste_dorefa_weights_grad(weight, grad_value, self.bitW)

    def describe(self) -> str:
        return QuantizedWeights.describe(self) + f", W{self.bitW}"


class DorefaConv2d(_QuantizedConv2d):
    """DoReFa-Net convolution (``bitW``, ``bitA``); as ``DorefaDense``."""

    scheme = "dorefa"

    def __init__(self, in_channels, out_channels, kernel_size, *, bitW=1, bitA=None, stride=1,
                 padding=0, rng=None, input_scale=1.0, groups=1):
        self.bitW = quant.weight_bits("dorefa", bitW)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         rng=rng, input_bits=bitA, input_scale=input_scale, groups=groups)

    quantized_weight = DorefaDense.quantized_weight
    weight_gradient = DorefaDense.weight_gradient
    describe = DorefaDense.describe


class IntDense(_QuantizedDense):
    """Dense layer with symmetric ``bits``-bit integer weights (``quantize_int``, per layer).

    The higher-precision layer of a low-bit network (DoReFa keeps its last layer wide) and the
    ``int`` baseline. Backward: straight through (``ste_identity_grad``).
    """

    scheme = "int"

    def __init__(self, in_features, out_features, *, bits=8, input_bits=None, rng=None,
                 input_scale=1.0):
        self.bits = quant.weight_bits("int", bits)
        super().__init__(in_features, out_features, rng=rng, input_bits=input_bits,
                         input_scale=input_scale)

    def quantized_weight(self):
        return quant.quantize_int(self.params["weight"], self.bits)

    def weight_gradient(self, weight, grad_value):
        return quant.ste_identity_grad(weight, grad_value)

    def describe(self) -> str:
        return QuantizedWeights.describe(self) + f", {self.bits}-bit"


class IntConv2d(_QuantizedConv2d):
    """Convolution with symmetric ``bits``-bit integer weights; as ``IntDense``."""

    scheme = "int"

    def __init__(self, in_channels, out_channels, kernel_size, *, bits=8, input_bits=None,
                 stride=1, padding=0, rng=None, input_scale=1.0, groups=1):
        self.bits = quant.weight_bits("int", bits)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         rng=rng, input_bits=input_bits, input_scale=input_scale, groups=groups)

    quantized_weight = IntDense.quantized_weight
    weight_gradient = IntDense.weight_gradient
    describe = IntDense.describe


#: Every quantized weight layer, by name.
QUANTIZED_LAYERS = {cls.__name__: cls for cls in (
    BinaryDense, BinaryConv2d, TernaryDense, TernaryConv2d, Pow2Dense, Pow2Conv2d, DorefaDense,
    DorefaConv2d, IntDense, IntConv2d)}


class Sign(Layer):
    """Binarized activation ``sign(x)`` (+/-1, sign(0) = +1) with the htanh STE.

    Forward: ``model.quant.binarize``; backward: ``ste_sign_grad``, ``grad * 1{|x| <= 1}``
    (BNN paper).
    """

    def forward(self, x, *, training=False):
        self._x = x
        return quant.binarize(x).levels().astype(np.float64)

    def backward(self, grad):
        return quant.ste_sign_grad(self._x, grad)


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

    def inference_params(self) -> dict[str, np.ndarray]:
        """``gamma, beta, mean, var, eps`` of the evaluation map, per channel (float64).

        Evaluation computes ``(x - mean) / sqrt(var + eps) * gamma + beta`` in exactly this
        order, the expression ``model.thresholds`` folds into integer thresholds. For the
        shift-based variant ``gamma`` is ``ap2(gamma)`` and ``sqrt(var + eps)`` is the power of
        two ``1 / ap2(1 / sqrt(running_var + eps))`` (given as ``var`` with ``eps = 0``, so
        its square root is exact).
        """
        var = self.buffers["running_var"]
        if self.shift_based:
            gamma, inv = self._scale(var)
            std = 1.0 / inv
            return {"gamma": gamma, "beta": self.params["beta"].copy(),
                    "mean": self.buffers["running_mean"].copy(), "var": std * std,
                    "eps": np.zeros(self.num_features)}
        return {"gamma": self.params["gamma"].copy(), "beta": self.params["beta"].copy(),
                "mean": self.buffers["running_mean"].copy(), "var": var.copy(),
                "eps": np.full(self.num_features, self.eps)}

    def eval_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(gain, offset)``: evaluation is ``x * gain + offset`` up to rounding."""
        p = self.inference_params()
        gain = p["gamma"] / np.sqrt(p["var"] + p["eps"])
        return gain, p["beta"] - p["mean"] * gain

    def forward(self, x, *, training=False):
        shape = self._bshape(x)
        if not training:
            p = {k: v.reshape(shape) for k, v in self.inference_params().items()}
            return (x - p["mean"]) / np.sqrt(p["var"] + p["eps"]) * p["gamma"] + p["beta"]
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
        win = win[:, :, : (ho - 1) * st + 1 : st, : (wo - 1) * st + 1 : st]
        win = win.reshape(n, c, ho, wo, k * k)
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


class QuantizeGradients(Layer):
    """Identity forward; backward quantizes the gradient to ``bits`` bits (DoReFa-Net).

    Placed after a layer's output, as DoReFa-Net's ``fg``, it makes that layer's weight and
    input gradients come from the quantized gradient:
    ``2 M [quantize_k(g / (2M) + 1/2 + N(k)) - 1/2]`` with ``M`` the max-abs over all axes but
    the batch and ``N(k)`` uniform noise of one step (``model.quant.dorefa_gradients``).
    ``bits`` = 32 passes the gradient unchanged (the paper's "G = 32": float gradients). The
    noise comes from ``numpy.random.default_rng(seed)`` (``seed``: an int or a sequence of
    ints, e.g. the network's seed and the layer's position), so training stays reproducible.
    Inference never sees it: the deployment model folds it away.
    """

    def __init__(self, bits: int, *, seed: int = 0):
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) \
                or not (1 <= bits <= 16 or bits == 32):
            raise ValueError(f"gradient bits must be in [1, 16] or 32 (float), not {bits!r}")
        self.bits = int(bits)
        self._rng = np.random.default_rng(seed)

    def describe(self) -> str:
        return f"{self.bits}-bit" if self.bits != 32 else "float"

    def forward(self, x, *, training=False):
        return x

    def backward(self, grad):
        if self.bits == 32:
            return grad
        return quant.dorefa_gradients(grad, self.bits, self._rng)


class Sequential(Layer):
    """Layers applied in order; parameters are named ``"<index>.<key>"`` (e.g. ``"0.weight"``)."""

    def __init__(self, layers: list[Layer]):
        super().__init__()
        self.layers = list(layers)

    def describe(self) -> str:
        return ", ".join(repr(layer) for layer in self.layers)

    def forward(self, x, *, training=False):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def constrain(self) -> None:
        for layer in self.layers:
            layer.constrain()

    def named_parameters(self) -> list[tuple[str, Layer, str]]:
        """``(name, layer, key)`` of every trainable array, in a fixed order."""
        return [(f"{i}.{key}", layer, key) for i, layer in enumerate(self.layers)
                for key in layer.params]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, by name."""
        state = {}
        for i, layer in enumerate(self.layers):
            for key, value in {**layer.params, **layer.buffers}.items():
                state[f"{i}.{key}"] = value.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Set parameters and buffers from ``state_dict()`` output (names and shapes checked)."""
        mine = self.state_dict()
        if set(state) != set(mine):
            raise ValueError(f"state names differ: missing {sorted(set(mine) - set(state))}, "
                             f"unexpected {sorted(set(state) - set(mine))}")
        for i, layer in enumerate(self.layers):
            for store in (layer.params, layer.buffers):
                for key in store:
                    name = f"{i}.{key}"
                    value = np.asarray(state[name])
                    if value.dtype.kind not in "iuf":
                        raise ValueError(f"{name} must hold real numbers, not {value.dtype} "
                                         "values")
                    value = value.astype(np.float64)
                    if not np.all(np.isfinite(value)):
                        raise ValueError(f"{name} contains NaN or inf; allowed: finite numbers")
                    if key == "running_var" and np.any(value < 0):
                        raise ValueError(f"{name} holds {float(value[value < 0][0])!r}; allowed: "
                                         "variances >= 0")
                    if value.shape != store[key].shape:
                        raise ValueError(f"{i}.{key} has shape {value.shape}, the network "
                                         f"needs {store[key].shape}")
                    store[key] = value.copy()
