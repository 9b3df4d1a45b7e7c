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

Quantizers turn float tensors into a ``QTensor`` (codes + scale) of one of these schemes:
``binarize`` (BinaryConnect/BNN, XNOR-Net BWN scale), ``ternarize`` (TWN), ``quantize_pow2``
(five levels, INQ or L2-optimal), ``dorefa_weights`` / ``dorefa_activations`` (DoReFa-Net),
``quantize_int`` (the symmetric integer baseline); ``xnor_input_scale`` gives XNOR-Net's input
scale K and ``dorefa_gradients`` DoReFa's stochastic gradient quantizer (a float result).
The ``ste_*`` functions are the straight-through estimators training uses.

Conventions (pinned, DESIGN.md section 3): sign(0) = +1; rounding is half-to-even
(``np.round``) on float64; ternary ``D = 0.7 * mean|W|`` with a strict ``|w| > D`` for both the
mask and the scale; a scale that would be 0/0 (an empty set, an all-zero tensor) is 0 with a
``QuantizationWarning``, never NaN. The frameworks' differing conventions are the named
profiles of ``model.profiles`` (``profile="tensorlayer"`` or ``"larq"``).

Bad input (NaN/inf, empty tensors, a bit width a scheme does not allow, mismatched shapes,
unknown names) raises ``ValueError`` naming the value and what is allowed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from model.profiles import LARQ, PAPER, TENSORLAYER, check_profile

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
    "KINDS",
    "QuantizationWarning",
    "QTensor",
    "hard_sigmoid",
    "binarize",
    "xnor_input_scale",
    "LARQ_TERNARY_THRESHOLD",
    "ternarize",
    "quantize_pow2",
    "quantize_k",
    "dorefa_weights",
    "dorefa_activations",
    "dorefa_gradients",
    "quantize_int",
    "ste_htanh_mask",
    "ste_sign_grad",
    "ste_ternary_grad",
    "ste_dorefa_weights_grad",
    "ste_dorefa_activations_grad",
    "ste_identity_grad",
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
    """Return ``codes`` as an int64 array if every element is an integer in ``[lo, hi]``.

    Integer, boolean and float arrays are accepted (floats only when every value is a finite
    integer); complex, string and object arrays are refused, as is anything int64 cannot hold.
    """
    arr = np.asarray(codes)
    allowed = f"allowed: integers in [{lo}, {hi}]"
    if arr.dtype.kind not in "iubf":
        raise ValueError(f"{name} must hold integers, not {arr.dtype} values; {allowed}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf; {allowed}")
        fractional = arr[arr != np.round(arr)]
        if fractional.size:
            raise ValueError(f"{name} must hold integers, not {float(fractional.flat[0])!r}; "
                             f"{allowed}")
        bad = arr[(arr < lo) | (arr > hi)]
        if bad.size:
            raise ValueError(f"{name} holds {float(bad.flat[0]):.17g}; {allowed}")
    elif arr.dtype.kind == "u" and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds {int(arr.max())}; {allowed} (at most 2**63 - 1)")
    arr = arr.astype(np.int64)
    bad = arr[(arr < lo) | (arr > hi)]
    if bad.size:
        raise ValueError(f"{name} holds {int(bad.flat[0])}; {allowed}")
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
    c = np.asarray(codes)
    if not (lanes == 64 and c.dtype == np.uint64):  # every uint64 is a legal 64-lane code
        c = check_codes("packed xnor codes", c, 0, (1 << lanes) - 1).astype(np.uint64)
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
    if bits >= 64:  # the pattern of a 64-bit code is its value as uint64 (beyond int64)
        return c.astype(np.uint64)
    return (c & ((1 << bits) - 1)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Quantized tensors
# ----------------------------------------------------------------------------------------------

#: What a ``QTensor`` holds: weight codes or activation codes (their ranges differ).
KINDS = ("weight", "activation")


class QuantizationWarning(UserWarning):
    """A quantizer met a degenerate input: a scale that would be 0/0 was set to 0."""


def _warn(message: str) -> None:
    warnings.warn(message, QuantizationWarning, stacklevel=3)


def _float_tensor(name: str, x) -> np.ndarray:
    """``x`` as a float64 array; ``ValueError`` if it is empty, non-numeric or not finite."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, not dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); allowed: at least one element")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; allowed: finite numbers")
    return arr


def _channel_axes(name: str, arr: np.ndarray) -> tuple[int, ...]:
    """The axes a per-channel statistic reduces over: all but axis 0."""
    if arr.ndim == 0:
        raise ValueError(f"per-channel {name} needs an axis 0 of channels, not a scalar")
    return tuple(range(1, arr.ndim))


def _scale_array(scale, codes_shape: tuple[int, ...]):
    """Validate a scale: a float, or a per-channel array shaped to broadcast over the codes."""
    try:
        s = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a number or an array of numbers, not {scale!r}") from None
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"scale must be finite and >= 0, not {scale!r}")
    if s.ndim == 0:
        return float(s)
    per_channel = (codes_shape[0],) + (1,) * (len(codes_shape) - 1) if codes_shape else None
    if per_channel is not None and s.shape in ((codes_shape[0],), per_channel):
        s = s.reshape(per_channel).copy()
        s.flags.writeable = False
        return s
    raise ValueError(f"scale of shape {s.shape} does not fit codes of shape {codes_shape}; "
                     "allowed: a scalar or one value per channel along axis 0")


@dataclass(frozen=True, eq=False)
class QTensor:
    """A quantized tensor: integer ``codes`` in a scheme's encoding plus a float ``scale``.

    ``value = level(codes) * scale`` (``dequantize``). Construction validates every field and
    stores the codes as a read-only int64 array.

    Parameters
    ----------
    codes : array of int
        Codes in the encoding of this module: weight codes (``weight_code_range``) when
        ``kind="weight"``, activation codes (``activation_code_range``) when
        ``kind="activation"``. Stored as int64, except ``xnor`` codes of 64 lanes given as
        uint64 (what ``pack_pm1`` returns for 64 lanes), which stay uint64.
    scale : float or array
        A scalar, or one value per channel along axis 0 (shape ``(C,)`` or ``(C, 1, ..., 1)``;
        stored as the latter so it broadcasts over the codes). Finite and >= 0.
    scheme : str
        One of ``SCHEMES``.
    bits : int or None
        The code width (``xnor``: the lane count). ``None`` is allowed for the fixed-width weight
        schemes ``binary``, ``ternary`` and ``pow2`` and is replaced by their width.
    kind : str
        ``"weight"`` (default) or ``"activation"``. The level of an activation code is the code
        itself (``xnor``: one +/-1 per lane), e.g. a DoReFa activation code j means ``j / n``.
    """

    codes: np.ndarray
    scale: float | np.ndarray
    scheme: str
    bits: int | None = None
    kind: str = "weight"

    def __post_init__(self):
        check_scheme(self.scheme)
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.kind == "weight":
            bits = weight_bits(self.scheme, self.bits)
            lo, hi = weight_code_range(self.scheme, bits)
        else:
            if self.bits is None:
                raise ValueError(f"activation codes of scheme {self.scheme!r} need bits, not None")
            lo, hi = activation_code_range(self.scheme, self.bits)
            bits = int(self.bits)
        codes = np.asarray(self.codes)
        if not (self.scheme == "xnor" and bits == 64 and codes.dtype == np.uint64):
            codes = check_codes(f"{self.scheme} {self.kind} codes", codes, lo, hi)
        if codes.size == 0:
            raise ValueError(f"codes are empty (shape {codes.shape}); allowed: at least one")
        codes = codes.copy()
        codes.flags.writeable = False
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "scale", _scale_array(self.scale, codes.shape))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the codes (``xnor``: without the lane axis)."""
        return self.codes.shape

    def levels(self) -> np.ndarray:
        """Integer level of every code (``xnor``: a trailing axis of ``bits`` +/-1 lanes)."""
        if self.scheme == "xnor":
            return unpack_pm1(self.codes, self.bits)
        if self.kind == "activation":
            return self.codes.copy()
        return weight_level(self.scheme, self.codes, self.bits)

    def dequantize(self) -> np.ndarray:
        """The float64 values ``level(codes) * scale``."""
        scale = self.scale
        if self.scheme == "xnor" and isinstance(scale, np.ndarray):
            scale = scale[..., None]
        return self.levels().astype(np.float64) * scale


# ----------------------------------------------------------------------------------------------
# Binary (BinaryConnect / BNN, XNOR-Net)
# ----------------------------------------------------------------------------------------------

_ALPHA_MODES = (None, "layer", "channel")


def hard_sigmoid(x) -> np.ndarray:
    """``clip((x + 1) / 2, 0, 1)``: the probability of +1 in stochastic binarization (BNN)."""
    return np.clip((_float_tensor("x", x) + 1.0) / 2.0, 0.0, 1.0)


def _mean_abs_scale(w: np.ndarray, alpha):
    """XNOR-Net's BWN scale: 1 (none), ``mean|W|`` per layer, or per output channel (axis 0)."""
    if alpha not in _ALPHA_MODES:
        raise ValueError(f"unknown alpha {alpha!r}; allowed: None, 'layer', 'channel'")
    if alpha is None:
        return 1.0
    if alpha == "layer":
        return float(np.mean(np.abs(w)))
    return np.mean(np.abs(w), axis=_channel_axes("alpha", w))


def binarize(w, *, alpha=None, stochastic: bool = False, rng: np.random.Generator | None = None,
             profile: str = PAPER) -> QTensor:
    """Binarize ``w`` to +/-1 codes (``binary``: code 1 means -1), with an optional scale.

    Deterministic: ``sign(w)`` with sign(0) = +1 (BNN eq. 1). Stochastic (``paper`` only): +1
    where ``u < hard_sigmoid(w)`` with ``u = rng.random(w.shape)``, so probability 0 never and
    probability 1 always gives +1; ``rng`` (a ``numpy.random.Generator``) is required.

    The scale is 1 (``alpha=None``), ``mean|W|`` (``"layer"``) or ``mean|W|`` over all axes but
    axis 0 (``"channel"``, XNOR-Net BWN's ``||W||_1 / n`` per output filter).

    ``profile="tensorlayer"`` uses ``tf.sign`` (sign(0) = 0): the result is a ``ternary``
    QTensor (codes -1, 0, +1) with the same scale. ``profile="larq"`` equals the default.
    Model: BinaryConnect/BNN (Courbariaux et al. 2016), XNOR-Net BWN (Rastegari et al. 2016).
    """
    check_profile(profile, what="binarize")
    w = _float_tensor("weights", w)
    if stochastic:
        if profile != PAPER:
            raise ValueError(f"stochastic binarization has profile 'paper' only, not {profile!r}")
        if not isinstance(rng, np.random.Generator):
            raise ValueError("stochastic binarization needs rng=numpy.random.default_rng(seed), "
                             f"not {rng!r}")
        plus = rng.random(w.shape) < hard_sigmoid(w)
    else:
        if rng is not None:
            raise ValueError("rng is used only with stochastic=True; pass rng=None")
        plus = w >= 0
    scale = _mean_abs_scale(w, alpha)
    if profile == TENSORLAYER:
        return QTensor(np.sign(w).astype(np.int64), scale, "ternary", 2)
    return QTensor(np.where(plus, 0, 1), scale, "binary", 1)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def xnor_input_scale(x, kernel_hw, *, stride: int = 1, padding: int = 0) -> np.ndarray:
    """XNOR-Net's input scale ``K = A * k`` at every output position of a convolution.

    ``A = mean_c |I|`` over the channel axis of ``x`` ([C, H, W] or [N, C, H, W]) and ``k`` is a
    box filter of ``1 / (kh * kw)``: each K is the window sum of A divided by ``kh * kw``. The
    windows follow the convolution they scale: ``padding`` zeros around A (what XNOR-Net does
    for a padded convolution, e.g. ``padding=(kh - 1) // 2`` for 'same'), then ``stride``. The
    default ``padding=0`` is the 'valid' mode. Returns float64 [E, F] (or [N, E, F]) with
    ``E = (H + 2 * padding - kh) // stride + 1``, the shape of the convolution's output.
    Model: XNOR-Net (Rastegari et al. 2016), section 3.2.
    """
    x = _float_tensor("inputs", x)
    if x.ndim not in (3, 4):
        raise ValueError(f"inputs must be [C, H, W] or [N, C, H, W], not shape {x.shape}")
    if isinstance(kernel_hw, (int, np.integer)) and not isinstance(kernel_hw, bool):
        kernel_hw = (kernel_hw, kernel_hw)
    if not isinstance(kernel_hw, (tuple, list)) or len(kernel_hw) != 2:
        raise ValueError(f"kernel_hw must be an int or a pair (kh, kw), not {kernel_hw!r}")
    kh = _positive_int("kernel height", kernel_hw[0])
    kw = _positive_int("kernel width", kernel_hw[1])
    stride = _positive_int("stride", stride)
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, not {padding!r}")
    a = np.mean(np.abs(x), axis=-3)
    if padding:
        a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(padding, padding)] * 2)
    if kh > a.shape[-2] or kw > a.shape[-1]:
        raise ValueError(f"kernel {kh}x{kw} does not fit the padded input "
                         f"{a.shape[-2]}x{a.shape[-1]}; allowed: kernel <= padded input")
    windows = sliding_window_view(a, (kh, kw), axis=(-2, -1))[..., ::stride, ::stride, :, :]
    return windows.sum(axis=(-2, -1)) / (kh * kw)


