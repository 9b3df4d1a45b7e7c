"""Bitstreams with the open toolchain: synthesis, a fit check, place-and-route, packing, a report.

``build(board, top, out_dir)`` prepares Amaranth's build plan for the board's platform and
runs the plan's own commands one at a time (the same commands ``platform.build(...,
do_build=True)`` runs from its script), with the YoWASP tools of
``sim.toolchain.setup_environment()``. Running them one at a time lets the flow stop after
synthesis: if the synthesized netlist needs more of a resource than the device has (more
LUTs alone than logic cells, more block RAMs or DSPs than there are), the design is refused
with ``DoesNotFit`` before place-and-route is attempted. nextpnr writes a JSON report
(``--report``), from which the utilisation and the achieved clock frequency are read.

Everything is built in a temporary folder beside ``out_dir`` and moved into place only when
the build succeeded, so a failed or refused build leaves nothing behind; an existing
``out_dir`` is replaced only with ``force``. For a board whose toolchain is not open
(``boards.platforms``), the build tree is written and the report names the tool it needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from boards.platforms import DEVICE_CAPACITY, Board, find_board
from sim.toolchain import setup_environment

__all__ = ["BuildReport", "Utilisation", "DoesNotFit", "BuildError", "build",
           "synthesis_estimate", "check_fit", "estimate", "largest_array_that_fits"]

# nextpnr's resource names, in report order, with the names used in mulfree's reports.
_REPORTED = {
    "ICESTORM_LC": "logic cells",
    "ICESTORM_RAM": "block RAM",
    "ICESTORM_DSP": "DSP",
    "ICESTORM_SPRAM": "SPRAM",
    "SB_IO": "I/O",
    "TRELLIS_COMB": "LUT4",
    "TRELLIS_FF": "flip-flops",
    "DP16KD": "block RAM",
    "MULT18X18D": "DSP",
    "TRELLIS_IO": "I/O",
}


class DoesNotFit(ValueError):
    """The synthesized design needs more of a resource than the device has."""

    def __init__(self, resource: str, needed: int, available: int, device: str, board: str):
        self.resource, self.needed, self.available = resource, needed, available
        self.device, self.board = device, board
        super().__init__(f"the design needs {needed:,} {resource} but the {device} ({board}) "
                         f"has {available:,}; refused before place-and-route")


class BuildError(RuntimeError):
    """A tool of the build failed."""


@dataclasses.dataclass(frozen=True)
class Utilisation:
    """One resource after place-and-route."""

    resource: str
    used: int
    available: int

    @property
    def share(self) -> float:
        return self.used / self.available if self.available else 0.0


@dataclasses.dataclass
class BuildReport:
    """What a build produced and measured."""

    board: str
    device: str
    toolchain: str
    clock_hz: float | None
    directory: Path
    built: bool
    needs: str | None = None
    estimate: dict = dataclasses.field(default_factory=dict)
    utilisation: list = dataclasses.field(default_factory=list)
    fmax_mhz: dict = dataclasses.field(default_factory=dict)
    bitstream: Path | None = None
    seconds: float = 0.0

    @property
    def meets_timing(self) -> bool | None:
        """Whether every clock reaches the board clock (None if nothing was placed)."""
        if not self.fmax_mhz or not self.clock_hz:
            return None
        return min(self.fmax_mhz.values()) >= self.clock_hz / 1e6

    def lines(self) -> list[str]:
        head = f"board {self.board}: {self.device}, toolchain {self.toolchain}"
        if self.clock_hz:
            head += f", board clock {self.clock_hz / 1e6:g} MHz"
        out = [head]
        if not self.built:
            out.append(f"build tree written to {self.directory}; not built here: it needs "
                       f"{self.needs}")
            return out
        width = max(len(u.resource) for u in self.utilisation) if self.utilisation else 0
        for u in self.utilisation:
            out.append(f"  {u.resource:<{width}}  {u.used:>7,} / {u.available:<7,} "
                       f"{100 * u.share:5.1f} %")
        for clock, mhz in self.fmax_mhz.items():
            verdict = ""
            if self.clock_hz:
                ok = mhz >= self.clock_hz / 1e6
                verdict = (f"  ({'meets' if ok else 'FAILS'} the {self.clock_hz / 1e6:g} MHz "
                           f"board clock, {mhz / (self.clock_hz / 1e6):.2f}x)")
            out.append(f"  fmax {clock}: {mhz:.1f} MHz{verdict}")
        out.append(f"bitstream: {self.bitstream}  ({self.seconds:.0f} s)")
        return out

    def to_json(self) -> dict:
        return {
            "board": self.board, "device": self.device, "toolchain": self.toolchain,
            "clock_hz": self.clock_hz, "built": self.built, "needs": self.needs,
            "synthesis_estimate": self.estimate,
            "utilisation": {u.resource: {"used": u.used, "available": u.available}
                            for u in self.utilisation},
            "fmax_mhz": self.fmax_mhz, "meets_timing": self.meets_timing,
            "bitstream": self.bitstream.name if self.bitstream else None,
            "seconds": round(self.seconds, 1),
        }


def synthesis_estimate(cells: dict, device: str) -> dict:
    """What a synthesized netlist (Yosys cell counts by type) needs, in the units of
    ``DEVICE_CAPACITY``: lower bounds for logic (the LUTs alone; packing only adds), exact
    counts for block RAMs, DSPs and SPRAMs."""
    def n(*types):
        return sum(int(cells.get(t, 0)) for t in types)

    if device.startswith("iCE40"):
        flip_flops = sum(int(v) for k, v in cells.items() if k.startswith("SB_DFF"))
        return {"logic cells": max(n("SB_LUT4"), flip_flops, n("SB_CARRY")),
                "block RAM": n("SB_RAM40_4K"), "DSP": n("SB_MAC16"),
                "SPRAM": n("SB_SPRAM256KA")}
    if device.startswith("LFE5U"):
        return {"LUT4": n("LUT4") + 2 * n("CCU2C"), "flip-flops": n("TRELLIS_FF"),
                "block RAM": n("DP16KD"), "DSP": n("MULT18X18D")}
    return {}


def check_fit(estimate: dict, device: str, board: str) -> None:
    """Raise ``DoesNotFit`` for the first resource the estimate needs more of than the device
    has (devices missing from ``DEVICE_CAPACITY`` are not checked)."""
    capacity = DEVICE_CAPACITY.get(device, {})
    for resource, needed in estimate.items():
        available = capacity.get(resource)
        if available is not None and needed > available:
            raise DoesNotFit(resource, needed, available, device, board)


def _tool_command(argv: list[str]) -> list[str]:
    """The plan's command with its tool replaced as the build script would (``$YOSYS`` ...)."""
    variable = argv[0].upper().replace("-", "_")
    return [os.environ.get(variable, argv[0]), *argv[1:]]


