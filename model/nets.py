"""The networks: the seed articles' three MNIST networks, a float baseline, two MLPs and a
small depthwise-separable network.

Every builder takes the input shape ``(C, H, W)``, the number of classes, the largest pixel
code (the network's input is the pixel *codes*; the first layer's ``input_scale`` is
``1 / pixel_max``) and a seed for the initial weights, and returns a ``Sequential``. Sizes
adapt to the input: 8x8 digits give a 2x2x64 feature map before the dense layers, 28x28
MNIST 7x7x64.

=============  ================================================================================
name           layers
=============  ================================================================================
binarynet      BinaryConv2d 32 5x5 -> MaxPool -> BN + htanh -> Sign -> BinaryConv2d 64 5x5 ->
               MaxPool -> BN -> Flatten -> Sign -> BinaryDense 256 -> BN -> Sign ->
               BinaryDense classes -> BN (BinaryNet, Courbariaux et al. 2016)
ternarynet     the same shape with TernaryConv2d / TernaryDense (TWN weights, +/-1 activations)
dorefanet      the same shape with DorefaConv2d / DorefaDense, bitW = 1, bitA = 3 (each layer
               quantizes its input), BN + htanh; the last layer keeps wider weights: IntDense
               with 8-bit weights on bitA-bit inputs (DoReFa-Net keeps first and last layers
               wide; the first layer here takes the raw pixel codes). ``bits=(W, A, G)`` sets
               the widths; G < 32 quantizes the gradients (``QuantizeGradients`` after every
               weight layer but the first and the last, as DoReFa-Net's ``fg``)
float          the same shape in float: Conv2d / Dense, BN + htanh (the baseline)
lenet300       LeNet-300-100: Dense 300 -> ReLU -> Dense 100 -> ReLU -> Dense classes (float,
               with biases; Deep Compression's baseline)
binarymlp      BinaryDense 256 -> BN -> Sign -> BinaryDense classes -> BN (for the smallest
               boards; 64-256-10 on digits)
mobilenet_tiny MobileNet's depthwise-separable blocks with ternary weights and +/-1
               activations: TernaryConv2d 32 3x3 -> BN -> Sign, then three blocks of a
               depthwise 3x3 (groups = channels; stride 1, 2, 2) -> BN -> Sign -> pointwise
               1x1 (64, 128, 128) -> BN -> Sign, then TernaryDense classes -> BN
=============  ================================================================================

``widths`` (optional) sets the output channels of every weight layer but the last (the
hidden widths: 32, 64, 256 for the conv networks, 300, 100 for lenet300, 256 for binarymlp):
structured pruning (``model.channels``) writes smaller networks this way, and the width a
model was built with is recorded in its file (``build_options``).

The first layer of the quantized networks takes the pixel codes as its integer input (the
BNN paper's 8-bit first layer: ``sum_n 2**(n-1) (x^n . w_b)`` over bit planes is the same
integer as the dot with the codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from model import layers as L

__all__ = ["NetSpec", "NETS", "QUANTIZED_NETS", "ARRAY_NETS", "DEFAULT_NET", "build",
           "build_options", "binarynet", "ternarynet", "dorefanet", "float_net", "lenet300",
           "binarymlp", "mobilenet_tiny", "DOREFA_BITS", "parse_bits"]


def _feature_size(input_shape: tuple[int, int, int]) -> tuple[int, int]:
    _, h, w = input_shape
    if h < 4 or w < 4:
        raise ValueError(f"the conv networks need images of at least 4x4, not {h}x{w}")
    return h // 2 // 2, w // 2 // 2


#: DoReFa-Net's (W, A, G) widths of ``dorefanet`` when none are given: W1A3, float gradients.
DOREFA_BITS = (1, 3, 32)


def parse_bits(text) -> tuple[int, int, int]:
    """``"W,A,G"`` (or a sequence of three) as DoReFa widths, validated; ``ValueError`` else.

    W (weights) in [1, 8], A (activations) in [1, 8], G (gradients) in [1, 16] or 32 (float).
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        w, a, g = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"bits must be three integers W,A,G (e.g. 1,2,6), not {text!r}") \
            from None
    if not (1 <= w <= 8 and 1 <= a <= 8 and (1 <= g <= 16 or g == 32)):
        raise ValueError(f"bits {w},{a},{g} out of range; allowed: W and A in 1..8, G in 1..16 "
                         "or 32 (float gradients)")
    return w, a, g


