"""The training loop: mini-batch gradient descent with softmax cross-entropy.

``train`` is reusable by later steps that retrain a network (pruning, weight sharing): it
accepts gradient ``masks`` (a pruned weight gets no gradient and stays at zero) and an
``on_step`` callback run after every update. Runs are reproducible: the same network
initialisation and the same ``seed`` give the same weights, bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from model.layers import Sequential, softmax_cross_entropy
from model.optim import ConstantRate, ExponentialDecay, make_optimizer
from model.progress import progress_bar

__all__ = ["History", "train", "predict", "accuracy", "check_masks"]


@dataclass
class History:
    """Per-epoch record of a training run."""

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def predict(net: Sequential, x: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """Class predictions of the network in evaluation mode (argmax, first on ties)."""
    out = [np.argmax(net.forward(x[i:i + batch_size], training=False), axis=1)
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def accuracy(net: Sequential, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return float(np.mean(predict(net, x, batch_size=batch_size) == y))


def check_masks(net: Sequential, masks: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Validate gradient masks against the network's parameter names and shapes."""
    if not masks:
        return {}
    params = {name: layer.params[key] for name, layer, key in net.named_parameters()}
    out = {}
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"mask for unknown parameter {name!r}; allowed: "
                             f"{', '.join(params)}")
        mask = np.asarray(mask)
        if mask.shape != params[name].shape:
            raise ValueError(f"mask {name!r} has shape {mask.shape}, the parameter "
                             f"{params[name].shape}")
        out[name] = mask.astype(np.float64)
    return out


def train(net: Sequential, x_train: np.ndarray, y_train: np.ndarray, *, epochs: int,
          batch_size: int = 64, optimizer: str = "adam", lr: float | None = None,
          lr_end: float | None = None, seed: int = 0, x_test: np.ndarray | None = None,
          y_test: np.ndarray | None = None, masks: dict[str, np.ndarray] | None = None,
          on_step: Callable[[int, Sequential], None] | None = None, progress: bool = True,
          desc: str = "") -> History:
    """Train ``net`` in place and return its ``History``.

    Parameters
    ----------
    epochs, batch_size
        Passes over the shuffled training set and examples per update (the last batch of an
        epoch may be smaller).
    optimizer, lr, lr_end
        ``"adam"`` or ``"shift-adamax"``; the learning rate decays geometrically from ``lr``
        (default: the optimiser's) to ``lr_end`` (default: ``lr``, i.e. constant).
    seed
        Seeds the shuffling; together with the network's initialisation seed it fixes the
        result.
    masks
        ``{parameter name: 0/1 array}``: the gradient is multiplied by the mask before every
        update and the parameter after it, so masked entries stay where they are set (zero
        for pruned weights).
    on_step
        ``on_step(step, net)`` after every update (and after masks and ``constrain``).
    progress
        Progress on stderr showing epoch, loss and accuracy: a bar on a terminal, a line
        per epoch otherwise (``model.progress``).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, not {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, not {batch_size!r}")
    if len(x_train) != len(y_train) or len(x_train) == 0:
        raise ValueError(f"need as many labels as images (and at least one), not "
                         f"{len(y_train)} labels for {len(x_train)} images")
    opt = make_optimizer(optimizer)
    lr = float(opt.default_lr if lr is None else lr)
    schedule = ConstantRate(lr) if lr_end is None else ExponentialDecay(lr, lr_end, epochs)
    masks = check_masks(net, masks)
    named = net.named_parameters()
    rng = np.random.default_rng(seed)
    history = History()
    steps_per_epoch = -(-len(x_train) // batch_size)
    start = time.perf_counter()
    with progress_bar(epochs * steps_per_epoch, enabled=progress, unit="batch",
                      desc=desc or "training") as bar:
        for epoch in range(epochs):
            rate = schedule(epoch)
            order = rng.permutation(len(x_train))
            loss_sum, correct = 0.0, 0
            bar.set_description(f"{desc + ' ' if desc else ''}epoch {epoch + 1}/{epochs}")
            for first in range(0, len(order), batch_size):
                idx = order[first:first + batch_size]
                logits = net.forward(x_train[idx], training=True)
                loss, grad = softmax_cross_entropy(logits, y_train[idx])
                net.backward(grad)
                grads = []
                for name, layer, key in named:
                    g = layer.grads[key]
                    grads.append(g * masks[name] if name in masks else g)
                opt.step([layer.params[key] for _, layer, key in named], grads, rate)
                for name, layer, key in named:
                    if name in masks:
                        layer.params[key] *= masks[name]
                net.constrain()
                history.steps += 1
                if on_step is not None:
                    on_step(history.steps, net)
                loss_sum += loss * len(idx)
                correct += int(np.sum(np.argmax(logits, axis=1) == y_train[idx]))
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / (first + len(idx)):.3f}")
            history.loss.append(loss_sum / len(order))
            history.train_accuracy.append(correct / len(order))
            history.learning_rate.append(rate)
            if x_test is not None:
                history.test_accuracy.append(accuracy(net, x_test, y_test))
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}",
                                acc=f"{history.train_accuracy[-1]:.3f}",
                                test=f"{history.test_accuracy[-1]:.3f}")
    history.seconds = time.perf_counter() - start
    return history
