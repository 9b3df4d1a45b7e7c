"""Layers with few input channels on the array: whether splitting their filter columns pays.

``model.column_split`` turns a layer of ``C`` channels and ``S`` filter columns into one of
``C * k`` channels and ``ceil(S / k)`` columns over shifted, explicitly padded input copies:
``k`` times the PE rows, fewer slots per output, but level-0 taps when ``k`` does not divide
``S`` and the padding now costs slots. ``choose_column_split`` predicts every ``k`` and
keeps the fastest. Model: ``model.column_split`` (the layer), ``sim.cycle_model`` (cycles).
"""

from __future__ import annotations

import dataclasses

from sim.cycle_model import ArrayParams, LayerShape, Mapping, fastest_shape

__all__ = ["ColumnSplit", "split_shape", "choose_column_split"]


@dataclasses.dataclass(frozen=True)
class ColumnSplit:
    """A layer's filter columns split into ``k`` parts: the shape run, its mapping, cycles."""

    k: int
    shape: LayerShape
    mapping: Mapping
    cycles: int


def split_shape(shape: LayerShape, k: int) -> LayerShape:
    """The shape ``model.column_split.split_filter_columns`` makes of ``shape``."""
    s = shape
    if not 1 <= k <= s.S:
        raise ValueError(f"the filter columns split into k parts; allowed: 1 to {s.S}, not {k}")
    s2 = -(-s.S // k)
    return LayerShape(s.M, s.C * k, s.R, s2, s.H + 2 * s.padding, (s.F - 1) * s.stride + s2,
                      s.stride, 0)


def choose_column_split(shape: LayerShape, params: ArrayParams, *, zero_weight: bool = True,
                        zero_activation: bool = True) -> ColumnSplit:
    """The split with the fewest predicted cycles (k = 1: the layer as it is).

    ``zero_weight``: the scheme has a level-0 weight (else only ``k`` dividing ``S``);
    ``zero_activation``: activation code 0 means 0 (else a padded layer is not split).
    """
    splits = ((k, shape if k == 1 else split_shape(shape, k)) for k in range(1, shape.S + 1)
              if k == 1 or not ((shape.S % k and not zero_weight)
                                or (shape.padding and not zero_activation)))
    best = fastest_shape(splits, params)
    if best is None:
        raise ValueError(f"no split of the layer maps onto the {params.rows}x{params.cols} "
                         f"array")
    return ColumnSplit(*best)
