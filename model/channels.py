"""Structured (channel) pruning: remove whole filters, and the input channels that read them.

Every weight layer but the last is *prunable*: removing its filter ``m`` removes output
channel ``m``, the batch-norm entries of that channel, and the matching input channel of the
next weight layer (``R x S`` weights of each of its filters; after ``Flatten`` into a dense
layer, the ``H x W`` features of that channel). What is left is a smaller dense network of
the same kind, built again by ``model.nets.build(..., widths=...)``; unlike unstructured
pruning, the smaller layers need fewer cycles on a static schedule as well as fewer MACs.

Which channels stay (``keep`` of them, per prunable layer):

``l1``
    The filters with the largest L1 norm of their (float, shadow) weights (Li et al. 2017,
    "Pruning Filters for Efficient ConvNets"). Ties go to the lower index.
``lasso``
    He, Zhang and Sun (ICCV 2017): on sampled inputs of the *next* layer, the response
    ``Y = sum_c Z_c`` is a sum of one term per input channel ``c`` (``Z_c`` = that channel's
    inputs times its weights). The LASSO ``min_b ||Y - sum_c b_c Z_c||^2 / (2n) + a ||b||_1``
    is solved along a path of decreasing ``a`` (scikit-learn's ``lasso_path``) until at
    least ``keep`` coefficients are non-zero; the ``keep`` largest ``|b_c|`` are kept. Then
    the next layer's weights on the kept channels are **reconstructed by least squares**,
    ``min_W ||Y - X_kept W^T||``, against the responses ``Y`` of the *unpruned* network
    (so each layer also corrects the error of the layers pruned before it, as in the paper).
    For a quantized next layer the reconstruction sets its float shadow weights (rescaled
    to their former mean magnitude, which leaves binary and ternary levels to the signs and
    the threshold, and the batch norm that follows absorbs the scale).

Layers are pruned from the first to the last; ``prune_channels`` returns the pruned network
(a new ``Sequential`` from ``model.nets.build``), the kept indices and the new widths.
Fine-tuning is the caller's (``model.train``), as is folding into the integer model.
Grouped convolutions (depthwise) are not pruned: removing a channel there removes a whole
group and changes the next layer's grouping.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np

from model import layers as L
from model import nets

__all__ = ["METHODS", "Prunable", "prunable_layers", "keep_counts", "l1_scores",
           "lasso_select", "reconstruct", "prune_channels", "PruneResult", "remove_channels",
           "layer_sizes"]

#: The channel selection methods.
METHODS = ("l1", "lasso")

# Layers that may stand between two weight layers: per-channel or shape-only, no weights.
_BETWEEN = (L.BatchNorm, L.MaxPool2d, L.Sign, L.HardTanh, L.ReLU, L.Flatten,
            L.QuantizeGradients)


@dataclass(frozen=True)
class Prunable:
    """A prunable weight layer: its position, its channels and the next weight layer's.

    ``spatial`` is the number of next-layer input features per channel (1, or ``H * W``
    when a ``Flatten`` turns the channels into the features of a dense layer).
    """

    index: int
    next_index: int
    channels: int
    batch_norms: tuple[int, ...]
    spatial: int


def prunable_layers(net: L.Sequential) -> list[Prunable]:
    """Every weight layer but the last, with what removing its channels touches.

    Raises ``ValueError`` naming the layer when something between two weight layers is not
    a per-channel or shape-only layer, or when a layer is a grouped convolution.
    """
    linear = [i for i, layer in enumerate(net.layers) if isinstance(layer, L.Linear)]
    if len(linear) < 2:
        raise ValueError("channel pruning needs at least two weight layers (the last one's "
                         "outputs are the classes)")
    out = []
    for i, j in zip(linear, linear[1:]):
        layer, nxt = net.layers[i], net.layers[j]
        for k in (i, j):
            if getattr(net.layers[k], "groups", 1) != 1:
                raise ValueError(f"layer {k} ({net.layers[k]!r}) is a grouped convolution; "
                                 "channel pruning handles groups = 1 only")
        between = net.layers[i + 1:j]
        for k, mid in enumerate(between, start=i + 1):
            if not isinstance(mid, _BETWEEN):
                raise ValueError(f"layer {k} ({type(mid).__name__}) between two weight layers "
                                 "does not prune by channel")
        channels = layer.params["weight"].shape[0]
        inputs = nxt.params["weight"].shape[1]
        if isinstance(nxt, L.Conv2d):
            spatial = 1
        else:
            spatial = inputs // channels
        if spatial * channels != inputs:
            raise ValueError(f"layer {j} has {inputs} inputs, not a multiple of layer {i}'s "
                             f"{channels} channels")
        norms = tuple(k for k, mid in enumerate(between, start=i + 1)
                      if isinstance(mid, L.BatchNorm))
        out.append(Prunable(i, j, channels, norms, spatial))
    return out


def keep_counts(ratio, prunables: list[Prunable]) -> list[int]:
    """Channels to keep per prunable layer: ``round(ratio * channels)``, at least 1.

    ``ratio`` is one fraction in (0, 1] or one per prunable layer.
    """
    ratios = list(ratio) if isinstance(ratio, (list, tuple)) else [ratio] * len(prunables)
    if len(ratios) != len(prunables):
        raise ValueError(f"{len(ratios)} channel ratios for {len(prunables)} prunable layers; "
                         f"give one ratio or {len(prunables)}")
    out = []
    for r, p in zip(ratios, prunables):
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
            raise ValueError(f"channel ratio must be a fraction in (0, 1] of the channels "
                             f"kept, not {r!r}")
        out.append(max(1, int(round(r * p.channels))))
    return out


def l1_scores(layer: L.Linear) -> np.ndarray:
    """L1 norm of each filter's float (shadow) weights: ``sum |W[m]|``."""
    w = layer.params["weight"]
    return np.abs(w).reshape(w.shape[0], -1).sum(axis=1)