def _widths(given, default: tuple[int, ...], name: str) -> tuple[int, ...]:
    if given is None:
        return default
    widths = tuple(given)
    if len(widths) != len(default) or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in widths):
        raise ValueError(f"{name} takes {len(default)} positive hidden widths (default "
                         f"{','.join(map(str, default))}), not {given!r}")
    return tuple(int(v) for v in widths)


def _conv_body(kind: str, input_shape, classes: int, pixel_max: int, seed: int,
               shift_bn: bool = False, widths=None, bits=None) -> L.Sequential:
    """The common shape of binarynet, ternarynet, dorefanet and float."""
    rng = np.random.default_rng(seed)
    c, _, _ = input_shape
    fh, fw = _feature_size(input_shape)
    w1, w2, w3 = widths
    flat = w2 * fh * fw
    first_scale = 1.0 / pixel_max

    def bn(n):
        return L.BatchNorm(n, shift_based=shift_bn)

    if kind in ("binary", "ternary"):
        conv = L.BinaryConv2d if kind == "binary" else L.TernaryConv2d
        dense = L.BinaryDense if kind == "binary" else L.TernaryDense
        return L.Sequential([
            conv(c, w1, 5, padding=2, rng=rng, input_scale=first_scale),
            L.MaxPool2d(2), bn(w1), L.HardTanh(), L.Sign(),
            conv(w1, w2, 5, padding=2, rng=rng),
            L.MaxPool2d(2), bn(w2), L.Flatten(), L.Sign(),
            dense(flat, w3, rng=rng), bn(w3), L.Sign(),
            dense(w3, classes, rng=rng), bn(classes),
        ])
    if kind == "dorefa":
        bit_w, bit_a, bit_g = bits

        def fg(k):  # DoReFa's gradient quantizer after a middle layer (none for G = 32)
            return [L.QuantizeGradients(bit_g, seed=[seed, k])] if bit_g != 32 else []

        return L.Sequential([
            L.DorefaConv2d(c, w1, 5, bitW=bit_w, bitA=None, padding=2, rng=rng,
                           input_scale=first_scale),
            L.MaxPool2d(2), bn(w1), L.HardTanh(),
            L.DorefaConv2d(w1, w2, 5, bitW=bit_w, bitA=bit_a, padding=2, rng=rng), *fg(1),
            L.MaxPool2d(2), bn(w2), L.HardTanh(), L.Flatten(),
            L.DorefaDense(flat, w3, bitW=bit_w, bitA=bit_a, rng=rng), *fg(2), bn(w3),
            L.HardTanh(),
            L.IntDense(w3, classes, bits=8, input_bits=bit_a, rng=rng), bn(classes),
        ])
    if kind == "float":
        return L.Sequential([
            L.Conv2d(c, w1, 5, padding=2, bias=False, rng=rng, input_scale=first_scale),
            L.MaxPool2d(2), bn(w1), L.HardTanh(),
            L.Conv2d(w1, w2, 5, padding=2, bias=False, rng=rng),
            L.MaxPool2d(2), bn(w2), L.HardTanh(), L.Flatten(),
            L.Dense(flat, w3, bias=False, rng=rng), bn(w3), L.HardTanh(),
            L.Dense(w3, classes, bias=False, rng=rng), bn(classes),
        ])
    raise ValueError(f"unknown body {kind!r}")


_CONV_WIDTHS = (32, 64, 256)


