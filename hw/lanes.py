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

``ModeDot`` is the dot of a PE with several datapaths (*modes*, ``hw.schedule.Datapath``):
every mode reads the same activation word (every mode's ``lanes * a_bits`` is one width) and
the low ``lanes * w_bits`` bits of the weight word (as wide as the widest mode's), and
``mode`` (static during a layer) picks the mode's dot. Modes of the sign family
(``SIGN_FAMILY``: ``binary``, ``ternary``, ``pow2``, whose weight codes are signed levels
decoded by sign, skip and shift) with the same lanes and activation width share one
``LaneDot`` of the family's richest scheme: each lane's weight code is first rewritten as
that scheme's code of the same level (``head_codes``; in the array once per PE row, for all
its PEs). Every other mode has a ``LaneDot`` of its own.

Latency: ``stages`` cycles (0: combinational). Throughput: one word pair per cycle.

Model: ``model.ops.lane_dot``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.schedule import Datapath, check_modes
from hw.units import product_unit
from model.ops import lane_dot_range, signed_width
from model.quant import activation_code_range, check_bits, check_scheme, weight_bits

__all__ = ["LaneDot", "ModeDot", "SIGN_FAMILY", "adder_tree", "lane_code_bits", "zero_codes",
           "zero_lanes", "mode_groups", "head_codes"]

#: Schemes whose weight code is a signed level (``binary``: its sign bit) decoded by sign,
#: skip and shift, from the poorest to the richest: a ``pow2`` unit computes every level of
#: the others.
SIGN_FAMILY = ("binary", "ternary", "pow2")


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


def mode_groups(modes, *, share: bool = True) -> list[tuple[Datapath, tuple[int, ...]]]:
    """How ``ModeDot`` builds the dots of ``modes``: ``(datapath of one LaneDot, the modes it
    computes)`` per LaneDot. With ``share``, modes of ``SIGN_FAMILY`` with the same lanes and
    activation width share the LaneDot of their richest scheme."""
    groups: list[tuple[Datapath, list[int]]] = []
    shared: dict[tuple, int] = {}
    for k, d in enumerate(modes):
        if share and d.scheme in SIGN_FAMILY:
            at = shared.get((d.lanes, d.a_bits))
            if at is not None:
                head, members = groups[at]
                if SIGN_FAMILY.index(d.scheme) > SIGN_FAMILY.index(head.scheme):
                    head = d
                groups[at] = (head, members + [k])
                continue
            shared[(d.lanes, d.a_bits)] = len(groups)
        groups.append((d, [k]))
    return [(head, tuple(members)) for head, members in groups]


def _family_code(code, scheme: str, target: str):
    """``target``'s weight code (``SIGN_FAMILY``) of the level of ``scheme``'s ``code``."""
    width = weight_bits(target)
    if scheme == "binary":                      # 1 means -1: 0b..11 is -1, 0b..01 is +1
        return Cat(Const(1, 1), code.replicate(width - 1))
    return Cat(code, code[-1].replicate(width - len(code)))     # sign-extended level


class ModeDot(wiring.Component):
    """The dot of one slot in the layer's mode (module docstring).

    Parameters
    ----------
    modes : sequence of hw.schedule.Datapath
        The PE's datapaths, mode 0 first (``hw.schedule.check_modes``).
    stages : int
        Pipeline registers in each tree (latency).
    share : bool
        Share one LaneDot among sign-family modes of the same lanes and activation width
        (``mode_groups``); otherwise every mode has its own.
    translate : bool
        Rewrite a shared group's codes as its head's here (``head_codes``); False: ``w``
        arrives rewritten already (the array does it once per PE row).

    Members
    -------
    a : In(unsigned(a_word_bits))
        The activation word (the same width in every mode).
    w : In(unsigned(widest lanes * w_bits))
        The weight word; a mode reads its low ``lanes * w_bits`` bits.
    mode : In(range(len(modes))), with more than one mode
        The layer's mode (held for the whole layer).
    idle : In(range(xnor lanes)), when a mode is ``xnor``
        Padded lanes of this word in the ``xnor`` mode.
    p : Out(signed(width))
        The mode's dot, ``stages`` cycles after ``a`` and ``w``; wide enough for every mode's
        ``model.ops.lane_dot_range``.
    """

    def __init__(self, modes, *, stages: int = 0, share: bool = True, translate: bool = True):
        self._modes = check_modes(modes)
        self._translate = bool(translate)
        self._stages = check_bits("tree stages", stages, 0, 4)
        self._groups = mode_groups(self._modes, share=share)
        lo = hi = 0
        for d in self._modes:
            d_lo, d_hi = lane_dot_range(d.scheme, lanes=d.lanes, a_bits=d.a_bits,
                                        w_bits=d.w_bits, codebook=d.codebook)
            lo, hi = min(lo, d_lo), max(hi, d_hi)
        self._p_shape = signed(signed_width(lo, hi))
        members = {"a": In(self._modes[0].a_word_bits),
                   "w": In(max(d.w_word_bits for d in self._modes)), "p": Out(self._p_shape)}
        if len(self._modes) > 1:
            members["mode"] = In(range(len(self._modes)))
        xnor = [d.lanes for d in self._modes if d.scheme == "xnor"]
        if xnor:
            members["idle"] = In(range(max(2, xnor[0])))
        super().__init__(members)

    modes = property(lambda self: self._modes)
    groups = property(lambda self: self._groups)
    p_shape = property(lambda self: self._p_shape)

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        w = self.w
        if self._translate:
            w = head_codes(m, w, self._modes, getattr(self, "mode", None), self._groups)
        outputs = []
        for g, (head, members) in enumerate(self._groups):
            dot = LaneDot(head.scheme, lanes=head.lanes, a_bits=head.a_bits,
                          w_bits=head.w_bits, codebook=head.codebook, stages=self._stages)
            m.submodules[f"dot{g}"] = dot
            m.d.comb += [dot.a.eq(self.a), dot.w.eq(w[:head.w_word_bits])]
            if head.scheme == "xnor":
                m.d.comb += dot.idle.eq(self.idle)
            outputs.append((members, dot.p))
        p = outputs[0][1]
        for members, value in outputs[1:]:
            p = Mux(Cat(*(self.mode == k for k in members)).any(), value, p)
        m.d.comb += self.p.eq(p)
        return m


def head_codes(m: Module, word, modes, mode, groups, *, name: str = "head_codes"):
    """``word`` (a weight word of mode ``mode``) with its lanes rewritten as the head's codes
    when ``mode`` is in a shared group of ``groups`` (``mode_groups``), as the group's LaneDot
    reads them; ``word`` itself in any other mode (or when no group is shared)."""
    shared = [(head, members) for head, members in groups if len(members) > 1]
    if not shared:
        return word
    out = Signal(len(word), name=name)
    m.d.comb += out.eq(word)
    for head, members in shared:
        hb = head.w_bits
        lanes = []
        for lane in range(head.lanes):
            code = None
            for k in members:
                d = modes[k]
                mine = _family_code(word[lane * d.w_bits:(lane + 1) * d.w_bits], d.scheme,
                                    head.scheme)
                code = mine if code is None else Mux(mode == k, mine, code)
            lanes.append(code)
        with m.If(Cat(*(mode == k for k in members)).any()):
            m.d.comb += out[:head.lanes * hb].eq(Cat(*lanes))
    return out
