# amaranth: UnusedElaboratable=no
# (units built here only to inspect their interface are never elaborated, on purpose)
"""Product units in the Amaranth simulator against ``model.ops.product``.

Exhaustive over every (activation, weight) pair for every width up to 8 bits; XNOR
exhaustive over the activation (with a random weight per pair) up to 16 lanes; seeded random
with the extremes beyond.
"""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Mux, Shape, signed, unsigned
from amaranth.sim import Simulator

from hw import units
from hw.units import (LutUnit, MultiplyUnit, ShiftUnit, SignUnit, TernaryUnit,
                      XnorPopcountUnit, check_unit, product_unit)
from model.ops import product, product_range, signed_width
from model.quant import activation_code_range, weight_code_range, weight_level

def rtl_products(unit, a_codes, w_codes):
    """Drive every (a, w) pair through ``unit``; return ``p`` (and ``skip``, if any)."""
    products, skips = [], []

    async def testbench(ctx):
        for a, w in zip(a_codes, w_codes):
            ctx.set(unit.a, int(a))
            ctx.set(unit.w, int(w))
            products.append(ctx.get(unit.p))
            if unit.can_skip:
                skips.append(ctx.get(unit.skip))

    sim = Simulator(unit)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(products, dtype=np.int64), np.array(skips, dtype=np.int64)


def all_pairs(scheme, a_bits, w_bits=None):
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits)
    grid = np.array(list(itertools.product(range(a_lo, a_hi + 1), range(w_lo, w_hi + 1))))
    return grid[:, 0], grid[:, 1]


def random_pairs(scheme, a_bits, w_bits=None, *, count=2000, seed=0):
    """Seeded random pairs, led by every combination of the extreme codes."""
    rng = np.random.default_rng(seed)
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits)
    a_edges = sorted({a_lo, a_lo + 1, -1 if a_lo < 0 else 0, 0, 1, a_hi - 1, a_hi})
    w_edges = sorted({w_lo, w_lo + 1, w_hi - 1, w_hi, 0 if w_lo <= 0 else w_lo})
    edges = np.array(list(itertools.product(a_edges, w_edges)))
    a = np.concatenate([edges[:, 0], rng.integers(a_lo, a_hi, count, endpoint=True)])
    w = np.concatenate([edges[:, 1], rng.integers(w_lo, w_hi, count, endpoint=True)])
    return a, w


def check_against_model(scheme, a_bits, w_bits, a, w):
    unit = product_unit(scheme, a_bits=a_bits, w_bits=w_bits)
    p, skip = rtl_products(unit, a, w)
    np.testing.assert_array_equal(p, product(scheme, a, w, a_bits=a_bits, w_bits=w_bits))
    if unit.can_skip:
        np.testing.assert_array_equal(skip, weight_level(scheme, w, w_bits) == 0)


# --- exhaustive up to 8 bits ---------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["binary", "ternary", "pow2"])
@pytest.mark.parametrize("a_bits", range(2, 9))
def test_fixed_weight_units_exhaustive(scheme, a_bits):
    check_against_model(scheme, a_bits, None, *all_pairs(scheme, a_bits))


@pytest.mark.parametrize("a_bits, w_bits", list(itertools.product(range(2, 9), range(2, 9))))
def test_multiply_unit_exhaustive(a_bits, w_bits):
    check_against_model("int", a_bits, w_bits, *all_pairs("int", a_bits, w_bits))


@pytest.mark.parametrize("a_bits, w_bits", list(itertools.product(range(1, 9), range(1, 9))))
def test_lut_unit_exhaustive(a_bits, w_bits):
    check_against_model("dorefa", a_bits, w_bits, *all_pairs("dorefa", a_bits, w_bits))


@pytest.mark.parametrize("lanes", range(1, 17))
def test_xnor_unit_exhaustive_over_activations(lanes):
    rng = np.random.default_rng(lanes)
    a = np.arange(1 << lanes)
    w = rng.integers(0, (1 << lanes) - 1, a.size, endpoint=True)
    w[:2] = [0, (1 << lanes) - 1]  # all +1 and all -1 weights
    check_against_model("xnor", lanes, None, a, w)


@pytest.mark.parametrize("lanes", range(1, 6))
def test_xnor_unit_exhaustive_over_both(lanes):
    check_against_model("xnor", lanes, None, *all_pairs("xnor", lanes, lanes))


# --- seeded random beyond 8 bits, with the extremes -----------------------------------------

@pytest.mark.parametrize("scheme, a_bits, w_bits", [
    ("binary", 12, None), ("binary", 32, None),
    ("ternary", 16, None), ("ternary", 32, None),
    ("pow2", 16, None), ("pow2", 32, None),
    ("int", 16, 16), ("int", 32, 16), ("int", 9, 3),
    ("dorefa", 12, 4), ("dorefa", 15, 1), ("dorefa", 9, 7),
])
def test_units_random_beyond_8_bits(scheme, a_bits, w_bits):
    check_against_model(scheme, a_bits, w_bits, *random_pairs(scheme, a_bits, w_bits,
                                                                seed=a_bits))


