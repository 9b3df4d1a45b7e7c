"""Data sets: scikit-learn's bundled 8x8 digits (default) and MNIST from its IDX files.

Images are kept as their integer pixel codes, ``uint8`` ``[N, 1, H, W]`` with values in
``[0, pixel_max]`` (digits: 0..16, MNIST: 0..255); the networks see ``codes / pixel_max``,
which the integer deployment model reproduces exactly by treating the codes as the first
layer's activations with scale ``1 / pixel_max``. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "load_digits", "load_mnist", "load_dataset", "read_idx",
           "DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "MNIST_FILES"]

#: The digits train/test split is fixed: this seed and fraction, stratified by class.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

#: The standard MNIST file names (each may also end in ``.gz``; ``-idx`` may be ``.idx``).
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    """A classification data set of integer images with a fixed train/test split."""

    name: str
    x_train: np.ndarray  # uint8 [N, 1, H, W] pixel codes
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray
    pixel_max: int
    classes: int = 10
    source: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def pixel_bits(self) -> int:
        """Unsigned bits of a pixel code (digits 5, MNIST 8)."""
        return int(self.pixel_max).bit_length()

    def to_float(self, codes: np.ndarray) -> np.ndarray:
        """The network input for pixel codes: ``codes / pixel_max`` in float64."""
        return np.asarray(codes, dtype=np.float64) / self.pixel_max

    def spec(self) -> str:
        """The ``--dataset`` string that loads this data set again."""
        return self.name if self.name == "digits" else f"{self.name}:{self.source}"


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        idx = idx[rng.permutation(idx.size)]
        test.append(idx[: int(round(fraction * idx.size))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(y.size), test_idx)
    return train_idx, test_idx


def load_digits() -> Dataset:
    """scikit-learn's 1797 8x8 digits (pixels 0..16), split 80/20 by class with a fixed seed."""
    from sklearn.datasets import load_digits as _sklearn_digits

    bunch = _sklearn_digits()
    x = bunch.images.astype(np.uint8)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = _stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return Dataset("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx],
                   pixel_max=16, source="scikit-learn")


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not, detected from its first bytes).

    Raises ``ValueError`` naming the file when it is missing, truncated or not IDX.
    """
    if not os.path.isfile(path):
        raise ValueError(f"IDX file {path!r} not found")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path!r} is a corrupt gzip file ({exc})") from None
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path!r} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path!r} is not an IDX file (bad header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path!r} is truncated or padded: {len(raw)} bytes, its header of "
                         f"shape {shape} says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_mnist_file(folder: str, stem: str) -> str:
    candidates = [stem, stem.replace("-idx", ".idx")]
    for name in candidates:
        for suffix in ("", ".gz"):
            path = os.path.join(folder, name + suffix)
            if os.path.isfile(path):
                return path
    raise ValueError(f"MNIST file {stem}[.gz] not found in {folder!r}; the folder must hold "
                     f"{', '.join(MNIST_FILES.values())} (each optionally .gz)")


def load_mnist(folder: str) -> Dataset:
    """MNIST from the four standard IDX files in ``folder`` (its own train/test split)."""
    if not os.path.isdir(folder):
        raise ValueError(f"MNIST folder {folder!r} not found (expected a folder holding "
                         f"{', '.join(MNIST_FILES.values())}, each optionally .gz)")
    arrays = {key: read_idx(_find_mnist_file(folder, stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"MNIST {split} images must be uint8 [N, H, W], not {images.dtype} "
                             f"{images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"MNIST {split} labels {labels.shape} do not match images "
                             f"{images.shape}")
        if labels.size and labels.max() > 9:
            raise ValueError(f"MNIST {split} labels hold {int(labels.max())}; allowed 0..9")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError("MNIST train and test images differ in size")
    return Dataset("mnist", arrays["train_images"][:, None].copy(),
                   arrays["train_labels"].astype(np.int64), arrays["test_images"][:, None].copy(),
                   arrays["test_labels"].astype(np.int64), pixel_max=255,
                   source=os.path.abspath(folder))


def load_dataset(spec: str) -> Dataset:
    """``digits`` or ``mnist:PATH`` (a folder with the four IDX files)."""
    if spec == "digits":
        return load_digits()
    if spec.startswith("mnist:"):
        path = spec[len("mnist:"):]
        if not path:
            raise ValueError("--dataset mnist:PATH needs the folder of the MNIST IDX files")
        return load_mnist(os.path.expanduser(path))
    raise ValueError(f"unknown dataset {spec!r}; allowed: digits, mnist:PATH")
