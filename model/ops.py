"""Integer golden operations on codes (NumPy only).

Every hardware unit and layer of mulfree is checked for exact equality against a function
of this module. Inputs are integer codes in the encodings of ``model.quant``; outputs are
exact int64 sums of ``level(w) * a`` before any scale.

Sections:

- products and the accumulator width rule: ``product``, ``product_range``, ``signed_width``,
  ``accumulator_width``;
- layers on codes: ``conv2d``, ``dense``, ``maxpool2d`` (``conv_output_size`` gives E, F);
- bit-packed +/-1 arithmetic: ``popcount``, ``xnor_dense``, ``xnor_conv2d`` with the
  border correction ``valid_tap_counts`` / ``xnor_padding_correction``;
- DoReFa bit-serial dot products: ``bitserial_dot``, ``dorefa_bitserial_dot``;
- batch norm folded into integer thresholds (defined in ``model.thresholds`` and re-exported
  here): ``fold_sign_threshold``, ``apply_sign_threshold``, ``fold_multilevel_thresholds``,
  ``apply_multilevel_thresholds``, their ``fold_affine_*`` forms and the float references
  ``batch_norm_inference``, ``affine_inference``, ``sign_pm1``, ``multilevel_code``.

Layouts: activations [C, H, W] (or a batch [N, C, H, W]), weights [M, C, R, S], outputs
[M, E, F] (or [N, M, E, F]) with ``E = (H + 2*padding - R) // stride + 1`` and likewise F.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from model import thresholds as _thresholds
from model.quant import (
    activation_code_range,
    check_codes,
    check_scheme,
    weight_bits,
    weight_code_range,
    weight_level,
)
from model.thresholds import (  # noqa: F401 (re-exported: see __all__)
    MultilevelThresholds,
    SignThreshold,
    affine_inference,
    apply_multilevel_thresholds,
    apply_sign_threshold,
    batch_norm_inference,
    fold_affine_multilevel_thresholds,
    fold_affine_sign_threshold,
    fold_monotone_steps,
    fold_multilevel_thresholds,
    fold_sign_threshold,
    multilevel_code,
    sign_pm1,
)

__all__ = [
    "product",
    "product_range",
    "signed_width",
    "accumulator_width",
    "check_acc_bits",
    "MAX_ACC_BITS",
    "lane_dot",
    "lane_dot_range",
    "conv_output_size",
    "conv2d",
    "dense",
    "maxpool2d",
    "popcount",
    "popcount_swar",
    "xnor_dense",
    "xnor_conv2d",
    "valid_tap_counts",
    "xnor_padding_correction",
    "bitserial_dot",
    "dorefa_bitserial_dot",
    # Re-exported: every name of model.thresholds but its EXACT_LIMIT.
    *(name for name in _thresholds.__all__ if name != "EXACT_LIMIT"),
]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


# --------------------------------------------------------------------------------------------
# Products and the accumulator width rule
# --------------------------------------------------------------------------------------------

def _xnor_lanes(a_bits, w_bits) -> int:
    """Lane count of the ``xnor`` scheme; ``a_bits`` and ``w_bits`` (if given) must agree."""
    lanes = weight_bits("xnor", w_bits if w_bits is not None else a_bits)
    if a_bits != lanes:
        raise ValueError(f"xnor needs a_bits == w_bits (lanes), not {a_bits} and {lanes}")
    return lanes


def product(scheme: str, a, w, *, a_bits: int, w_bits: int | None = None) -> np.ndarray:
    """Exact product of activation codes ``a`` and weight codes ``w`` (broadcast).

    Model of every product unit (``hw.units``): ``level(w) * a``; for ``xnor`` (``a_bits``
    = ``w_bits`` = lanes) the +/-1 dot over the lanes, ``lanes - 2*popcount(a ^ w)``.
    """
    check_scheme(scheme)
    if scheme == "xnor":
        lanes = _xnor_lanes(a_bits, w_bits)
        a = _packed_words("xnor activation codes", a, lanes)
        w = _packed_words("xnor weight codes", w, lanes)
        return lanes - 2 * popcount(a ^ w)
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


#: The widest partial sum the hardware and the golden model (int64 sums) support.
MAX_ACC_BITS = 64


def check_acc_bits(scheme: str, *, a_bits: int, w_bits: int | None = None, acc_bits,
                   name: str = "acc_bits") -> int:
    """Return ``acc_bits`` if partial sums of that width hold every product of ``scheme`` at
    these widths (and at most ``MAX_ACC_BITS``); else ``ValueError`` naming the width the
    products need. (How many products a sum of that width holds is the layer's business:
    ``accumulator_width``.)"""
    lo, hi = product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    need = signed_width(lo, hi)
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) \
            or not need <= acc_bits <= MAX_ACC_BITS:
        raise ValueError(f"{name} {acc_bits!r} cannot hold the products of {scheme} with "
                         f"a_bits={a_bits}" + (f", w_bits={w_bits}" if w_bits else "") +
                         f" ({lo} to {hi} need {need} signed bits); allowed: {need} to "
                         f"{MAX_ACC_BITS}")
    return int(acc_bits)


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


def _level_table(scheme: str, w_bits, codebook) -> tuple[np.ndarray, int, int]:
    """Integer level of every weight code of a lane, and the lane's activation code range."""
    if codebook is not None:
        if scheme != "dorefa":
            raise ValueError(f"a codebook needs the table-look-up scheme 'dorefa', not {scheme!r}")
        levels = np.asarray([int(v) for v in codebook], dtype=np.int64)
        return levels, 0, None
    if scheme == "xnor":
        return np.array([1, -1], dtype=np.int64), 0, 1
    lo, hi = weight_code_range(scheme, w_bits)
    return weight_level(scheme, np.arange(lo, hi + 1), w_bits), lo, None