def _top(scores: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the ``keep`` largest scores (ties: the lower index), sorted."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    return np.sort(order[:keep])


# --------------------------------------------------------------------------------------------
# The next layer's response, channel by channel (LASSO selection and reconstruction)
# --------------------------------------------------------------------------------------------

def _rows(layer: L.Linear, x: np.ndarray) -> np.ndarray:
    """The layer's input codes as product rows: im2col patches or the feature vectors."""
    codes, _ = layer.input_codes(x)
    if isinstance(layer, L.Conv2d):
        return L.im2col(codes, layer.kernel, layer.stride, layer.padding)
    return codes.reshape(codes.shape[0], -1)


def _effective_weights(layer: L.Linear) -> np.ndarray:
    """Weights applied to the input codes: ``[M, K]`` with ``y = rows @ W.T (+ bias)``."""
    levels, w_scale = layer.weight_levels()
    lv = levels.reshape(levels.shape[0], -1).astype(np.float64)
    scale = layer._output_scale(w_scale, layer.input_codes_scale())
    return lv * (np.asarray(scale).reshape(-1, 1) if np.ndim(scale) else scale)


def _column_channels(layer: L.Linear, channels: int) -> np.ndarray:
    """Input channel of each product column (``(c, r, s)`` order, or channel-major features)."""
    k = layer.params["weight"][0].size
    return np.arange(k) // (k // channels)


def _inputs_of(net: L.Sequential, index: int, x: np.ndarray) -> np.ndarray:
    """The input of layer ``index`` for images ``x`` (evaluation mode)."""
    for layer in net.layers[:index]:
        x = layer.forward(x, training=False)
    return x


def lasso_select(rows: np.ndarray, target: np.ndarray, weights: np.ndarray,
                 channel_of: np.ndarray, keep: int) -> np.ndarray:
    """He et al.'s LASSO channel selection: the ``keep`` channels to keep, sorted.

    ``rows`` [P, K] are sampled input rows of the next layer, ``target`` [P, M] the responses
    to reproduce, ``weights`` [M, K] the next layer's effective weights and ``channel_of``
    [K] the input channel of each column. ``Z_c = rows[:, c] @ weights[:, c].T``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lasso_path

    channels = int(channel_of.max()) + 1
    if keep >= channels:
        return np.arange(channels)
    design = np.stack([(rows[:, channel_of == c] @ weights[:, channel_of == c].T).ravel()
                       for c in range(channels)], axis=1)          # [P * M, channels]
    y = target.ravel()
    scale = np.linalg.norm(design, axis=0)
    scale[scale == 0] = 1.0
    design = design / scale
    top = float(np.max(np.abs(design.T @ y))) / len(y)       # the smallest all-zero alpha
    alphas = np.geomspace(top, top * 1e-4, 60) if top > 0 else np.array([1.0])
    with warnings.catch_warnings():  # the smallest alphas need not converge: only the
        warnings.simplefilter("ignore", ConvergenceWarning)  # order of the support matters
        _, coefs, _ = lasso_path(design, y, alphas=alphas, max_iter=5000)
    coefs = coefs * (1.0 / scale)[:, None]
    for k in range(coefs.shape[1]):          # alphas decrease: first with enough channels
        if np.count_nonzero(coefs[:, k]) >= keep:
            return _top(np.abs(coefs[:, k] * scale), keep)
    return _top(np.abs(coefs[:, -1] * scale), keep)


def reconstruct(layer: L.Linear, rows: np.ndarray, target: np.ndarray) -> None:
    """Set ``layer``'s weights to the least-squares fit ``min_W ||target - rows W^T||``.

    ``rows`` [P, K] are the layer's (pruned) input rows, ``target`` [P, M] the responses to
    reproduce. A float layer gets the fit itself (divided by its input scale); a quantized
    layer's shadow weights get the fit rescaled to their former mean magnitude, then
    ``constrain()`` (the quantizer and the batch norm after it take care of the scale).
    """
    fit, *_ = np.linalg.lstsq(rows, target, rcond=None)            # [K, M]
    w_eff = fit.T
    _, w_scale = layer.weight_levels()
    code_scale = layer.input_codes_scale()
    shape = layer.params["weight"].shape
    if isinstance(layer, L.QuantizedWeights):
        old = layer.params["weight"]
        new = w_eff.reshape(shape)
        mean_new = float(np.mean(np.abs(new)))
        if mean_new > 0:
            new = new * (float(np.mean(np.abs(old))) / mean_new)
        layer.params["weight"] = new
        layer.constrain()
    else:
        layer.params["weight"] = (w_eff / code_scale).reshape(shape)


# --------------------------------------------------------------------------------------------
# Removing channels
# --------------------------------------------------------------------------------------------

def remove_channels(net: L.Sequential, p: Prunable, kept: np.ndarray) -> None:
    """Keep only channels ``kept`` of prunable layer ``p``, in place (shapes, BN, next layer)."""
    kept = np.asarray(kept, dtype=np.int64)
    layer, nxt = net.layers[p.index], net.layers[p.next_index]
    layer.params["weight"] = layer.params["weight"][kept]
    if "bias" in layer.params:
        layer.params["bias"] = layer.params["bias"][kept]
    if isinstance(layer, L.Conv2d):
        layer.out_channels = len(kept)
    else:
        layer.out_features = len(kept)
    for k in p.batch_norms:
        bn = net.layers[k]
        for store in (bn.params, bn.buffers):
            for key in store:
                store[key] = store[key][kept]
        bn.num_features = len(kept)
    features = (kept[:, None] * p.spatial + np.arange(p.spatial)[None, :]).ravel()
    nxt.params["weight"] = nxt.params["weight"][:, kept if isinstance(nxt, L.Conv2d)
                                                 else features]
    if isinstance(nxt, L.Conv2d):
        nxt.in_channels = len(kept)
    else:
        nxt.in_features = len(features)
    for store in (layer.grads, nxt.grads):
        store.clear()


@dataclass
class PruneResult:
    """The pruned network, the kept channel indices per prunable layer, the new widths."""

    net: L.Sequential
    kept: list[np.ndarray]
    widths: tuple[int, ...]


def prune_channels(net: L.Sequential, x_sample: np.ndarray, ratio, *, method: str = "l1",
                   net_name: str, input_shape, classes: int, pixel_max: int,
                   options: dict | None = None, samples: int = 200_000,
                   seed: int = 0) -> PruneResult:
    """Prune ``net`` (a network of ``model.nets``) to ``ratio`` of its hidden channels.

    ``x_sample`` are images (the network's inputs) for the LASSO selection and the
    reconstruction; ``samples`` bounds the rows x outputs of each LASSO problem. The result
    is a new network from ``nets.build(net_name, ..., widths=...)`` holding the pruned
    weights (``options`` are the other ``build`` keywords, e.g. ``bits``); ``net`` is left
    unchanged.
    """
    if method not in METHODS:
        raise ValueError(f"unknown channel selection {method!r}; allowed: {', '.join(METHODS)}")
    if nets.NETS.get(net_name) is None or nets.NETS[net_name].widths is None:
        raise ValueError(f"network {net_name!r} cannot be built with other widths; allowed: "
                         f"{', '.join(n for n, s in nets.NETS.items() if s.widths)}")
    prunables = prunable_layers(net)
    keeps = keep_counts(ratio, prunables)
    original = net
    work = copy.deepcopy(net)
    rng = np.random.default_rng(seed)
    kept_all = []
    for p, keep in zip(prunables, keeps):
        if method == "l1":
            kept = _top(l1_scores(work.layers[p.index]), keep)
            remove_channels(work, p, kept)
        else:
            nxt = original.layers[p.next_index]
            rows_orig = _rows(nxt, _inputs_of(original, p.next_index, x_sample))
            target = rows_orig @ _effective_weights(nxt).T
            cur = work.layers[p.next_index]
            rows = _rows(cur, _inputs_of(work, p.next_index, x_sample))
            m = target.shape[1]
            pick = rng.permutation(len(rows))[:max(64, samples // m)]
            channel_of = _column_channels(cur, p.channels)
            kept = lasso_select(rows[pick], target[pick], _effective_weights(cur), channel_of,
                                keep)
            remove_channels(work, p, kept)
            cols = np.isin(channel_of, kept)
            reconstruct(work.layers[p.next_index], rows[:, cols], target)
        kept_all.append(np.asarray(kept))
    widths = tuple(len(k) for k in kept_all)
    options = dict(options or {})
    options.pop("widths", None)
    pruned = nets.build(net_name, input_shape, classes, pixel_max=pixel_max, widths=widths,
                        **options)
    pruned.load_state_dict(work.state_dict())
    return PruneResult(pruned, kept_all, widths)


def layer_sizes(net: L.Sequential, input_shape) -> list[dict]:
    """Per weight layer: ``name`` (``conv<i>``/``fc<i>`` by position, 1-based, as
    ``sim.energy_presets.layers_from_model`` names them), output ``channels``, ``weights``
    and ``macs`` for one image (padding taps included)."""
    x = np.zeros((1,) + tuple(int(v) for v in input_shape))
    out, position = [], 0
    for layer in net.layers:
        y = layer.forward(x, training=False)
        if isinstance(layer, L.Linear):
            position += 1
            w = layer.params["weight"]
            kind = "conv" if isinstance(layer, L.Conv2d) else "fc"
            out.append({"name": f"{kind}{position}", "channels": int(w.shape[0]),
                        "weights": int(w.size), "macs": int(y[0].size * w[0].size)})
        x = y
    return out
