"""The networks: the seed articles' three MNIST networks, a float baseline and two MLPs.

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
               with 8-bit weights on 3-bit inputs (DoReFa-Net keeps first and last layers wide;
               the first layer here takes the raw pixel codes)
float          the same shape in float: Conv2d / Dense, BN + htanh (the baseline)
lenet300       LeNet-300-100: Dense 300 -> ReLU -> Dense 100 -> ReLU -> Dense classes (float,
               with biases; Deep Compression's baseline)
binarymlp      BinaryDense 256 -> BN -> Sign -> BinaryDense classes -> BN (for the smallest
               boards; 64-256-10 on digits)
=============  ================================================================================

The first layer of the quantized networks takes the pixel codes as its integer input (the
BNN paper's 8-bit first layer: ``sum_n 2**(n-1) (x^n . w_b)`` over bit planes is the same
integer as the dot with the codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from model import layers as L

__all__ = ["NetSpec", "NETS", "QUANTIZED_NETS", "DEFAULT_NET", "build", "binarynet",
           "ternarynet", "dorefanet", "float_net", "lenet300", "binarymlp"]


def _feature_size(input_shape: tuple[int, int, int]) -> tuple[int, int]:
    _, h, w = input_shape
    if h < 4 or w < 4:
        raise ValueError(f"the conv networks need images of at least 4x4, not {h}x{w}")
    return h // 2 // 2, w // 2 // 2


def _conv_body(kind: str, input_shape, classes: int, pixel_max: int, seed: int,
               shift_bn: bool = False) -> L.Sequential:
    """The common shape of binarynet, ternarynet, dorefanet and float."""
    rng = np.random.default_rng(seed)
    c, _, _ = input_shape
    fh, fw = _feature_size(input_shape)
    flat = 64 * fh * fw
    first_scale = 1.0 / pixel_max

    def bn(n):
        return L.BatchNorm(n, shift_based=shift_bn)

    if kind in ("binary", "ternary"):
        conv = L.BinaryConv2d if kind == "binary" else L.TernaryConv2d
        dense = L.BinaryDense if kind == "binary" else L.TernaryDense
        return L.Sequential([
            conv(c, 32, 5, padding=2, rng=rng, input_scale=first_scale),
            L.MaxPool2d(2), bn(32), L.HardTanh(), L.Sign(),
            conv(32, 64, 5, padding=2, rng=rng),
            L.MaxPool2d(2), bn(64), L.Flatten(), L.Sign(),
            dense(flat, 256, rng=rng), bn(256), L.Sign(),
            dense(256, classes, rng=rng), bn(classes),
        ])
    if kind == "dorefa":
        bit_w, bit_a = 1, 3
        return L.Sequential([
            L.DorefaConv2d(c, 32, 5, bitW=bit_w, bitA=None, padding=2, rng=rng,
                           input_scale=first_scale),
            L.MaxPool2d(2), bn(32), L.HardTanh(),
            L.DorefaConv2d(32, 64, 5, bitW=bit_w, bitA=bit_a, padding=2, rng=rng),
            L.MaxPool2d(2), bn(64), L.HardTanh(), L.Flatten(),
            L.DorefaDense(flat, 256, bitW=bit_w, bitA=bit_a, rng=rng), bn(256), L.HardTanh(),
            L.IntDense(256, classes, bits=8, input_bits=bit_a, rng=rng), bn(classes),
        ])
    if kind == "float":
        return L.Sequential([
            L.Conv2d(c, 32, 5, padding=2, bias=False, rng=rng, input_scale=first_scale),
            L.MaxPool2d(2), bn(32), L.HardTanh(),
            L.Conv2d(32, 64, 5, padding=2, bias=False, rng=rng),
            L.MaxPool2d(2), bn(64), L.HardTanh(), L.Flatten(),
            L.Dense(flat, 256, bias=False, rng=rng), bn(256), L.HardTanh(),
            L.Dense(256, classes, bias=False, rng=rng), bn(classes),
        ])
    raise ValueError(f"unknown body {kind!r}")


def binarynet(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False):
    """BinaryNet (binary weights and activations); ``shift_bn`` uses the shift-based BN."""
    return _conv_body("binary", input_shape, classes, pixel_max, seed, shift_bn)


def ternarynet(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False):
    """BinaryNet's shape with ternary (TWN) weights and +/-1 activations."""
    return _conv_body("ternary", input_shape, classes, pixel_max, seed, shift_bn)


def dorefanet(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False):
    """DoReFa-Net W1A3 in BinaryNet's shape, 8-bit last layer."""
    return _conv_body("dorefa", input_shape, classes, pixel_max, seed, shift_bn)


def float_net(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False):
    """The float baseline of the same shape."""
    return _conv_body("float", input_shape, classes, pixel_max, seed, shift_bn)


def lenet300(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False):
    """LeNet-300-100 (float, biases, ReLU)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(input_shape))
    return L.Sequential([
        L.Flatten(),
        L.Dense(n, 300, rng=rng, input_scale=1.0 / pixel_max), L.ReLU(),
        L.Dense(300, 100, rng=rng), L.ReLU(),
        L.Dense(100, classes, rng=rng),
    ])


def binarymlp(input_shape, classes=10, *, pixel_max=255, seed=0, shift_bn=False):
    """Binary MLP n-256-classes (64-256-10 on digits)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(input_shape))
    return L.Sequential([
        L.Flatten(),
        L.BinaryDense(n, 256, rng=rng, input_scale=1.0 / pixel_max),
        L.BatchNorm(256, shift_based=shift_bn), L.Sign(),
        L.BinaryDense(256, classes, rng=rng), L.BatchNorm(classes, shift_based=shift_bn),
    ])


@dataclass(frozen=True)
class NetSpec:
    """A network by name: its builder and the training defaults that suit it."""

    name: str
    builder: Callable[..., L.Sequential]
    summary: str
    epochs: int
    lr: float
    lr_end: float
    batch_size: int = 64
    quantized: bool = True


NETS: dict[str, NetSpec] = {spec.name: spec for spec in (
    NetSpec("binarynet", binarynet, "BinaryNet: binary weights and activations", 20, 1e-2, 1e-4),
    NetSpec("ternarynet", ternarynet, "ternary weights, binary activations", 30, 1e-2, 1e-4),
    NetSpec("dorefanet", dorefanet, "DoReFa-Net W1A3, 8-bit last layer", 30, 1e-2, 1e-4),
    NetSpec("float", float_net, "float baseline of the same shape", 30, 3e-3, 1e-4,
            quantized=False),
    NetSpec("lenet300", lenet300, "LeNet-300-100 (float)", 30, 1e-3, 1e-4, quantized=False),
    NetSpec("binarymlp", binarymlp, "binary 64-256-10 MLP", 30, 1e-2, 1e-4),
)}

#: The networks that fold into an integer model (every one but the float baselines).
QUANTIZED_NETS: tuple[str, ...] = tuple(name for name, spec in NETS.items() if spec.quantized)

#: What ``mulfree train`` trains without ``--net``.
DEFAULT_NET = "binarynet"


def build(name: str, input_shape, classes: int = 10, *, pixel_max: int = 255, seed: int = 0,
          shift_bn: bool = False) -> L.Sequential:
    """Build network ``name`` (a key of ``NETS``) for ``input_shape`` ``(C, H, W)``."""
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(NETS)}")
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input shape must be (C, H, W), not {tuple(input_shape)!r}")
    return NETS[name].builder(tuple(int(v) for v in input_shape), int(classes),
                              pixel_max=int(pixel_max), seed=int(seed), shift_bn=shift_bn)