def binarynet(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False, widths=None):
    """BinaryNet (binary weights and activations); ``shift_bn`` uses the shift-based BN."""
    return _conv_body("binary", input_shape, classes, pixel_max, seed, shift_bn,
                      _widths(widths, _CONV_WIDTHS, "binarynet"))


def ternarynet(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False, widths=None):
    """BinaryNet's shape with ternary (TWN) weights and +/-1 activations."""
    return _conv_body("ternary", input_shape, classes, pixel_max, seed, shift_bn,
                      _widths(widths, _CONV_WIDTHS, "ternarynet"))


def dorefanet(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False, widths=None,
              bits=None):
    """DoReFa-Net in BinaryNet's shape, 8-bit last layer; ``bits`` = (W, A, G), default
    ``DOREFA_BITS`` (W1A3, float gradients)."""
    return _conv_body("dorefa", input_shape, classes, pixel_max, seed, shift_bn,
                      _widths(widths, _CONV_WIDTHS, "dorefanet"),
                      parse_bits(DOREFA_BITS if bits is None else bits))


def float_net(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False, widths=None):
    """The float baseline of the same shape."""
    return _conv_body("float", input_shape, classes, pixel_max, seed, shift_bn,
                      _widths(widths, _CONV_WIDTHS, "float"))


def lenet300(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False, widths=None):
    """LeNet-300-100 (float, biases, ReLU)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(input_shape))
    w1, w2 = _widths(widths, (300, 100), "lenet300")
    return L.Sequential([
        L.Flatten(),
        L.Dense(n, w1, rng=rng, input_scale=1.0 / pixel_max), L.ReLU(),
        L.Dense(w1, w2, rng=rng), L.ReLU(),
        L.Dense(w2, classes, rng=rng),
    ])


def binarymlp(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False, widths=None):
    """Binary MLP n-256-classes (64-256-10 on digits)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(input_shape))
    (hidden,) = _widths(widths, (256,), "binarymlp")
    return L.Sequential([
        L.Flatten(),
        L.BinaryDense(n, hidden, rng=rng, input_scale=1.0 / pixel_max),
        L.BatchNorm(hidden, shift_based=shift_bn), L.Sign(),
        L.BinaryDense(hidden, classes, rng=rng), L.BatchNorm(classes, shift_based=shift_bn),
    ])


