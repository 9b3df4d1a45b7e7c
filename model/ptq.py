"""Post-training quantization: a trained float network's weights in a quantized network.

A float network and a quantized one of the same shape (``model.nets``: ``float`` and
``binarynet``, ``ternarynet``, ``dorefanet``) differ only in how their weight layers
quantize on the forward pass and in the activation layers between them. ``transfer`` copies
the float network's weight layers (in order) into the quantized network's shadow weights,
and its batch norms (in order) likewise; the quantized network then quantizes those weights
on every forward pass, as after training with straight-through estimators.

Quantizing activations changes the statistics every batch norm sees, so the running means
and variances the float network learnt no longer fit: ``recalibrate_batch_norm`` estimates
them again with the quantized forward pass over training data (the plain average of the
batch statistics over one pass, what a momentum of ``k / (k + 1)`` at batch ``k`` gives).
A few epochs of fine-tuning (``model.train.train``) recover most of the rest.

The golden model of the result is the integer model ``model.deploy.fold`` makes of it, as for
any trained quantized network.
"""

from __future__ import annotations

import numpy as np

from model import layers as L
from model import train as training

__all__ = ["transfer", "recalibrate_batch_norm", "quantize", "FINE_TUNE_LR"]

#: Learning rates of the fine-tuning epochs (first, last): well below training from scratch.
FINE_TUNE_LR = (1e-3, 1e-4)


def _weight_layers(net: L.Sequential) -> list[L.Linear]:
    return [layer for layer in net.layers if isinstance(layer, L.Linear)]


def _batch_norms(net: L.Sequential) -> list[L.BatchNorm]:
    return [layer for layer in net.layers if isinstance(layer, L.BatchNorm)]


def transfer(source: L.Sequential, target: L.Sequential) -> None:
    """Copy ``source``'s weights and batch norms into ``target`` (same shapes, same order).

    Raises ``ValueError`` naming the first layer that does not correspond: a different count
    of weight layers or batch norms, another weight shape, a bias the target cannot hold, or
    batch norms of different kinds (standard and shift-based).
    """
    pairs = [("weight layers", _weight_layers(source), _weight_layers(target)),
             ("batch norms", _batch_norms(source), _batch_norms(target))]
    for what, mine, theirs in pairs:
        if len(mine) != len(theirs):
            raise ValueError(f"the source network has {len(mine)} {what}, the target "
                             f"{len(theirs)}: not the same shape")
    for i, (src, dst) in enumerate(zip(*pairs[0][1:])):
        if src.params["weight"].shape != dst.params["weight"].shape:
            raise ValueError(f"weight layer {i}: {src!r} has weights "
                             f"{src.params['weight'].shape}, the target's {dst!r} "
                             f"{dst.params['weight'].shape}")
        if "bias" in src.params and "bias" not in dst.params:
            raise ValueError(f"weight layer {i}: {src!r} has a bias, the target's "
                             f"{dst!r} has none")
    for i, (src, dst) in enumerate(zip(*pairs[1][1:])):
        if src.num_features != dst.num_features or src.shift_based != dst.shift_based:
            raise ValueError(f"batch norm {i}: {src!r} against the target's "
                             f"{dst!r}")
    for src, dst in zip(*pairs[0][1:]):
        for key, value in src.params.items():
            dst.params[key] = value.copy()
    for src, dst in zip(*pairs[1][1:]):
        for store in ("params", "buffers"):
            for key, value in getattr(src, store).items():
                getattr(dst, store)[key] = value.copy()


def recalibrate_batch_norm(net: L.Sequential, x: np.ndarray, *,
                           batch_size: int = 256) -> None:
    """Set every batch norm's running mean and variance to the average of its batch
    statistics over one pass of ``x`` (in order, ``batch_size`` at a time) with the
    network's training-mode forward pass; the trainable parameters are not changed."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if len(x) == 0:
        raise ValueError("no data to recalibrate the batch norms on")
    norms = _batch_norms(net)
    saved = [bn.momentum for bn in norms]
    try:
        for k, start in enumerate(range(0, len(x), batch_size)):
            for bn in norms:
                bn.momentum = k / (k + 1)  # k = 0 forgets the old statistics entirely
            net.forward(np.asarray(x[start:start + batch_size], dtype=np.float64),
                        training=True)
    finally:
        for bn, momentum in zip(norms, saved):
            bn.momentum = momentum


def quantize(source: L.Sequential, target: L.Sequential, x_train: np.ndarray,
             y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, epochs: int = 0,
             batch_size: int = 64, seed: int = 0, progress: bool = False) -> dict[str, float]:
    """Transfer ``source`` into ``target``, recalibrate its batch norms on ``x_train``, then
    fine-tune ``epochs`` epochs (learning rates ``FINE_TUNE_LR``); ``target`` is changed in
    place. Returns the test accuracy after each step: ``float_checkpoint`` (the source),
    ``transferred``, ``recalibrated`` and, with ``epochs``, ``fine_tuned``."""
    if epochs < 0:
        raise ValueError(f"epochs must be at least 0, not {epochs}")
    accuracy = {"float_checkpoint": training.accuracy(source, x_test, y_test)}
    transfer(source, target)
    accuracy["transferred"] = training.accuracy(target, x_test, y_test)
    recalibrate_batch_norm(target, x_train)
    accuracy["recalibrated"] = training.accuracy(target, x_test, y_test)
    if epochs:
        training.train(target, x_train, y_train, epochs=epochs, batch_size=batch_size,
                       lr=FINE_TUNE_LR[0], lr_end=FINE_TUNE_LR[1], seed=seed,
                       progress=progress, desc="fine-tuning")
        accuracy["fine_tuned"] = training.accuracy(target, x_test, y_test)
    return accuracy
