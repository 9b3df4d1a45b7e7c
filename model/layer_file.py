"""LAYER.npz and OUT.npz: one layer for the accelerator, and what it computed (NumPy only).

LAYER.npz
    ``scheme`` (str, a name of ``model.quant.SCHEMES``), ``weights`` (integer codes in the
    scheme's encoding, [M, C / groups, R, S]), ``inputs`` (integer activation codes,
    [C, H, W]), ``stride`` and ``padding`` (integers), optionally ``groups`` (default 1; it
    divides C and M; depthwise: groups = C = M), ``a_bits`` and ``w_bits``. A dense
    layer is [M, C, 1, 1] weights on a [C, 1, 1] input. For ``xnor`` C counts packed words
    and ``a_bits`` (= ``w_bits``) is the lane count. Optionally ``codebook`` (scheme
    ``dorefa`` only, weight sharing): ``2**w_bits`` integer levels, the level of weight code
    ``q`` being ``codebook[q]`` instead of ``2q - n`` (``model.compress.codebook_conv2d``).
OUT.npz
    ``outputs`` (int64 [M, E, F], the exact sums of level(w) * a before any scale), then
    one int64 scalar array per counter (the accelerator's, ``hw.schedule.COUNTERS``, and the
    derived ``macs``, ``rf_reads``, ``rf_writes``); extra scalars (``rows``, ``cols``,
    ``lanes``, the mapping) may follow.

``load_layer`` validates everything and refuses a bad file with one ``ValueError`` naming
the bad value; ``save_layer``/``save_outputs`` never overwrite an existing file unless
``force`` is set and never leave a half-written file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from model.files import atomic_write
from model.ops import conv2d, conv_output_size, signed_width
from model.quant import (SCHEMES, activation_code_range, check_codes, check_scheme,
                         weight_bits, weight_code_range)

__all__ = ["Layer", "load_layer", "save_layer", "save_outputs", "load_outputs", "infer_bits",
           "save_arrays", "golden_outputs"]


@dataclasses.dataclass(frozen=True)
class Layer:
    """One validated layer (see the module docstring for the fields)."""

    scheme: str
    weights: np.ndarray
    inputs: np.ndarray
    stride: int = 1
    padding: int = 0
    a_bits: int | None = None
    w_bits: int | None = None
    codebook: np.ndarray | None = None
    groups: int = 1

    def __post_init__(self):
        check_scheme(self.scheme)
        w = np.asarray(self.weights)
        a = np.asarray(self.inputs)
        if w.ndim != 4:
            raise ValueError(f"weights must have shape [M, C, R, S], not {w.shape}")
        if a.ndim != 3:
            raise ValueError(f"inputs must have shape [C, H, W], not {a.shape}")
        if w.size == 0 or a.size == 0:
            raise ValueError(f"weights {w.shape} and inputs {a.shape} must not be empty")
        g = self.groups
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
            raise ValueError(f"groups must be a positive integer, not {g!r}")
        if a.shape[0] % g or w.shape[0] % g:
            raise ValueError(f"groups {g} must divide the input channels C = {a.shape[0]} "
                             f"and the filters M = {w.shape[0]}")
        if w.shape[1] * g != a.shape[0]:
            raise ValueError(f"weights {w.shape} expect {w.shape[1]} x {g} groups = "
                             f"{w.shape[1] * g} input channels, the inputs {a.shape} have "
                             f"{a.shape[0]}")
        object.__setattr__(self, "groups", int(g))
        _check_integers("weights", w)  # their ranges are checked below, once the widths
        _check_integers("inputs", a)   # are known
        for name in ("stride", "padding"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, not {v!r}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, not {self.stride}")
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, not {self.padding}")
        conv_output_size(a.shape[1], w.shape[2], int(self.stride), int(self.padding))
        conv_output_size(a.shape[2], w.shape[3], int(self.stride), int(self.padding))
        a_bits, w_bits = infer_bits(self.scheme, w, a, self.a_bits, self.w_bits)
        lo, hi = weight_code_range(self.scheme, w_bits)
        w = check_codes(f"{self.scheme} weight codes", w, lo, hi)
        lo, hi = activation_code_range(self.scheme, a_bits)
        a = check_codes(f"{self.scheme} activation codes", a, lo, hi)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "inputs", a)
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "padding", int(self.padding))
        object.__setattr__(self, "a_bits", a_bits)
        object.__setattr__(self, "w_bits", w_bits)
        if self.codebook is not None:
            if self.scheme != "dorefa":
                raise ValueError(f"a codebook needs scheme 'dorefa' (the look-up table), not "
                                 f"{self.scheme!r}")
            book = check_codes("codebook", self.codebook, -(1 << 15), (1 << 15) - 1)
            if book.shape != (1 << w_bits,):
                raise ValueError(f"codebook must hold 2^w_bits = {1 << w_bits} levels, not "
                                 f"shape {book.shape}")
            object.__setattr__(self, "codebook", book)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        M, _, R, S = self.weights.shape
        _, H, W = self.inputs.shape
        return (M, conv_output_size(H, R, self.stride, self.padding),
                conv_output_size(W, S, self.stride, self.padding))


def _check_integers(name: str, arr: np.ndarray) -> None:
    """``ValueError`` unless ``arr`` holds integers (any integer dtype, or finite integral
    floats), each within int64."""
    if arr.dtype.kind not in "iubf":
        raise ValueError(f"{name} must hold integer codes, not {arr.dtype} values")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contain NaN or inf; allowed: integer codes")
        fractional = arr[arr != np.round(arr)]
        if fractional.size:
            raise ValueError(f"{name} must hold integer codes, not {float(fractional[0])!r}")
        if np.any(np.abs(arr) >= 2.0 ** 63):
            raise ValueError(f"{name} hold {float(np.max(np.abs(arr))):.17g}, beyond int64")
    elif arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 1 << 63:
        raise ValueError(f"{name} hold {int(arr.max())}, beyond int64")


def golden_outputs(layer: Layer) -> np.ndarray:
    """The exact sums ``[M, E, F]`` the accelerator must produce for ``layer``: its golden
    model (``model.ops.conv2d``, or ``model.compress.codebook_conv2d`` with a codebook)."""
    if layer.codebook is not None:
        from model.compress import codebook_conv2d
        return codebook_conv2d(layer.inputs, layer.weights, layer.codebook,
                               stride=layer.stride, padding=layer.padding, a_bits=layer.a_bits,
                               groups=layer.groups)
    return conv2d(layer.scheme, layer.inputs, layer.weights, stride=layer.stride,
                  padding=layer.padding, a_bits=layer.a_bits, w_bits=layer.w_bits,
                  groups=layer.groups)


def _unsigned_bits(values) -> int:
    top = int(np.max(values)) if np.size(values) else 0
    return max(1, top.bit_length())


def infer_bits(scheme: str, weights, inputs, a_bits=None, w_bits=None) -> tuple[int, int]:
    """``a_bits`` and ``w_bits`` as given, else the smallest widths that hold the codes.

    Signed activations take at least 2 bits; ``xnor`` takes the lane count from ``a_bits``
    or ``w_bits`` (else the widest code); fixed-width schemes ignore the codes.
    """
    check_scheme(scheme)
    w = np.asarray(weights, dtype=np.int64)
    a = np.asarray(inputs, dtype=np.int64)
    if a_bits is not None:
        a_bits = int(a_bits)
    if w_bits is not None:
        w_bits = int(w_bits)
    if scheme == "xnor":
        lanes = a_bits or w_bits or max(_unsigned_bits(w), _unsigned_bits(a))
        if a_bits is not None and w_bits is not None and a_bits != w_bits:
            raise ValueError(f"xnor needs a_bits == w_bits (lanes), not {a_bits} and {w_bits}")
        lanes = weight_bits("xnor", lanes)
        return lanes, lanes
    if w_bits is None:
        if scheme in ("binary", "ternary", "pow2"):
            w_bits = weight_bits(scheme)
        elif scheme == "dorefa":
            w_bits = _unsigned_bits(w)
        else:
            w_bits = max(2, signed_width(int(w.min()), int(w.max())))
    w_bits = weight_bits(scheme, w_bits)
    if a_bits is None:
        if scheme == "dorefa":
            a_bits = _unsigned_bits(a)
        else:
            a_bits = max(2, signed_width(int(a.min()), int(a.max())))
    activation_code_range(scheme, a_bits)  # validates
    return a_bits, w_bits


#: The arrays a LAYER.npz may hold.
LAYER_FIELDS = ("scheme", "weights", "inputs", "stride", "padding", "a_bits", "w_bits",
                "groups", "codebook")


def _scalar(data, name: str, default=None):
    if name not in data:
        if default is not None:
            return default
        raise ValueError(f"layer file has no {name!r}")
    arr = np.asarray(data[name])
    if arr.ndim != 0 and arr.size != 1:
        raise ValueError(f"{name} must be a scalar, not an array of shape {arr.shape}")
    return arr.reshape(()).item()


def _integer(data, name: str, default=None) -> int:
    """The scalar ``name`` as an int: an integer, or a float holding a finite integer."""
    value = _scalar(data, name, default)
    if isinstance(value, float) and np.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    return value


def load_layer(path) -> Layer:
    """Read and validate LAYER.npz; ``ValueError`` (one line) on anything wrong."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"layer file {str(path)!r} is a folder, not a file")
    if not path.is_file():
        raise ValueError(f"layer file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {k: data[k] for k in data.files}
    except Exception as exc:  # zip or format errors from NumPy
        raise ValueError(f"{str(path)!r} is not a readable .npz file ({exc})") from None
    try:
        for key in ("scheme", "weights", "inputs"):
            if key not in contents:
                raise ValueError(f"it has no {key!r} array; a layer file holds "
                                 f"{', '.join(LAYER_FIELDS)}")
        unknown = sorted(set(contents) - set(LAYER_FIELDS))
        if unknown:
            raise ValueError(f"unknown array {unknown[0]!r}; allowed: {', '.join(LAYER_FIELDS)}")
        scheme = _scalar(contents, "scheme")
        if not isinstance(scheme, str) or scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; allowed: {', '.join(SCHEMES)}")
        opt = {k: _integer(contents, k) for k in ("a_bits", "w_bits", "groups")
               if k in contents}
        if "codebook" in contents:
            opt["codebook"] = contents["codebook"]
        return Layer(scheme=scheme, weights=contents["weights"], inputs=contents["inputs"],
                     stride=_integer(contents, "stride", 1),
                     padding=_integer(contents, "padding", 0), **opt)
    except ValueError as exc:
        raise ValueError(f"layer file {str(path)!r}: {exc}") from None


def _atomic_savez(path, force: bool, arrays: dict) -> None:
    with atomic_write(path, force=force) as f:
        np.savez(f, **arrays)


def save_arrays(path, arrays: dict, *, force: bool = False) -> None:
    """Write a plain ``.npz`` of ``arrays`` atomically (refuses to overwrite unless ``force``)."""
    _atomic_savez(path, force, arrays)


def save_layer(path, layer: Layer, *, force: bool = False) -> None:
    """Write LAYER.npz (refuses to overwrite unless ``force``)."""
    extra = {} if layer.codebook is None else {"codebook": layer.codebook}
    _atomic_savez(path, force, {
        "scheme": np.array(layer.scheme), "weights": layer.weights, "inputs": layer.inputs,
        "stride": np.int64(layer.stride), "padding": np.int64(layer.padding),
        "a_bits": np.int64(layer.a_bits), "w_bits": np.int64(layer.w_bits),
        "groups": np.int64(layer.groups), **extra})


def save_outputs(path, outputs, counters: dict, *, extra: dict | None = None,
                 force: bool = False) -> None:
    """Write OUT.npz: ``outputs`` (int64) and every counter (int64 scalars)."""
    arrays = {"outputs": np.asarray(outputs, dtype=np.int64)}
    for name, value in counters.items():
        arrays[name] = np.int64(value)
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)
    _atomic_savez(path, force, arrays)


def load_outputs(path, counters=("cycles",)) -> dict:
    """Read OUT.npz into a dict (``outputs`` array, every scalar as an int); ``ValueError``
    if ``outputs`` or one of ``counters`` is missing."""
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    if "outputs" not in out:
        raise ValueError(f"{str(path)!r} has no 'outputs' array")
    for name in counters:
        if name not in out:
            raise ValueError(f"{str(path)!r} has no {name!r} counter")
    for name, value in out.items():
        if name != "outputs" and value.ndim == 0 and value.dtype.kind in "iu":
            out[name] = int(value)
    return out