# ----------------------------------------------------------------------------------------------
# Ternary (TWN)
# ----------------------------------------------------------------------------------------------

#: Larq's ``SteTern`` default ``threshold_value``.
LARQ_TERNARY_THRESHOLD = 0.05


def _nonneg_float(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    return v


def _masked_mean(a: np.ndarray, mask: np.ndarray, axes, what: str):
    """Mean of ``a`` over ``mask`` (per channel if ``axes``); 0 with a warning where empty."""
    count = np.sum(mask, axis=axes)
    total = np.sum(np.where(mask, a, 0.0), axis=axes)
    empty = count == 0
    if np.any(empty):
        where = "" if axes is None else f" in channel(s) {np.flatnonzero(empty).tolist()}"
        _warn(f"{what}{where}: empty set; the scale is set to 0, not NaN")
    mean = total / np.where(empty, 1, count)
    return float(mean) if axes is None else mean


def ternarize(w, *, factor: float = 0.7, per_channel: bool = False, threshold=None,
              profile: str = PAPER) -> QTensor:
    """Ternarize ``w`` to codes -1, 0, +1 (``ternary``) with the scale alpha (TWN).

    ``D = factor * mean|W|`` (per layer, or per output channel along axis 0 with
    ``per_channel=True``); code ``sign(w)`` where ``|w| > D`` (strict), else 0; alpha is the
    mean of ``|w|`` over the same strict set. When that set is empty (all-zero weights, or a
    ``factor`` so large nothing exceeds D) alpha is 0 and a ``QuantizationWarning`` is issued.

    ``threshold``: ``None`` (the profile's default), ``"twn"`` (``factor * mean|W|``) or a fixed
    number >= 0 used as D.

    Profiles (``model.profiles``): ``"tensorlayer"`` keeps D and the strict alpha but its mask
    is ``sign(sign(w + D) + sign(w - D))``, i.e. inclusive ``|w| >= D`` for D > 0 (TensorLayer's
    alpha is NaN when the strict set is empty; we keep 0 and the warning). ``"larq"`` (``SteTern``)
    uses the same inclusive mask, ``D = 0.05`` by default (``threshold="twn"`` for its
    ``ternary_weight_networks=True``) and no scale (1). Both are per layer only.
    Model: Ternary Weight Networks (Li & Liu 2016).
    """
    check_profile(profile, what="ternarize")
    w = _float_tensor("weights", w)
    factor = _nonneg_float("factor", factor)
    if per_channel and profile != PAPER:
        raise ValueError(f"per_channel=True has profile 'paper' only, not {profile!r}")
    axes = _channel_axes("ternarize", w) if per_channel else None
    a = np.abs(w)
    if threshold is None:
        threshold = LARQ_TERNARY_THRESHOLD if profile == LARQ else "twn"
    if isinstance(threshold, str):
        if threshold != "twn":
            raise ValueError(f"unknown threshold {threshold!r}; allowed: None, 'twn' or a number")
        delta = factor * np.mean(a, axis=axes, keepdims=per_channel)
    else:
        delta = _nonneg_float("threshold", threshold)
    strict = a > delta
    if profile == PAPER:
        codes = np.where(strict, np.sign(w), 0.0)
    else:
        codes = np.sign(np.sign(w + delta) + np.sign(w - delta))
    if profile == LARQ:
        scale = 1.0
    else:
        scale = _masked_mean(a, strict, axes, "ternary alpha (mean of |w| > threshold)")
    return QTensor(codes.astype(np.int64), scale, "ternary", 2)


# ----------------------------------------------------------------------------------------------
# Five levels {-2, -1, 0, +1, +2} * alpha (INQ at b = 3, or L2-optimal)
# ----------------------------------------------------------------------------------------------

_POW2_METHODS = ("inq", "l2")


def _nearest_pow2_codes(w: np.ndarray, alpha: float) -> np.ndarray:
    """Codes of the nearest level in {0, +/-alpha, +/-2 alpha}; ties go to the larger |level|.

    ``|w| >= 3 alpha / 2`` gives 2, ``alpha / 2 <= |w| < 3 alpha / 2`` gives 1, else 0: INQ's
    rule ``(a + b) / 2 <= |W| < 3b / 2`` for adjacent levels a < b, whose lower bound is
    inclusive. The thresholds are ``0.5 * alpha`` and ``1.5 * alpha`` in float64.
    """
    a = np.abs(w)
    magnitude = np.where(a >= 1.5 * alpha, 2, np.where(a >= 0.5 * alpha, 1, 0))
    return np.where(w < 0, -magnitude, magnitude).astype(np.int64)


def _l2_alpha(w: np.ndarray, codes: np.ndarray) -> float:
    """``(sum_{|q|=1} |w| + 2 sum_{|q|=2} |w|) / (n1 + 4 n2)``: the L2-optimal alpha for codes."""
    m = np.abs(codes)
    a = np.abs(w)
    numerator = np.sum(a[m == 1]) + 2.0 * np.sum(a[m == 2])
    return float(numerator / (np.sum(m == 1) + 4 * np.sum(m == 2)))


def quantize_pow2(w, *, method: str = "inq", iters: int = 100) -> QTensor:
    """Quantize ``w`` to the five levels {-2, -1, 0, +1, +2} * alpha (``pow2``, per layer).

    ``method="inq"`` (INQ, Zhou et al. 2017, with b = 3): ``s = max|W|``,
    ``n1 = floor(log2(4 s / 3))`` (exact, from ``np.frexp`` of the float64 ``4 s / 3``),
    ``alpha = 2**(n1 - 1)`` (a power of two: the scale is a shift), then the nearest level.
    ``3 alpha / 2 <= s < 3 alpha`` always, so every weight is within ``max(alpha / 2, s - 2 alpha)``
    (< alpha) of its level; nothing is clipped to 0.
    Ties are pinned to the larger magnitude: ``|w| = alpha / 2`` gives +/-1 and
    ``|w| = 3 alpha / 2`` gives +/-2 (INQ's inclusive lower bounds).

    ``method="l2"``: alternate, starting from the INQ codes (deterministic), between the
    L2-optimal alpha for fixed codes, ``(sum_{|q|=1} |w| + 2 sum_{|q|=2} |w|) / (n1 + 4 n2)``,
    and the nearest level for fixed alpha (same tie rule), until the codes stop changing
    (at most ``iters`` rounds; a ``QuantizationWarning`` if that is reached). The result is a
    fixed point: its codes are the nearest levels of its alpha and its alpha is L2-optimal for
    its codes; its squared error is never above the INQ result's.

    All-zero ``w``: codes 0, scale 0 and a ``QuantizationWarning`` (no level to scale).
    """
    if method not in _POW2_METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(_POW2_METHODS)}")
    iters = _positive_int("iters", iters)
    w = _float_tensor("weights", w)
    s = float(np.max(np.abs(w)))
    if s == 0.0:
        _warn("pow2: every weight is 0; its scale is set to 0")
        return QTensor(np.zeros(w.shape, dtype=np.int64), 0.0, "pow2", 3)
    _, exponent = np.frexp(4.0 * s / 3.0)  # 4s/3 = m * 2**exponent, 0.5 <= m < 1
    alpha = float(np.ldexp(1.0, int(exponent) - 2))  # 2**(n1 - 1), n1 = exponent - 1
    codes = _nearest_pow2_codes(w, alpha)
    if method == "inq":
        return QTensor(codes, alpha, "pow2", 3)
    for _ in range(iters):
        alpha = _l2_alpha(w, codes)
        new_codes = _nearest_pow2_codes(w, alpha)
        if np.array_equal(new_codes, codes):
            break
        codes = new_codes
    else:
        alpha = _l2_alpha(w, codes)
        _warn(f"pow2 l2: codes still changing after {iters} rounds; result is not a fixed point")
    return QTensor(codes, alpha, "pow2", 3)


