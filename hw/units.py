"""Multiplier-free product units: pass/negate, skip, shift, table look-up and XNOR-popcount.

Every unit is a combinational ``wiring.Component`` with one interface (DESIGN.md section 4):

``a``
    In: the activation code; ``signed(a_bits)`` for ``binary``, ``ternary``, ``pow2`` and
    ``int``, ``unsigned(a_bits)`` for ``dorefa``, ``unsigned(lanes)`` (packed lanes, bit 1 means
    -1) for ``xnor``.
``w``
    In: the weight code in the hardware encoding of ``model.quant``: ``unsigned(1)`` for
    ``binary`` (1 means -1), ``signed(2)`` for ``ternary``, ``signed(3)`` for ``pow2``,
    ``unsigned(w_bits)`` for ``dorefa``, ``signed(w_bits)`` for ``int``, ``unsigned(lanes)``
    for ``xnor``.
``p``
    Out: the exact product ``level(w) * a`` (for ``xnor`` the +/-1 dot product over the
    lanes), ``signed(width)`` with the smallest width that holds ``model.ops.product_range``.
``skip``
    Out(1), only on units that can skip (``can_skip``): high exactly when the level of ``w``
    is 0, so that an accumulator need not be clocked. ``p`` is 0 then.

Codes outside the scheme's legal range (``model.quant.weight_code_range``, e.g. the
``ternary`` bit pattern ``0b10``) give an unspecified ``p``.

Every unit also has the read-only properties ``scheme``, ``a_bits``, ``w_bits``, ``p_shape``
and ``can_skip``. Build one by scheme name with ``product_unit``, which checks its arguments
(``check_unit``, a pure function) before it builds anything, so bad arguments leave no
half-made component behind.

Model: ``model.ops.product`` (and ``model.quant.weight_level`` for ``skip``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.ops import product_range, signed_width
from model.quant import activation_code_range, check_bits, check_scheme, weight_bits

__all__ = ["SignUnit", "TernaryUnit", "ShiftUnit", "LutUnit", "XnorPopcountUnit",
           "MultiplyUnit", "product_unit", "check_unit", "UNIT_CLASSES"]

# Table look-ups larger than this many entries are refused (2^8 x 2^8 is the largest).
_MAX_TABLE_ENTRIES = 1 << 16


class _ProductUnit(wiring.Component):
    """Shared interface and read-only properties of every product unit."""

    def __init__(self, *, scheme: str, a_bits: int, w_bits: int, a_shape: Shape,
                 w_shape: Shape, p_lo: int, p_hi: int, can_skip: bool,
                 src_loc_at: int = 0):
        self._scheme = scheme
        self._a_bits = a_bits
        self._w_bits = w_bits
        self._p_shape = signed(signed_width(p_lo, p_hi))
        self._can_skip = can_skip
        members = {"a": In(a_shape), "w": In(w_shape), "p": Out(self._p_shape)}
        if can_skip:
            members["skip"] = Out(1)
        super().__init__(members, src_loc_at=src_loc_at + 2)

    @property
    def scheme(self) -> str:
        """Scheme name of ``model.quant.SCHEMES`` (``"codebook"`` for a shared-weight table)."""
        return self._scheme

    @property
    def a_bits(self) -> int:
        """Width of the activation code (the lane count for ``xnor``)."""
        return self._a_bits

    @property
    def w_bits(self) -> int:
        """Width of the weight code (the lane count for ``xnor``)."""
        return self._w_bits

    @property
    def p_shape(self) -> Shape:
        """Shape of ``p``: the smallest signed shape holding every product."""
        return self._p_shape

    @property
    def can_skip(self) -> bool:
        """Whether the unit has a ``skip`` output (some weight code has level 0)."""
        return self._can_skip


def _signed_activation_bits(scheme: str, a_bits) -> int:
    activation_code_range(scheme, a_bits)  # raises ValueError naming the allowed range
    return int(a_bits)


def _negate_if(m: Module, value, negate, shape: Shape) -> Signal:
    """``-value`` when ``negate`` else ``value``, as two's complement: flip every bit, then
    add the flag back in as the carry (``(value ^ negate...) + negate``)."""
    widened = Signal(shape)
    flipped = Signal(shape)
    result = Signal(shape)
    m.d.comb += [
        widened.eq(value),
        flipped.eq(widened ^ negate.replicate(shape.width)),
        result.eq(flipped + negate),
    ]
    return result


class _SignedActivationUnit(_ProductUnit):
    """A unit of a scheme with signed activation codes and a fixed weight code.

    Subclasses set ``_SCHEME`` (a name of ``model.quant.SCHEMES``), ``_W_SHAPE`` (the shape of
    the weight code) and ``_CAN_SKIP``; the only parameter is ``a_bits``.
    """

    _SCHEME: str
    _W_SHAPE: Shape
    _CAN_SKIP: bool

    def __init__(self, *, a_bits: int, src_loc_at: int = 0):
        a_bits = _signed_activation_bits(self._SCHEME, a_bits)
        lo, hi = product_range(self._SCHEME, a_bits=a_bits)
        super().__init__(scheme=self._SCHEME, a_bits=a_bits, w_bits=self._W_SHAPE.width,
                         a_shape=signed(a_bits), w_shape=self._W_SHAPE, p_lo=lo, p_hi=hi,
                         can_skip=self._CAN_SKIP, src_loc_at=src_loc_at)


def _level_code_product(m: Module, unit: _SignedActivationUnit, magnitude) -> None:
    """Drive ``p`` and ``skip`` of a unit whose weight code is its signed level: ``p`` is
    ``magnitude``, negated when the sign bit of ``w`` is set, and 0 (``skip`` high) when ``w``
    is 0."""
    signed_a = _negate_if(m, magnitude, unit.w[-1], unit.p_shape)
    m.d.comb += [
        unit.skip.eq(unit.w == 0),
        unit.p.eq(Mux(unit.skip, 0, signed_a)),
    ]


class SignUnit(_SignedActivationUnit):
    """Product of a signed activation with a binary (+/-1) weight: pass or negate.

    The weight code is the sign bit (1 means -1), so ``p = w ? -a : a``.
    Combinational: latency 0, one product per cycle. No ``skip`` (no weight is 0).

    Model: ``model.ops.product("binary", a, w, a_bits=a_bits)``.

    Parameters
    ----------
    a_bits : int
        Width of the signed activation code, 2 to 32.

    Members
    -------
    a : In(signed(a_bits))
    w : In(unsigned(1))
    p : Out(signed(a_bits + 1))
    """

    _SCHEME, _W_SHAPE, _CAN_SKIP = "binary", unsigned(1), False

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(_negate_if(m, self.a, self.w, self.p_shape))
        return m


class TernaryUnit(_SignedActivationUnit):
    """Product of a signed activation with a ternary weight: skip on 0, else pass or negate.

    The weight code is the level itself (signed 2 bits: -1, 0, +1); its sign bit selects the
    negation and ``skip`` is high on 0 (``p`` is then 0).
    Combinational: latency 0, one product per cycle.

    Model: ``model.ops.product("ternary", a, w, a_bits=a_bits)``.

    Parameters
    ----------
    a_bits : int
        Width of the signed activation code, 2 to 32.

    Members
    -------
    a : In(signed(a_bits))
    w : In(signed(2))
    p : Out(signed(a_bits + 1))
    skip : Out(1)
    """

    _SCHEME, _W_SHAPE, _CAN_SKIP = "ternary", signed(2), True

    def elaborate(self, platform):
        m = Module()
        _level_code_product(m, self, self.a)
        return m


class ShiftUnit(_SignedActivationUnit):
    """Product of a signed activation with a five-level weight {-2, -1, 0, +1, +2}.

    Skip on 0, shift left by 1 on magnitude 2 (by 0 on magnitude 1), negate on a negative
    code. The weight code is the level itself (signed 3 bits).
    Combinational: latency 0, one product per cycle.

    Model: ``model.ops.product("pow2", a, w, a_bits=a_bits)``.

    Parameters
    ----------
    a_bits : int
        Width of the signed activation code, 2 to 32.

    Members
    -------
    a : In(signed(a_bits))
    w : In(signed(3))
    p : Out(signed(a_bits + 2))
    skip : Out(1)
    """

    _SCHEME, _W_SHAPE, _CAN_SKIP = "pow2", signed(3), True

    def elaborate(self, platform):
        m = Module()
        # |w| is 2 for the codes 0b010 (+2) and 0b110 (-2): bit 1 set, bit 0 clear.
        double = self.w[1] & ~self.w[0]
        shifted = Signal(self.p_shape)
        m.d.comb += shifted.eq(Mux(double, self.a << 1, self.a))
        _level_code_product(m, self, shifted)
        return m


def _lut_parameters(a_bits, w_bits, codebook, signed_activations: bool):
    """``(a_bits, w_bits, levels)`` of a ``LutUnit``, checked (``ValueError`` naming the bad
    value): the widths, the table's size and the codebook's levels."""
    w_bits = weight_bits("dorefa", w_bits)
    if signed_activations:
        if codebook is None:
            raise ValueError("signed_activations=True needs a codebook; DoReFa "
                             "activations are unsigned")
        a_bits = check_bits("activation width of a signed LutUnit", a_bits, 2, 16)
    else:
        activation_code_range("dorefa", a_bits)
        a_bits = int(a_bits)
    if 1 << (a_bits + w_bits) > _MAX_TABLE_ENTRIES:
        raise ValueError(f"LutUnit table of 2^{w_bits} x 2^{a_bits} entries is too large; "
                         f"allowed: a_bits + w_bits <= 16")
    if codebook is None:
        n = (1 << w_bits) - 1
        return a_bits, w_bits, tuple(2 * q - n for q in range(1 << w_bits))
    levels = tuple(codebook)
    if len(levels) != 1 << w_bits:
        raise ValueError(f"codebook must have 2^{w_bits} = {1 << w_bits} levels, "
                         f"not {len(levels)}")
    for level in levels:
        if isinstance(level, bool) or not hasattr(level, "__index__"):
            raise ValueError(f"codebook levels must be integers, not {level!r}")
    return a_bits, w_bits, tuple(int(level) for level in levels)


class LutUnit(_ProductUnit):
    """Product by table look-up: a ``2**w_bits x 2**a_bits`` ROM indexed by ``(w, a)``.

    By default (DoReFa) the entry for weight code ``q`` and activation code ``j`` is
    ``(2q - n) * j`` with ``n = 2**w_bits - 1``, ``j`` unsigned. With a ``codebook`` (weight
    sharing: one integer level per weight code) the entry is ``codebook[q] * j``; then
    ``scheme`` is ``"codebook"`` and ``skip`` exists when some level is 0 (``can_skip``).
    ``signed_activations=True`` reads ``a`` as a signed code (codebook tables only).
    Combinational (an asynchronous-read ROM): latency 0, one product per cycle.

    Model: ``model.ops.product("dorefa", a, w, a_bits=a_bits, w_bits=w_bits)``;
    with a codebook, ``codebook[w] * a``.

    Parameters
    ----------
    a_bits : int
        Width of the activation code: 1 to 16 (unsigned) or 2 to 16 (signed).
    w_bits : int
        Width of the weight code, 1 to 8; ``a_bits + w_bits`` is at most 16.
    codebook : sequence of int, optional
        ``2**w_bits`` integer levels, one per weight code.
    signed_activations : bool
        Activation codes are signed (only with a ``codebook``).

    Members
    -------
    a : In(unsigned(a_bits)) or In(signed(a_bits))
    w : In(unsigned(w_bits))
    p : Out(signed(width))
    skip : Out(1), only if some level is 0
    """

    def __init__(self, *, a_bits: int, w_bits: int, codebook=None,
                 signed_activations: bool = False, src_loc_at: int = 0):
        a_bits, w_bits, levels = _lut_parameters(a_bits, w_bits, codebook, signed_activations)
        if signed_activations:
            a_lo, a_hi = -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1
            a_codes = [j - (1 << a_bits) if j >> (a_bits - 1) else j for j in range(1 << a_bits)]
        else:
            a_lo, a_hi = 0, (1 << a_bits) - 1
            a_codes = list(range(1 << a_bits))
        corners = [level * a for level in levels for a in (a_lo, a_hi)]
        self._levels = levels
        self._signed_activations = bool(signed_activations)
        # Row q (weight code), column j (activation bit pattern): address = q << a_bits | j.
        self._table = tuple(level * a for level in levels for a in a_codes)
        super().__init__(scheme="dorefa" if codebook is None else "codebook", a_bits=a_bits,
                         w_bits=w_bits,
                         a_shape=signed(a_bits) if signed_activations else unsigned(a_bits),
                         w_shape=unsigned(w_bits), p_lo=min(corners), p_hi=max(corners),
                         can_skip=0 in levels, src_loc_at=src_loc_at)

    @property
    def levels(self) -> tuple[int, ...]:
        """The integer level of each weight code (the codebook, or DoReFa's ``2q - n``)."""
        return self._levels

    @property
    def signed_activations(self) -> bool:
        """Whether ``a`` is a signed code."""
        return self._signed_activations

    @property
    def table(self) -> tuple[int, ...]:
        """The ROM contents, address ``q << a_bits | j`` (``j`` the bit pattern of ``a``)."""
        return self._table

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = Memory(shape=self.p_shape, depth=len(self._table),
                                            init=self._table)
        read = table.read_port(domain="comb")
        m.d.comb += [
            read.addr.eq(Cat(self.a.as_unsigned(), self.w)),
            self.p.eq(read.data),
        ]
        if self.can_skip:
            zero_codes = [q for q, level in enumerate(self._levels) if level == 0]
            m.d.comb += self.skip.eq(Cat(*(self.w == q for q in zero_codes)).any())
        return m


def _popcount(m: Module, bits) -> Signal:
    """Number of set bits of ``bits``, as a balanced tree of adders."""
    terms = [bits[i] for i in range(len(bits))]
    while len(terms) > 1:
        pairs = []
        for i in range(0, len(terms) - 1, 2):
            width = max(len(terms[i]), len(terms[i + 1])) + 1
            total = Signal(width)
            m.d.comb += total.eq(terms[i] + terms[i + 1])
            pairs.append(total)
        if len(terms) % 2:
            pairs.append(terms[-1])
        terms = pairs
    count = Signal(range(len(bits) + 1))
    m.d.comb += count.eq(terms[0])
    return count


class XnorPopcountUnit(_ProductUnit):
    """+/-1 dot product of ``lanes`` packed binary activations and weights.

    Lane ``i`` is bit ``i``; bit 1 means -1. ``p = lanes - 2 * popcount(a ^ w)``, which equals
    ``2 * popcount(xnor(a, w)) - lanes``. The popcount is a balanced adder tree.
    Combinational: latency 0, ``lanes`` MACs per cycle. No ``skip``.

    Model: ``model.ops.product("xnor", a, w, a_bits=lanes)``.

    Parameters
    ----------
    lanes : int
        Number of lanes, 1 to 64.

    Members
    -------
    a : In(unsigned(lanes))
    w : In(unsigned(lanes))
    p : Out(signed(width)), the smallest width holding ``-lanes .. lanes``
    """

    def __init__(self, *, lanes: int, src_loc_at: int = 0):
        lanes = check_bits("xnor lane count", lanes, 1, 64)
        super().__init__(scheme="xnor", a_bits=lanes, w_bits=lanes, a_shape=unsigned(lanes),
                         w_shape=unsigned(lanes), p_lo=-lanes, p_hi=lanes, can_skip=False,
                         src_loc_at=src_loc_at)

    @property
    def lanes(self) -> int:
        """Number of +/-1 lanes (``a_bits == w_bits == lanes``)."""
        return self._a_bits

    def elaborate(self, platform):
        m = Module()
        mismatches = _popcount(m, self.a ^ self.w)
        m.d.comb += self.p.eq(Const(self.lanes, self.p_shape) - (mismatches << 1))
        return m


class MultiplyUnit(_ProductUnit):
    """A real signed multiplier, the baseline the multiplier-free units are measured against.

    Combinational: latency 0, one product per cycle. No ``skip``.

    Model: ``model.ops.product("int", a, w, a_bits=a_bits, w_bits=w_bits)``.

    Parameters
    ----------
    a_bits : int
        Width of the signed activation code, 2 to 32.
    w_bits : int
        Width of the signed weight code, 2 to 16.

    Members
    -------
    a : In(signed(a_bits))
    w : In(signed(w_bits))
    p : Out(signed(a_bits + w_bits))
    """

    def __init__(self, *, a_bits: int, w_bits: int, src_loc_at: int = 0):
        a_bits = _signed_activation_bits("int", a_bits)
        w_bits = weight_bits("int", w_bits)
        lo, hi = product_range("int", a_bits=a_bits, w_bits=w_bits)
        super().__init__(scheme="int", a_bits=a_bits, w_bits=w_bits, a_shape=signed(a_bits),
                         w_shape=signed(w_bits), p_lo=lo, p_hi=hi, can_skip=False,
                         src_loc_at=src_loc_at)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.a * self.w)
        return m


