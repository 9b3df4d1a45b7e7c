"""Number formats: the one place the quantization schemes are defined.

A quantized tensor is integer *codes* plus a *scale*: ``value = level(code) * scale``.
Each scheme defines its code (the hardware encoding), its integer level and the range of
activation codes it is used with (DESIGN.md section 3):

========== ============================== ======================================
scheme     weight code (hardware)         integer level of a weight code
========== ============================== ======================================
binary     1 bit, 1 means -1 (sign bit)   ``1 - 2*code``: +1 or -1
xnor       ``bits`` lanes packed, 1 = -1  one +/-1 per lane (see ``unpack_pm1``)
ternary    signed 2 bits                  the code itself: -1, 0, +1
pow2       signed 3 bits                  the code itself: -2, -1, 0, +1, +2
dorefa     unsigned k bits, q in [0, n]   ``2*q - n`` with ``n = 2**k - 1``
int        signed k bits                  the code itself
========== ============================== ======================================

Activation codes are unsigned k-bit for ``dorefa`` (after ReLU/clip), packed lanes of
+/-1 (bit 1 means -1) for ``xnor`` and signed k-bit integers for every other scheme.

Codes are stored in NumPy as int64 holding the *value* of the code (signed codes are
negative numbers, not two's complement bit patterns); ``to_unsigned_bits`` gives the bit
pattern the hardware sees.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SCHEMES",
    "weight_bits",
    "weight_code_range",
    "weight_level",
    "encode_weight_levels",
    "activation_code_range",
    "unpack_pm1",
    "pack_pm1",
    "to_unsigned_bits",
    "check_scheme",
    "check_bits",
    "check_codes",
]

#: Every scheme name, in the order of DESIGN.md section 3.
SCHEMES = ("binary", "xnor", "ternary", "pow2", "dorefa", "int")

# The weight-code widths each scheme allows (inclusive ranges).
_WEIGHT_BITS_ALLOWED = {
    "binary": (1, 1),
    "xnor": (1, 64),
    "ternary": (2, 2),
    "pow2": (3, 3),
    "dorefa": (1, 8),
    "int": (2, 16),
}
_DEFAULT_WEIGHT_BITS = {"binary": 1, "ternary": 2, "pow2": 3}


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` if it names a scheme; else raise ``ValueError`` naming the allowed."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; allowed: {', '.join(SCHEMES)}")
    return scheme


def check_bits(name: str, bits, lo: int, hi: int) -> int:
    """Return ``bits`` as an int if ``lo <= bits <= hi``; else raise ``ValueError``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not lo <= bits <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {bits!r}")
    return int(bits)


def weight_bits(scheme: str, bits: int | None = None) -> int:
    """Width of a weight code in hardware for ``scheme``.

    ``binary``, ``ternary`` and ``pow2`` have a fixed width (1, 2, 3) and ``bits`` may be
    omitted; ``xnor`` takes the lane count, ``dorefa`` and ``int`` the bit width.
    """
    check_scheme(scheme)
    lo, hi = _WEIGHT_BITS_ALLOWED[scheme]
    if bits is None:
        if scheme not in _DEFAULT_WEIGHT_BITS:
            raise ValueError(f"scheme {scheme!r} needs a weight width in [{lo}, {hi}], not None")
        return _DEFAULT_WEIGHT_BITS[scheme]
    return check_bits(f"weight width of scheme {scheme!r}", bits, lo, hi)


def weight_code_range(scheme: str, bits: int | None = None) -> tuple[int, int]:
    """Smallest and largest legal weight code (inclusive) of ``scheme`` at ``bits``."""
    bits = weight_bits(scheme, bits)
    if scheme == "binary":
        return 0, 1
    if scheme == "xnor":
        return 0, (1 << bits) - 1
    if scheme == "ternary":
        return -1, 1
    if scheme == "pow2":
        return -2, 2
    if scheme == "dorefa":
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1  # int


