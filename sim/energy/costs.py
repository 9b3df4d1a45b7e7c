"""What one access and one arithmetic operation cost: the cost tables.

``normalized``
    Eyeriss (Chen, Emer, Sze, ISCA 2016, Table IV; commercial 65 nm), relative to one
    16-bit MAC: DRAM 200, global buffer (> 100 kB) 6, array (inter-PE, 1-2 mm) 2, register
    file (0.5 kB) 1, ALU 1 -- per 16-bit word, scaled linearly for other widths (packed
    storage). The same cost is charged at a level whatever its size (the paper's choice,
    section VI-D). Product units other than the 16-bit multiplier cost their 45 nm energy
    divided by the 45 nm energy of a 16-bit MAC (``REFERENCE_MAC_PJ``).
a dict ``{level: cost}``
    A custom table in the normalised form (keys among dram, glb, array, rf, alu).
``45nm``
    Absolute picojoules from Horowitz (ISSCC 2014, 45 nm, 0.9 V) and Han et al. (NIPS 2015):

    - DRAM: 640 pJ per 32-bit word (20 pJ/bit; Horowitz gives 1.3-2.6 nJ per 64 bits, we
      take the low end, which is Han et al.'s figure).
    - SRAM (global buffer and register file): 64-bit reads cost 10 pJ at 8 KB, 20 pJ at
      32 KB, 100 pJ at 1 MB; energy per bit is interpolated linearly in log(size)-log(energy)
      between these points and extrapolated with the nearest segment (512 B: 0.039 pJ/bit,
      128 KB: 0.59 pJ/bit). *Assumption*: a register file costs what an SRAM of its size
      costs.
    - Array (one inter-PE transfer): twice a 512-B register-file access per bit, the Eyeriss
      ratio (no 45 nm figure exists). *Assumption.*
    - Arithmetic (8-bit add 0.03 pJ, 32-bit add 0.1 pJ, 8-bit multiply 0.2 pJ, 32-bit
      multiply 3.1 pJ): an add of b bits is linear through the two adder points
      (``0.03 + (b - 8) * 0.07 / 24``), proportional below 8 bits; an a x w-bit multiply
      ``0.2 * a * w / 64`` (array-multiplier area ~ a*w; 3.2 pJ at 32 bits against the
      measured 3.1); a full-adder cell is an 8-bit add / 8 (0.00375 pJ), an XOR, XNOR or
      2:1 mux cell half of one. *Assumptions.* How a product unit and its reduction tree
      add up from these is ``sim.energy.compute``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["COST_TABLES", "ENERGY_LEVELS", "CostTable", "cost_table", "add_pj", "multiply_pj",
           "sram_pj_per_bit", "FULL_ADDER_PJ", "GATE_PJ", "REFERENCE_MAC_PJ"]

#: Storage levels then the compute term.
ENERGY_LEVELS = ("dram", "glb", "array", "rf", "alu")
COST_TABLES = ("normalized", "45nm")

_ADD8_PJ, _ADD32_PJ = 0.03, 0.1
_MULT8_PJ = 0.2
_DRAM_PJ_PER_BIT = 640.0 / 32
_SRAM_POINTS = ((8 * 1024, 10.0 / 64), (32 * 1024, 20.0 / 64), (1024 * 1024, 100.0 / 64))
_HOP_REFERENCE_RF_BYTES = 512
#: One full-adder cell (an 8-bit add / 8) and one XOR/XNOR/mux cell (half of it), pJ.
FULL_ADDER_PJ = _ADD8_PJ / 8
GATE_PJ = FULL_ADDER_PJ / 2


def add_pj(bits: int) -> float:
    """Energy of one ``bits``-bit addition at 45 nm (pJ)."""
    if bits <= 8:
        return _ADD8_PJ * bits / 8
    return _ADD8_PJ + (bits - 8) * (_ADD32_PJ - _ADD8_PJ) / 24


def multiply_pj(a_bits: int, w_bits: int) -> float:
    """Energy of one ``a_bits`` x ``w_bits`` multiplication at 45 nm (pJ)."""
    return _MULT8_PJ * a_bits * w_bits / 64


def sram_pj_per_bit(size_bytes: float) -> float:
    """Read energy per bit of an SRAM of ``size_bytes`` at 45 nm (log-log interpolation)."""
    if size_bytes <= 0:
        raise ValueError(f"SRAM size must be > 0 bytes, not {size_bytes!r}")
    pts = _SRAM_POINTS
    if size_bytes <= pts[1][0]:
        (s0, e0), (s1, e1) = pts[0], pts[1]
    else:
        (s0, e0), (s1, e1) = pts[1], pts[2]
    slope = math.log(e1 / e0) / math.log(s1 / s0)
    return e0 * (size_bytes / s0) ** slope


#: 45 nm energy of the 16-bit MAC that the normalised table calls 1.
REFERENCE_MAC_PJ = multiply_pj(16, 16) + add_pj(16)


@dataclass(frozen=True)
class CostTable:
    """Cost of one access per level and of one MAC.

    ``normalized`` and custom tables price a 16-bit word at ``dram``/``glb``/``array``/``rf``
    (linear in the word width) and a MAC at ``alu`` times its 45 nm energy relative to a
    16-bit MAC; ``45nm`` uses the physical figures of the module docstring (the level fields
    are then unused).
    """

    name: str = "normalized"
    dram: float = 200.0
    glb: float = 6.0
    array: float = 2.0
    rf: float = 1.0
    alu: float = 1.0

    @property
    def unit(self) -> str:
        return {"normalized": "MAC-normalised", "45nm": "pJ"}.get(self.name, "custom")

    def access(self, level: str, bits: int, hw) -> float:
        """Energy of one access of a ``bits``-bit word at ``level`` of ``hw`` (a ``Hardware``:
        its ``glb_bytes`` and ``rf_bytes`` size the 45 nm SRAMs)."""
        if self.name != "45nm":
            return getattr(self, level) * bits / 16
        if level == "dram":
            per_bit = _DRAM_PJ_PER_BIT
        elif level == "glb":
            per_bit = sram_pj_per_bit(hw.glb_bytes)
        elif level == "rf":
            per_bit = sram_pj_per_bit(hw.rf_bytes) if hw.rf_bytes else 0.0
        else:
            per_bit = 2 * sram_pj_per_bit(_HOP_REFERENCE_RF_BYTES)
        return per_bit * bits

    def mac(self, pj: float) -> float:
        """Cost of one MAC whose 45 nm energy is ``pj`` (``sim.energy.compute``)."""
        return pj if self.name == "45nm" else self.alu * pj / REFERENCE_MAC_PJ


def cost_table(costs) -> CostTable:
    """``"normalized"``, ``"45nm"``, a ``CostTable``, or a dict of level costs (custom)."""
    if isinstance(costs, CostTable):
        return costs
    if isinstance(costs, str):
        if costs not in COST_TABLES:
            raise ValueError(f"unknown cost table {costs!r}; allowed: {', '.join(COST_TABLES)}")
        return CostTable(costs)
    if isinstance(costs, dict):
        unknown = set(costs) - set(ENERGY_LEVELS)
        if unknown:
            raise ValueError(f"unknown cost level(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(ENERGY_LEVELS)}")
        for k, v in costs.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 \
                    or not math.isfinite(v):
                raise ValueError(f"cost of {k!r} must be a finite number >= 0, not {v!r}")
        return CostTable("custom", **{k: float(v) for k, v in costs.items()})
    raise ValueError(f"costs must be one of {', '.join(COST_TABLES)} or a dict of level "
                     f"costs, not {costs!r}")