# ----------------------------------------------------------------------------------------------
# DoReFa-Net
# ----------------------------------------------------------------------------------------------

def _levels_count(k: int) -> int:
    return (1 << k) - 1


def quantize_k(r, k: int) -> np.ndarray:
    """DoReFa's ``quantize_k(r) = round((2**k - 1) r) / (2**k - 1)`` for r in [0, 1] (float64).

    Rounding is half-to-even. ``k`` in [1, 16].
    """
    k = check_bits("quantize_k width k", k, 1, 16)
    r = _float_tensor("r", r)
    outside = r[(r < 0) | (r > 1)]
    if outside.size:
        raise ValueError(f"quantize_k input holds {float(outside[0])}; allowed: [0, 1]")
    n = _levels_count(k)
    return np.round(r * n) / n


def _tanh_normalised(w: np.ndarray) -> np.ndarray:
    """``tanh(w) / (2 max|tanh w|) + 1/2``; an all-zero max gives 1/2 (``divide_no_nan``)."""
    t = np.tanh(w)
    m = float(np.max(np.abs(t)))
    if m == 0.0:
        _warn("dorefa weights: max|tanh(w)| is 0; normalised weights are taken as 0")
        return np.full(w.shape, 0.5)
    return t / (2.0 * m) + 0.5


