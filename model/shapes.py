"""The shape of a convolution or dense layer: the one layer-shape type of the project.

A layer is a convolution of ``M`` filters ``[C / groups, R, S]`` over an input ``[C, H, W]``
with stride ``U`` (``stride``) and ``padding`` zero rows and columns on each side, giving an
output ``[M, E, F]`` (Eyeriss's notation). A dense layer is the case ``R = S = H = W = 1``.
``groups`` splits the channels and filters into independent groups (depthwise: ``groups ==
C == M``).
"""

from __future__ import annotations

import dataclasses

__all__ = ["LayerShape"]


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """A convolution ``[M, C / groups, R, S]`` on ``[C, H, W]`` (dense: R = S = H = W = 1)."""

    M: int
    C: int
    R: int
    S: int
    H: int
    W: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    def __post_init__(self):
        for name in ("M", "C", "R", "S", "H", "W", "stride", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"layer {name} must be a positive integer, not {value!r}")
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) \
                or self.padding < 0:
            raise ValueError(f"layer padding must be a non-negative integer, not "
                             f"{self.padding!r}")
        if self.C % self.groups or self.M % self.groups:
            raise ValueError(f"layer groups {self.groups} must divide C = {self.C} and "
                             f"M = {self.M}")

    @property
    def E(self) -> int:
        """Output height."""
        return (self.H + 2 * self.padding - self.R) // self.stride + 1

    @property
    def F(self) -> int:
        """Output width."""
        return (self.W + 2 * self.padding - self.S) // self.stride + 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer, padding taps included."""
        return self.M * (self.C // self.groups) * self.R * self.S * self.E * self.F

    @classmethod
    def of(cls, weights_shape, inputs_shape, stride=1, padding=0, groups=1) -> "LayerShape":
        """From a weight shape ``[M, C / groups, R, S]`` and an input shape ``[C, H, W]``."""
        M, _, R, S = (int(v) for v in weights_shape)
        C, H, W = (int(v) for v in inputs_shape)
        return cls(M, C, R, S, H, W, int(stride), int(padding), int(groups))
