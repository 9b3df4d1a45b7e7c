"""Optimisers and learning-rate schedules for ``model.train``.

An optimiser updates a list of parameter arrays in place from their gradients:
``opt.step(params, grads, lr)``; its state (moments, step count) lives in the optimiser, one
slot per position in the list, so the list must keep its order between steps.
"""

from __future__ import annotations

import numpy as np

from model.layers import ap2

__all__ = ["Adam", "ShiftAdaMax", "ExponentialDecay", "ConstantRate", "make_optimizer",
           "OPTIMIZERS"]


class Adam:
    """Adam (Kingma and Ba 2015) with bias correction.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g**2``,
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)``.
    """

    default_lr = 1e-3

    def __init__(self, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.t = 0
        self._m: list[np.ndarray] = []
        self._v: list[np.ndarray] = []

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float) -> None:
        if not self._m:
            self._m = [np.zeros_like(p) for p in params]
            self._v = [np.zeros_like(p) for p in params]
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, g, m, v in zip(params, grads, self._m, self._v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


class ShiftAdaMax:
    """Shift-based AdaMax of the BNN paper (Courbariaux et al. 2016, Algorithm 4).

    ``m = b1 m + (1-b1) g``, ``v = max(b2 v, |g|)``,
    ``p -= ap2(lr / (1 - b1**t)) * m * ap2(1 / v)``: both scalings are powers of two (shifts).
    Defaults are the paper's: ``lr = 2**-10``, ``1 - b1 = 2**-3``, ``1 - b2 = 2**-10``.
    """

    default_lr = 2.0 ** -10

    def __init__(self, *, beta1: float = 1 - 2.0 ** -3, beta2: float = 1 - 2.0 ** -10,
                 eps: float = 1e-12):
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.t = 0
        self._m: list[np.ndarray] = []
        self._u: list[np.ndarray] = []

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float) -> None:
        if not self._m:
            self._m = [np.zeros_like(p) for p in params]
            self._u = [np.zeros_like(p) for p in params]
        self.t += 1
        rate = float(ap2(lr / (1 - self.beta1 ** self.t)))
        for p, g, m, u in zip(params, grads, self._m, self._u):
            m *= self.beta1
            m += (1 - self.beta1) * g
            np.maximum(self.beta2 * u, np.abs(g), out=u)
            p -= rate * m * ap2(1.0 / np.maximum(u, self.eps))


OPTIMIZERS = {"adam": Adam, "shift-adamax": ShiftAdaMax}


def make_optimizer(name: str):
    """A fresh optimiser by name (``adam`` or ``shift-adamax``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimiser {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]()


class ConstantRate:
    """The same learning rate every epoch."""

    def __init__(self, lr: float):
        self.lr = float(lr)

    def __call__(self, epoch: int) -> float:
        return self.lr


class ExponentialDecay:
    """Learning rate decaying geometrically from ``start`` (epoch 0) to ``end`` (last epoch).

    ``lr(e) = start * (end / start) ** (e / (epochs - 1))``, the schedule of the BNN paper's
    code (``LR_start`` to ``LR_fin``).
    """

    def __init__(self, start: float, end: float, epochs: int):
        if not (start > 0 and end > 0):
            raise ValueError(f"learning rates must be positive, not {start!r} and {end!r}")
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {epochs!r}")
        self.start, self.end, self.epochs = float(start), float(end), int(epochs)

    def __call__(self, epoch: int) -> float:
        if self.epochs == 1:
            return self.start
        return self.start * (self.end / self.start) ** (min(epoch, self.epochs - 1)
                                                        / (self.epochs - 1))
