"""QONNX quantizers as qonnx's executor computes them, in NumPy float32 (NumPy only).

A model imported from QONNX (``model.qonnx_import``) keeps the graph's *input quantizer*,
so that float inputs in the graph's own layout become the first layer's integer codes
exactly as ``qonnx.core.onnx_exec.execute_onnx`` would quantize them, and the float layout
of the graph's input and output (``FloatInterface``). The arithmetic is the executor's
(``qonnx/custom_op/general/intquant.py``, ``bipolar_quant.py``), not the written spec where
they differ, and it stays in float32 throughout:

- ``Quant`` (alias ``IntQuant``): ``y = x / scale + zeropt``; a 1-bit signed ``Quant``
  gives ``+1 where y >= 0 else -1``; otherwise ``y`` is clamped to ``[min_int, max_int]``
  *before* it is rounded by ``rounding_mode`` (``ROUND``/``HALF_EVEN``: half to even;
  ``CEIL``, ``FLOOR``, ``UP``, ``DOWN``, ``HALF_UP``, ``HALF_DOWN``, each computed with the
  executor's own float32 expressions); the output is ``(y - zeropt) * scale``. Attribute
  defaults are the executor's: ``signed = 1``, ``narrow = 1``, ``rounding_mode = ROUND``.
- ``BipolarQuant``: ``+1 where x >= 0 else -1``, times ``scale`` (no division).

``min_int``/``max_int``: signed ``-2**(k-1)`` (``+1`` when narrow) to ``2**(k-1) - 1``;
unsigned ``0`` to ``2**k - 1`` (``2**k - 2`` when narrow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ROUNDING_MODES", "quant_limits", "rounding_function", "Quantizer",
           "FloatInterface"]


def _round_up(x):
    return np.sign(x) * np.ceil(np.abs(x))


def _round_half_up(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _round_half_down(x):
    return np.sign(x) * np.ceil(np.abs(x) - 0.5)


#: The executor's rounding functions by (upper-case) mode name.
ROUNDING_MODES = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
    "UP": _round_up, "DOWN": np.fix, "HALF_UP": _round_half_up, "HALF_DOWN": _round_half_down,
}


def rounding_function(mode: str):
    """The rounding function of ``rounding_mode`` (case-insensitive, as the executor)."""
    name = str(mode).upper()
    if name not in ROUNDING_MODES:
        raise ValueError(f"rounding mode {mode!r} is not one of "
                         f"{', '.join(sorted(ROUNDING_MODES))}")
    return ROUNDING_MODES[name]


def quant_limits(signed: bool, narrow: bool, bits: int) -> tuple[int, int]:
    """``(min_int, max_int)`` of a ``Quant`` of ``bits`` (the executor's functions)."""
    if signed:
        return -(1 << (bits - 1)) + (1 if narrow else 0), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - (2 if narrow else 1)


@dataclass(frozen=True)
class Quantizer:
    """One per-tensor QONNX quantizer (zero point 0): a ``Quant`` or a ``BipolarQuant``.

    Members
    -------
    op : str
        ``"Quant"`` or ``"BipolarQuant"``.
    scale : float
        The float32 scale (a Python float holding the float32 value exactly), > 0.
    bits : int
        ``Quant``'s bit width (``BipolarQuant``: 1).
    signed, narrow : bool
        ``Quant``'s attributes (``BipolarQuant``: signed, not narrow).
    rounding_mode : str
        ``Quant``'s rounding mode (upper case).
    """

    op: str
    scale: float
    bits: int = 1
    signed: bool = True
    narrow: bool = False
    rounding_mode: str = "ROUND"

    def __post_init__(self):
        if self.op not in ("Quant", "BipolarQuant"):
            raise ValueError(f"quantizer op must be 'Quant' or 'BipolarQuant', not {self.op!r}")
        scale = float(np.float32(self.scale))
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"quantizer scale must be a finite float32 > 0, not {self.scale!r}")
        object.__setattr__(self, "scale", scale)
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)) \
                or not 1 <= self.bits <= 32:
            raise ValueError(f"quantizer bits must be an integer in [1, 32], not {self.bits!r}")
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "signed", bool(self.signed))
        object.__setattr__(self, "narrow", bool(self.narrow))
        rounding_function(self.rounding_mode)
        object.__setattr__(self, "rounding_mode", str(self.rounding_mode).upper())
        if self.op == "BipolarQuant" and (self.bits != 1 or not self.signed or self.narrow):
            raise ValueError("a BipolarQuant is 1-bit signed, not narrow")

    @property
    def bipolar(self) -> bool:
        """True when the codes are -1 and +1 (``BipolarQuant`` or a 1-bit signed ``Quant``)."""
        return self.bits == 1 and self.signed

    @property
    def code_range(self) -> tuple[int, int]:
        """Smallest and largest code."""
        if self.bipolar:
            return -1, 1
        return quant_limits(self.signed, self.narrow, self.bits)

    def describe(self) -> str:
        """A few words: ``unsigned 4-bit, scale 0.0625`` or ``bipolar, scale 1``."""
        if self.bipolar:
            kind = "bipolar"
        else:
            kind = (f"{'signed' if self.signed else 'unsigned'}{' narrow' if self.narrow else ''} "
                    f"{self.bits}-bit")
        rounding = "" if self.rounding_mode == "ROUND" or self.bipolar \
            else f", {self.rounding_mode}"
        return f"{kind}, scale {self.scale:.9g}{rounding}"

    def codes(self, x) -> np.ndarray:
        """The integer codes (int64) the executor's quantizer gives for float inputs ``x``."""
        x = np.asarray(x, dtype=np.float32)
        scale = np.float32(self.scale)
        if self.op == "BipolarQuant":
            return np.where(x >= 0.0, 1, -1).astype(np.int64)
        y = x / scale
        y = y + np.float32(0.0)
        if self.bipolar:
            return np.where(y >= 0.0, 1, -1).astype(np.int64)
        lo, hi = (np.float32(v) for v in quant_limits(self.signed, self.narrow, self.bits))
        y = np.where(y > hi, hi, y)
        y = np.where(y < lo, lo, y)
        return rounding_function(self.rounding_mode)(y).astype(np.int64)

    def values(self, codes) -> np.ndarray:
        """The float32 values the executor outputs for ``codes``: ``(code - 0) * scale``."""
        c = np.asarray(codes).astype(np.float32)
        return (c - np.float32(0.0)) * np.float32(self.scale)

    def to_dict(self) -> dict:
        return {"op": self.op, "scale": self.scale, "bits": self.bits, "signed": self.signed,
                "narrow": self.narrow, "rounding_mode": self.rounding_mode}

    @classmethod
    def from_dict(cls, d: dict) -> "Quantizer":
        return cls(op=d["op"], scale=float(d["scale"]), bits=int(d["bits"]),
                   signed=bool(d["signed"]), narrow=bool(d["narrow"]),
                   rounding_mode=str(d["rounding_mode"]))