def lane_dot(scheme: str, a, w, *, a_bits: int, w_bits: int | None = None, codebook=None,
             real: int | None = None) -> np.ndarray:
    """Exact dot product over the last axis (the lanes) of activation codes ``a`` and weight
    codes ``w``: ``sum_l level(w_l) * a_l`` over the first ``real`` lanes (all by default).

    Model of ``hw.lanes.LaneDot``. ``xnor`` lanes hold 1-bit codes (1 means -1): a lane adds
    ``1 - 2 * (a_l ^ w_l)``. ``codebook`` (``dorefa`` only) gives the level of each weight
    code; its activations are unsigned ``a_bits``-bit codes.
    """
    a = np.asarray(a)
    w = np.asarray(w)
    if a.shape[-1:] != w.shape[-1:]:
        raise ValueError(f"activation and weight words need the same lanes, not {a.shape[-1:]} "
                         f"and {w.shape[-1:]}")
    lanes = a.shape[-1]
    real = lanes if real is None else _check_int("real lanes", real, 0)
    if real > lanes:
        raise ValueError(f"real lanes {real} exceed the {lanes} lanes of the words")
    if scheme == "xnor":
        a = check_codes("xnor activation codes", a, 0, 1)
        w = check_codes("xnor weight codes", w, 0, 1)
        terms = 1 - 2 * (a ^ w)
    elif codebook is not None:
        levels, _, _ = _level_table(scheme, w_bits, codebook)
        a = check_codes("activation codes", a, 0, (1 << int(a_bits)) - 1)
        w = check_codes("codebook indices", w, 0, len(levels) - 1)
        terms = levels[w] * a
    else:
        terms = product(scheme, a, w, a_bits=a_bits, w_bits=w_bits)
    return terms[..., :real].sum(axis=-1)


def lane_dot_range(scheme: str, *, lanes: int, a_bits: int, w_bits: int | None = None,
                   codebook=None) -> tuple[int, int]:
    """Smallest and largest ``lane_dot`` of ``lanes`` lanes over every legal code pair."""
    lanes = _check_int("lanes", lanes, 1)
    if scheme == "xnor":
        return -lanes, lanes
    if codebook is not None:
        levels, _, _ = _level_table(scheme, w_bits, codebook)
        a_hi = (1 << int(a_bits)) - 1
        corners = [int(lv) * a for lv in levels for a in (0, a_hi)]
        lo, hi = min(corners), max(corners)
    else:
        lo, hi = product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    return lanes * lo, lanes * hi


