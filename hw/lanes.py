"""A PE's lanes: ``lanes`` products of one slot, summed by a reduction tree.

``LaneDot`` takes a word of ``lanes`` activation codes and a word of ``lanes`` weight codes
(lane ``l`` in bits ``[l * bits, (l + 1) * bits)`` of each word) and gives their exact dot
product. Every scheme uses the same structure: one term per lane, a balanced adder tree over
the terms (``stages`` pipeline registers spread over its levels), and an output map:

- ``binary``, ``ternary``, ``pow2``, ``dorefa`` (and a codebook), ``int``: the term of a lane
  is its product unit's product (``hw.units.product_unit``); the dot is the tree's sum;
- ``xnor`` (1-bit codes, bit 1 means -1): the term of a lane is ``a ^ w`` (1 when the two
  signs differ), the tree is a popcount and the dot is ``real - 2 * popcount``, ``real`` being
  ``lanes - idle`` (the padded lanes of a layer's last channel word carry zero bits in both
  words and are taken out through ``idle``).

Padded lanes of the other schemes carry zero activation codes, so their products are 0.

``zero_lanes`` builds, for a weight word, the mask of lanes whose weight level is 0 and its
count among the real lanes (the skipped MACs a PE row reports).

Latency: ``stages`` cycles (0: combinational). Throughput: one word pair per cycle.

Model: ``model.ops.lane_dot``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.units import product_unit
from model.ops import lane_dot_range, signed_width
from model.quant import activation_code_range, check_bits, check_scheme, weight_bits

__all__ = ["LaneDot", "adder_tree", "lane_code_bits", "zero_codes", "zero_lanes"]


def adder_tree(m: Module, terms, *, stages: int = 0, domain: str = "sync", name: str = "t"):
    """Sum ``terms`` (Amaranth values of one signedness) with a balanced tree of two-input
    adders, each sum just as wide as it must be. ``stages`` register stages are spread over
    the tree: after level ``c`` for ``c = k * (levels + 1) // (stages + 1)``, ``k = 1 ..
    stages`` (level 0 is the terms themselves). Returns ``(total, levels)``."""
    terms = list(terms)
    levels = (len(terms) - 1).bit_length()
    cuts = [min(levels, k * (levels + 1) // (stages + 1)) for k in range(1, stages + 1)]

    def registered(values, level):
        for n in range(cuts.count(level)):
            regs = []
            for i, v in enumerate(values):
                r = Signal(v.shape(), name=f"{name}{level}_r{n}_{i}")
                m.d[domain] += r.eq(v)
                regs.append(r)
            values = regs
        return values

    terms = registered(terms, 0)
    for level in range(1, levels + 1):
        pairs = []
        for i in range(0, len(terms) - 1, 2):
            total = Signal((terms[i] + terms[i + 1]).shape(), name=f"{name}{level}_{i // 2}")
            m.d.comb += total.eq(terms[i] + terms[i + 1])
            pairs.append(total)
        if len(terms) % 2:
            pairs.append(terms[-1])
        terms = registered(pairs, level)
    return terms[0], levels


def lane_code_bits(scheme: str, *, a_bits: int, w_bits: int | None = None,
                   codebook=None) -> tuple[int, int]:
    """``(a_bits, w_bits)`` of one lane of ``scheme`` (``xnor``: 1 and 1), validated
    (``ValueError`` naming the bad value) without building any hardware."""
    check_scheme(scheme)
    if scheme == "xnor":
        if a_bits != 1 or w_bits not in (None, 1):
            raise ValueError(f"xnor lanes hold 1-bit codes: a_bits and w_bits must be 1, not "
                             f"{a_bits!r} and {w_bits!r}")
        return 1, 1
    if codebook is not None:
        if scheme != "dorefa":
            raise ValueError(f"a codebook needs the table-look-up scheme 'dorefa', not "
                             f"{scheme!r}")
        w_bits = weight_bits("dorefa", w_bits)
        levels = tuple(codebook)
        if len(levels) != 1 << w_bits:
            raise ValueError(f"codebook must have 2^{w_bits} = {1 << w_bits} levels, not "
                             f"{len(levels)}")
        for level in levels:
            if isinstance(level, bool) or not hasattr(level, "__index__"):
                raise ValueError(f"codebook levels must be integers, not {level!r}")
        return check_bits("activation width of a codebook table", a_bits, 1, 16), w_bits
    activation_code_range(scheme, a_bits)
    w_bits = weight_bits(scheme, w_bits)
    if scheme == "dorefa" and a_bits + w_bits > 16:
        raise ValueError(f"a dorefa table of 2^{w_bits} x 2^{a_bits} entries is too large; "
                         f"allowed: a_bits + w_bits <= 16")
    return int(a_bits), w_bits


def zero_codes(scheme: str, w_bits: int, codebook=None) -> list[int]:
    """The weight codes (bit patterns) whose level is 0."""
    if codebook is not None:
        return [q for q, level in enumerate(codebook) if level == 0]
    if scheme in ("ternary", "pow2"):
        return [0]
    return []


def zero_lanes(m: Module, word, *, lanes: int, w_bits: int, codes, real):
    """``(mask, count)``: the lanes of ``word`` whose weight code is in ``codes`` (level 0),
    and how many of them are below ``real`` (the real lanes). Combinational."""
    mask = Signal(lanes, name="zero_mask")
    for lane in range(lanes):
        w = word[lane * w_bits:(lane + 1) * w_bits]
        m.d.comb += mask[lane].eq(Cat(*(w == c for c in codes)).any() if codes else 0)
    gated = Signal(lanes, name="zero_real")
    m.d.comb += gated.eq(mask & Cat(*(Const(lane) < real for lane in range(lanes))))
    count, _ = adder_tree(m, [gated[lane] for lane in range(lanes)], name="zc")
    total = Signal(range(lanes + 1), name="zero_count")
    m.d.comb += total.eq(count)
    return mask, total


class LaneDot(wiring.Component):
    """Exact dot product of one activation word and one weight word (module docstring).

    Parameters
    ----------
    scheme : str
        A name of ``model.quant.SCHEMES``.
    lanes : int
        Codes per word (1 to 64).
    a_bits, w_bits : int
        Code widths per lane (``xnor``: 1 and 1).
    codebook : sequence of int, optional
        ``dorefa`` table with one integer level per weight code.
    stages : int
        Pipeline registers in the tree (latency).

    Members
    -------
    a : In(unsigned(lanes * a_bits))
    w : In(unsigned(lanes * w_bits))
    idle : In(range(lanes)), ``xnor`` only
        Padded lanes of this word (their bits are 0 in both words).
    p : Out(signed(width))
        The dot, ``stages`` cycles after ``a`` and ``w``; the smallest width holding
        ``model.ops.lane_dot_range``.
    """

    def __init__(self, scheme: str, *, lanes: int, a_bits: int, w_bits: int | None = None,
                 codebook=None, stages: int = 0):
        self._a_bits, self._w_bits = lane_code_bits(scheme, a_bits=a_bits, w_bits=w_bits,
                                                    codebook=codebook)
        self._lanes = check_bits("lanes", lanes, 1, 64)
        self._stages = check_bits("tree stages", stages, 0, 4)
        self._scheme = scheme
        self._codebook = None if codebook is None else tuple(int(v) for v in codebook)
        lo, hi = lane_dot_range(scheme, lanes=lanes, a_bits=self._a_bits,
                                w_bits=self._w_bits, codebook=self._codebook)
        self._p_shape = signed(signed_width(lo, hi))
        members = {"a": In(lanes * self._a_bits), "w": In(lanes * self._w_bits),
                   "p": Out(self._p_shape)}
        if scheme == "xnor":
            members["idle"] = In(range(max(2, lanes)))
        super().__init__(members)

    scheme = property(lambda self: self._scheme)
    lanes = property(lambda self: self._lanes)
    a_bits = property(lambda self: self._a_bits)
    w_bits = property(lambda self: self._w_bits)
    stages = property(lambda self: self._stages)
    p_shape = property(lambda self: self._p_shape)

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        L, ab, wb = self._lanes, self._a_bits, self._w_bits
        a = self.a
        w = self.w
        if self._scheme == "xnor":
            terms = [(a[lane] ^ w[lane]) for lane in range(L)]
            count, _ = adder_tree(m, terms, stages=self._stages, name="pc")
            idle = self.idle
            for _ in range(self._stages):          # keep idle in step with the tree
                r = Signal.like(idle)
                m.d.sync += r.eq(idle)
                idle = r
            m.d.comb += self.p.eq(Const(L, self._p_shape) - idle - (count << 1))
            return m
        terms = []
        layout = data.ArrayLayout(unsigned(ab), L)
        a_lanes = data.View(layout, a)
        w_lanes = data.View(data.ArrayLayout(unsigned(wb), L), w)
        for lane in range(L):
            unit = product_unit(self._scheme, a_bits=ab, w_bits=wb, codebook=self._codebook)
            m.submodules[f"lane{lane}"] = unit
            m.d.comb += [unit.a.eq(a_lanes[lane]), unit.w.eq(w_lanes[lane])]
            terms.append(unit.p)
        total, _ = adder_tree(m, terms, stages=self._stages, name="sum")
        m.d.comb += self.p.eq(total)
        return m