@pytest.mark.parametrize("lanes", [17, 31, 32, 33, 63, 64])
def test_xnor_unit_random_beyond_16_lanes(lanes):
    top = (1 << lanes) - 1
    alternating = int("01" * 32, 2) & top
    edges = [0, top, alternating, top ^ alternating, 1, 1 << (lanes - 1)]
    rng = np.random.default_rng(lanes)
    pairs = list(itertools.product(edges, edges))
    a = [x for x, _ in pairs] + [int(x) for x in rng.integers(0, top, 1000, endpoint=True,
                                                              dtype=np.uint64)]
    w = [y for _, y in pairs] + [int(x) for x in rng.integers(0, top, 1000, endpoint=True,
                                                              dtype=np.uint64)]
    # 64-lane codes need every bit: uint64 (what model.quant.pack_pm1 gives for 64 lanes).
    dtype = np.uint64 if lanes == 64 else np.int64
    check_against_model("xnor", lanes, None, np.array(a, dtype=dtype), np.array(w, dtype=dtype))


# --- LutUnit with a shared-weight codebook --------------------------------------------------

@pytest.mark.parametrize("a_bits, w_bits, signed_activations", [
    (4, 2, False), (6, 3, True), (8, 4, True), (5, 1, False)])
def test_lut_unit_codebook_exhaustive(a_bits, w_bits, signed_activations):
    rng = np.random.default_rng(a_bits * 10 + w_bits)
    codebook = [int(x) for x in rng.integers(-100, 100, 1 << w_bits, endpoint=True)]
    codebook[0] = 0  # a pruned weight: the unit must skip it
    codebook[-1] = -128
    unit = LutUnit(a_bits=a_bits, w_bits=w_bits, codebook=codebook,
                   signed_activations=signed_activations)
    assert unit.scheme == "codebook" and unit.can_skip and unit.levels == tuple(codebook)
    assert unit.a.shape() == (signed(a_bits) if signed_activations else unsigned(a_bits))
    a_lo = -(1 << (a_bits - 1)) if signed_activations else 0
    a_hi = (1 << (a_bits - 1)) - 1 if signed_activations else (1 << a_bits) - 1
    grid = np.array(list(itertools.product(range(a_lo, a_hi + 1), range(1 << w_bits))))
    a, w = grid[:, 0], grid[:, 1]
    p, skip = rtl_products(unit, a, w)
    levels = np.array(codebook, dtype=np.int64)
    np.testing.assert_array_equal(p, levels[w] * a)
    np.testing.assert_array_equal(skip, levels[w] == 0)


def test_lut_unit_codebook_without_zero_cannot_skip():
    unit = LutUnit(a_bits=3, w_bits=1, codebook=[3, -5])
    assert not unit.can_skip and "skip" not in unit.signature.members
    p, _ = rtl_products(unit, [7, 7, 0], [0, 1, 1])
    np.testing.assert_array_equal(p, [21, -35, 0])
    assert unit.p_shape == signed(signed_width(-35, 21))


# --- interface contract ---------------------------------------------------------------------

@pytest.mark.parametrize("scheme, a_bits, w_bits, cls, a_shape, w_shape, can_skip", [
    ("binary", 8, None, SignUnit, signed(8), unsigned(1), False),
    ("ternary", 8, None, TernaryUnit, signed(8), signed(2), True),
    ("pow2", 8, None, ShiftUnit, signed(8), signed(3), True),
    ("dorefa", 4, 2, LutUnit, unsigned(4), unsigned(2), False),
    ("int", 8, 6, MultiplyUnit, signed(8), signed(6), False),
    ("xnor", 16, None, XnorPopcountUnit, unsigned(16), unsigned(16), False),
])
def test_interface_contract(scheme, a_bits, w_bits, cls, a_shape, w_shape, can_skip):
    unit = product_unit(scheme, a_bits=a_bits, w_bits=w_bits)
    assert type(unit) is cls
    assert unit.scheme == scheme and unit.a_bits == a_bits and unit.can_skip is can_skip
    assert unit.w_bits == (w_bits if w_bits is not None else w_shape.width)
    lo, hi = product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    assert unit.p_shape == signed(signed_width(lo, hi))
    members = unit.signature.members
    assert members["a"].flow.name == "In" and members["a"].shape == a_shape
    assert members["w"].flow.name == "In" and members["w"].shape == w_shape
    assert members["p"].flow.name == "Out" and members["p"].shape == unit.p_shape
    assert ("skip" in members) is can_skip
    if can_skip:
        assert members["skip"].flow.name == "Out"
        assert Shape.cast(members["skip"].shape) == unsigned(1)
    for name in ("scheme", "a_bits", "w_bits", "p_shape", "can_skip"):
        with pytest.raises(AttributeError):
            setattr(unit, name, None)


