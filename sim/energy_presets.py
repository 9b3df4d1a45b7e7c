"""Network presets for the dataflow energy model (``sim.energy``): named layer shapes.

A layer is a name beside a ``model.shapes.LayerShape`` (the project's one layer-shape
type), in the notation of the Eyeriss paper (Chen, Emer, Sze, ISCA 2016): ``C`` input
channels, ``M`` filters, an ``H`` x ``W`` input, ``R`` x ``S`` filters, stride ``U`` and an
``E`` x ``F`` output. A dense layer is a convolution whose filter covers the whole input
(``R = H``, ``S = W``, ``E = F = 1``); ``conv`` and ``dense`` build them, and a new network
is one more entry of ``NETWORKS``. Grouped convolutions (AlexNet's CONV2,
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
``mobilenet_v1``
    MobileNet v1 (Howard et al. 2017, width 1.0) on 224 x 224: a 3 x 3 stride-2 convolution,
    13 depthwise-separable blocks (depthwise 3 x 3, ``groups = C = M``, then pointwise
    1 x 1) and the 1024 -> 1000 classifier; 568.7 M MACs, 4.21 M weights (the paper: 569 M
    mult-adds, 4.2 M parameters). TensorFlow's asymmetric "same" padding of the stride-2
    layers is padding 1 here: the same output sizes and MACs.
``squeezenet1_0``
    SqueezeNet 1.0 as torchvision builds it (224 x 224; conv1 7 x 7 stride 2 without
    padding, max-pools 3 x 3 stride 2 rounding up, so fire2-4 on 54 x 54, fire5-8 on 27 x 27,
    fire9 and conv10 on 13 x 13): each fire module a squeeze 1 x 1 then expand 1 x 1 and
    expand 3 x 3 side by side; 818.9 M MACs, 1,244,448 weights (torchvision: 0.82 GFLOPS
    and 1,248,424 parameters, which are these weights and the 3,976 biases).
``shufflenet_v1``
    ShuffleNet v1, 1x, g = 3 (Zhang et al. 2018) on 224 x 224: a 3 x 3 stride-2 convolution
    (24), a max-pool, then stages of 4, 8, 4 units with 240, 480, 960 channels; a unit is a
    grouped 1 x 1 (g = 3; not grouped in the first unit, whose input has only 24 channels),
    the channel shuffle (data movement, no MACs), a depthwise 3 x 3 (stride 2 in each
    stage's first unit, whose output is concatenated with a 3 x 3 average-pooled shortcut)
    and a grouped 1 x 1 (g = 3); the bottleneck has a quarter of the unit's output channels;
    then the 960 -> 1000 classifier. 137.5 M MACs (the paper: about 140 MFLOPs, a FLOP
    being one multiply-add) and 1,840,248 weights (with the classifier's 1,000 biases and
    the batch norms' 2 x 12,240 parameters, the 1,865,728 parameters of the imgclsmob
    implementation).

Pooling, the channel shuffle, additions of shortcuts and concatenations are data movement
without MACs and are not layers here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.shapes import LayerShape

__all__ = ["NamedLayer", "conv", "dense", "NETWORKS", "network", "network_names",
           "layers_from_model"]


def _shape_field(name: str, doc: str):
    return property(lambda self: getattr(self.shape, name), doc=doc)


@dataclass(frozen=True)
class NamedLayer:
    """A layer of a network: its name beside its ``model.shapes.LayerShape``.

    The shape's fields read through (``layer.C``, ``layer.E``...), in the Eyeriss paper's
    notation: ``C`` input channels and ``M`` filters over all groups, an ``H`` x ``W``
    input before padding, ``R`` x ``S`` filters, ``stride`` U, ``padding`` zero rows and
    columns on each side (stored and moved like data), ``groups`` independent groups.
    """

    name: str
    shape: LayerShape

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"layer name must be a non-empty string, not {self.name!r}")
        if not isinstance(self.shape, LayerShape):
            raise ValueError(f"layer {self.name!r}: shape must be a LayerShape, not "
                             f"{self.shape!r}")
        s = self.shape
        if s.R > s.H + 2 * s.padding or s.S > s.W + 2 * s.padding:
            raise ValueError(f"layer {self.name!r}: a {s.R}x{s.S} filter does not fit the "
                             f"padded {s.H + 2 * s.padding}x{s.W + 2 * s.padding} input")

    M = _shape_field("M", "Filters (over all groups).")
    C = _shape_field("C", "Input channels (over all groups).")
    R = _shape_field("R", "Filter height.")
    S = _shape_field("S", "Filter width.")
    H = _shape_field("H", "Input height before padding.")
    W = _shape_field("W", "Input width before padding.")
    stride = _shape_field("stride", "Stride U in both directions.")
    padding = _shape_field("padding", "Zero rows/columns on each side.")
    groups = _shape_field("groups", "Independent channel groups.")
    E = _shape_field("E", "Output height.")
    F = _shape_field("F", "Output width.")

    @property
    def is_dense(self) -> bool:
        return self.E == 1 and self.F == 1 and self.padding == 0

    @property
    def kind(self) -> str:
        return "fc" if self.is_dense else "conv"

    def macs(self, batch: int = 1) -> int:
        """Multiply-accumulates of ``batch`` images."""
        return batch * self.shape.macs

    def weights(self) -> int:
        return self.M * (self.C // self.groups) * self.R * self.S

    def to_dict(self) -> dict:
        s = self.shape
        return {"name": self.name, "C": s.C, "M": s.M, "H": s.H, "W": s.W, "R": s.R,
                "S": s.S, "stride": s.stride, "padding": s.padding, "groups": s.groups,
                "E": s.E, "F": s.F, "kind": self.kind}


def conv(name, C, M, HW, RS, stride=1, padding=0, groups=1) -> NamedLayer:
    """A square convolution: ``HW`` x ``HW`` input, ``RS`` x ``RS`` filters."""
    return NamedLayer(name, LayerShape(M, C, RS, RS, HW, HW, stride, padding, groups))


def dense(name, C, M, HW=1) -> NamedLayer:
    """A dense layer on a ``C`` x ``HW`` x ``HW`` input (flattened), ``M`` outputs."""
    return NamedLayer(name, LayerShape(M, C, HW, HW, HW, HW))


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


def _mobilenet_v1():
    layers = [conv("conv1", 3, 32, 224, 3, stride=2, padding=1)]
    c, hw = 32, 112
    for i, (out, stride) in enumerate([(64, 1), (128, 2), (128, 1), (256, 2), (256, 1),
                                       (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
                                       (512, 1), (1024, 2), (1024, 1)], start=2):
        layers.append(conv(f"dw{i}", c, c, hw, 3, stride=stride, padding=1, groups=c))
        hw = (hw + 2 - 3) // stride + 1
        layers.append(conv(f"pw{i}", c, out, hw, 1))
        c = out
    layers.append(dense("fc", 1024, 1000))           # after a 7 x 7 average pool
    return tuple(layers)


def _pool_ceil(hw: int) -> int:
    """Output size of a 3 x 3 stride-2 max-pool that rounds up (Caffe, torchvision ceil_mode)."""
    return -(-(hw - 3) // 2) + 1


def _squeezenet1_0():
    layers = [conv("conv1", 3, 96, 224, 7, stride=2)]
    hw = _pool_ceil((224 - 7) // 2 + 1)              # 109 -> 54
    c = 96
    fires = [(2, 16, 64), (3, 16, 64), (4, 32, 128), "pool", (5, 32, 128), (6, 48, 192),
             (7, 48, 192), (8, 64, 256), "pool", (9, 64, 256)]
    for fire in fires:
        if fire == "pool":
            hw = _pool_ceil(hw)
            continue
        i, squeeze, expand = fire
        layers += [conv(f"fire{i}_squeeze", c, squeeze, hw, 1),
                   conv(f"fire{i}_expand1x1", squeeze, expand, hw, 1),
                   conv(f"fire{i}_expand3x3", squeeze, expand, hw, 3, padding=1)]
        c = 2 * expand
    layers.append(conv("conv10", c, 1000, hw, 1))    # then the global average pool
    return tuple(layers)


def _shufflenet_v1(groups: int = 3):
    out_channels = {3: (240, 480, 960)}[groups]
    layers = [conv("conv1", 3, 24, 224, 3, stride=2, padding=1)]
    c, hw = 24, 56                                   # after the 3 x 3 stride-2 max-pool
    for stage, (out, repeats) in enumerate(zip(out_channels, (4, 8, 4)), start=2):
        mid = out // 4
        for unit in range(1, repeats + 1):
            stride = 2 if unit == 1 else 1
            first_groups = 1 if (stage, unit) == (2, 1) else groups
            branch = out - c if stride == 2 else out  # stride 2: concatenated with the input
            name = f"stage{stage}_{unit}"
            layers.append(conv(f"{name}_gconv1", c, mid, hw, 1, groups=first_groups))
            layers.append(conv(f"{name}_dw", mid, mid, hw, 3, stride=stride, padding=1,
                               groups=mid))
            hw = (hw + 2 - 3) // stride + 1
            layers.append(conv(f"{name}_gconv2", mid, branch, hw, 1, groups=groups))
            c = out
    layers.append(dense("fc", c, 1000))              # after the global average pool
    return tuple(layers)


#: Network name -> tuple of layers, in order.
NETWORKS: dict[str, tuple[NamedLayer, ...]] = {
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
    "mobilenet_v1": _mobilenet_v1(),
    "squeezenet1_0": _squeezenet1_0(),
    "shufflenet_v1": _shufflenet_v1(3),
}


def network_names() -> tuple[str, ...]:
    return tuple(NETWORKS)


def network(name: str) -> tuple[NamedLayer, ...]:
    """The layers of preset ``name``; ``ValueError`` naming the presets otherwise."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(NETWORKS)} "
                         f"or a deployment model file")
    return NETWORKS[name]


def layers_from_model(path) -> tuple[tuple[NamedLayer, ...], dict, dict]:
    """Layers, product widths and zero-weight fractions of a deployment model file.

    Reads a file of ``model.deploy.save``. Returns ``(layers, schemes, sparsity)``: layers
    named ``conv<i>``/``fc<i>`` by position (1-based, as the presets), ``schemes[name]`` =
    ``(scheme, a_bits, w_bits, acc_bits)`` of the layer as the accelerator runs it (``xnor``:
    lanes per word, and ``C`` counts channels, not packed words; grouped layers keep their
    ``groups``), ``sparsity[name]`` the
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
        layers.append(NamedLayer(name, LayerShape(int(m), int(ly.channels), int(r), int(s),
                                                  int(h), int(w), int(ly.stride),
                                                  int(ly.padding), int(ly.groups))))
        schemes[name] = (ly.scheme, int(ly.a_bits), int(ly.w_bits), int(ly.accumulator_width))
        if ly.scheme == "xnor":
            sparsity[name] = 0.0
        else:
            levels = quant.weight_level(ly.scheme, ly.weights, ly.w_bits)
            sparsity[name] = float(np.mean(levels == 0))
    return tuple(layers), schemes, sparsity
