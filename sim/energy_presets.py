"""Layer shapes and network presets for the dataflow energy model (``sim.energy``).

A layer is described in the notation of the Eyeriss paper (Chen, Emer, Sze, ISCA 2016):
``C`` input channels, ``M`` filters, an ``H`` x ``W`` input, ``R`` x ``S`` filters, stride
``U`` and an ``E`` x ``F`` output. A dense layer is a convolution whose filter covers the
whole input (``R = H``, ``S = W``, ``E = F = 1``). Grouped convolutions (AlexNet's CONV2,
CONV4 and CONV5 run as two groups) are kept exact: ``groups`` independent convolutions of
``C / groups`` channels and ``M / groups`` filters each.

Presets (``NETWORKS``):

``alexnet``
    CONV1-5 and FC6-8 of Krizhevsky et al. 2012 on a 227 x 227 input, with the padding
    and grouping of the original network (the shapes of the Eyeriss paper's Table).
``vgg16``
    The thirteen 3 x 3 convolutions and three dense layers of VGG-16 on 224 x 224.
``lenet5``
    LeNet-5 on a 32 x 32 input: two 5 x 5 convolutions (6, 16 filters) and dense 120-84-10.
``mnist``, ``digits``
    The seed's MNIST network (two 5 x 5 convolutions of 32 and 64 filters, each followed by
    a 2 x 2 max-pool, then dense 256 and dense 10), with "same" padding as in the seed's
    code, on 28 x 28 MNIST and on scikit-learn's 8 x 8 digits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Layer", "conv", "dense", "NETWORKS", "network", "network_names",
           "layers_from_model"]


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


@dataclass(frozen=True)
class Layer:
    """One convolution or dense layer, in the Eyeriss paper's notation.

    Parameters
    ----------
    name : str
        Layer name (``conv1``, ``fc6``...).
    C, M : int
        Input channels and filters (over all groups).
    H, W : int
        Input height and width *before* padding.
    R, S : int
        Filter height and width.
    stride : int
        Stride ``U`` in both directions.
    padding : int
        Zero rows/columns added on each side (they are stored and moved like data).
    groups : int
        Independent channel groups (``C`` and ``M`` must be multiples of it).
    """

    name: str
    C: int
    M: int
    H: int
    W: int
    R: int
    S: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"layer name must be a non-empty string, not {self.name!r}")
        for field in ("C", "M", "H", "W", "R", "S", "stride", "groups"):
            _positive(f"layer {self.name!r} {field}", getattr(self, field))
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) \
                or self.padding < 0:
            raise ValueError(f"layer {self.name!r} padding must be an integer >= 0, "
                             f"not {self.padding!r}")
        if self.C % self.groups or self.M % self.groups:
            raise ValueError(f"layer {self.name!r}: C={self.C} and M={self.M} must be "
                             f"multiples of groups={self.groups}")
        if self.R > self.H_padded or self.S > self.W_padded:
            raise ValueError(f"layer {self.name!r}: a {self.R}x{self.S} filter does not fit "
                             f"the padded {self.H_padded}x{self.W_padded} input")

    @property
    def H_padded(self) -> int:
        return self.H + 2 * self.padding

    @property
    def W_padded(self) -> int:
        return self.W + 2 * self.padding

    @property
    def E(self) -> int:
        """Output height."""
        return (self.H_padded - self.R) // self.stride + 1

    @property
    def F(self) -> int:
        """Output width."""
        return (self.W_padded - self.S) // self.stride + 1

    @property
    def is_dense(self) -> bool:
        return self.E == 1 and self.F == 1 and self.padding == 0

    @property
    def kind(self) -> str:
        return "fc" if self.is_dense else "conv"

    def macs(self, batch: int = 1) -> int:
        """Multiply-accumulates of ``batch`` images."""
        return (batch * self.M * (self.C // self.groups) * self.R * self.S
                * self.E * self.F)

    def weights(self) -> int:
        return self.M * (self.C // self.groups) * self.R * self.S

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(E=self.E, F=self.F, kind=self.kind)
        return d


def conv(name, C, M, HW, RS, stride=1, padding=0, groups=1) -> Layer:
    """A square convolution: ``HW`` x ``HW`` input, ``RS`` x ``RS`` filters."""
    return Layer(name, C, M, HW, HW, RS, RS, stride, padding, groups)


def dense(name, C, M, HW=1) -> Layer:
    """A dense layer on a ``C`` x ``HW`` x ``HW`` input (flattened), ``M`` outputs."""
    return Layer(name, C, M, HW, HW, HW, HW)


def _vgg16():
    layers, c, hw = [], 3, 224
    for stage, (width, count) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3),
                                            (512, 3)], start=1):
        for i in range(1, count + 1):
            layers.append(conv(f"conv{stage}_{i}", c, width, hw, 3, padding=1))
            c = width
        hw //= 2
    layers += [dense("fc6", 512, 4096, 7), dense("fc7", 4096, 4096), dense("fc8", 4096, 1000)]
    return tuple(layers)


def _seed_mnist(hw: int):
    # 5x5 "same" convolutions, each followed by a 2x2/2 max-pool ("same": ceil(hw / 2)).
    pooled1 = -(-hw // 2)
    pooled2 = -(-pooled1 // 2)
    return (conv("conv1", 1, 32, hw, 5, padding=2),
            conv("conv2", 32, 64, pooled1, 5, padding=2),
            dense("fc3", 64 * pooled2 * pooled2, 256),
            dense("fc4", 256, 10))


#: Network name -> tuple of layers, in order.
NETWORKS: dict[str, tuple[Layer, ...]] = {
    "alexnet": (
        conv("conv1", 3, 96, 227, 11, stride=4),
        conv("conv2", 96, 256, 27, 5, padding=2, groups=2),
        conv("conv3", 256, 384, 13, 3, padding=1),
        conv("conv4", 384, 384, 13, 3, padding=1, groups=2),
        conv("conv5", 384, 256, 13, 3, padding=1, groups=2),
        dense("fc6", 256, 4096, 6),
        dense("fc7", 4096, 4096),
        dense("fc8", 4096, 1000),
    ),
    "vgg16": _vgg16(),
    "lenet5": (
        conv("conv1", 1, 6, 32, 5),
        conv("conv2", 6, 16, 14, 5),
        dense("fc3", 16, 120, 5),
        dense("fc4", 120, 84),
        dense("fc5", 84, 10),
    ),
    "mnist": _seed_mnist(28),
    "digits": _seed_mnist(8),
}


def network_names() -> tuple[str, ...]:
    return tuple(NETWORKS)


def network(name: str) -> tuple[Layer, ...]:
    """The layers of preset ``name``; ``ValueError`` naming the presets otherwise."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(NETWORKS)} "
                         f"or a deployment model file")
    return NETWORKS[name]