# --------------------------------------------------------------------------------------------
# Shared validation and window geometry
# --------------------------------------------------------------------------------------------

def _check_int(name: str, value, minimum: int) -> int:
    """Return ``value`` as an int if it is an integer ``>= minimum``; else ``ValueError``."""
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or value < minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling window: ``(size + 2p - kernel) // s + 1``.

    Raises ``ValueError`` when the padded input is shorter than the kernel (empty output).
    """
    size = _check_int("input size", size, 1)
    kernel = _check_int("kernel size", kernel, 1)
    stride = _check_int("stride", stride, 1)
    padding = _check_int("padding", padding, 0)
    if size + 2 * padding < kernel:
        raise ValueError(f"kernel size {kernel} exceeds the padded input size "
                         f"{size} + 2*{padding}; allowed: kernel <= input + 2*padding")
    return (size + 2 * padding - kernel) // stride + 1


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: int, padding: int,
             pad_value=0) -> np.ndarray:
    """Sliding windows over the last two axes: [..., H, W] -> [..., E, F, R, S] (a view)."""
    if padding:
        widths = [(0, 0)] * (x.ndim - 2) + [(padding, padding), (padding, padding)]
        x = np.pad(x, widths, constant_values=pad_value)
    view = sliding_window_view(x, kernel, axis=(-2, -1))
    return view[..., ::stride, ::stride, :, :]


def _check_layer_shapes(inputs: np.ndarray, weights: np.ndarray, what: str,
                        input_ndims=(3, 4)) -> None:
    """Common shape rules of a layer: ranks, matching channels, nothing empty."""
    if inputs.ndim not in input_ndims:
        raise ValueError(f"{what} inputs must have {' or '.join(map(str, input_ndims))} "
                         f"dimensions, not shape {inputs.shape}")
    if inputs.size == 0 or weights.size == 0:
        raise ValueError(f"{what} inputs {inputs.shape} and weights {weights.shape} must not "
                         "be empty; allowed: every dimension >= 1")
    channels = inputs.shape[-3] if weights.ndim == 4 else inputs.shape[-1]
    if weights.shape[1] != channels:
        raise ValueError(f"{what} inputs have {channels} channels but the weights "
                         f"{weights.shape} expect {weights.shape[1]}")


def _check_fits_int64(scheme: str, a_bits, w_bits, fan_in: int) -> None:
    """Refuse layers whose exact sums could exceed int64 (the golden model would wrap)."""
    width = accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
    if width > 64:
        raise ValueError(f"a fan-in of {fan_in} at these widths needs a {width}-bit "
                         "accumulator; allowed: at most 64 bits")


# --------------------------------------------------------------------------------------------
# Layers on codes
# --------------------------------------------------------------------------------------------

def conv2d(scheme: str, inputs, weights, *, stride: int = 1, padding: int = 0,
           a_bits: int, w_bits: int | None = None, groups: int = 1) -> np.ndarray:
    """Exact 2-D convolution (cross-correlation) of activation codes with weight codes.

    Parameters
    ----------
    scheme : str
        A scheme of ``model.quant.SCHEMES``.
    inputs : array of int, shape [C, H, W] or [N, C, H, W]
        Activation codes (for ``xnor``: packed words of ``a_bits`` lanes, C counts words).
    weights : array of int, shape [M, C / groups, R, S]
        Weight codes in the scheme's encoding.
    stride, padding : int
        Stride >= 1 in both directions; zero padding >= 0 on every border.
    a_bits, w_bits : int
        Activation and weight widths, as in ``model.quant`` (``xnor``: both are the lanes).
    groups : int
        Independent channel groups (default 1): filter ``m`` of group ``g = m // (M / G)``
        sees only input channels ``g * C / G ... (g + 1) * C / G - 1``. Depthwise:
        ``groups == C == M``. ``G`` must divide ``C`` and ``M`` (for ``xnor`` C counts words,
        so a word never straddles two groups).

    Returns
    -------
    int64 array, shape [M, E, F] or [N, M, E, F]
        ``sum_{c,r,s} level(w[m,c,r,s]) * a[g*C/G + c, e*stride + r - padding,
        f*stride + s - padding]`` where a padded activation is code 0, so it contributes
        nothing. For ``xnor`` the products are the +/-1 dots of ``xnor_conv2d`` and padded
        positions are excluded.

    Raises ``ValueError`` on mismatched channels, groups that do not divide C and M, empty
    arrays, stride < 1, padding < 0, an empty output, codes outside the scheme's range or
    non-integer (NaN) codes.
    """
    check_scheme(scheme)
    stride = _check_int("stride", stride, 1)
    padding = _check_int("padding", padding, 0)
    groups = _check_int("groups", groups, 1)
    a = np.asarray(inputs)
    w = np.asarray(weights)
    if w.ndim != 4:
        raise ValueError(f"conv2d weights must have shape [M, C, R, S], not {w.shape}")
    if groups > 1:
        return _grouped_conv2d(scheme, a, w, groups, stride=stride, padding=padding,
                               a_bits=a_bits, w_bits=w_bits)
    if scheme == "xnor":
        return xnor_conv2d(a, w, _xnor_lanes(a_bits, w_bits), stride=stride, padding=padding)
    _check_layer_shapes(a, w, "conv2d")
    _, _, kh, kw = w.shape
    conv_output_size(a.shape[-2], kh, stride, padding)
    conv_output_size(a.shape[-1], kw, stride, padding)
    levels = weight_level(scheme, w, w_bits)
    lo, hi = activation_code_range(scheme, a_bits)
    a = check_codes(f"{scheme} activation codes", a, lo, hi)
    _check_fits_int64(scheme, a_bits, w_bits, int(np.prod(w.shape[1:])))
    batch = a if a.ndim == 4 else a[None]
    win = _windows(batch, (kh, kw), stride, padding)            # [N, C, E, F, R, S]
    out = np.tensordot(win, levels, axes=([1, 4, 5], [1, 2, 3]))  # [N, E, F, M]
    out = np.moveaxis(out, -1, 1).astype(np.int64)
    return out if a.ndim == 4 else out[0]


def _grouped_conv2d(scheme: str, a: np.ndarray, w: np.ndarray, groups: int, *, stride: int,
                    padding: int, a_bits: int, w_bits: int | None) -> np.ndarray:
    """``conv2d`` of ``groups`` > 1 groups: each group's channels with its own filters."""
    if a.ndim not in (3, 4):
        raise ValueError(f"conv2d inputs must have 3 or 4 dimensions, not shape {a.shape}")
    channels, filters = a.shape[-3], w.shape[0]
    if channels % groups or filters % groups:
        raise ValueError(f"groups {groups} must divide the input channels ({channels}) and "
                         f"the filters ({filters})")
    per_group = channels // groups
    if w.shape[1] != per_group:
        raise ValueError(f"conv2d weights {w.shape} must have C / groups = {channels} / "
                         f"{groups} = {per_group} channels")
    batch = a if a.ndim == 4 else a[None]
    m_per = filters // groups
    if scheme == "xnor":  # packed words: one xnor_conv2d per group
        out = np.concatenate([
            xnor_conv2d(batch[:, g * per_group:(g + 1) * per_group],
                        w[g * m_per:(g + 1) * m_per], _xnor_lanes(a_bits, w_bits),
                        stride=stride, padding=padding)
            for g in range(groups)], axis=1)
        return out if a.ndim == 4 else out[0]
    _, _, kh, kw = w.shape
    conv_output_size(a.shape[-2], kh, stride, padding)
    conv_output_size(a.shape[-1], kw, stride, padding)
    levels = weight_level(scheme, w, w_bits)
    lo, hi = activation_code_range(scheme, a_bits)
    batch = check_codes(f"{scheme} activation codes", batch, lo, hi)
    _check_fits_int64(scheme, a_bits, w_bits, int(np.prod(w.shape[1:])))
    win = _windows(batch, (kh, kw), stride, padding)              # [N, C, E, F, R, S]
    n, _, e, f = win.shape[:4]
    win = win.reshape(n, groups, per_group, e, f, kh, kw)
    lv = levels.reshape(groups, m_per, per_group, kh, kw)
    out = np.einsum("ngcefrs,gmcrs->ngmef", win, lv).reshape(n, filters, e, f)
    out = out.astype(np.int64)
    return out if a.ndim == 4 else out[0]