@dataclass(frozen=True)
class FloatInterface:
    """The float ends of an imported graph.

    Members
    -------
    input_shape : tuple
        One sample of the graph's input in its own layout (the batch dimension dropped).
    output_shape : tuple
        One sample of the graph's output.
    quantizer : Quantizer
        The graph's input quantizer: float inputs to the first layer's codes.
    output_quantizer : Quantizer or None
        When the graph's output is a quantizer's output, the last layer gives its codes and
        the float output is ``output_quantizer.values(codes)`` (exactly the executor's);
        None when the output is the last layer's float result, reproduced as scores
        ``(score_gain * acc + score_offset) * 2**-score_shift``.
    """

    input_shape: tuple
    output_shape: tuple
    quantizer: Quantizer
    output_quantizer: Quantizer | None = None

    def to_dict(self) -> dict:
        return {"input_shape": [int(v) for v in self.input_shape],
                "output_shape": [int(v) for v in self.output_shape],
                "quantizer": self.quantizer.to_dict(),
                "output_quantizer": None if self.output_quantizer is None
                else self.output_quantizer.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "FloatInterface":
        out_q = d.get("output_quantizer")
        return cls(tuple(int(v) for v in d["input_shape"]),
                   tuple(int(v) for v in d["output_shape"]), Quantizer.from_dict(d["quantizer"]),
                   None if out_q is None else Quantizer.from_dict(out_q))
