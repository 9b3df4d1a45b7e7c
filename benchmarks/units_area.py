"""Area of every product unit and MAC cell, side by side with a real multiplier.

Synthesises each unit (``hw.units``) and MAC cell (``hw.mac``) with Yosys (YoWASP) for
iCE40 LUT-only (``synth_ice40``), iCE40 with DSP inference for the multiplier
(``synth_ice40 -dsp``) and ECP5 (``synth_ecp5``, which infers DSPs by default), at
activation widths 2, 4 and 8 (XNOR at 8, 16, 32 and 64 lanes), and prints one table:

- iCE40 LCs: logic cells after nextpnr-ice40's packer (``--pack-only`` on the UP5K), FFs,
  and the ratio to ``MultiplyUnit`` of the same kind at the same widths (k x k bits); XNOR
  rows are compared with the 8 x 8 multiplier;
- iCE40 + DSP: packed LCs and SB_MAC16 blocks;
- ECP5: LUT4s (a CCU2C carry cell counts as two), FFs, MULT18X18D blocks;
- MACs per cycle and MACs per LC (iCE40 LUT-only; an XNOR cell counts its lanes).

MAC cells are sized for the same window of 576 MACs (a 3 x 3 x 64 convolution): the
accumulator of ``model.ops.accumulator_width(..., fan_in=576)``, and for XNOR ``576 /
lanes`` packed words. DoReFa rows use 2-bit weights (``W2``) and, at 2 and 4 bits, also
k-bit weights for k-bit activations (``Wk``); the 8 x 8 table (65,536 entries) is left out by
default (``--lut8x8`` adds it; it takes Yosys several minutes).

Usage: ``python benchmarks/units_area.py [--lut8x8] [--json FILE]`` (a few minutes: YoWASP
runs Yosys and nextpnr as WebAssembly). The goals: every multiplier-free MAC cell at 8-bit
activations in at most 0.3x the LCs of the 8 x 8 multiplier MAC cell (LUT-only), and an
XNOR cell with at least 10x the MACs per LC of the multiplier cell.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from hw.generate import mac_design, unit_design  # noqa: E402
from sim.synth import synthesize  # noqa: E402

WINDOW_MACS = 576  # 3 x 3 x 64
A_WIDTHS = (2, 4, 8)
XNOR_LANES = (8, 16, 32, 64)
TARGETS = ("ice40", "ice40-dsp", "ecp5")
CHUNK = 8  # designs per Yosys run (one progress step)


@dataclass(frozen=True)
class Config:
    kind: str  # "unit" or "mac"
    scheme: str
    a_bits: int
    w_bits: int | None

    @property
    def lanes(self) -> int:
        return self.a_bits if self.scheme == "xnor" else 1

    @property
    def fan_in(self) -> int:
        return WINDOW_MACS // self.lanes

    @property
    def module(self) -> str:
        weights = f"w{self.w_bits}" if self.w_bits is not None else ""
        return f"{self.kind}_{self.scheme}_a{self.a_bits}{weights}"

    @property
    def label(self) -> str:
        unit = {"binary": "SignUnit", "ternary": "TernaryUnit", "pow2": "ShiftUnit",
                "dorefa": "LutUnit", "xnor": "XnorPopcountUnit", "int": "MultiplyUnit"}
        name = unit[self.scheme] + (" MAC" if self.kind == "mac" else "")
        if self.scheme == "xnor":
            return f"{name} ({self.lanes} lanes)"
        w = {"binary": 1, "ternary": 2, "pow2": 3}.get(self.scheme, self.w_bits)
        return f"{name} A{self.a_bits}W{w}"

    def baseline(self) -> "Config":
        """The multiplier of the same kind at the same (k x k) widths; 8 x 8 for XNOR."""
        k = 8 if self.scheme == "xnor" else self.a_bits
        return Config(self.kind, "int", k, k)

    def design(self):
        if self.kind == "unit":
            return unit_design(scheme=self.scheme, a_bits=self.a_bits, w_bits=self.w_bits,
                               module=self.module)
        return mac_design(scheme=self.scheme, a_bits=self.a_bits, w_bits=self.w_bits,
                          fan_in=self.fan_in, module=self.module)


def configs(with_lut8x8: bool) -> list[Config]:
    rows = []
    for kind in ("unit", "mac"):
        for a in A_WIDTHS:
            rows += [Config(kind, "int", a, a), Config(kind, "binary", a, None),
                     Config(kind, "ternary", a, None), Config(kind, "pow2", a, None),
                     Config(kind, "dorefa", a, 2)]
            if a < 8 or with_lut8x8:
                if a != 2:
                    rows.append(Config(kind, "dorefa", a, a))
        rows += [Config(kind, "xnor", lanes, None) for lanes in XNOR_LANES]
    return rows


def measure(rows: list[Config]) -> dict[str, dict[str, object]]:
    """module -> target -> ``sim.synth.Area``, with a progress bar on stderr."""
    designs = {}
    for row in tqdm(rows, desc="generate", unit="design", file=sys.stderr):
        designs[row.module] = row.design()
    chunks = [rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK)]
    areas: dict[str, dict[str, object]] = {row.module: {} for row in rows}
    with tqdm(total=len(chunks) * len(TARGETS), desc="synthesise", unit="run",
              file=sys.stderr) as bar:
        for target in TARGETS:
            for chunk in chunks:
                bar.set_postfix_str(f"{target}: {chunk[0].module}..")
                sources = {f"{row.module}.v": designs[row.module].verilog for row in chunk}
                found = synthesize(sources, [row.module for row in chunk], target,
                                   pack=target.startswith("ice40"))
                for module, area in found.items():
                    areas[module][target] = area
                bar.update()
    return areas


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"


def table(rows: list[Config], areas) -> list[str]:
    lines = ["| design | iCE40 LC | FF | LC / mult | iCE40+DSP LC | DSP | ECP5 LUT | FF | DSP "
             "| MACs/cycle | MACs/LC |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ice40, dsp, ecp5 = (areas[row.module][t] for t in TARGETS)
        base = areas[row.baseline().module]["ice40"]
        mark = " †" if row.scheme == "xnor" else ""
        lines.append(
            f"| {row.label} | {ice40.lcs} | {ice40.ffs} | {ratio(ice40.lcs, base.lcs)}{mark} "
            f"| {dsp.lcs} | {dsp.dsps} | {ecp5.luts} | {ecp5.ffs} | {ecp5.dsps} "
            f"| {row.lanes} | {row.lanes / ice40.lcs:.4f} |")
    return lines


def goals(rows: list[Config], areas) -> list[str]:
    mult = areas[Config("mac", "int", 8, 8).module]["ice40"].lcs
    lines = [f"Goal 1: every multiplier-free MAC cell at 8-bit activations in <= 0.3x the "
             f"{mult} LCs of the 8x8 multiplier MAC cell (iCE40, LUT-only):"]
    for row in rows:
        if row.kind == "mac" and row.a_bits == 8 and row.scheme not in ("int", "xnor"):
            lcs = areas[row.module]["ice40"].lcs
            verdict = "meets" if lcs <= 0.3 * mult else "misses"
            lines.append(f"  {row.label}: {lcs} LCs = {lcs / mult:.2f}x ({verdict})")
    lines.append(f"Goal 2: an XNOR MAC cell with >= 10x the MACs per LC of the multiplier "
                 f"MAC cell (1 / {mult} = {1 / mult:.4f}):")
    for row in rows:
        if row.kind == "mac" and row.scheme == "xnor":
            lcs = areas[row.module]["ice40"].lcs
            gain = (row.lanes / lcs) / (1 / mult)
            verdict = "meets" if gain >= 10 else "misses"
            lines.append(f"  {row.label}: {row.lanes / lcs:.4f} MACs/LC = {gain:.1f}x "
                         f"({verdict})")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lut8x8", action="store_true",
                        help="also synthesise the 8x8 DoReFa table (65,536 entries; slow)")
    parser.add_argument("--json", metavar="FILE", help="also write the cell counts as JSON")
    args = parser.parse_args(argv)
    rows = configs(args.lut8x8)
    areas = measure(rows)
    print("\n".join(table(rows, areas)))
    print()
    print(f"MAC cells accumulate a window of {WINDOW_MACS} MACs. LC / mult: iCE40 LCs over "
          "those of MultiplyUnit (k x k bits) of the same kind; † against the 8 x 8 one.")
    print()
    print("\n".join(goals(rows, areas)))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {row.module: {t: {"cells": a.cells, "lcs": a.lcs, "luts": a.luts, "ffs": a.ffs,
                              "dsps": a.dsps}
                          for t, a in areas[row.module].items()} for row in rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