def _run(argv: list[str], cwd: Path, log: Path) -> None:
    command = _tool_command(argv)
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise BuildError(f"{argv[0]} not found (tried {command[0]!r}); run `mulfree doctor`") \
            from None
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        errors = [line.strip() for line in (result.stdout + result.stderr).splitlines()
                  if "ERROR" in line or "Error" in line]
        detail = errors[-1] if errors else (result.stderr.strip().splitlines() or ["?"])[-1]
        raise BuildError(f"{argv[0]} failed: {detail}")


def _prepare_output(out_dir: Path, force: bool) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ValueError(f"output folder {out_dir} exists and is not empty; use --force to "
                         "replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))


def _commit(work: Path, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(work, out_dir)


def build(board, top, out_dir, *, force: bool = False, name: str = "top", progress=None,
          on_synthesis=None, extra_files=None) -> BuildReport:
    """Build ``top`` (an elaboratable that requests the board's pins) for ``board``.

    Parameters
    ----------
    board : str or Board
        A board name (``boards.platforms.find_board``).
    top
        The design; elaborated with the board's platform.
    out_dir : path
        Where the build tree, bitstream and ``report.json``/``report.txt`` end up.
    force : bool
        Replace an existing ``out_dir``.
    progress : callable, optional
        Called with a short line before each step.
    on_synthesis : callable, optional
        Called with the synthesis estimate before the fit check (e.g. to keep it).
    extra_files : dict, optional
        File name -> text, written into ``out_dir`` too (e.g. what the design is).

    Returns the ``BuildReport``; raises ``DoesNotFit`` (a ``ValueError``) when synthesis shows
    the design cannot fit, ``BuildError`` when a tool fails.
    """
    say = progress or (lambda line: None)
    board = board if isinstance(board, Board) else find_board(board)
    described = board.describe()
    started = time.monotonic()
    setup_environment()
    work = _prepare_output(Path(out_dir), force)
    try:
        platform = board.platform()
        report = BuildReport(board.name, described["device"], described["toolchain"],
                             described["clock_hz"], Path(out_dir), built=False,
                             needs=described["needs"])
        overrides = {}
        if described["open_toolchain"]:
            overrides = {"script_after_synth": f"tee -q -o {name}.stat.json stat -json",
                         "nextpnr_opts": f"--report {name}.report.json --timing-allow-fail"}
        say(f"elaborating the design for {board.name} ({described['device']})")
        plan = platform.prepare(top, name, **overrides)
        plan.extract(work)
        if described["open_toolchain"]:
            _run_open_toolchain(plan, work, name, report, say, on_synthesis)
        if report.bitstream is not None:
            report.bitstream = Path(out_dir) / report.bitstream.name
        report.seconds = time.monotonic() - started
        (work / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
        (work / "report.txt").write_text("\n".join(report.lines()) + "\n")
        for file_name, text in (extra_files or {}).items():
            (work / file_name).write_text(text)
        _commit(work, Path(out_dir))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _run_open_toolchain(plan, work: Path, name: str, report: BuildReport, say,
                        on_synthesis) -> None:
    commands = json.loads(plan.files[f"{plan.script}.json"])["commands"]
    synthesis, rest = commands[0], commands[1:]
    say(f"synthesis ({synthesis[0]})")
    _run(synthesis, work, work / f"{name}.yosys.log")
    stat = json.loads((work / f"{name}.stat.json").read_text())
    report.estimate = synthesis_estimate(stat["design"].get("num_cells_by_type", {}),
                                         report.device)
    if on_synthesis is not None:
        on_synthesis(report.estimate)
    check_fit(report.estimate, report.device, report.board)
    for command in rest:
        say({"nextpnr-ice40": "place and route (nextpnr-ice40)",
             "nextpnr-ecp5": "place and route (nextpnr-ecp5)"}.get(command[0],
                                                                  f"packing ({command[0]})"))
        _run(command, work, work / f"{name}.{command[0]}.log")
    nextpnr = json.loads((work / f"{name}.report.json").read_text())
    for key, label in _REPORTED.items():
        if key in nextpnr.get("utilization", {}):
            u = nextpnr["utilization"][key]
            report.utilisation.append(Utilisation(label, int(u["used"]), int(u["available"])))
    report.fmax_mhz = {clock.replace("$glbnet$", ""): float(v["achieved"])
                       for clock, v in nextpnr.get("fmax", {}).items()}
    for suffix in (".bin", ".bit"):
        if (work / f"{name}{suffix}").exists():
            report.bitstream = work / f"{name}{suffix}"
            break
    report.built = True
    report.needs = None


def estimate(board, top, *, name: str = "top") -> dict:
    """Synthesize ``top`` for ``board`` (Yosys only, in a temporary folder) and return what
    it needs (``synthesis_estimate``)."""
    board = board if isinstance(board, Board) else find_board(board)
    described = board.describe()
    if not described["open_toolchain"]:
        raise ValueError(f"board {board.name!r} needs {described['needs']}; no estimate here")
    setup_environment()
    plan = board.platform().prepare(
        top, name, script_after_synth=f"tee -q -o {name}.stat.json stat -json")
    with tempfile.TemporaryDirectory(prefix="mulfree-estimate-") as tmp:
        work = Path(tmp)
        plan.extract(work)
        synthesis = json.loads(plan.files[f"{plan.script}.json"])["commands"][0]
        _run(synthesis, work, work / f"{name}.yosys.log")
        stat = json.loads((work / f"{name}.stat.json").read_text())
    return synthesis_estimate(stat["design"].get("num_cells_by_type", {}), described["device"])


#: Share of a device's logic the size search fills at most: the synthesis estimate is a
#: lower bound, and placement and routing need room beyond it.
LOGIC_HEADROOM = 0.9
_LOGIC = ("logic cells", "LUT4", "flip-flops")


def _fits_with_headroom(needed: dict, device: str) -> bool:
    capacity = DEVICE_CAPACITY.get(device, {})
    for resource, n in needed.items():
        limit = capacity.get(resource)
        if limit is not None and n > (limit * LOGIC_HEADROOM if resource in _LOGIC else limit):
            return False
    return True


def largest_array_that_fits(board, make_top, rows: int, cols: int, overflow: DoesNotFit, *,
                            progress=None):
    """The largest array whose design fits ``board`` after ``make_top(rows, cols)`` did not
    (``overflow``): ``(rows', cols', estimate)`` with ``rows' <= rows`` and ``cols' <= cols``
    as large as fits for that ``rows'``, or ``(0, 0, estimate of 1x1)`` if not even 1x1 fits.
    "Fits" leaves room for place-and-route: at most ``LOGIC_HEADROOM`` of the logic (block
    RAMs and DSPs are exact counts and may be used up).

    The overflowing resource is modelled as a fixed cost plus a cost per PE from two
    syntheses (the requested size and 1x1); sizes near what that model allows are then
    synthesized until the boundary is found (``cols'`` fits, ``cols' + 1`` does not).
    """
    say = progress or (lambda line: None)
    board = board if isinstance(board, Board) else find_board(board)
    device = board.describe()["device"]
    seen = {}

    def fits(r, c):
        if (r, c) not in seen:
            say(f"synthesizing a {r}x{c} array to find the largest that fits")
            needed = estimate(board, make_top(r, c))
            seen[r, c] = needed if _fits_with_headroom(needed, device) else None
        return seen[r, c] is not None

    seen[rows, cols] = None
    if not fits(1, 1):
        return 0, 0, estimate(board, make_top(1, 1))
    resource = overflow.resource
    limit = overflow.available * (LOGIC_HEADROOM if resource in _LOGIC else 1)
    per_pe = max(1.0, (overflow.needed - seen[1, 1][resource]) / max(1, rows * cols - 1))
    pes = 1 + int((limit - seen[1, 1][resource]) // per_pe)
    r = max(1, min(rows, pes))
    while r > 1 and not fits(r, 1):
        r -= 1
    c = max(1, min(cols, pes // r))
    if fits(r, c):
        while c < cols and fits(r, c + 1):
            c += 1
    else:
        while c > 1 and not fits(r, c - 1):
            c -= 1
        c = max(1, c - 1)
    return r, c, seen[r, c]
