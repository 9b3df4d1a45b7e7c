"""Integer golden operations on codes (NumPy only).

Every hardware unit and layer of mulfree is checked for exact equality against a function
of this module. Inputs are integer codes in the encodings of ``model.quant``; outputs are
exact int64 sums of ``level(w) * a`` before any scale.
"""

from __future__ import annotations

import numpy as np

from model.quant import (
    activation_code_range,
    check_codes,
    check_scheme,
    unpack_pm1,
    weight_bits,
    weight_code_range,
    weight_level,
)

__all__ = ["product", "product_range", "accumulator_width", "signed_width"]


def product(scheme: str, a, w, *, a_bits: int, w_bits: int | None = None) -> np.ndarray:
    """Exact product of activation codes ``a`` and weight codes ``w`` (broadcast).

    Model of every product unit (``hw.units``): ``level(w) * a``; for ``xnor`` (``a_bits``
    = ``w_bits`` = lanes) the +/-1 dot over the lanes, ``lanes - 2*popcount(a ^ w)``.
    """
    check_scheme(scheme)
    if scheme == "xnor":
        lanes = weight_bits("xnor", w_bits if w_bits is not None else a_bits)
        if a_bits != lanes:
            raise ValueError(f"xnor needs a_bits == w_bits (lanes), not {a_bits} and {lanes}")
        lo, hi = activation_code_range("xnor", lanes)
        a = check_codes("xnor activation codes", a, lo, hi)
        w = check_codes("xnor weight codes", w, lo, hi)
        return np.sum(unpack_pm1(a, lanes) * unpack_pm1(w, lanes), axis=-1)
    lo, hi = activation_code_range(scheme, a_bits)
    a = check_codes(f"{scheme} activation codes", a, lo, hi)
    return weight_level(scheme, w, w_bits) * a


def product_range(scheme: str, *, a_bits: int, w_bits: int | None = None) -> tuple[int, int]:
    """Smallest and largest exact product over every legal (activation, weight) code pair."""
    check_scheme(scheme)
    if scheme == "xnor":
        lanes = weight_bits("xnor", w_bits if w_bits is not None else a_bits)
        return -lanes, lanes
    w_lo, w_hi = weight_code_range(scheme, w_bits)
    levels = weight_level(scheme, np.array([w_lo, w_hi]), w_bits)
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    corners = np.outer(levels, np.array([a_lo, a_hi], dtype=np.int64))
    return int(corners.min()), int(corners.max())


def signed_width(lo: int, hi: int) -> int:
    """Smallest two's-complement width that holds every integer in ``[lo, hi]``."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def accumulator_width(scheme: str, *, a_bits: int, w_bits: int | None = None,
                      fan_in: int) -> int:
    """Smallest signed accumulator width that cannot overflow for a layer.

    The worst case of a sum of ``fan_in`` products is ``fan_in`` times the extreme product
    (``product_range``); for ``xnor`` ``fan_in`` counts packed words of ``lanes`` lanes, so a
    3x3xC binary convolution packed by channel (C lanes, fan-in 9) needs
    ``ceil(log2(9C + 1)) + 1`` bits.
    """
    if isinstance(fan_in, bool) or not isinstance(fan_in, (int, np.integer)) or fan_in < 1:
        raise ValueError(f"fan_in must be a positive integer, not {fan_in!r}")
    lo, hi = product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    return signed_width(int(fan_in) * lo, int(fan_in) * hi)