def dense(scheme: str, inputs, weights, *, a_bits: int, w_bits: int | None = None) -> np.ndarray:
    """Exact fully connected layer: ``out[m] = sum_c level(w[m, c]) * a[c]``.

    ``inputs`` are activation codes [C] or a batch [N, C], ``weights`` codes [M, C]; returns
    int64 [M] or [N, M]. Equal to ``conv2d`` on [C, 1, 1] inputs and [M, C, 1, 1] weights;
    for ``xnor`` C counts packed words and the result is ``xnor_dense``. Errors as ``conv2d``.
    """
    check_scheme(scheme)
    a = np.asarray(inputs)
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"dense weights must have shape [M, C], not {w.shape}")
    if scheme == "xnor":
        return xnor_dense(a, w, _xnor_lanes(a_bits, w_bits))
    _check_layer_shapes(a, w, "dense", input_ndims=(1, 2))
    levels = weight_level(scheme, w, w_bits)
    lo, hi = activation_code_range(scheme, a_bits)
    a = check_codes(f"{scheme} activation codes", a, lo, hi)
    _check_fits_int64(scheme, a_bits, w_bits, w.shape[1])
    return (a @ levels.T).astype(np.int64)


def maxpool2d(x, size: int, stride: int | None = None) -> np.ndarray:
    """Max pooling of integers over the last two axes (no padding).

    ``x`` is [..., H, W] (e.g. [C, H, W] or [N, C, H, W]); windows are ``size`` x ``size``
    with ``stride`` (default ``size``); the output is int64 [..., E, F] with
    ``E = (H - size) // stride + 1``. Raises ``ValueError`` on size or stride < 1, an empty
    output, fewer than two axes or non-integer values.
    """
    size = _check_int("pool size", size, 1)
    stride = size if stride is None else _check_int("pool stride", stride, 1)
    arr = np.asarray(x)
    if arr.ndim < 2 or arr.size == 0:
        raise ValueError(f"maxpool2d needs a non-empty [..., H, W] array, not shape {arr.shape}")
    arr = check_codes("maxpool2d input", arr, _INT64_MIN, _INT64_MAX)
    conv_output_size(arr.shape[-2], size, stride, 0)
    conv_output_size(arr.shape[-1], size, stride, 0)
    return _windows(arr, (size, size), stride, 0).max(axis=(-2, -1))


