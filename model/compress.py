"""Deep Compression (Han et al. 2016): pruning, weight sharing and the storage they save.

The three stages, per weight layer:

1. **Pruning.** A mask keeps ``|w| > threshold``; weights at or below it become zero (a tie
   at the threshold is pruned). The threshold is ``quality x std(w)`` (the layer's standard
   deviation, zeros included, as the weights stand) or the magnitude that prunes a target
   fraction. Retraining goes through ``model.train`` with the mask as a gradient mask, so
   pruned weights stay zero and receive no gradient.
2. **Weight sharing.** The non-zero weights of a layer are clustered by k-means into
   ``2**bits - 1`` centroids; the cluster index is stored instead of the weight. Index 0 is
   reserved for zero (pruned weights and the filler entries of the sparse form, see
   ``model.sparse``), so ``codebook[0] == 0`` always. K-means is scikit-learn's ``KMeans``
   with the paper's *linear* initialisation passed as an explicit ``init`` array (evenly
   spaced over [min, max] of the non-zero weights) and ``n_init=1``: the library gives a
   well-tested Lloyd iteration, and an explicit init makes the result a deterministic
   function of the weights (no random restarts; run on one thread). Centroids are then
   fine-tuned: each centroid's gradient is the sum of its weights' gradients
   (``centroid_gradients``).
3. **Huffman coding** (``model.huffman``) of the cluster indices and of the index fields.

Storage accounting (``LayerStorage``) counts every bit a decoder needs: stored entries
(fillers included) x (value bits + index bits), the codebook (32-bit floats) and the Huffman
tables. Biases (and any other parameter) stay dense 32-bit floats and are counted in the
totals, before and after.

The compressed model file (``CompressedModel.save``/``load_compressed``) is one ``.npz``
with a JSON manifest (format ``mulfree-compressed``, version, network, per-layer fields,
accuracy, settings, SHA-256 of the arrays): per layer the float32 codebook and either the
two Huffman streams (``huffman=True``) or the raw index fields and cluster indices; every
other parameter as float32.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from model import nets, ops
from model.container import read_container, write_container
from model.huffman import HuffmanStream, decode, encode
from model.layers import Conv2d, Dense, Layer, Sequential
from model.quant import check_bits, check_codes
from model.sparse import RelativeIndexed, decode_relative, encode_relative
from model.train import accuracy, train

__all__ = [
    "FLOAT_BITS",
    "prune_by_std",
    "prune_to_sparsity",
    "SharedWeights",
    "share_weights",
    "centroid_gradients",
    "sharing_rate",
    "integer_codebook",
    "codebook_conv2d",
    "codebook_acc_range",
    "codebook_accumulator_width",
    "CompressedLayer",
    "compress_layer",
    "LayerStorage",
    "SharedWeightLayer",
    "compressible_layers",
    "prune_network",
    "share_network",
    "unshare_network",
    "CompressedModel",
    "CompressionResult",
    "deep_compress",
    "check_settings",
    "format_table",
    "load_compressed",
    "FORMAT",
    "VERSION",
]

#: Bits of an uncompressed weight, bias or codebook entry (float32).
FLOAT_BITS = 32


def _as_float(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or inf; allowed: finite numbers")
    return w


def prune_by_std(weights, quality: float) -> np.ndarray:
    """Mask keeping ``|w| > quality * std(w)`` (Han et al.'s per-layer threshold)."""
    if not (isinstance(quality, (int, float)) and math.isfinite(quality) and quality >= 0):
        raise ValueError(f"pruning quality must be a finite number >= 0, not {quality!r}")
    w = _as_float(weights)
    return np.abs(w) > quality * float(np.std(w))


def prune_to_sparsity(weights, sparsity: float) -> np.ndarray:
    """Mask pruning exactly ``round(sparsity * n)`` weights, the smallest in magnitude.

    Ties in magnitude are broken by position (earlier pruned first), so the mask is a
    deterministic function of the weights; weights already zero are pruned first.
    """
    if not (isinstance(sparsity, (int, float)) and 0 <= sparsity <= 1):
        raise ValueError(f"target sparsity must be a number in [0, 1], not {sparsity!r}")
    w = _as_float(weights)
    n_pruned = int(round(sparsity * w.size))
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    keep = np.ones(w.size, dtype=bool)
    keep[order[:n_pruned]] = False
    return keep.reshape(w.shape)


@dataclass(frozen=True)
class SharedWeights:
    """A layer's weights as cluster indices into a codebook whose entry 0 is zero.

    Attributes
    ----------
    indices : np.ndarray
        int64, the layer's shape; 0 where the weight is zero.
    codebook : np.ndarray
        float64, ``[2**bits]``; ``codebook[0] == 0``; unused entries (fewer distinct
        weights than centroids) are zero too.
    bits : int
        Bits of a cluster index.
    """

    indices: np.ndarray
    codebook: np.ndarray
    bits: int

    def weights(self) -> np.ndarray:
        """The shared weights: ``codebook[indices]``."""
        return self.codebook[self.indices]


def share_weights(weights, bits: int) -> SharedWeights:
    """Cluster the non-zero weights into ``2**bits - 1`` centroids (linear-init k-means)."""
    # Imported here: only weight sharing needs scikit-learn (threadpoolctl comes with it).
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    bits = check_bits("weight-sharing bits", bits, 2, 8)
    w = _as_float(weights)
    flat = w.ravel()
    nonzero = np.flatnonzero(flat)
    codebook = np.zeros(1 << bits)
    indices = np.zeros(flat.size, dtype=np.int64)
    if nonzero.size:
        values = flat[nonzero]
        n_clusters = min((1 << bits) - 1, np.unique(values).size)
        init = np.linspace(values.min(), values.max(), n_clusters).reshape(-1, 1)
        # One thread: 1-D k-means gains nothing from more, and on a busy machine OpenMP's
        # threads make it ten times slower. A centroid that loses all its points is
        # relocated by scikit-learn (its ConvergenceWarning is silenced).
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")
            km = KMeans(n_clusters=n_clusters, init=init, n_init=1, max_iter=300, tol=0)
            labels = km.fit_predict(values.reshape(-1, 1))
        centroids = km.cluster_centers_.ravel()
        # Number the clusters by centroid value (1 = most negative) for a readable codebook.
        rank = np.empty(n_clusters, dtype=np.int64)
        rank[np.argsort(centroids, kind="stable")] = np.arange(n_clusters)
        codebook[1:n_clusters + 1] = np.sort(centroids, kind="stable")
        indices[nonzero] = rank[labels] + 1
    return SharedWeights(indices.reshape(w.shape), codebook, bits)


def centroid_gradients(indices, grad, n_codes: int) -> np.ndarray:
    """Gradient of each centroid: the sum of the gradients of its weights (0 for code 0)."""
    idx = np.asarray(indices, dtype=np.int64).ravel()
    g = np.bincount(idx, weights=np.asarray(grad, dtype=np.float64).ravel(), minlength=n_codes)
    g[0] = 0.0  # the zero code is not trained: pruned weights stay zero
    return g


def sharing_rate(n_weights: int, n_clusters: int, weight_bits: int = FLOAT_BITS) -> float:
    """The paper's compression rate of weight sharing alone: ``n b / (n log2 k + k b)``."""
    if n_weights < 1 or n_clusters < 2:
        raise ValueError(f"need n >= 1 weights and k >= 2 clusters, not n={n_weights}, "
                         f"k={n_clusters}")
    return n_weights * weight_bits / (n_weights * math.log2(n_clusters) + n_clusters * weight_bits)


def integer_codebook(codebook, bits: int) -> tuple[np.ndarray, float]:
    """Quantise a codebook to signed ``bits``-bit integer levels and one scale.

    ``scale = max|c| / (2**(bits-1) - 1)`` and ``level = round(c / scale)`` (half to even),
    so the largest centroid is exact and every other is off by at most ``scale / 2``; zero
    stays exactly zero (so pruned weights are still skipped). An all-zero codebook gets
    scale 1. Returns (int64 levels, scale).
    """
    bits = check_bits("integer codebook bits", bits, 2, 16)
    c = _as_float(codebook)
    top = float(np.max(np.abs(c), initial=0.0))
    scale = top / ((1 << (bits - 1)) - 1) if top > 0 else 1.0
    return np.round(c / scale).astype(np.int64), scale


def _check_codebook_layer(indices, levels, a_bits: int) -> tuple[np.ndarray, np.ndarray]:
    lv = check_codes("integer codebook", levels, -(1 << 15), (1 << 15) - 1)
    if lv.ndim != 1 or lv.size < 2 or lv.size & (lv.size - 1):
        raise ValueError(f"an integer codebook needs 2**bits levels, not {lv.size}")
    idx = check_codes("codebook indices", indices, 0, lv.size - 1)
    check_bits("activation width", a_bits, 1, 15)
    return idx, lv


def codebook_conv2d(inputs, indices, levels, *, stride: int = 1, padding: int = 0,
                    a_bits: int, groups: int = 1) -> np.ndarray:
    """Exact sums of ``levels[indices] * a`` over a convolution (shared weights, integer codebook).

    ``inputs`` are unsigned ``a_bits`` activation codes [C, H, W] (or a batch), ``indices``
    the codebook indices [M, C / groups, R, S]. Model of the row-stationary array whose ``LutUnit``
    holds ``levels[w] * a`` (``hw.units.product_unit("dorefa", codebook=levels)``): it is
    ``model.ops.conv2d("int", ...)`` on the weight levels, the unsigned codes read as
    ``a_bits + 1``-bit signed ones.
    """
    idx, lv = _check_codebook_layer(indices, levels, a_bits)
    check_codes("activation codes", inputs, 0, (1 << a_bits) - 1)
    w = lv[idx]
    return ops.conv2d("int", inputs, w, stride=stride, padding=padding, a_bits=a_bits + 1,
                      w_bits=max(2, ops.signed_width(int(lv.min()), int(lv.max()))),
                      groups=groups)


def codebook_acc_range(levels, *, a_bits: int, fan_in: int) -> tuple[int, int]:
    """Smallest and largest sum of ``fan_in`` products ``levels[w] * a``, a unsigned."""
    _, lv = _check_codebook_layer(np.zeros(1, dtype=np.int64), levels, a_bits)
    top = (1 << a_bits) - 1
    lo, hi = min(int(lv.min()) * top, 0), max(int(lv.max()) * top, 0)
    return fan_in * lo, fan_in * hi


def codebook_accumulator_width(levels, *, a_bits: int, fan_in: int) -> int:
    """Smallest signed accumulator for ``fan_in`` products ``levels[w] * a``, a unsigned."""
    return ops.signed_width(*codebook_acc_range(levels, a_bits=a_bits, fan_in=fan_in))


@dataclass(frozen=True)
class LayerStorage:
    """The bits a layer takes at each stage, with the counts behind them.

    Stages: ``dense`` (every weight a float32), ``pruned`` (sparse float32 values with
    relative indices), ``shared`` (sparse cluster indices + codebook), ``huffman`` (the
    Huffman-coded index and gap streams + their tables + codebook).
    """

    name: str
    n_weights: int
    n_nonzero: int
    n_entries: int
    index_bits: int
    share_bits: int
    codebook_bits: int
    value_stream_bits: int
    field_stream_bits: int
    table_bits: int

    @property
    def density(self) -> float:
        return self.n_nonzero / self.n_weights

    @property
    def dense_bits(self) -> int:
        return self.n_weights * FLOAT_BITS

    @property
    def pruned_bits(self) -> int:
        return self.n_entries * (FLOAT_BITS + self.index_bits)

    @property
    def shared_bits(self) -> int:
        return self.n_entries * (self.share_bits + self.index_bits) + self.codebook_bits

    @property
    def huffman_bits(self) -> int:
        return (self.value_stream_bits + self.field_stream_bits + self.table_bits
                + self.codebook_bits)

    @property
    def huffman_weight_bits(self) -> float:
        """Mean Huffman bits per stored weight (the paper's "weight bits, P+Q+H")."""
        return self.value_stream_bits / max(self.n_entries, 1)

    @property
    def huffman_index_bits(self) -> float:
        """Mean Huffman bits per stored index (the paper's "index bits, P+Q+H")."""
        return self.field_stream_bits / max(self.n_entries, 1)


@dataclass(frozen=True)
class CompressedLayer:
    """One weight layer after pruning and sharing, in its stored form.

    ``sparse`` holds the cluster indices with relative indices (fillers are index 0);
    ``value_stream`` and ``field_stream`` are their Huffman codes (computed on first use).
    The codebook holds float32 values (as float64), as stored.
    """

    name: str
    codebook: np.ndarray
    share_bits: int
    sparse: RelativeIndexed

    @cached_property
    def value_stream(self) -> HuffmanStream:
        return encode(self.sparse.values)

    @cached_property
    def field_stream(self) -> HuffmanStream:
        return encode(self.sparse.fields)

    def indices(self) -> np.ndarray:
        """The dense cluster indices, decoded from the Huffman streams."""
        fields, values = decode(self.field_stream), decode(self.value_stream)
        sparse = RelativeIndexed(self.sparse.shape, self.sparse.index_bits, fields, values)
        return decode_relative(sparse)

    def weights(self) -> np.ndarray:
        """The dense float weights the stored form decodes to."""
        return self.codebook[self.indices()]

    def storage(self) -> LayerStorage:
        n = int(np.prod(self.sparse.shape, dtype=np.int64))
        b = self.sparse.index_bits
        tables = (self.value_stream.table_bits(self.share_bits)
                  + self.field_stream.table_bits(b))
        return LayerStorage(
            name=self.name, n_weights=n,
            n_nonzero=self.sparse.n_entries - self.sparse.n_fillers,
            n_entries=self.sparse.n_entries, index_bits=b, share_bits=self.share_bits,
            codebook_bits=self.codebook.size * FLOAT_BITS,
            value_stream_bits=self.value_stream.n_bits,
            field_stream_bits=self.field_stream.n_bits, table_bits=tables)


def _float32(values) -> np.ndarray:
    """Values rounded to float32, as stored (kept as float64 for the arithmetic)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def compress_layer(name: str, shared: SharedWeights, index_bits: int) -> CompressedLayer:
    """Store shared weights sparsely with ``index_bits`` relative indices (float32 codebook)."""
    return CompressedLayer(name, _float32(shared.codebook), shared.bits,
                           encode_relative(shared.indices, index_bits))


# --- whole networks ---------------------------------------------------------------------

class SharedWeightLayer(Layer):
    """A float ``Dense``/``Conv2d`` layer whose weights are shared: ``codebook[indices]``.

    The trainable parameters are the ``codebook`` (and the inner layer's ``bias``); the
    gradient of each centroid is the sum of the gradients of its weights
    (``centroid_gradients``), so ``model.train`` fine-tunes the centroids and every weight of
    a cluster moves with its centroid. Code 0 stays zero. The inner layer does the
    arithmetic through its public ``forward``/``backward``, with its weight set from the
    codebook before every forward pass.
    """

    def __init__(self, layer: Dense | Conv2d, shared: SharedWeights):
        super().__init__()
        self.layer = copy.deepcopy(layer)
        self.indices = shared.indices.copy()
        self.share_bits = shared.bits
        self.params["codebook"] = shared.codebook.copy()
        if "bias" in layer.params:
            self.params["bias"] = layer.params["bias"].copy()

    def describe(self) -> str:
        return f"{self.layer!r}, {self.share_bits}-bit shared"

    def shared(self) -> SharedWeights:
        """The current indices and codebook."""
        return SharedWeights(self.indices.copy(), self.params["codebook"].copy(), self.share_bits)

    def plain(self) -> Dense | Conv2d:
        """A copy of the inner layer holding the shared weights as its own."""
        layer = copy.deepcopy(self.layer)
        layer.params.update({key: value.copy() for key, value in self.params.items()
                             if key != "codebook"})
        layer.params["weight"] = self.shared().weights()
        return layer

    def forward(self, x, *, training=False):
        self.layer.params["weight"] = self.params["codebook"][self.indices]
        if "bias" in self.params:
            self.layer.params["bias"] = self.params["bias"]
        return self.layer.forward(x, training=training)

    def backward(self, grad):
        out = self.layer.backward(grad)
        self.grads["codebook"] = centroid_gradients(self.indices, self.layer.grads["weight"],
                                                    self.params["codebook"].size)
        if "bias" in self.params:
            self.grads["bias"] = self.layer.grads["bias"]
        return out


def compressible_layers(net: Sequential) -> list[tuple[int, str, Layer]]:
    """(position, name, layer) of each float ``Dense``/``Conv2d`` layer (named fc1.., conv1..).

    Shared layers (``SharedWeightLayer``) count as their inner layer. Quantized layers
    (binary, ternary, ...) are not compressed: their weights already take 1 to 3 bits and
    their levels are fixed by the method.
    """
    out, counts = [], {"fc": 0, "conv": 0}
    for i, layer in enumerate(net.layers):
        inner = layer.layer if isinstance(layer, SharedWeightLayer) else layer
        if type(inner) in (Dense, Conv2d):
            kind = "conv" if type(inner) is Conv2d else "fc"
            counts[kind] += 1
            out.append((i, f"{kind}{counts[kind]}", layer))
    return out


def _per_layer(name: str, value, n: int) -> list:
    """A setting given once for all layers, or as one value per compressible layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} lists {len(value)} values for {n} compressible layers; "
                             f"give one value or {n}")
        return list(value)
    return [value] * n