def dorefa_weights(w, k: int, *, profile: str = PAPER) -> QTensor:
    """Quantize weights as DoReFa-Net does, ``k`` in [1, 8] bits.

    k > 1: ``q = round(n * (tanh(w) / (2 max|tanh w|) + 1/2))``, ``n = 2**k - 1`` (max over the
    whole layer, half-to-even), a ``dorefa`` QTensor with scale ``1/n``, so its value
    ``(2q - n) / n`` is ``2 quantize_k(...) - 1``. At w = 0 the tie ``n/2`` rounds to the even
    ``2**(k-1)``: level +1. All-zero ``w`` (max 0) is normalised to 0 (as Larq's
    ``divide_no_nan``) with a ``QuantizationWarning``.
    k = 1: ``sign(w) * mean|w|``, a ``binary`` QTensor (sign(0) = +1) with scale ``mean|w|``.

    Profiles (``model.profiles``): ``"tensorlayer"``, k > 1: ``q = round(n clip(w/2 + 1/2, 0,
    1))`` (no tanh, no max); k = 1: ``tf.sign(w) * mean|w|``, a ``ternary`` QTensor (w = 0 gives
    0; all-zero w gives codes 0, scale 0 and a warning where TensorLayer gives NaN).
    ``"larq"``: the tanh formula for every k, k = 1 included (a ``dorefa`` QTensor at 1 bit,
    scale 1, w = 0 gives level -1). Model: DoReFa-Net (Zhou et al. 2016), eq. (9)-(10).
    """
    check_profile(profile, what="dorefa_weights")
    k = weight_bits("dorefa", k)
    w = _float_tensor("weights", w)
    n = _levels_count(k)
    if k == 1 and profile == PAPER:
        return QTensor(np.where(w >= 0, 0, 1), float(np.mean(np.abs(w))), "binary", 1)
    if k == 1 and profile == TENSORLAYER:
        scale = float(np.mean(np.abs(w)))
        if scale == 0.0:
            _warn("dorefa weights (tensorlayer, k=1): mean|w| is 0; scale 0 where TensorLayer "
                  "gives NaN")
        return QTensor(np.sign(w).astype(np.int64), scale, "ternary", 2)
    if profile == TENSORLAYER:
        r = np.clip(0.5 * w + 0.5, 0.0, 1.0)
    else:
        r = _tanh_normalised(w)
    return QTensor(np.round(r * n).astype(np.int64), 1.0 / n, "dorefa", k)


