"""Several product units side by side in one top module, so that one simulator build tests
every unit kind (a Verilator build costs tens of seconds; the units themselves are tiny).

Each unit ``NAME`` of the bank has the top-level ports ``NAME__a``, ``NAME__w``, ``NAME__p``
and, if it can skip, ``NAME__skip``, wired straight to the unit (``hw.units``): the bank
adds no logic. ``bank_config`` describes the bank for the cocotb testbench
(``sim.tb.units_tb``), which checks every unit against ``model.ops.product``.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.units import product_unit

__all__ = ["UnitBank", "REPRESENTATIVE_UNITS", "bank_config"]

#: name -> (scheme, a_bits, w_bits, how the testbench drives it): one of each kind at a
#: representative width; "exhaustive" = every (a, w) pair, "exhaustive-a" = every activation
#: with a random weight, "random" = seeded random pairs plus the extremes.
REPRESENTATIVE_UNITS = {
    "sign": ("binary", 8, None, "exhaustive"),
    "ternary": ("ternary", 8, None, "exhaustive"),
    "shift": ("pow2", 8, None, "exhaustive"),
    "lut": ("dorefa", 8, 4, "exhaustive"),
    "multiply": ("int", 8, 8, "exhaustive"),
    "xnor16": ("xnor", 16, None, "exhaustive-a"),
    "xnor64": ("xnor", 64, None, "random"),
}


class UnitBank(wiring.Component):
    """Product units side by side, each with its own ``NAME__a/w/p/skip`` ports.

    Combinational: latency 0. Model: ``model.ops.product`` for every unit.

    Parameters
    ----------
    units : dict
        name -> (unit, mode): a product unit (``hw.units``) and how the testbench drives it.
        ``UnitBank.representative()`` builds the bank of ``REPRESENTATIVE_UNITS``.
    """

    def __init__(self, units: dict):
        self._units = {name: unit for name, (unit, _) in units.items()}
        self._modes = {name: mode for name, (_, mode) in units.items()}
        members = {}
        for name, unit in self._units.items():
            members[f"{name}__a"] = In(unit.a.shape())
            members[f"{name}__w"] = In(unit.w.shape())
            members[f"{name}__p"] = Out(unit.p_shape)
            if unit.can_skip:
                members[f"{name}__skip"] = Out(1)
        super().__init__(members)

    @classmethod
    def representative(cls) -> "UnitBank":
        """One unit of each kind at the widths of ``REPRESENTATIVE_UNITS``."""
        return cls({name: (product_unit(scheme, a_bits=a_bits, w_bits=w_bits), mode)
                    for name, (scheme, a_bits, w_bits, mode) in REPRESENTATIVE_UNITS.items()})

    @property
    def units(self) -> dict:
        """name -> the product unit."""
        return dict(self._units)

    def config(self) -> dict:
        """What the testbench needs: per unit its scheme, widths, mode and ``can_skip``."""
        return bank_config(self._units, self._modes)

    def elaborate(self, platform):
        m = Module()
        for name, unit in self._units.items():
            m.submodules[name] = unit
            m.d.comb += [unit.a.eq(getattr(self, f"{name}__a")),
                         unit.w.eq(getattr(self, f"{name}__w")),
                         getattr(self, f"{name}__p").eq(unit.p)]
            if unit.can_skip:
                m.d.comb += getattr(self, f"{name}__skip").eq(unit.skip)
        return m


def bank_config(units: dict, modes: dict) -> dict:
    """The JSON-ready description of a bank of ``units`` (name -> unit) for the testbench."""
    return {"units": {name: {"scheme": unit.scheme, "a_bits": unit.a_bits,
                             "w_bits": unit.w_bits, "can_skip": unit.can_skip,
                             "mode": modes[name]}
                      for name, unit in units.items()}}