#: The product unit class of each scheme.
UNIT_CLASSES = {
    "binary": SignUnit,
    "xnor": XnorPopcountUnit,
    "ternary": TernaryUnit,
    "pow2": ShiftUnit,
    "dorefa": LutUnit,
    "int": MultiplyUnit,
}


def _check_fixed_weight_bits(scheme: str, w_bits) -> None:
    fixed = weight_bits(scheme)
    if w_bits is not None and w_bits != fixed:
        raise ValueError(f"scheme {scheme!r} has {fixed}-bit weight codes; w_bits must be "
                         f"{fixed} or omitted, not {w_bits!r}")


def product_unit(scheme: str, *, a_bits: int, w_bits: int | None = None,
                 codebook=None) -> _ProductUnit:
    """Build the product unit of ``scheme`` (a name of ``model.quant.SCHEMES``).

    ``binary``, ``ternary`` and ``pow2`` have fixed weight widths (``w_bits`` may be omitted);
    ``dorefa`` and ``int`` need ``w_bits``; ``xnor`` takes the lane count as ``a_bits`` (and
    ``w_bits``, if given, must be equal). ``codebook`` (``dorefa`` only: ``2**w_bits``
    integer levels, weight sharing) makes the LUT hold ``codebook[w] * a``. Bad arguments
    raise ``ValueError`` naming the bad value and what is allowed.
    """
    cls, kwargs = _unit_parameters(scheme, a_bits=a_bits, w_bits=w_bits, codebook=codebook)
    return cls(**kwargs, src_loc_at=1)