def dorefa_activations(x, k: int, *, profile: str = PAPER) -> QTensor:
    """Quantize activations as DoReFa-Net does: ``j = round(n clip(x, 0, 1))``, ``n = 2**k - 1``.

    Returns a ``dorefa`` QTensor of ``kind="activation"``: unsigned codes j in [0, n] (the
    range of ``activation_code_range("dorefa", k)``, so k in [1, 16]) with scale ``1/n``; its
    value is ``quantize_k(clip(x, 0, 1))``. Rounding is half-to-even (k = 2, x = 0.5: 1.5 -> 2).
    ``profile="tensorlayer"``: ``round(n min(1, |x|))`` (its ``cabs``: negative inputs are
    folded, not clipped). ``"larq"`` equals the default. Model: DoReFa-Net, section 2.4.
    """
    check_profile(profile, what="dorefa_activations")
    activation_code_range("dorefa", k)
    x = _float_tensor("activations", x)
    n = _levels_count(k)
    r = np.minimum(1.0, np.abs(x)) if profile == TENSORLAYER else np.clip(x, 0.0, 1.0)
    return QTensor(np.round(r * n).astype(np.int64), 1.0 / n, "dorefa", k, kind="activation")


def dorefa_gradients(g, k: int, rng: np.random.Generator) -> np.ndarray:
    """Quantize gradients ``g`` (batch on axis 0) to ``k`` bits as DoReFa-Net does (float64).

    ``2 M [quantize_k(clip(g / (2M) + 1/2 + N, 0, 1)) - 1/2]`` with ``M = max|g|`` over all axes
    but axis 0 (one per sample) and ``N = rng.uniform(-0.5, 0.5, g.shape) / n`` (drawn for
    every element, so the stream used depends on the shape only). The clip to [0, 1] keeps
    quantize_k in its domain (as tensorpack's reference implementation does); the result lies
    on the grid ``2M (j/n - 1/2)`` within ``[-M, M]`` and is unbiased away from the clip.
    A sample whose gradient is all zero stays zero. ``k`` in [1, 16]; a 1-D ``g`` is a batch
    of scalars. Model: DoReFa-Net, eq. (12).
    """
    k = check_bits("dorefa gradient width k", k, 1, 16)
    g = _float_tensor("gradients", g)
    if g.ndim == 0:
        raise ValueError("gradients need a batch axis 0, not a scalar")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"dorefa_gradients needs rng=numpy.random.default_rng(seed), not {rng!r}")
    n = _levels_count(k)
    m = np.max(np.abs(g), axis=tuple(range(1, g.ndim)), keepdims=True)
    noise = rng.uniform(-0.5, 0.5, size=g.shape) / n
    r = np.clip(g / (2.0 * np.where(m > 0, m, 1.0)) + 0.5 + noise, 0.0, 1.0)
    return np.where(m > 0, 2.0 * m * (np.round(r * n) / n - 0.5), 0.0)


