"""A batch of dense-layer inputs as one 1x1 convolution (NumPy only).

With batch 1 a dense layer uses every weight once, so an array that receives one weight
word per PE row per cycle computes at most one MAC per PE row per cycle. ``N`` input
vectors side by side reuse each weight ``N`` times: the inputs [N, C] become the ``N``
columns of a one-row image [C, 1, N], the weights [M, C] a bank of 1x1 filters
[M, C, 1, 1], and column ``n`` of the convolution's output [M, 1, N] is the dense output of
input ``n``::

    dense(s, x, w)[n, m] == conv2d(s, x.T[:, None, :], w[:, :, None, None])[m, 0, n]

(stride 1, no padding: no padded position, so binary activations need no correction).

Two options fit the batch to an array (``sim.batching`` picks them): ``rows`` lays the
inputs out as a [C, rows, N / rows] image (input ``n`` at row ``n // (N / rows)``), whose
output rows fill PE columns; ``filters`` > M appends copies of the first filter (any legal
codes do: their outputs are dropped) so that filter groups divide the PE columns better.
Model: ``model.ops.dense`` (per input), ``model.ops.conv2d`` (the batch).
"""

from __future__ import annotations

import numpy as np

from model.layer_file import Layer

__all__ = ["dense_batch_as_conv", "conv_outputs_as_dense_batch", "batched_dense_layer"]


def dense_batch_as_conv(inputs, weights, *, rows: int = 1,
                        filters: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs [N, C] and weights [M, C] as a [C, rows, N / rows] image and
    [filters, C, 1, 1] 1x1 filters (``filters`` defaults to M).

    Raises ``ValueError`` naming the bad value: shapes that are not [N, C] and [M, C] with
    the same ``C`` (or empty), ``rows`` not dividing N, ``filters`` below M.
    """
    a, w = np.asarray(inputs), np.asarray(weights)
    if a.ndim != 2 or w.ndim != 2:
        raise ValueError(f"a dense batch needs inputs [N, C] and weights [M, C], not "
                         f"{a.shape} and {w.shape}")
    if a.size == 0 or w.size == 0:
        raise ValueError(f"inputs {a.shape} and weights {w.shape} must not be empty")
    if a.shape[1] != w.shape[1]:
        raise ValueError(f"weights {w.shape} expect {w.shape[1]} inputs per vector, the "
                         f"inputs {a.shape} have {a.shape[1]}")
    n, m = a.shape[0], w.shape[0]
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1 \
            or n % rows:
        raise ValueError(f"rows must be a divisor of the batch size {n}, not {rows!r}")
    filters = m if filters is None else filters
    if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < m:
        raise ValueError(f"filters must be an integer >= the {m} filters, not {filters!r}")
    w = np.concatenate([w, np.repeat(w[:1], filters - m, axis=0)])
    image = a.T.reshape(a.shape[1], rows, n // rows)
    return np.ascontiguousarray(image), np.ascontiguousarray(w[:, :, None, None])


def conv_outputs_as_dense_batch(outputs, m: int | None = None) -> np.ndarray:
    """The [filters, rows, N / rows] outputs of the 1x1 convolution as the dense outputs
    [N, m] (the first ``m`` filters; default all)."""
    out = np.asarray(outputs)
    if out.ndim != 3:
        raise ValueError(f"batched dense outputs must have shape [M, rows, N / rows], not "
                         f"{out.shape}")
    m = out.shape[0] if m is None else m
    if not 1 <= m <= out.shape[0]:
        raise ValueError(f"m must be in [1, {out.shape[0]}], not {m!r}")
    return np.ascontiguousarray(out[:m].reshape(m, -1).T)


def batched_dense_layer(scheme: str, inputs, weights, *, rows: int = 1,
                        filters: int | None = None, a_bits: int | None = None,
                        w_bits: int | None = None, codebook=None) -> Layer:
    """The ``Layer`` (LAYER.npz contents) that runs ``N`` dense inputs [N, C] at once."""
    image, filt = dense_batch_as_conv(inputs, weights, rows=rows, filters=filters)
    return Layer(scheme, filt, image, 1, 0, a_bits=a_bits, w_bits=w_bits,
                 codebook=None if codebook is None else np.asarray(codebook))