def prune_network(net: Sequential, *, quality=None, sparsity=None,
                  masks: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Prune every compressible layer in place; return the masks (``"<pos>.weight"``).

    Exactly one of ``quality`` (threshold ``quality x std``) and ``sparsity`` (fraction
    pruned), each one value or one per layer. Earlier ``masks`` are kept: a weight once
    pruned stays pruned.
    """
    if (quality is None) == (sparsity is None):
        raise ValueError("give exactly one of a pruning quality and a target sparsity")
    layers = compressible_layers(net)
    settings = _per_layer("pruning quality" if sparsity is None else "target sparsity",
                          quality if sparsity is None else sparsity, len(layers))
    out = {}
    for (i, _, layer), setting in zip(layers, settings):
        key = f"{i}.weight"
        w = layer.params["weight"]
        mask = prune_by_std(w, setting) if sparsity is None else prune_to_sparsity(w, setting)
        if masks and key in masks:
            mask &= masks[key].astype(bool)
        layer.params["weight"] = w * mask
        out[key] = mask
    return out


def share_network(net: Sequential, bits) -> Sequential:
    """A copy of ``net`` whose compressible layers share weights (k-means, ``bits`` each)."""
    shared_net = copy.deepcopy(net)
    layers = compressible_layers(shared_net)
    for (i, _, layer), b in zip(layers, _per_layer("weight-sharing bits", bits, len(layers))):
        shared_net.layers[i] = SharedWeightLayer(layer, share_weights(layer.params["weight"], b))
    return shared_net


def unshare_network(net: Sequential) -> Sequential:
    """A copy of ``net`` with plain ``Dense``/``Conv2d`` layers holding ``codebook[indices]``."""
    return Sequential([layer.plain() if isinstance(layer, SharedWeightLayer)
                       else copy.deepcopy(layer) for layer in net.layers])


FORMAT = "mulfree-compressed"
VERSION = 1


@dataclass
class CompressedModel:
    """A compressed network: its stored weight layers and every other parameter.

    ``layers`` are the compressed ``Dense``/``Conv2d`` weights by name (``fc1``, ``conv1``, ...
    as ``compressible_layers`` names them); ``state`` holds every other parameter and buffer
    (biases, batch-norm statistics) by ``Sequential.state_dict`` name, rounded to float32;
    ``meta`` the network name, input shape, pixel range, classes, data set, settings and
    accuracy.
    """

    layers: list[CompressedLayer]
    state: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def other_parameters(self) -> int:
        """Numbers stored besides the compressed weights (biases, ...)."""
        return sum(int(v.size) for v in self.state.values())

    def totals(self) -> dict[str, int]:
        """Total bits per stage (``dense``, ``pruned``, ``shared``, ``huffman``).

        Every other parameter (biases, ...) counts as dense float32 at every stage.
        """
        storage = [layer.storage() for layer in self.layers]
        other = self.other_parameters() * FLOAT_BITS
        return {stage: sum(getattr(s, f"{stage}_bits") for s in storage) + other
                for stage in ("dense", "pruned", "shared", "huffman")}

    def apply(self, net: Sequential) -> Sequential:
        """A copy of ``net`` holding the decoded weights and the stored parameters."""
        out = unshare_network(net)
        by_name = {layer.name: layer for layer in self.layers}
        positions = {name: i for i, name, _ in compressible_layers(out)}
        if set(by_name) != set(positions):
            raise ValueError(f"the compressed layers {sorted(by_name)} do not match the "
                             f"network's {sorted(positions)}")
        state = out.state_dict()
        for name, i in positions.items():
            state[f"{i}.weight"] = by_name[name].weights()
        for key, value in self.state.items():
            state[key] = value.astype(np.float64)
        out.load_state_dict(state)
        return out

    def network(self) -> Sequential:
        """The decoded network, rebuilt by ``model.nets.build`` from ``meta``."""
        m = self.meta
        net = nets.build(m["net"], tuple(m["input_shape"]), int(m["classes"]),
                         pixel_max=int(m["pixel_max"]), **nets.build_options(m))
        return self.apply(net)

    def save(self, path, *, huffman: bool = True, overwrite: bool = False) -> None:
        """Write the ``.npz`` (Huffman streams or raw fields), atomically; see the module doc."""
        arrays, layers = {}, []
        for layer in self.layers:
            n = layer.name
            layers.append({"name": n, "shape": list(layer.sparse.shape),
                           "index_bits": layer.sparse.index_bits,
                           "share_bits": layer.share_bits})
            arrays[f"{n}.codebook"] = layer.codebook.astype(np.float32)
            if huffman:
                arrays.update(layer.value_stream.to_arrays(f"{n}.values."))
                arrays.update(layer.field_stream.to_arrays(f"{n}.fields."))
            else:
                arrays[f"{n}.values"] = layer.sparse.values.astype(np.uint8)
                arrays[f"{n}.fields"] = layer.sparse.fields.astype(np.uint16)
        for key, value in self.state.items():
            arrays[f"state.{key}"] = np.asarray(value, dtype=np.float32)
        manifest = {"huffman": bool(huffman), "layers": layers, "meta": self.meta}
        write_container(path, format=FORMAT, version=VERSION, manifest=manifest, arrays=arrays,
                        overwrite=overwrite, compressed=False)


def load_compressed(path) -> CompressedModel:
    """Read a file written by ``CompressedModel.save``.

    Raises ``ValueError`` (one line) when the file is missing, not a compressed mulfree
    model, of another version, or corrupt.
    """
    what = "compressed mulfree model"
    manifest, arrays = read_container(path, format=FORMAT, version=VERSION, what=what)
    bad = f"{os.fspath(path)!r} is not a valid {what} file"
    try:
        layers = []
        for entry in manifest["layers"]:
            n, shape, b = entry["name"], tuple(entry["shape"]), int(entry["index_bits"])
            if manifest["huffman"]:
                values = decode(HuffmanStream.from_arrays(arrays, f"{n}.values."))
                fields = decode(HuffmanStream.from_arrays(arrays, f"{n}.fields."))
            else:
                values = arrays[f"{n}.values"].astype(np.int64)
                fields = arrays[f"{n}.fields"].astype(np.int64)
            sparse = RelativeIndexed(shape, b, fields, values)
            decode_relative(sparse)  # refuses fields that do not fit the shape
            layers.append(CompressedLayer(n, arrays[f"{n}.codebook"].astype(np.float64),
                                          int(entry["share_bits"]), sparse))
        state = {k[len("state."):]: v.astype(np.float64) for k, v in arrays.items()
                 if k.startswith("state.")}
        return CompressedModel(layers, state, manifest.get("meta", {}))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{bad}: field {exc} missing or malformed") from None


@dataclass
class CompressionResult:
    """What ``deep_compress`` returns: the compressed model, its network, accuracy per stage.

    ``accuracy`` has ``original``, ``pruned`` (after retraining), ``shared, before
    fine-tuning``, ``shared`` (after fine-tuning the centroids, float32 as stored) and
    ``stored`` (the network decoded from the Huffman-coded form, which must equal
    ``shared``: the coding is lossless); ``masks`` are the pruning masks by parameter name.
    """

    compressed: CompressedModel
    net: Sequential
    accuracy: dict[str, float] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def _round_state_to_float32(net: Sequential) -> None:
    for layer in net.layers:
        for store in (layer.params, layer.buffers):
            for key in store:
                store[key] = _float32(store[key])


def check_settings(n_layers: int, *, quality=None, sparsity=None, prune_steps: int = 3,
                   retrain_epochs: int = 10, share_bits=5, finetune_epochs: int = 5,
                   index_bits=5) -> tuple:
    """Check the settings of ``deep_compress`` for a network of ``n_layers`` compressible
    layers (one ``ValueError`` line naming the bad value); returns the per-layer pruning
    qualities (or None), target sparsities (or None) and index bits."""
    check_bits("prune steps", prune_steps, 1, 100)
    if (quality is None) == (sparsity is None):
        raise ValueError("give exactly one of a pruning quality and a target sparsity")
    bits_per_layer = [check_bits("index bits", b, 1, 16)
                      for b in _per_layer("index bits", index_bits, n_layers)]
    for b in _per_layer("weight-sharing bits", share_bits, n_layers):
        check_bits("weight-sharing bits", b, 2, 8)
    target_q = None if quality is None else _per_layer("pruning quality", quality, n_layers)
    target_s = None if sparsity is None else _per_layer("target sparsity", sparsity, n_layers)
    for q in target_q or []:
        prune_by_std(np.zeros(1), q)
    for s in target_s or []:
        prune_to_sparsity(np.zeros(1), s)
    for name, value in (("retrain epochs", retrain_epochs), ("fine-tuning epochs",
                                                            finetune_epochs)):
        check_bits(name, value, 0, 100_000)
    return target_q, target_s, bits_per_layer


def deep_compress(net: Sequential, x_train, y_train, x_test, y_test, *, quality=None,
                  sparsity=None, prune_steps: int = 3, retrain_epochs: int = 10,
                  share_bits=5, finetune_epochs: int = 5, index_bits=5,
                  lr: float = 1e-3, lr_end: float | None = None, seed: int = 0,
                  progress: bool = False) -> CompressionResult:
    """Prune (in ``prune_steps`` steps, each retrained), share, fine-tune, store and code.

    The pruning setting ramps linearly to its target over the steps (step k of K prunes to
    ``k/K`` of the target sparsity, or with ``k/K`` of the quality), each step followed by
    ``retrain_epochs`` of ``model.train`` with the masks; then weight sharing and
    ``finetune_epochs`` of centroid fine-tuning. ``quality``, ``sparsity``, ``share_bits``
    and ``index_bits`` take one value or one per compressible layer. Each retraining run
    decays the learning rate from ``lr`` to ``lr_end`` (constant by default). ``net`` is not
    modified.
    """
    work = copy.deepcopy(net)
    layers = compressible_layers(work)
    if not layers:
        raise ValueError("the network has no float Dense or Conv2d layer to compress")
    # Every setting is checked before the first epoch, not after minutes of retraining.
    target_q, target_s, bits_per_layer = check_settings(
        len(layers), quality=quality, sparsity=sparsity, prune_steps=prune_steps,
        retrain_epochs=retrain_epochs, share_bits=share_bits, finetune_epochs=finetune_epochs,
        index_bits=index_bits)
    accuracy_at = {"original": accuracy(work, x_test, y_test)}
    masks: dict[str, np.ndarray] = {}
    for step in range(1, prune_steps + 1):
        ramp = step / prune_steps
        masks = prune_network(
            work, masks=masks,
            quality=None if target_q is None else [q * ramp for q in target_q],
            sparsity=None if target_s is None else [s * ramp for s in target_s])
        if retrain_epochs:
            train(work, x_train, y_train, epochs=retrain_epochs, lr=lr, lr_end=lr_end,
                  seed=seed + step,
                  masks=masks, progress=progress, desc=f"prune step {step}/{prune_steps}")
    accuracy_at["pruned"] = accuracy(work, x_test, y_test)
    shared_net = share_network(work, share_bits)
    accuracy_at["shared, before fine-tuning"] = accuracy(shared_net, x_test, y_test)
    if finetune_epochs:
        keep_zero = {f"{i}.codebook": (np.arange(layer.params["codebook"].size) > 0)
                     for i, _, layer in compressible_layers(shared_net)}
        train(shared_net, x_train, y_train, epochs=finetune_epochs, lr=lr, lr_end=lr_end,
              seed=seed,
              masks=keep_zero, progress=progress, desc="centroid fine-tuning")
    _round_state_to_float32(shared_net)  # what is stored
    accuracy_at["shared"] = accuracy(shared_net, x_test, y_test)
    stored = [compress_layer(name, layer.shared(), b)
              for (_, name, layer), b in zip(compressible_layers(shared_net), bits_per_layer)]
    weight_keys = {f"{i}.weight" for i, _, _ in layers}
    state = {k: v for k, v in unshare_network(shared_net).state_dict().items()
             if k not in weight_keys}
    compressed = CompressedModel(stored, state)
    decoded = compressed.apply(work)  # the network decoded from the Huffman-coded form
    accuracy_at["stored"] = accuracy(decoded, x_test, y_test)
    compressed.meta["accuracy"] = dict(accuracy_at)
    return CompressionResult(compressed, decoded, accuracy_at, masks)


def format_table(compressed: CompressedModel) -> list[str]:
    """The per-layer table in the shape of Deep Compression's Table 1 and 2, as text lines.

    Columns: weights, density after pruning (P), bits per stored weight and per index after
    sharing (P+Q) and after Huffman coding (P+Q+H; means over the stored entries), the size
    before and after (kB = 1000 bytes; totals include the other parameters as float32) and
    the compression rate (original size / compressed size).
    """
    head = (f"{'layer':<7}{'weights':>9}{'density':>9}{'w bits':>8}{'w bits':>8}{'idx bits':>9}"
            f"{'idx bits':>9}{'before':>9}{'P+Q':>9}{'P+Q+H':>9}{'rate':>8}{'rate':>8}")
    sub = (f"{'':<7}{'':>9}{'(P)':>9}{'(P+Q)':>8}{'(P+Q+H)':>8}{'(P+Q)':>9}{'(P+Q+H)':>9}"
           f"{'kB':>9}{'kB':>9}{'kB':>9}{'P+Q':>8}{'P+Q+H':>8}")
    lines = [head, sub]
    storage = [layer.storage() for layer in compressed.layers]
    for s in storage:
        lines.append(
            f"{s.name:<7}{s.n_weights:>9}{s.density:>9.1%}{s.share_bits:>8}"
            f"{s.huffman_weight_bits:>8.2f}{s.index_bits:>9}{s.huffman_index_bits:>9.2f}"
            f"{s.dense_bits / 8000:>9.1f}{s.shared_bits / 8000:>9.2f}{s.huffman_bits / 8000:>9.2f}"
            f"{s.dense_bits / s.shared_bits:>7.1f}x{s.dense_bits / s.huffman_bits:>7.1f}x")
    totals = compressed.totals()
    n = sum(s.n_weights for s in storage)
    nz = sum(s.n_nonzero for s in storage)
    entries = max(sum(s.n_entries for s in storage), 1)
    w_bits = sum(s.share_bits * s.n_entries for s in storage) / entries
    w_huff = sum(s.value_stream_bits for s in storage) / entries
    i_bits = sum(s.index_bits * s.n_entries for s in storage) / entries
    i_huff = sum(s.field_stream_bits for s in storage) / entries
    lines.append(
        f"{'total':<7}{n:>9}{nz / n:>9.1%}{w_bits:>8.2f}{w_huff:>8.2f}{i_bits:>9.2f}"
        f"{i_huff:>9.2f}{totals['dense'] / 8000:>9.1f}{totals['shared'] / 8000:>9.2f}"
        f"{totals['huffman'] / 8000:>9.2f}{totals['dense'] / totals['shared']:>7.1f}x"
        f"{totals['dense'] / totals['huffman']:>7.1f}x")
    lines.append(f"(totals include {compressed.other_parameters()} other parameters (biases) "
                 f"as float32; after pruning alone: {totals['pruned'] / 8000:.2f} kB, "
                 f"{totals['dense'] / totals['pruned']:.1f}x)")
    return lines
