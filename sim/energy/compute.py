"""What one MAC costs to compute: product schemes and the lane PE at 45 nm.

A PE slot computes ``lanes`` products side by side, adds them in a reduction tree and adds
the tree's sum into one accumulator (``DESIGN.md`` section 4, *Lanes*). From the 45 nm
figures of ``sim.energy.costs``, one slot with ``active`` working lanes costs

- ``active`` products (the product unit of the scheme, below);
- ``active - 1`` tree additions: a pairwise tree whose level-k adders are ``p + k - 1``
  bits wide for products of ``p`` bits (each level's sums one bit wider), an odd operand
  passing to the next level unadded;
- one accumulator addition of the layer's accumulator width.

Padding lanes (``active < lanes``) are idle: no product, no adder fed only by them.
The energy of one MAC is the slot's energy over its active lanes, so the accumulator add
is shared by the lanes (``compute_pj``); a layer whose channels per group do not fill the
last slot pays for it in ``mac_pj``. ``lanes = 1`` is the scalar PE: a product and an
accumulator add.

Product units (``p`` = width of the product entering the tree):

- ``int``: an a x w multiplier, ``p = a + w``;
- ``binary``: pass/negate = a row of a_bits XORs, the +1 of the negation is a carry-in
  (``p = a + 1``);
- ``ternary``: as ``binary``; a zero weight is skipped (gated: no product, no add);
- ``pow2``: shift by 0 or 1 (a row of a_bits + 1 muxes) and the negate row, ``p = a + 2``;
  zero skipped;
- ``dorefa``: one read of a product word from a table of 2^(w_bits + a_bits) entries,
  priced as an SRAM of that size (``p`` = the word);
- ``xnor``: each lane is one bit of the packed word (the PE's lanes are the word's
  ``a_bits`` codes): an XNOR per lane, the popcount is the tree (``p = 1``).

Zero skipping saves only the compute term: the weight is still read to learn it is zero, so
data movement is unchanged. The zero fraction comes from a deployment model when one is
given, else ``default_sparsity`` (ternary: the expectation for Gaussian weights under the TWN
threshold, 0.7 E|w|; every other scheme: 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model.ops import accumulator_width
from model.quant import check_scheme, weight_bits
from sim.energy.costs import GATE_PJ, add_pj, multiply_pj, sram_pj_per_bit

__all__ = ["Scheme", "INT16", "compute_pj", "mac_pj", "tree_adds", "default_sparsity",
           "can_skip"]


@dataclass(frozen=True)
class Scheme:
    """A product scheme and its widths: what the PEs compute and what the words hold.

    ``acc_bits`` ``None`` means: each layer's accumulator width from
    ``model.ops.accumulator_width``. ``w_bits`` ``None``: the scheme's fixed width, or
    ``a_bits`` for ``int``. For ``xnor`` ``a_bits`` = ``w_bits`` = lanes per word and every
    lane counts as one MAC moving 1-bit words.
    """

    name: str = "int"
    a_bits: int = 16
    w_bits: int | None = None
    acc_bits: int | None = None

    def __post_init__(self):
        check_scheme(self.name)
        if isinstance(self.a_bits, bool) or not isinstance(self.a_bits, int) \
                or not 1 <= self.a_bits <= 64:
            raise ValueError(f"a_bits must be an integer in [1, 64], not {self.a_bits!r}")
        if self.name == "xnor" and self.w_bits not in (None, self.a_bits):
            raise ValueError(f"xnor needs a_bits == w_bits (lanes), not {self.a_bits} "
                             f"and {self.w_bits}")
        w = self.w_bits
        if w is None and self.name in ("int", "xnor"):
            w = self.a_bits
        object.__setattr__(self, "w_bits", weight_bits(self.name, w))

    @property
    def label(self) -> str:
        if self.name == "int":
            return f"int{self.w_bits}"
        if self.name == "dorefa":
            return f"dorefa W{self.w_bits}A{self.a_bits}"
        return self.name

    def word_bits(self, data_type: str, acc_bits: int) -> int:
        """Width of one stored word of ``data_type`` (psums: the accumulator)."""
        if data_type == "psums":
            return acc_bits
        if self.name == "xnor":
            return 1
        return self.a_bits if data_type == "inputs" else self.w_bits

    def layer_acc_bits(self, layer) -> int:
        """The accumulator width of ``layer`` (a ``LayerShape`` or a named layer)."""
        if self.acc_bits is not None:
            return self.acc_bits
        fan_in = (layer.C // layer.groups) * layer.R * layer.S
        if self.name == "xnor":
            fan_in = math.ceil(fan_in / self.a_bits)
        return accumulator_width(self.name, a_bits=self.a_bits, w_bits=self.w_bits,
                                 fan_in=fan_in)

    def to_dict(self) -> dict:
        return {"name": self.name, "a_bits": self.a_bits, "w_bits": self.w_bits,
                "acc_bits": self.acc_bits}


#: The 16-bit multiplier of the Eyeriss comparison.
INT16 = Scheme("int", 16, 16, 16)


def _product(scheme: Scheme) -> tuple[float, int]:
    """Energy of one lane's product (pJ) and the product's width in bits."""
    a, w = scheme.a_bits, scheme.w_bits
    if scheme.name == "int":
        return multiply_pj(a, w), a + w
    if scheme.name in ("binary", "ternary"):
        return a * GATE_PJ, a + 1
    if scheme.name == "pow2":
        return (a + 1) * GATE_PJ + (a + 1) * GATE_PJ, a + 2
    if scheme.name == "dorefa":
        entries = 2 ** (w + a)
        word = max(1, (2 ** w - 1).bit_length() + a + 1)
        return word * sram_pj_per_bit(entries * word / 8), word
    return GATE_PJ, 1  # xnor: one XNOR cell per lane


def tree_adds(active: int, product_bits: int) -> list[int]:
    """Widths of the adders a pairwise tree over ``active`` products uses (``active - 1``)."""
    widths, n, level = [], active, 1
    while n > 1:
        widths += [product_bits + level - 1] * (n // 2)
        n = n - n // 2
        level += 1
    return widths


def compute_pj(scheme: Scheme, acc_bits: int, lanes: int = 1,
               active: int | None = None) -> dict:
    """45 nm energy of one MAC on a PE of ``lanes`` lanes, ``active`` of them working (pJ).

    Returns ``{"product", "tree", "accumulate", "total"}`` per MAC (module docstring).
    ``xnor`` takes its lanes from the word (``scheme.a_bits``); ``lanes`` must then be 1 or
    that width.
    """
    if scheme.name == "xnor":
        if lanes not in (1, scheme.a_bits):
            raise ValueError(f"xnor lanes are the {scheme.a_bits} codes of a word, not {lanes}")
        lanes = scheme.a_bits
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    active = lanes if active is None else active
    if not 1 <= active <= lanes:
        raise ValueError(f"active lanes must be in [1, {lanes}], not {active!r}")
    product, bits = _product(scheme)
    tree = sum(add_pj(b) for b in tree_adds(active, bits)) / active
    accumulate = add_pj(acc_bits) / active
    return {"product": product, "tree": tree, "accumulate": accumulate,
            "total": product + tree + accumulate}


def mac_pj(scheme: Scheme, acc_bits: int, lanes: int = 1, channels: int | None = None) -> float:
    """Average 45 nm energy of one MAC (pJ) when each output tap sums ``channels`` products
    on ``lanes`` lanes: full slots, then one slot of the remaining channels (the other lanes
    idle). ``channels`` ``None``: every slot full. ``xnor``: the word's ``a_bits`` lanes.
    """
    if scheme.name == "xnor":
        lanes = scheme.a_bits
    if channels is None:
        return compute_pj(scheme, acc_bits, lanes)["total"]
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer, not {channels!r}")
    full, rest = divmod(channels, lanes)
    total = full * lanes * compute_pj(scheme, acc_bits, lanes)["total"]
    if rest:
        total += rest * compute_pj(scheme, acc_bits, lanes, rest)["total"]
    return total / channels


def default_sparsity(scheme: str) -> float:
    """Zero-weight fraction assumed when no model is given (see module docstring)."""
    if scheme == "ternary":
        # P(|w| <= 0.7 E|w|) for Gaussian w: E|w| = sigma sqrt(2/pi).
        return math.erf(0.7 * math.sqrt(2 / math.pi) / math.sqrt(2))
    return 0.0


def can_skip(scheme: str) -> bool:
    """Whether the scheme's product unit gates a zero weight (no product, no add)."""
    return scheme in ("ternary", "pow2")