def _unit_parameters(scheme: str, *, a_bits, w_bits, codebook) -> tuple[type, dict]:
    """The class and keyword arguments ``product_unit`` builds, every argument checked the
    way the class itself checks it (no component is made)."""
    check_scheme(scheme)
    if codebook is not None:
        if scheme != "dorefa":
            raise ValueError(f"a codebook needs the table-look-up scheme 'dorefa', not "
                             f"{scheme!r}")
        _lut_parameters(a_bits, w_bits, codebook, False)
        return LutUnit, {"a_bits": a_bits, "w_bits": w_bits, "codebook": codebook}
    if scheme == "xnor":
        if w_bits is not None and w_bits != a_bits:
            raise ValueError(f"xnor takes the lane count as a_bits and w_bits; they must be "
                             f"equal, not {a_bits!r} and {w_bits!r}")
        check_bits("xnor lane count", a_bits, 1, 64)
        return XnorPopcountUnit, {"lanes": a_bits}
    if scheme in ("binary", "ternary", "pow2"):
        _check_fixed_weight_bits(scheme, w_bits)
        _signed_activation_bits(scheme, a_bits)
        return UNIT_CLASSES[scheme], {"a_bits": a_bits}
    if w_bits is None:
        raise ValueError(f"scheme {scheme!r} needs w_bits (the weight code width)")
    if scheme == "dorefa":
        _lut_parameters(a_bits, w_bits, None, False)
    else:
        _signed_activation_bits("int", a_bits)
        weight_bits("int", w_bits)
    return UNIT_CLASSES[scheme], {"a_bits": a_bits, "w_bits": w_bits}


def check_unit(scheme: str, *, a_bits, w_bits=None, codebook=None) -> None:
    """``ValueError`` (one line naming the bad value and what is allowed) unless
    ``product_unit`` builds a unit from these arguments; builds nothing."""
    _unit_parameters(scheme, a_bits=a_bits, w_bits=w_bits, codebook=codebook)
