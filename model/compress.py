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
   function of the weights (no random restarts). Centroids are then fine-tuned: each
   centroid's gradient is the sum of its weights' gradients (``centroid_gradients``).
3. **Huffman coding** (``model.huffman``) of the cluster indices and of the index fields.

Storage accounting (``LayerStorage``) counts every bit a decoder needs: stored entries
(fillers included) x (value bits + index bits), the codebook (32-bit floats) and the Huffman
tables. Biases stay dense 32-bit floats and are counted in totals, before and after.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from model.huffman import HuffmanStream, decode, encode
from model.quant import check_bits
from model.sparse import RelativeIndexed, decode_relative, encode_relative

__all__ = [
    "FLOAT_BITS",
    "prune_by_std",
    "prune_to_sparsity",
    "SharedWeights",
    "share_weights",
    "centroid_gradients",
    "tie_gradients",
    "sharing_rate",
    "integer_codebook",
    "CompressedLayer",
    "compress_layer",
    "LayerStorage",
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
    from sklearn.cluster import KMeans  # imported here: only weight sharing needs it

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
        with warnings.catch_warnings():  # a centroid that loses all its points is relocated
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


def tie_gradients(indices, grad) -> np.ndarray:
    """Give every weight its centroid's gradient (the sum over its cluster).

    An element-wise optimiser (Adam) fed these tied gradients moves every weight of a
    cluster by the same amount from the same state, so the weights of a cluster stay equal
    and the step is exactly the optimiser's step on the centroid with its summed gradient.
    """
    idx = np.asarray(indices, dtype=np.int64)
    return centroid_gradients(idx, grad, int(idx.max(initial=0)) + 1)[idx]


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
    n_biases: int
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
    def bias_bits(self) -> int:
        return self.n_biases * FLOAT_BITS

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

    ``sparse`` holds the cluster indices with relative indices (fillers are index 0); the
    Huffman streams code ``sparse.values`` and ``sparse.fields``.
    """

    name: str
    codebook: np.ndarray
    share_bits: int
    sparse: RelativeIndexed
    value_stream: HuffmanStream
    field_stream: HuffmanStream
    n_biases: int = 0

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
            n_biases=self.n_biases, codebook_bits=self.codebook.size * FLOAT_BITS,
            value_stream_bits=self.value_stream.n_bits,
            field_stream_bits=self.field_stream.n_bits, table_bits=tables)


def compress_layer(name: str, shared: SharedWeights, index_bits: int, *,
                   n_biases: int = 0) -> CompressedLayer:
    """Store shared weights sparsely with ``index_bits`` relative indices and Huffman-code them."""
    sparse = encode_relative(shared.indices, index_bits)
    return CompressedLayer(name, shared.codebook.copy(), shared.bits, sparse,
                           encode(sparse.values), encode(sparse.fields), n_biases)
