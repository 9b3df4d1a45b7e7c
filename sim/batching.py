"""Dense layers in batches on the array: choose how the batch is presented, and run it.

With batch 1 a dense layer is bound by the weights: each weight is used once, its one output
row fills one PE column, and a PE row receives one weight word per cycle: utilisation stays
below ``1 / cols``. ``N`` inputs at once (``model.batching``: one 1x1 convolution) use each
weight ``N`` times: laid out in ``rows`` input rows they fill ``min(cols, rows)`` columns and
``N / rows`` output columns per pass, which lifts that bound towards 1; the input loader
(one word per cycle) bounds it by ``M / PEs``.

``choose_dense_presentation`` tries every layout of the batch in rows (a divisor of N) and
keeps the one with the fewest predicted cycles; ``run_dense_batch`` runs it on a simulated
accelerator.
Model: ``model.ops.dense`` (per input).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from model.batching import batched_dense_layer, conv_outputs_as_dense_batch
from sim.cycle_model import ArrayParams, LayerShape, Mapping, fastest_shape

__all__ = ["DensePresentation", "dense_batch_shape", "choose_dense_presentation",
           "run_dense_batch"]


@dataclasses.dataclass(frozen=True)
class DensePresentation:
    """A batch of ``N`` inputs in ``rows`` rows, with ``filters`` (= M) filters."""

    rows: int
    filters: int
    shape: LayerShape
    mapping: Mapping
    cycles: int


def dense_batch_shape(M: int, C: int, N: int, rows: int = 1,
                      filters: int | None = None) -> LayerShape:
    """The 1x1 convolution that runs ``N`` inputs of a dense layer [M, C] at once."""
    if rows < 1 or N % rows:
        raise ValueError(f"rows must be a divisor of the batch size {N}, not {rows!r}")
    return LayerShape(filters or M, C, 1, 1, rows, N // rows)


def choose_dense_presentation(M: int, C: int, N: int, params: ArrayParams) -> DensePresentation:
    """The layout with the fewest predicted cycles (ties: fewer rows)."""
    layouts = (((rows, M), dense_batch_shape(M, C, N, rows, M))
               for rows in (d for d in range(1, N + 1) if N % d == 0))
    best = fastest_shape(layouts, params)
    if best is None:
        raise ValueError(f"no layout of a dense batch [{N}, {C}] x [{M}, {C}] maps onto the "
                         f"{params.rows}x{params.cols} array")
    (rows, filters), shape, mp, cycles = best
    return DensePresentation(rows, filters, shape, mp, cycles)


def run_dense_batch(scheme: str, inputs, weights, *, params: ArrayParams = ArrayParams(),
                    backend: str = "amaranth", a_bits: int | None = None,
                    w_bits: int | None = None, codebook=None):
    """Run dense inputs [N, C] with weights [M, C] as one batch; returns the outputs [N, M],
    the accelerator's counters and the ``DensePresentation``."""
    from sim.run_layer import run_layers
    inputs, weights = np.asarray(inputs), np.asarray(weights)
    if inputs.ndim != 2 or weights.ndim != 2:
        raise ValueError(f"a dense batch needs inputs [N, C] and weights [M, C], not "
                         f"{inputs.shape} and {weights.shape}")
    (n, c), m = inputs.shape, weights.shape[0]
    channels = c * a_bits if scheme == "xnor" else c     # xnor words pack a_bits channels
    how = choose_dense_presentation(m, channels, n, params)
    layer = batched_dense_layer(scheme, inputs, weights, rows=how.rows, filters=how.filters,
                                a_bits=a_bits, w_bits=w_bits, codebook=codebook)
    (run,) = run_layers([layer], backend=backend, params=params, mappings=[how.mapping])
    return conv_outputs_as_dense_batch(run.outputs, m), run.counters, how