def activation_code_range(scheme: str, bits: int) -> tuple[int, int]:
    """Smallest and largest legal activation code (inclusive) used with ``scheme``.

    ``dorefa`` activations are unsigned k-bit codes, ``xnor`` activations are ``bits``
    packed lanes, every other scheme takes signed ``bits``-bit integers.
    """
    check_scheme(scheme)
    if scheme == "xnor":
        bits = check_bits("xnor lane count", bits, 1, 64)
        return 0, (1 << bits) - 1
    if scheme == "dorefa":
        bits = check_bits("dorefa activation width", bits, 1, 16)
        return 0, (1 << bits) - 1
    bits = check_bits(f"activation width of scheme {scheme!r}", bits, 2, 32)
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def check_codes(name: str, codes, lo: int, hi: int) -> np.ndarray:
    """Return ``codes`` as an int64 array if every element is an integer in ``[lo, hi]``."""
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf; allowed: integers in [{lo}, {hi}]")
        if arr.size and not np.all(np.asarray(arr, dtype=np.float64) == np.round(arr)):
            raise ValueError(f"{name} must hold integers in [{lo}, {hi}], not {arr.dtype} values")
    arr = arr.astype(np.int64)
    if arr.size:
        bad = arr[(arr < lo) | (arr > hi)]
        if bad.size:
            raise ValueError(f"{name} holds {int(bad.flat[0])}; allowed: integers in [{lo}, {hi}]")
    return arr


def weight_level(scheme: str, codes, bits: int | None = None) -> np.ndarray:
    """Integer level of each weight code (for ``xnor``: see ``unpack_pm1``).

    Model of every product unit's weight decoding: ``binary`` 1 - 2*code, ``ternary``/
    ``pow2``/``int`` the code itself, ``dorefa`` 2*q - (2**bits - 1).
    """
    bits = weight_bits(scheme, bits)
    if scheme == "xnor":
        raise ValueError("scheme 'xnor' has one level per lane; use unpack_pm1(codes, lanes)")
    lo, hi = weight_code_range(scheme, bits)
    c = check_codes(f"{scheme} weight codes", codes, lo, hi)
    if scheme == "binary":
        return 1 - 2 * c
    if scheme == "dorefa":
        return 2 * c - ((1 << bits) - 1)
    return c


def encode_weight_levels(scheme: str, levels, bits: int | None = None) -> np.ndarray:
    """Inverse of ``weight_level``: the weight codes whose levels are ``levels``."""
    bits = weight_bits(scheme, bits)
    lv = np.asarray(levels)
    if scheme == "xnor":
        raise ValueError("scheme 'xnor' packs lanes; use pack_pm1(levels)")
    if scheme == "binary":
        check_codes("binary weight levels", lv, -1, 1)
        if np.any(lv == 0):
            raise ValueError("binary weight levels must be -1 or +1, not 0")
        return ((1 - lv.astype(np.int64)) // 2).astype(np.int64)
    if scheme == "dorefa":
        n = (1 << bits) - 1
        lv = check_codes("dorefa weight levels", lv, -n, n)
        if np.any((lv + n) % 2):
            raise ValueError(f"dorefa weight levels must have the parity of n={n}")
        return (lv + n) // 2
    lo, hi = weight_code_range(scheme, bits)
    return check_codes(f"{scheme} weight levels", lv, lo, hi)


def unpack_pm1(codes, lanes: int) -> np.ndarray:
    """Unpack packed +/-1 codes into a trailing axis of ``lanes`` levels (bit i = lane i).

    Bit value 1 means -1 and 0 means +1 (sign bit, sign(0) = +1).
    """
    lanes = check_bits("xnor lane count", lanes, 1, 64)
    c = check_codes("packed xnor codes", codes, 0, (1 << lanes) - 1).astype(np.uint64)
    bits = (c[..., None] >> np.arange(lanes, dtype=np.uint64)) & np.uint64(1)
    return 1 - 2 * bits.astype(np.int64)


def pack_pm1(levels) -> np.ndarray:
    """Pack +/-1 levels along the last axis into integer codes (lane i in bit i, 1 = -1)."""
    lv = check_codes("+/-1 levels", levels, -1, 1)
    if np.any(lv == 0):
        raise ValueError("+/-1 levels must be -1 or +1, not 0")
    lanes = lv.shape[-1]
    check_bits("xnor lane count", lanes, 1, 64)
    bits = (lv < 0).astype(np.uint64)
    packed = np.bitwise_or.reduce(bits << np.arange(lanes, dtype=np.uint64), axis=-1)
    return packed.astype(np.int64) if lanes < 64 else packed


def to_unsigned_bits(codes, bits: int) -> np.ndarray:
    """The two's-complement bit pattern (as unsigned ints) of signed ``codes`` at ``bits``."""
    c = np.asarray(codes, dtype=np.int64)
    return (c & ((1 << bits) - 1)).astype(np.int64)