def mobilenet_tiny(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False):
    """MobileNet's depthwise-separable blocks, ternary weights, +/-1 activations (8x8: 2x2x128
    features before the dense layer)."""
    rng = np.random.default_rng(seed)
    c, h, w = input_shape
    if h < 4 or w < 4:
        raise ValueError(f"mobilenet_tiny needs images of at least 4x4, not {h}x{w}")

    def bn(n):
        return L.BatchNorm(n, shift_based=shift_bn)

    def block(cin, cout, stride):  # depthwise 3x3, then pointwise 1x1; each BN + sign
        return [L.TernaryConv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, rng=rng),
                bn(cin), L.Sign(),
                L.TernaryConv2d(cin, cout, 1, rng=rng), bn(cout), L.Sign()]

    fh, fw = ((h - 1) // 2) // 2 + 1, ((w - 1) // 2) // 2 + 1   # two 3x3 stride-2 blocks
    return L.Sequential([
        L.TernaryConv2d(c, 32, 3, padding=1, rng=rng, input_scale=1.0 / pixel_max),
        bn(32), L.HardTanh(), L.Sign(),
        *block(32, 64, 1), *block(64, 128, 2), *block(128, 128, 2), L.Flatten(),
        L.TernaryDense(128 * fh * fw, classes, rng=rng), bn(classes),
    ])


@dataclass(frozen=True)
class NetSpec:
    """A network by name: its builder and the training defaults that suit it.

    ``widths``: the default hidden widths when the builder takes ``widths`` (structured
    pruning can shrink them), else None. ``bits``: the default (W, A, G) when the builder
    takes ``bits`` (``mulfree train --bits``), else None. ``grouped``: the network has
    grouped (depthwise) convolutions, which the array does not run yet.
    """

    name: str
    builder: Callable[..., L.Sequential]
    summary: str
    epochs: int
    lr: float
    lr_end: float
    batch_size: int = 64
    quantized: bool = True
    widths: tuple[int, ...] | None = None
    bits: tuple[int, int, int] | None = None
    grouped: bool = False


NETS: dict[str, NetSpec] = {spec.name: spec for spec in (
    NetSpec("binarynet", binarynet, "BinaryNet: binary weights and activations", 20, 1e-2, 1e-4,
            widths=_CONV_WIDTHS),
    NetSpec("ternarynet", ternarynet, "ternary weights, binary activations", 30, 1e-2, 1e-4,
            widths=_CONV_WIDTHS),
    NetSpec("dorefanet", dorefanet, "DoReFa-Net W1A3, 8-bit last layer (--bits W,A,G)", 30,
            1e-2, 1e-4, widths=_CONV_WIDTHS, bits=DOREFA_BITS),
    NetSpec("float", float_net, "float baseline of the same shape", 30, 3e-3, 1e-4,
            quantized=False, widths=_CONV_WIDTHS),
    NetSpec("lenet300", lenet300, "LeNet-300-100 (float)", 30, 1e-3, 1e-4, quantized=False,
            widths=(300, 100)),
    NetSpec("binarymlp", binarymlp, "binary 64-256-10 MLP", 30, 1e-2, 1e-4, widths=(256,)),
    NetSpec("mobilenet_tiny", mobilenet_tiny,
            "depthwise-separable, ternary weights, binary activations", 40, 3e-2, 1e-4,
            grouped=True),
)}

#: The networks that fold into an integer model (every one but the float baselines).
QUANTIZED_NETS: tuple[str, ...] = tuple(name for name, spec in NETS.items() if spec.quantized)

#: The quantized networks whose every layer runs on the array today (no grouped layers).
ARRAY_NETS: tuple[str, ...] = tuple(name for name in QUANTIZED_NETS
                                    if not NETS[name].grouped)

#: What ``mulfree train`` trains without ``--net``.
DEFAULT_NET = "binarynet"


def build(name: str, input_shape, classes: int = 10, *, pixel_max: int = 255, seed: int = 0,
          shift_bn: bool = False, widths=None, bits=None) -> L.Sequential:
    """Build network ``name`` (a key of ``NETS``) for ``input_shape`` ``(C, H, W)``.

    ``widths`` (hidden widths) and ``bits`` ((W, A, G)) only for the networks whose
    ``NetSpec`` has defaults for them; ``ValueError`` naming the network otherwise.
    """
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(NETS)}")
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input shape must be (C, H, W), not {tuple(input_shape)!r}")
    spec = NETS[name]
    options = {}
    if widths is not None:
        if spec.widths is None:
            raise ValueError(f"network {name!r} has fixed widths; allowed with widths: "
                             f"{', '.join(n for n, s in NETS.items() if s.widths)}")
        options["widths"] = tuple(widths)
    if bits is not None:
        if spec.bits is None:
            raise ValueError(f"network {name!r} takes no bits; allowed with bits: "
                             f"{', '.join(n for n, s in NETS.items() if s.bits)}")
        options["bits"] = parse_bits(bits)
    return spec.builder(tuple(int(v) for v in input_shape), int(classes),
                        pixel_max=int(pixel_max), seed=int(seed), shift_bn=shift_bn, **options)


def build_options(meta: dict) -> dict:
    """The ``build`` keywords a model file's ``meta`` records (``widths``, ``bits``,
    ``shift_bn``), so that the network it came from can be built again."""
    options = {"shift_bn": bool(meta.get("shift_bn", False))}
    for key in ("widths", "bits"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"meta {key} must be a list of integers, not {value!r}")
        options[key] = tuple(int(v) for v in value)
    return options