# --------------------------------------------------------------------------------------------
# Bit-packed +/-1 arithmetic (XNOR-popcount)
# --------------------------------------------------------------------------------------------
#
# Packing (``model.quant.pack_pm1``/``unpack_pm1``): a word holds ``lanes`` +/-1 values, lane i
# in bit i, bit value 1 meaning -1 and 0 meaning +1 (sign(0) = +1). Convolution inputs are
# packed over channels: word c of a pixel holds channels c*lanes ... c*lanes + lanes - 1.
# The +/-1 dot of two words is ``lanes - 2*popcount(a ^ w)`` (BNN: 2*popcount(xnor) - lanes).

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)


def popcount(words) -> np.ndarray:
    """Number of set bits of each unsigned 64-bit word, as int64.

    Uses NumPy's ``bitwise_count`` where it exists (NumPy >= 2), else ``popcount_swar``.
    """
    x = np.asarray(words).astype(np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return popcount_swar(x)


def popcount_swar(words) -> np.ndarray:
    """Set bits of each unsigned 64-bit word by SWAR adds and shifts (no multiplier): int64."""
    x = np.asarray(words).astype(np.uint64)
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    x = x + (x >> np.uint64(8))
    x = x + (x >> np.uint64(16))
    x = x + (x >> np.uint64(32))
    return (x & np.uint64(0x7F)).astype(np.int64)


def _popcount_sum(words: np.ndarray, axis) -> np.ndarray:
    """``popcount(words).sum(axis)`` as int64 without an int64 copy of every count."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).sum(axis=axis, dtype=np.int64)
    return popcount_swar(words).sum(axis=axis)


def _packed_words(name: str, codes, lanes: int) -> np.ndarray:
    """Validate packed +/-1 words of ``lanes`` lanes and return them as uint64."""
    arr = np.asarray(codes)
    if lanes == 64 and arr.dtype == np.uint64:
        return arr  # every uint64 is a legal 64-lane word
    return check_codes(name, arr, 0, (1 << lanes) - 1).astype(np.uint64)


def xnor_dense(a_packed, w_packed, lanes: int) -> np.ndarray:
    """+/-1 fully connected layer on packed words: ``sum_c (lanes - 2*popcount(a[c] ^ w[m,c]))``.

    ``a_packed`` is [Cw] or [N, Cw] words, ``w_packed`` [M, Cw] words (``lanes`` lanes each,
    packing as ``model.quant.pack_pm1``); returns int64 [M] or [N, M], equal to the integer
    dot of the unpacked +/-1 vectors. Computed as ``lanes*Cw - 2*sum_c popcount(a ^ w)``.
    """
    lanes = weight_bits("xnor", lanes)
    a = np.asarray(a_packed)
    w = np.asarray(w_packed)
    if w.ndim != 2:
        raise ValueError(f"xnor_dense weights must have shape [M, Cw], not {w.shape}")
    _check_layer_shapes(a, w, "xnor_dense", input_ndims=(1, 2))
    a = _packed_words("xnor activation words", a, lanes)
    w = _packed_words("xnor weight words", w, lanes)
    _check_fits_int64("xnor", lanes, lanes, w.shape[1])
    mismatches = _popcount_sum(a[..., None, :] ^ w, axis=-1)       # [..., M]
    return lanes * w.shape[1] - 2 * mismatches


def _xnor_conv_operands(a_packed, w_packed):
    """Bring ``xnor_conv2d`` operands to [N, Cw, H, W] and [M, Cw, R, S]."""
    a = np.asarray(a_packed)
    w = np.asarray(w_packed)
    if a.ndim not in (2, 3, 4):
        raise ValueError("xnor_conv2d inputs must be [H, W], [Cw, H, W] or [N, Cw, H, W], "
                         f"not shape {a.shape}")
    if a.ndim == 2:
        a = a[None]
        if w.ndim == 3:
            w = w[:, None]
    if w.ndim != 4:
        raise ValueError(f"xnor_conv2d weights must have shape [M, Cw, R, S], not {w.shape}")
    _check_layer_shapes(a, w, "xnor_conv2d")
    return (a if a.ndim == 4 else a[None]), w


def valid_tap_counts(height: int, width: int, kernel: tuple[int, int], *, stride: int = 1,
                     padding: int = 0) -> np.ndarray:
    """Number of kernel taps that fall inside the image, per output position: int64 [E, F].

    ``kernel`` is (R, S). Equal to ``R*S`` away from the borders; smaller where the window
    overlaps the zero padding. This is the per-position count the +/-1 border correction
    needs (``xnor_conv2d``).
    """
    kh, kw = kernel
    conv_output_size(height, kh, stride, padding)
    conv_output_size(width, kw, stride, padding)
    inside = np.ones((height, width), dtype=np.int64)
    return _windows(inside, (kh, kw), stride, padding).sum(axis=(-2, -1))


def xnor_padding_correction(w_packed, height: int, width: int, *, stride: int = 1,
                            padding: int = 0) -> np.ndarray:
    """Popcounts of the weight words at padded taps, per filter and output position: [M, E, F].

    A datapath that feeds the padding as the all-zero word (every lane +1) counts
    ``popcount(0 ^ w) = popcount(w)`` mismatches at each padded tap. Subtracting this array
    from its per-position popcount sum leaves the valid taps' mismatches only (see
    ``xnor_conv2d``). ``w_packed`` is [M, Cw, R, S].
    """
    w = np.asarray(w_packed)
    if w.ndim != 4 or w.size == 0:
        raise ValueError(f"weights must be a non-empty [M, Cw, R, S] array, not {w.shape}")
    kh, kw = w.shape[-2:]
    conv_output_size(height, kh, stride, padding)
    conv_output_size(width, kw, stride, padding)
    w = _packed_words("xnor weight words", w, 64)
    ones_per_tap = popcount(w).sum(axis=1)                         # [M, R, S]
    outside = np.zeros((height, width), dtype=np.int64)
    padded = _windows(outside, (kh, kw), stride, padding, pad_value=1)  # [E, F, R, S]
    return np.tensordot(ones_per_tap, padded, axes=([1, 2], [2, 3])).astype(np.int64)


def xnor_conv2d(a_packed, w_packed, lanes: int, *, stride: int = 1,
                padding: int = 0) -> np.ndarray:
    """+/-1 convolution on words packed over channels, padded positions excluded.

    Parameters
    ----------
    a_packed : array of int, shape [H, W], [Cw, H, W] or [N, Cw, H, W]
        Activation words, ``lanes`` channels per word (packing as ``model.quant.pack_pm1``:
        bit i = channel i of the word, 1 = -1, sign(0) = +1).
    w_packed : array of int, shape [M, Cw, R, S] (or [M, R, S] with [H, W] inputs)
        Weight words, packed the same way.
    lanes : int
        Lanes per word (1..64); every word is full.
    stride, padding : int
        As ``conv2d``.

    Returns
    -------
    int64 array, shape [M, E, F] or [N, M, E, F]
        The integer convolution of the unpacked +/-1 tensors in which padded inputs
        contribute 0 (zero is not a +/-1 value, so padded taps are excluded, DESIGN.md
        section 3).

    Notes
    -----
    With padding fed as the all-zero word, ``P[m,e,f] = sum_{c,r,s} popcount(a ^ w)`` over
    all taps counts ``popcount(w)`` extra mismatches at every padded tap; these are
    ``xnor_padding_correction`` (``Q``). With ``V[e,f] = valid_tap_counts`` the result is::

        out[m, e, f] = lanes * Cw * V[e, f] - 2 * (P[m, e, f] - Q[m, e, f])

    i.e. each of the ``Cw * V`` valid words contributes ``lanes - 2*popcount(a ^ w)``.
    """
    lanes = weight_bits("xnor", lanes)
    stride = _check_int("stride", stride, 1)
    padding = _check_int("padding", padding, 0)
    batch_given = np.ndim(a_packed) == 4
    a, w = _xnor_conv_operands(a_packed, w_packed)
    _, cw, height, width = a.shape
    kh, kw = w.shape[-2:]
    valid = valid_tap_counts(height, width, (kh, kw), stride=stride, padding=padding)
    a = _packed_words("xnor activation words", a, lanes)
    w = _packed_words("xnor weight words", w, lanes)
    _check_fits_int64("xnor", lanes, lanes, cw * kh * kw)
    out_h, out_w = valid.shape
    padded = np.pad(a, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # zero word
    mismatches = np.zeros((a.shape[0], w.shape[0], out_h, out_w), dtype=np.int64)
    for r in range(kh):          # one pass per kernel tap: [N, Cw, E, F] against [M, Cw]
        for s in range(kw):
            tap = padded[:, :, r:r + stride * (out_h - 1) + 1:stride,
                         s:s + stride * (out_w - 1) + 1:stride]
            mismatches += _popcount_sum(tap[:, None] ^ w[None, :, :, r, s, None, None], axis=2)
    correction = xnor_padding_correction(w, height, width, stride=stride, padding=padding)
    out = lanes * cw * valid - 2 * (mismatches - correction)
    return out if batch_given else out[0]


# --------------------------------------------------------------------------------------------
# DoReFa bit-serial dot products
# --------------------------------------------------------------------------------------------

def _bit_plane_words(codes: np.ndarray, bits: int) -> np.ndarray:
    """Bit planes of unsigned codes [..., L], each packed into uint64 words: [..., bits, Wd].

    Plane m holds bit m of every element, element j in bit j % 64 of word j // 64.
    """
    length = codes.shape[-1]
    n_words = -(-length // 64)
    padded = np.zeros(codes.shape[:-1] + (n_words * 64,), dtype=np.uint64)
    padded[..., :length] = codes
    planes = (padded[..., None, :] >> np.arange(bits, dtype=np.uint64)[:, None]) & np.uint64(1)
    planes = planes.reshape(planes.shape[:-1] + (n_words, 64))
    return np.bitwise_or.reduce(planes << np.arange(64, dtype=np.uint64), axis=-1)


def bitserial_dot(x_codes, y_codes, x_bits: int, y_bits: int) -> np.ndarray:
    """Dot product of unsigned codes over the last axis, bit-serially (DoReFa-Net).

    ``sum_m sum_k 2**(m+k) * popcount(c_m(x) & c_k(y))`` where ``c_m(x)`` is the bit vector
    of bit m of every element (``m < x_bits``, ``k < y_bits``); equal to ``sum(x * y)``.
    ``x_codes`` [..., L] in ``[0, 2**x_bits - 1]`` and ``y_codes`` [..., L] in
    ``[0, 2**y_bits - 1]`` broadcast over the leading axes; returns int64 [...].
    Widths are 1..32; raises ``ValueError`` on codes out of range, mismatched or empty L.
    """
    x_bits = _check_int("x_bits", x_bits, 1)
    y_bits = _check_int("y_bits", y_bits, 1)
    if x_bits > 32 or y_bits > 32:
        raise ValueError(f"bit widths must be in [1, 32], not {x_bits} and {y_bits}")
    x = check_codes("x codes", x_codes, 0, (1 << x_bits) - 1)
    y = check_codes("y codes", y_codes, 0, (1 << y_bits) - 1)
    if x.ndim == 0 or y.ndim == 0 or x.shape[-1] != y.shape[-1] or x.shape[-1] == 0:
        raise ValueError(f"x {x.shape} and y {y.shape} need the same non-empty last axis")
    length = x.shape[-1]
    if length * ((1 << x_bits) - 1) * ((1 << y_bits) - 1) > _INT64_MAX:
        raise ValueError(f"a length-{length} dot of {x_bits}x{y_bits}-bit codes can exceed "
                         "int64; allowed: shorter vectors or narrower codes")
    xw = _bit_plane_words(x, x_bits)[..., :, None, :]                # [..., xb, 1, Wd]
    yw = _bit_plane_words(y, y_bits)[..., None, :, :]                # [..., 1, yb, Wd]
    counts = popcount(xw & yw).sum(axis=-1)                          # [..., xb, yb]
    shifts = np.arange(x_bits)[:, None] + np.arange(y_bits)[None, :]  # m + k
    return np.sum(counts << shifts, axis=(-2, -1)).astype(np.int64)


def dorefa_bitserial_dot(q_codes, a_codes, w_bits: int, a_bits: int) -> np.ndarray:
    """Dot of DoReFa weight codes with activation codes, through ``bitserial_dot``.

    A weight code q has level ``2q - n`` (``n = 2**w_bits - 1``), so
    ``sum (2q - n) * a = 2 * dot(q, a) - n * sum(a)``; ``n * sum(a)`` is computed as
    ``(sum(a) << w_bits) - sum(a)`` and ``sum(a)`` bit-serially as ``dot(1, a)``, so nothing
    multiplies. Returns int64 [...]; equal to ``sum(product("dorefa", a, q), axis=-1)``.
    """
    w_bits = _check_int("w_bits", w_bits, 1)
    q = np.asarray(q_codes)
    a = np.asarray(a_codes)
    twice_dot = bitserial_dot(q, a, w_bits, a_bits) << 1
    sum_a = bitserial_dot(np.ones(a.shape[-1:], dtype=np.int64), a, 1, a_bits)
    return twice_dot - ((sum_a << w_bits) - sum_a)
