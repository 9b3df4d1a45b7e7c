"""The cost of a second datapath mode: one accelerator for two schemes against each alone.

Yosys (``sim.synth``: ``synth_ice40`` with the UP5K's packed logic cells, ``synth_ecp5``) of
2x2 accelerators (``hw.accelerator.Accelerator``: 20-bit sums, 32-word scratchpad banks,
256-word buffers, 20-bit counters) with one mode and with two
(``hw.schedule.AcceleratorConfig.more_modes``):

- the BinaryNet pair: binary weights on 8-bit activations with 4 lanes (the first layer) and
  xnor with 32 lanes (the other layers), both on 32-bit activation words;
- ternary and pow2 on 8-bit activations with 2 lanes, which share one set of product units
  (``hw.lanes.mode_groups``).

"+ second mode" is the two-mode design over the larger of its two one-mode designs. A second
table synthesises 2x2 arrays (``hw.array.RowStationaryArray``, the same scratchpads and
sums) whose sign-family modes share product units (their codes rewritten once per PE row)
and, for comparison, have a LaneDot per mode.

Usage: ``python benchmarks/modes_area.py [--json FILE]`` (about 15 minutes on 2 cores:
YoWASP runs Yosys and nextpnr as WebAssembly).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amaranth.back import verilog  # noqa: E402

from hw.accelerator import Accelerator  # noqa: E402
from hw.array import RowStationaryArray  # noqa: E402
from hw.schedule import AcceleratorConfig, Datapath  # noqa: E402
from sim.synth import synthesize  # noqa: E402

BASE = dict(rows=2, cols=2, acc_bits=20, filter_spad=32, ifmap_spad=32, in_depth=256,
            wb_depth=256, pb_depth=256, counter_bits=20)

BINARY = Datapath("binary", 4, 8)
XNOR = Datapath("xnor", 32, 1)
TERNARY = Datapath("ternary", 2, 8)
POW2 = Datapath("pow2", 2, 8)

#: (label, modes), in groups of (first alone, second alone, both)
PAIRS = [("BinaryNet", (BINARY, XNOR)), ("ternary + pow2", (TERNARY, POW2))]

#: Arrays: (label, modes, share)
ARRAYS = [("ternary + pow2, shared", (TERNARY, POW2), True),
       ("ternary + pow2, a LaneDot each", (TERNARY, POW2), False),
       ("binary + ternary + pow2, shared", (Datapath("binary", 2, 8), TERNARY, POW2), True),
       ("binary + ternary + pow2, a LaneDot each", (Datapath("binary", 2, 8), TERNARY, POW2),
        False),
       ("ternary alone", (TERNARY,), True), ("pow2 alone", (POW2,), True)]

BRAM = {"ice40": "SB_RAM40_4K", "ecp5": "DP16KD"}


def config_of(modes) -> AcceleratorConfig:
    first = modes[0]
    return AcceleratorConfig(scheme=first.scheme, lanes=first.lanes, a_bits=first.a_bits,
                             w_bits=first.w_bits, codebook=first.codebook,
                             more_modes=tuple(modes[1:]), **BASE)


def describe(modes) -> str:
    return " + ".join(f"{d.scheme}{'' if d.scheme == 'xnor' else f' A{d.a_bits}'} x{d.lanes}"
                      for d in modes)


def accelerator_designs() -> list[tuple[str, str, object]]:
    """(group, label, component) for every accelerator to synthesise."""
    out = []
    for group, (one, two) in PAIRS:
        for modes in ((one,), (two,), (one, two)):
            out.append((group, describe(modes), Accelerator(config_of(modes))))
    return out


def array_designs() -> list[tuple[str, object]]:
    out = []
    for label, modes, share in ARRAYS:
        d = modes[0]
        out.append((label, RowStationaryArray(
            BASE["rows"], BASE["cols"], d.scheme, lanes=d.lanes, a_bits=d.a_bits,
            w_bits=d.w_bits, acc_bits=BASE["acc_bits"], filter_spad=BASE["filter_spad"],
            ifmap_spad=BASE["ifmap_spad"], more_modes=modes[1:], share=share)))
    return out


def synth_all(designs, targets=("ice40", "ecp5"), pack=True) -> dict:
    """top -> target -> Area, one Yosys run per target."""
    sources, tops = {}, []
    for k, component in enumerate(designs):
        top = f"design{k}"
        sources[f"{top}.v"] = verilog.convert(component, name=top, emit_src=False)
        tops.append(top)
    areas = {top: {} for top in tops}
    for target in targets:
        for top, area in synthesize(sources, tops, target,
                                    pack=pack and target == "ice40").items():
            areas[top][target] = area
    return areas


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="also write the cell counts as JSON")
    args = parser.parse_args(argv)

    accels = accelerator_designs()
    areas = synth_all([c for _, _, c in accels])
    rows, record = [], []
    for k, (group, label, _) in enumerate(accels):
        ice, ecp = areas[f"design{k}"]["ice40"], areas[f"design{k}"]["ecp5"]
        rows.append((group, label, ice, ecp))
        record.append({"group": group, "design": label,
                       "ice40": {"lcs": ice.lcs, "luts": ice.luts, "ffs": ice.ffs,
                                 "brams": ice.cells.get(BRAM["ice40"], 0)},
                       "ecp5": {"luts": ecp.luts, "ffs": ecp.ffs,
                                "brams": ecp.cells.get(BRAM["ecp5"], 0)}})
    print("2x2 accelerators: one mode each, and both modes in one\n")
    print("| design | iCE40 LCs | iCE40 LUT4 | iCE40 FFs | block RAM | ECP5 LUT4 | ECP5 FFs "
          "| ECP5 block RAM | + second mode (iCE40 LCs / ECP5 LUT4) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, (group, label, ice, ecp) in enumerate(rows):
        extra = ""
        if n % 3 == 2:
            singles = rows[n - 2:n]
            ice_base = max(r[2].lcs for r in singles)
            ecp_base = max(r[3].luts for r in singles)
            extra = (f"+{ice.lcs - ice_base:,} ({(ice.lcs - ice_base) / ice_base:+.1%}) / "
                     f"+{ecp.luts - ecp_base:,} ({(ecp.luts - ecp_base) / ecp_base:+.1%})")
            record[n]["second_mode"] = {"ice40_lcs": ice.lcs - ice_base,
                                        "ecp5_luts": ecp.luts - ecp_base}
        print(f"| {label} | {ice.lcs:,} | {ice.luts:,} | {ice.ffs:,} | "
              f"{ice.cells.get(BRAM['ice40'], 0)} | {ecp.luts:,} | {ecp.ffs:,} | "
              f"{ecp.cells.get(BRAM['ecp5'], 0)} | {extra} |")

    arrays = array_designs()
    array_areas = synth_all([c for _, c in arrays], pack=False)
    print("\n2x2 arrays: sign-family modes sharing product units, or a LaneDot each\n")
    print("| array | iCE40 LUT4 | iCE40 FFs | ECP5 LUT4 | ECP5 FFs |")
    print("|---|---:|---:|---:|---:|")
    array_record = []
    for k, (label, _) in enumerate(arrays):
        ice, ecp = array_areas[f"design{k}"]["ice40"], array_areas[f"design{k}"]["ecp5"]
        print(f"| {label} | {ice.luts:,} | {ice.ffs:,} | {ecp.luts:,} | {ecp.ffs:,} |")
        array_record.append({"array": label, "ice40": {"luts": ice.luts, "ffs": ice.ffs},
                             "ecp5": {"luts": ecp.luts, "ffs": ecp.ffs}})
    if args.json:
        Path(args.json).write_text(json.dumps({"accelerators": record, "arrays": array_record},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
