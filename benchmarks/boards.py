"""Board builds: utilisation, share of the device and fmax for the iCEBreaker and ULX3S-85F.

Runs ``mulfree build`` (Yosys + nextpnr through YoWASP) for each case and prints a Markdown
table from the reports it writes; a design refused before place-and-route is listed with the
refusal, and for the ternary array the largest size that fits is then built too. Full
accelerator builds take minutes to an hour on two cores.

    python benchmarks/boards.py [--out DIR] [--only icebreaker|ulx3s-85f] [--quick]
                                [--case LABEL ...]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

# (board, label, flags): the host link alone, then the accelerator.
CASES = [
    ("icebreaker", "host link + loopback", ["--link-test"]),
    ("icebreaker", "default: the largest ternary array up to 3x4 that fits", []),
    ("icebreaker", "ternary 3x4", ["--scheme", "ternary", "--rows", "3", "--cols", "4"]),
    ("icebreaker", "binary 3x4", ["--scheme", "binary", "--rows", "3", "--cols", "4"]),
    ("ulx3s-85f", "host link + loopback", ["--link-test"]),
    ("ulx3s-85f", "ternary 3x4", ["--scheme", "ternary", "--rows", "3", "--cols", "4"]),
    ("ulx3s-85f", "binary 3x4", ["--scheme", "binary", "--rows", "3", "--cols", "4"]),
    ("ulx3s-85f", "ternary 12x14", ["--scheme", "ternary", "--rows", "12", "--cols", "14"]),
]
QUICK = {("icebreaker", "host link + loopback"), ("ulx3s-85f", "host link + loopback"),
         ("icebreaker", "default: the largest ternary array up to 3x4 that fits"),
         ("ulx3s-85f", "ternary 3x4")}


def build(board: str, flags: list[str], out: Path) -> dict:
    """Run ``mulfree build``; the report, or the refusal line."""
    started = time.monotonic()
    command = [sys.executable, "-m", "mulfree", "build", "--board", board, *flags,
               "-o", str(out), "--force"]
    print("$ " + " ".join(command[1:]), file=sys.stderr, flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if (out / "report.json").exists() and result.returncode in (0, 1):
        report = json.loads((out / "report.json").read_text())
        report["wall_seconds"] = seconds
        return report
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    return {"refused": errors[-1].split("error: ", 1)[-1] if errors else result.stderr[-300:],
            "wall_seconds": seconds}


def _cell(report: dict, *names: str) -> str:
    for name in names:
        u = report["utilisation"].get(name)
        if u:
            return f"{u['used']:,} / {u['available']:,} ({100 * u['used'] / u['available']:.1f} %)"
    return "-"


def row(board: str, label: str, report: dict) -> str:
    if "refused" in report:
        return f"| {board} | {label} | {report['refused']} | | | | | " \
               f"{report['wall_seconds']:.0f} s |"
    (fmax,) = report["fmax_mhz"].values() or [float("nan")]
    clock = report["clock_hz"] / 1e6
    verdict = "meets" if fmax >= clock else "FAILS"
    return (f"| {board} | {label} | {_cell(report, 'logic cells', 'LUT4')} | "
            f"{_cell(report, 'flip-flops')} | {_cell(report, 'block RAM')} | "
            f"{_cell(report, 'DSP')} | {fmax:.2f} MHz vs {clock:g} MHz ({verdict}) | "
            f"{report['wall_seconds']:.0f} s |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/boards", help="where the builds go")
    parser.add_argument("--only", choices=["icebreaker", "ulx3s-85f"], default=None)
    parser.add_argument("--quick", action="store_true",
                        help="only the link builds, the iCEBreaker default and the ULX3S "
                             "ternary 3x4")
    parser.add_argument("--case", action="append", default=None, metavar="LABEL",
                        help="only the cases whose design label contains LABEL (repeatable)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = ["| board | design | logic cells / LUT4 | flip-flops | block RAM | DSP | "
            "fmax vs board clock | build time |", "|---|---|---|---|---|---|---|---|"]
    for board, label, flags in CASES:
        if (args.only and board != args.only) or (args.quick and (board, label) not in QUICK):
            continue
        if args.case and not any(c in label for c in args.case):
            continue
        folder = out / f"{board}-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}"
        report = build(board, flags, folder)
        rows.append(row(board, label, report))
        print(rows[-1], file=sys.stderr, flush=True)
        fits = re.search(r"the largest that fits is (\d+)x(\d+)", report.get("refused", ""))
        if fits and "--scheme" in flags:
            r, c = fits.groups()
            sized = flags[:flags.index("--rows")] + ["--rows", r, "--cols", c]
            scheme = flags[flags.index("--scheme") + 1]
            report = build(board, sized, out / f"{board}-{scheme}-{r}x{c}")
            rows.append(row(board, f"{scheme} {r}x{c} (largest that fits)", report))
            print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