def layers_from_model(path) -> tuple[tuple[Layer, ...], dict, dict]:
    """Layers, product widths and zero-weight fractions of a deployment model file.

    Reads a file of ``model.deploy.save``. Returns ``(layers, schemes, sparsity)``: layers
    named ``conv<i>``/``fc<i>`` by position (1-based, as the presets), ``schemes[name]`` =
    ``(scheme, a_bits, w_bits, acc_bits)`` of the layer as the accelerator runs it (``xnor``:
    lanes per word, and ``C`` counts channels, not packed words), ``sparsity[name]`` the
    fraction of weights whose level is 0 (what a skipping unit skips; 0 for the schemes
    that have no zero level).
    """
    from model import deploy, quant

    loaded = deploy.load(path)
    if not isinstance(loaded, deploy.IntegerModel):
        raise ValueError(f"{path!r} holds a float network; the energy model needs an integer "
                         f"deployment model (a quantized network folded by model.deploy)")
    layers, schemes, sparsity = [], {}, {}
    for i, ly in enumerate(loaded.layers, start=1):
        m, _, r, s = ly.weights.shape
        _, h, w = ly.in_shape
        name = f"{'conv' if ly.kind == 'conv' else 'fc'}{i}"
        layers.append(Layer(name, int(ly.channels), int(m), int(h), int(w), int(r), int(s),
                            int(ly.stride), int(ly.padding)))
        schemes[name] = (ly.scheme, int(ly.a_bits), int(ly.w_bits), int(ly.accumulator_width))
        if ly.scheme == "xnor":
            sparsity[name] = 0.0
        else:
            levels = quant.weight_level(ly.scheme, ly.weights, ly.w_bits)
            sparsity[name] = float(np.mean(levels == 0))
    return tuple(layers), schemes, sparsity