# ----------------------------------------------------------------------------------------------
# Symmetric integers (the baseline)
# ----------------------------------------------------------------------------------------------

def quantize_int(x, bits: int, *, scale=None, kind: str = "weight") -> QTensor:
    """Quantize ``x`` to symmetric signed ``bits``-bit integers (the ``int`` baseline).

    ``scale = max|x| / (2**(bits-1) - 1)`` unless given (a finite number > 0); codes
    ``clip(round(x / scale), -(2**(bits-1) - 1), 2**(bits-1) - 1)`` (half-to-even, the most
    negative code is never used). All-zero ``x`` with the default scale gives codes 0 and scale
    0. ``bits`` in [2, 16] for weights, [2, 32] for ``kind="activation"``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    if kind == "weight":
        bits = weight_bits("int", bits)
    else:
        activation_code_range("int", bits)
    x = _float_tensor("values", x)
    qmax = (1 << (bits - 1)) - 1
    if scale is None:
        scale = float(np.max(np.abs(x))) / qmax
    else:
        scale = _nonneg_float("scale", scale)
        if scale == 0.0:
            raise ValueError("scale must be > 0, not 0.0")
    if scale == 0.0:
        codes = np.zeros(x.shape, dtype=np.int64)
    else:
        codes = np.clip(np.round(x / scale), -qmax, qmax).astype(np.int64)
    return QTensor(codes, scale, "int", bits, kind=kind)


# ----------------------------------------------------------------------------------------------
# Straight-through estimators (for training)
# ----------------------------------------------------------------------------------------------
#
# Each ste_*_grad(x, grad) maps the gradient of the loss with respect to a quantizer's output
# (``grad``, same shape as the input ``x``) to the gradient with respect to its float input.
# A per-layer or per-channel scale (alpha) is treated as a constant: if the forward pass used
# ``alpha * level``, pass ``alpha * dL/d(value)`` as ``grad``.

def _grad_pair(x, grad, name: str = "inputs") -> tuple[np.ndarray, np.ndarray]:
    x = _float_tensor(name, x)
    grad = _float_tensor("grad", grad)
    if x.shape != grad.shape:
        raise ValueError(f"grad has shape {grad.shape} but {name} have shape {x.shape}; "
                         "allowed: equal shapes")
    return x, grad


def ste_htanh_mask(x, clip_value: float = 1.0) -> np.ndarray:
    """``1{|x| <= clip_value}`` as float64 1.0/0.0: the derivative of htanh, used for sign.

    Inclusive: ``|x| = 1`` passes (BNN's ``1{|r| <= 1}``, Larq's ``less_equal``).
    """
    clip_value = _nonneg_float("clip_value", clip_value)
    return (np.abs(_float_tensor("x", x)) <= clip_value).astype(np.float64)


def ste_sign_grad(x, grad, *, profile: str = PAPER) -> np.ndarray:
    """Straight-through gradient of sign (``binarize``): ``grad * 1{|x| <= 1}``.

    ``profile="tensorlayer"``: ``clip(grad, -1, 1)`` (its sign clips the gradient's value and
    does not look at x). ``"larq"`` (``ste_sign``) equals the default.
    """
    check_profile(profile, what="ste_sign_grad")
    x, grad = _grad_pair(x, grad)
    if profile == TENSORLAYER:
        return np.clip(grad, -1.0, 1.0)
    return grad * ste_htanh_mask(x)


def ste_ternary_grad(w, grad, *, profile: str = PAPER) -> np.ndarray:
    """Straight-through gradient of ``ternarize``: ``grad`` unchanged (TWN).

    ``profile="larq"`` (``ste_tern``): ``grad * 1{|w| <= 1}``. TensorLayer's ternary gradient
    also flows through its alpha and threshold and is not reproduced.
    """
    check_profile(profile, what="ste_ternary_grad", allowed=(PAPER, LARQ))
    w, grad = _grad_pair(w, grad, "weights")
    if profile == LARQ:
        return grad * ste_htanh_mask(w)
    return grad.copy()


def ste_dorefa_weights_grad(w, grad, k: int, *, profile: str = PAPER) -> np.ndarray:
    """Straight-through gradient of ``dorefa_weights(w, k).dequantize()`` with respect to ``w``.

    The rounding passes the gradient; ``max|tanh w|`` and ``mean|w|`` are constants (Larq's
    ``stop_gradient``). k > 1: ``grad * (1 - tanh(w)**2) / max|tanh w|`` (0 where the max is
    0); k = 1: ``grad`` (sign(w) * E with a straight-through sign, DoReFa eq. (7)).
    ``profile="tensorlayer"``, k > 1: ``grad * 1{|w| <= 1}`` (the clip's gradient); k = 1:
    ``grad``. ``"larq"``: the tanh form for every k, k = 1 included.
    """
    check_profile(profile, what="ste_dorefa_weights_grad")
    k = weight_bits("dorefa", k)
    w, grad = _grad_pair(w, grad, "weights")
    if k == 1 and profile != LARQ:
        return grad.copy()
    if profile == TENSORLAYER:
        return grad * ste_htanh_mask(w)
    t = np.tanh(w)
    m = float(np.max(np.abs(t)))
    if m == 0.0:
        return np.zeros_like(grad)
    return grad * (1.0 - t * t) / m


def ste_dorefa_activations_grad(x, grad, *, profile: str = PAPER) -> np.ndarray:
    """Straight-through gradient of ``dorefa_activations``: ``grad * 1{0 <= x <= 1}``.

    The rounding passes the gradient and the clip's bounds are inclusive.
    ``profile="tensorlayer"``: ``grad * sign(x) * 1{|x| < 1}`` (the gradient of
    ``min(1, |x|)``; at ``|x| = 1`` ``tf.minimum`` sends it to the constant). ``"larq"`` equals
    the default.
    """
    check_profile(profile, what="ste_dorefa_activations_grad")
    x, grad = _grad_pair(x, grad)
    if profile == TENSORLAYER:
        return grad * np.sign(x) * (np.abs(x) < 1.0)
    return grad * ((x >= 0.0) & (x <= 1.0))


def ste_identity_grad(x, grad) -> np.ndarray:
    """Pass ``grad`` unchanged: straight-through rounding (``quantize_pow2``, ``quantize_int``).

    Checks ``x`` and ``grad`` like the other estimators.
    """
    _, grad = _grad_pair(x, grad)
    return grad.copy()