def test_product_widths_hold_the_extremes():
    # -1 * (-2^7) = +128 needs 9 bits; -2 * (-2^7) = 256 needs 10; (2*255-255)*255 needs 17.
    assert product_unit("binary", a_bits=8).p_shape == signed(9)
    assert product_unit("pow2", a_bits=8).p_shape == signed(10)
    assert product_unit("dorefa", a_bits=8, w_bits=8).p_shape == signed(17)
    assert product_unit("int", a_bits=8, w_bits=8).p_shape == signed(16)
    assert product_unit("xnor", a_bits=64).p_shape == signed(8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(scheme="float", a_bits=8), "unknown scheme 'float'"),
    (dict(scheme="ternary", a_bits=1), "activation width of scheme 'ternary'"),
    (dict(scheme="ternary", a_bits=8, w_bits=3), "w_bits must be 2 or omitted, not 3"),
    (dict(scheme="binary", a_bits=40), "not 40"),
    (dict(scheme="int", a_bits=8), "needs w_bits"),
    (dict(scheme="int", a_bits=8, w_bits=17), "weight width of scheme 'int'"),
    (dict(scheme="dorefa", a_bits=10, w_bits=8), r"a_bits \+ w_bits <= 16"),
    (dict(scheme="xnor", a_bits=65), "xnor"),
    (dict(scheme="xnor", a_bits=8, w_bits=16), "must be equal"),
    (dict(scheme="pow2", a_bits="8"), "not '8'"),
])
def test_product_unit_rejects_bad_arguments(kwargs, message, monkeypatch):
    with pytest.raises(ValueError, match=message):
        check_unit(**kwargs)
    # product_unit refuses them before it makes any component (none is left half-made)
    def no_component(cls, *args, **kwargs):
        raise AssertionError(f"{cls.__name__} was made for bad arguments")
    monkeypatch.setattr(units._ProductUnit, "__new__", no_component)
    with pytest.raises(ValueError, match=message):
        product_unit(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(scheme="ternary", a_bits=8), dict(scheme="dorefa", a_bits=3, w_bits=2),
    dict(scheme="dorefa", a_bits=3, w_bits=2, codebook=(0, 1, -1, 2)),
    dict(scheme="xnor", a_bits=16), dict(scheme="int", a_bits=4, w_bits=4)])
def test_check_unit_accepts_what_product_unit_builds(kwargs):
    check_unit(**kwargs)
    assert product_unit(**kwargs).scheme in (kwargs["scheme"], "codebook")


@pytest.mark.parametrize("kwargs, message", [
    (dict(a_bits=4, w_bits=2, codebook=[1, 2, 3]), "2\\^2 = 4 levels, not 3"),
    (dict(a_bits=4, w_bits=1, codebook=[1, 0.5]), "integers, not 0.5"),
    (dict(a_bits=4, w_bits=1, signed_activations=True), "needs a codebook"),
])
def test_lut_unit_rejects_bad_codebooks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LutUnit(**kwargs)


# --- the ladder can fail ------------------------------------------------------------------

class SignUnitWithoutCarry(SignUnit):
    """A deliberately wrong sign unit: its negate forgets the +1 (one's complement)."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(Mux(self.w, ~self.a, self.a))
        return m


def test_a_wrong_unit_is_caught():
    a, w = all_pairs("binary", 8)
    p, _ = rtl_products(SignUnitWithoutCarry(a_bits=8), a, w)
    expected = product("binary", a, w, a_bits=8)
    with pytest.raises(AssertionError, match="Mismatched elements: 256 / 512"):
        np.testing.assert_array_equal(p, expected)
    np.testing.assert_array_equal(p[w == 1], expected[w == 1] - 1)


# --- shared weights through the factory -----------------------------------------------------

def test_product_unit_with_a_codebook_builds_the_shared_weight_table():
    codebook = [0, -3, 5, 7]
    unit = product_unit("dorefa", a_bits=3, w_bits=2, codebook=codebook)
    assert isinstance(unit, LutUnit) and unit.scheme == "codebook" and unit.can_skip
    a, w = np.meshgrid(np.arange(8), np.arange(4))
    p, skip = rtl_products(unit, a.ravel(), w.ravel())
    np.testing.assert_array_equal(p, np.array(codebook)[w.ravel()] * a.ravel())
    np.testing.assert_array_equal(skip, w.ravel() == 0)
    with pytest.raises(ValueError, match="needs the table-look-up scheme 'dorefa', not 'int'"):
        product_unit("int", a_bits=3, w_bits=2, codebook=codebook)
