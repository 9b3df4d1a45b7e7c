"""A batch of dense-layer inputs as one 1x1 convolution (NumPy only).

With batch 1 a dense layer uses every weight once, so an array that receives one weight
word per PE row per cycle computes at most one MAC per PE row per cycle. ``N`` input
vectors side by side reuse each weight ``N`` times: the inputs [N, C] become the ``N``
columns of a one-row image [C, 1, N], the weights [M, C] a bank of 1x1 filters
[M, C, 1, 1], and column ``n`` of the convolution's output [M, 1, N] is the dense output of
input ``n``::

    dense(s, x, w)[n, m] == conv2d(s, x.T[:, None, :], w[:, :, None, None])[m, 0, n]

(stride 1, no padding: no padded position, so binary activations need no correction).
Model: ``model.ops.dense`` (per input), ``model.ops.conv2d`` (the batch).
"""

from __future__ import annotations

import numpy as np

from model.layer_file import Layer

__all__ = ["dense_batch_as_conv", "conv_outputs_as_dense_batch", "batched_dense_layer"]


def dense_batch_as_conv(inputs, weights) -> tuple[np.ndarray, np.ndarray]:
    """Inputs [N, C] and weights [M, C] as a [C, 1, N] image and [M, C, 1, 1] filters.

    Raises ``ValueError`` naming the shapes when they are not [N, C] and [M, C] with the
    same ``C`` (and nothing empty).
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
    return np.ascontiguousarray(a.T[:, None, :]), np.ascontiguousarray(w[:, :, None, None])


def conv_outputs_as_dense_batch(outputs) -> np.ndarray:
    """The [M, 1, N] outputs of the 1x1 convolution as the dense outputs [N, M]."""
    out = np.asarray(outputs)
    if out.ndim != 3 or out.shape[1] != 1:
        raise ValueError(f"batched dense outputs must have shape [M, 1, N], not {out.shape}")
    return np.ascontiguousarray(out[:, 0, :].T)


def batched_dense_layer(scheme: str, inputs, weights, *, a_bits: int | None = None,
                        w_bits: int | None = None, codebook=None) -> Layer:
    """The ``Layer`` (LAYER.npz contents) that runs ``N`` dense inputs [N, C] at once."""
    image, filters = dense_batch_as_conv(inputs, weights)
    return Layer(scheme, filters, image, 1, 0, a_bits=a_bits, w_bits=w_bits,
                 codebook=None if codebook is None else np.asarray(codebook))
