"""cocotb testbench: every product unit of a ``sim.unit_bank.UnitBank`` against
``model.ops.product`` (and ``skip`` against ``model.quant.weight_level(...) == 0``).

One cocotb test per unit of the bank (``MULFREE_TB_CONFIG``: the bank's ``config()``).
Modes: ``exhaustive`` drives every legal (a, w) pair; ``exhaustive-a`` every activation with a
seeded random weight (all +1 and all -1 weights first); ``random`` the extreme codes crossed
with each other, then seeded random pairs.
"""

from __future__ import annotations

import itertools

import cocotb
import numpy as np
from cocotb.triggers import Timer

from model.ops import product
from model.quant import activation_code_range, weight_code_range, weight_level
from sim.tb import config, seed

RANDOM_PAIRS = 3000


def _codes(values) -> np.ndarray:
    values = [int(v) for v in values]
    return np.array(values, dtype=np.uint64 if values and max(values) >= 1 << 63 else np.int64)


def _extremes(lo: int, hi: int) -> list[int]:
    alternating = int("01" * 32, 2) & hi if lo == 0 else 0
    return sorted({lo, lo + 1, 0 if lo <= 0 else lo, 1, hi - 1, hi, alternating,
                   hi ^ alternating if lo == 0 else hi})


def stimulus(spec: dict, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """The (a, w) codes a unit described by ``spec`` is driven with."""
    scheme, a_bits, w_bits, mode = spec["scheme"], spec["a_bits"], spec["w_bits"], spec["mode"]
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits)
    if mode == "exhaustive":
        pairs = list(itertools.product(range(a_lo, a_hi + 1), range(w_lo, w_hi + 1)))
    elif mode == "exhaustive-a":
        a = list(range(a_lo, a_hi + 1))
        w = [w_lo, w_hi] + [int(x) for x in rng.integers(w_lo, w_hi, len(a) - 2, endpoint=True)]
        pairs = list(zip(a, w))
    elif mode == "random":
        pairs = list(itertools.product(_extremes(a_lo, a_hi), _extremes(w_lo, w_hi)))
        dtype = np.uint64 if a_hi >= 1 << 63 else np.int64
        a = rng.integers(a_lo, a_hi, RANDOM_PAIRS, endpoint=True, dtype=dtype)
        w = rng.integers(w_lo, w_hi, RANDOM_PAIRS, endpoint=True, dtype=dtype)
        pairs += [(int(x), int(y)) for x, y in zip(a, w)]
    else:
        raise ValueError(f"unknown stimulus mode {mode!r}; allowed: exhaustive, "
                         f"exhaustive-a, random")
    return [p[0] for p in pairs], [p[1] for p in pairs]


UNITS = config()["units"]


@cocotb.test()
@cocotb.parametrize(name=sorted(UNITS))
async def product_matches_model(dut, name):
    """Drive the unit ``name`` of the bank and compare every output with the model."""
    spec = UNITS[name]
    a_codes, w_codes = stimulus(spec, np.random.default_rng([seed(), len(name)]))
    port_a, port_w = getattr(dut, f"{name}__a"), getattr(dut, f"{name}__w")
    port_p = getattr(dut, f"{name}__p")
    port_skip = getattr(dut, f"{name}__skip") if spec["can_skip"] else None
    products, skips = [], []
    for a, w in zip(a_codes, w_codes):
        port_a.value = a
        port_w.value = w
        await Timer(1, unit="ns")
        products.append(port_p.value.to_signed())
        if port_skip is not None:
            skips.append(int(port_skip.value))
    a, w = _codes(a_codes), _codes(w_codes)
    expected = product(spec["scheme"], a, w, a_bits=spec["a_bits"], w_bits=spec["w_bits"])
    got = np.array(products, dtype=np.int64)
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, (
        f"{name}: {wrong.size} of {got.size} products differ from model.ops.product; first: "
        f"a={a_codes[wrong[0]]} w={w_codes[wrong[0]]} gave {got[wrong[0]]}, "
        f"model {expected[wrong[0]]}")
    if port_skip is not None:
        expected_skip = weight_level(spec["scheme"], w, spec["w_bits"]) == 0
        wrong = np.flatnonzero(np.array(skips, dtype=bool) != expected_skip)
        assert wrong.size == 0, (
            f"{name}: skip differs from weight_level == 0 at w={w_codes[wrong[0]]}")
    dut._log.info("%s: %d pairs equal to model.ops.product", name, got.size)
