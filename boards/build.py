"""Bitstreams with the open toolchain: synthesis, packing, a fit check, place-and-route, report.

``build(board, top, out_dir)`` prepares Amaranth's build plan for the board's platform and
runs the plan's own commands one at a time (the same commands ``platform.build(...,
do_build=True)`` runs from its script), with the YoWASP tools of
``sim.toolchain.setup_environment()``. Between synthesis and place-and-route it runs the
plan's nextpnr command with ``--pack-only``: packing maps the netlist onto the device's
cells (logic cells or LUT4s with their flip-flops, block RAMs, DSPs) and reports exactly
how many of each the design needs and the device has, in seconds. A design that needs more
of any of them than the device has is refused with ``DoesNotFit`` there, before placement
and routing are attempted. nextpnr writes JSON reports (``--report``), from which the
utilisation and the achieved clock frequency are read.

Everything is built in a temporary folder beside ``out_dir`` and moved into place only when
the build succeeded, so a failed or refused build leaves nothing behind but, when a tool
failed, its log (``<out_dir>.failed.log``); an existing
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

from boards.platforms import Board, find_board
from model.files import check_new_folder, staged_folder
from sim.toolchain import setup_environment

__all__ = ["BuildReport", "Utilisation", "DoesNotFit", "BuildError", "build",
           "utilisation_of", "check_fit", "check_output", "estimate", "largest_array_that_fits",
           "LOGIC_HEADROOM", "MULTIPLIERS", "synthesis_options"]

# nextpnr's resource names, in report order, with the names used in mulfree's reports.
_REPORTED = {
    "ICESTORM_LC": "logic cells",
    "ICESTORM_RAM": "block RAM",
    "ICESTORM_DSP": "DSP",
    "ICESTORM_SPRAM": "SPRAM",
    "SB_IO": "I/O",
    "TRELLIS_COMB": "LUT4",
    "TRELLIS_FF": "flip-flops",
    "TRELLIS_RAMW": "LUT-RAM write ports",
    "DP16KD": "block RAM",
    "MULT18X18D": "DSP",
    "TRELLIS_IO": "I/O",
}


#: Where synthesis may put the design's multipliers: ``dsp`` (the device's DSP blocks) or
#: ``lut`` (logic only). Without a choice each synthesizer keeps its default: ``synth_ice40``
#: builds multipliers from logic, ``synth_ecp5`` maps them to MULT18X18D blocks.
MULTIPLIERS = ("dsp", "lut")

#: Device families whose DSP blocks Yosys maps multipliers to, with the ``synth_<family>``
#: options for each choice of ``MULTIPLIERS``, and the devices of the family that have DSPs.
_MULTIPLIER_OPTIONS = {
    "iCE40": ({"dsp": "-dsp", "lut": ""}, ("iCE40UP", "iCE5LP")),
    "ecp5": ({"dsp": "", "lut": "-nodsp"}, ("LFE5U", "LFE5UM")),
}


def synthesis_options(board, multipliers: str | None) -> str | None:
    """The ``synth_<family>`` options that put ``board``'s multipliers where ``multipliers``
    (one of ``MULTIPLIERS``, or None for the synthesizer's default) says; ``ValueError``
    (one line) for an unknown choice or DSP blocks on a device that has none."""
    if multipliers is None:
        return None
    if multipliers not in MULTIPLIERS:
        raise ValueError(f"unknown multiplier placement {multipliers!r}; allowed: "
                         f"{', '.join(MULTIPLIERS)}")
    board = board if isinstance(board, Board) else find_board(board)
    described = board.describe()
    family, device = described["family"], str(described["device"])
    if family not in _MULTIPLIER_OPTIONS:
        raise ValueError(f"--multipliers {multipliers}: multipliers are placed on iCE40 and "
                         f"ECP5 devices only; the {device} ({board.name}) is neither")
    options, with_dsps = _MULTIPLIER_OPTIONS[family]
    if multipliers == "dsp" and not device.startswith(with_dsps):
        raise ValueError(f"--multipliers dsp: the {device} ({board.name}) has no DSP blocks; "
                         f"allowed there: lut")
    return options[multipliers]


class DoesNotFit(ValueError):
    """The packed design needs more of a resource than the device has."""

    def __init__(self, resource: str, needed: int, available: int, device: str, board: str):
        self.resource, self.needed, self.available = resource, needed, available
        self.device, self.board = device, board
        super().__init__(f"the design needs {needed:,} {resource} but the {device} ({board}) "
                         f"has {available:,}; refused before place-and-route")


class BuildError(RuntimeError):
    """A tool of the build failed; ``log`` is where its output was kept."""

    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log


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
    synth_opts: str | None = None

    @property
    def meets_timing(self) -> bool | None:
        """Whether every clock reaches the board clock (None if nothing was placed)."""
        if not self.fmax_mhz or not self.clock_hz:
            return None
        return min(self.fmax_mhz.values()) >= self.clock_hz / 1e6

    def lines(self, *, relative: bool = False) -> list[str]:
        """The report as text lines; ``relative`` names the bitstream by its file name only
        (as the ``report.txt`` beside it does, so the folder can move)."""
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
        shown = self.bitstream.name if relative and self.bitstream else self.bitstream
        out.append(f"bitstream: {shown}  ({self.seconds:.0f} s)")
        return out

    def to_json(self) -> dict:
        return {
            "board": self.board, "device": self.device, "toolchain": self.toolchain,
            "clock_hz": self.clock_hz, "built": self.built, "needs": self.needs,
            "packed": self.estimate,
            "utilisation": {u.resource: {"used": u.used, "available": u.available}
                            for u in self.utilisation},
            "fmax_mhz": self.fmax_mhz, "meets_timing": self.meets_timing,
            "bitstream": self.bitstream.name if self.bitstream else None,
            "seconds": round(self.seconds, 1), "synth_opts": self.synth_opts,
        }


def utilisation_of(nextpnr_report: dict) -> list[Utilisation]:
    """The resources of a nextpnr JSON report that mulfree reports, in report order."""
    found = nextpnr_report.get("utilization", {})
    return [Utilisation(label, int(found[key]["used"]), int(found[key]["available"]))
            for key, label in _REPORTED.items() if key in found]


def check_fit(utilisation: list[Utilisation], device: str, board: str) -> None:
    """Raise ``DoesNotFit`` for the first resource used beyond what the device has."""
    for u in utilisation:
        if u.used > u.available:
            raise DoesNotFit(u.resource, u.used, u.available, device, board)


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
        text = result.stdout + result.stderr
        if "-l" in command[:-1]:     # Yosys -q prints its error only into its own log
            own = cwd / command[command.index("-l") + 1]
            text += own.read_text(errors="replace") if own.is_file() else ""
        errors = [line.strip() for line in text.splitlines()
                  if "ERROR" in line or "Error" in line]
        detail = errors[-1] if errors else (result.stderr.strip().splitlines()
                                            or [f"exit status {result.returncode}"])[-1]
        raise BuildError(f"{argv[0]} failed: {detail}", log)


def check_output(out_dir, force: bool) -> None:
    """``ValueError`` unless ``out_dir`` may be written: absent, empty, or ``force``; never
    a file (``model.files.check_new_folder``)."""
    check_new_folder(out_dir, force=force)


def build(board, top, out_dir, *, force: bool = False, name: str = "top", progress=None,
          on_synthesis=None, extra_files=None, synth_opts: str | None = None) -> BuildReport:
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
        Called with the packed design's needs (resource -> count) before the fit check.
    extra_files : dict, optional
        File name -> text, written into ``out_dir`` too (e.g. what the design is).
    synth_opts : str, optional
        Options of the ``synth_<family>`` Yosys command (``synthesis_options``); None keeps
        the platform's.

    Returns the ``BuildReport``; raises ``DoesNotFit`` (a ``ValueError``) when the packed
    design cannot fit, ``BuildError`` when a tool fails.
    """
    say = progress or (lambda line: None)
    board = board if isinstance(board, Board) else find_board(board)
    described = board.describe()
    started = time.monotonic()
    setup_environment()
    with staged_folder(out_dir, force=force) as work:
        try:
            platform = board.platform()
            report = BuildReport(board.name, described["device"], described["toolchain"],
                                 described["clock_hz"], Path(out_dir), built=False,
                                 needs=described["needs"], synth_opts=synth_opts)
            overrides = {}
            if described["open_toolchain"]:
                overrides = {"nextpnr_opts": f"--report {name}.report.json --timing-allow-fail"}
                if synth_opts is not None:
                    overrides["synth_opts"] = synth_opts
            say(f"elaborating the design for {board.name} ({described['device']})")
            plan = platform.prepare(top, name, **overrides)
            plan.extract(work)
            if described["open_toolchain"]:
                _run_open_toolchain(plan, work, name, report, say, on_synthesis)
            if report.bitstream is not None:
                report.bitstream = Path(out_dir) / report.bitstream.name
            report.seconds = time.monotonic() - started
            (work / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
            (work / "report.txt").write_text("\n".join(report.lines(relative=True)) + "\n")
            for file_name, text in (extra_files or {}).items():
                (work / file_name).write_text(text)
        except BuildError as exc:
            if exc.log is not None and exc.log.exists():
                kept = Path(out_dir).parent / f"{Path(out_dir).name}.failed.log"
                shutil.copyfile(exc.log, kept)
                exc.log = kept
                exc.args = (f"{exc.args[0]} (log: {kept})",)
            raise
    return report


#: nextpnr options that write the placed design (meaningless, and fatal on ECP5, when only
#: packing).
_PLACED_OUTPUTS = ("--asc", "--textcfg", "--write")


def _pack_only(place_and_route: list[str], name: str) -> list[str]:
    """The plan's nextpnr command made to stop after packing, with its own report and log."""
    argv = []
    skip = False
    for arg in place_and_route:
        if skip:
            skip = False
        elif arg in _PLACED_OUTPUTS:
            skip = True
        else:
            argv.append(arg)
    argv.append("--pack-only")
    for option, value in (("--report", f"{name}.pack.json"), ("--log", f"{name}.pack.tim")):
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    return argv


def _synthesize_and_pack(plan, work: Path, name: str, say) -> list[Utilisation]:
    """Run the plan's synthesis, then its nextpnr with ``--pack-only``: the packed design's
    exact utilisation."""
    commands = json.loads(plan.files[f"{plan.script}.json"])["commands"]
    say(f"synthesis ({commands[0][0]})")
    _run(commands[0], work, work / f"{name}.yosys.log")
    say(f"packing onto the device ({commands[1][0]} --pack-only)")
    _run(_pack_only(commands[1], name), work, work / f"{name}.pack.log")
    return utilisation_of(json.loads((work / f"{name}.pack.json").read_text()))


def _run_open_toolchain(plan, work: Path, name: str, report: BuildReport, say,
                        on_synthesis) -> None:
    packed = _synthesize_and_pack(plan, work, name, say)
    report.estimate = {u.resource: u.used for u in packed}
    if on_synthesis is not None:
        on_synthesis(report.estimate)
    check_fit(packed, report.device, report.board)
    commands = json.loads(plan.files[f"{plan.script}.json"])["commands"]
    for command in commands[1:]:
        say({"nextpnr-ice40": "place and route (nextpnr-ice40)",
             "nextpnr-ecp5": "place and route (nextpnr-ecp5)"}.get(command[0],
                                                                  f"bitstream ({command[0]})"))
        _run(command, work, work / f"{name}.{command[0]}.log")
    nextpnr = json.loads((work / f"{name}.report.json").read_text())
    report.utilisation = utilisation_of(nextpnr)
    report.fmax_mhz = {clock.replace("$glbnet$", ""): float(v["achieved"])
                       for clock, v in nextpnr.get("fmax", {}).items()}
    for suffix in (".bin", ".bit"):
        if (work / f"{name}{suffix}").exists():
            report.bitstream = work / f"{name}{suffix}"
            break
    report.built = True
    report.needs = None


def estimate(board, top, *, name: str = "top", synth_opts: str | None = None) \
        -> list[Utilisation]:
    """Synthesize and pack ``top`` for ``board`` (no placement, in a temporary folder): the
    exact utilisation of the packed design. ``synth_opts``: as ``build``'s."""
    board = board if isinstance(board, Board) else find_board(board)
    described = board.describe()
    if not described["open_toolchain"]:
        raise ValueError(f"board {board.name!r} needs {described['needs']}; no estimate here")
    setup_environment()
    overrides = {"nextpnr_opts": "--timing-allow-fail"}
    if synth_opts is not None:
        overrides["synth_opts"] = synth_opts
    plan = board.platform().prepare(top, name, **overrides)
    with tempfile.TemporaryDirectory(prefix="mulfree-estimate-") as tmp:
        work = Path(tmp)
        plan.extract(work)
        return _synthesize_and_pack(plan, work, name, lambda line: None)


#: Share of a device's logic the size search fills at most: a packed design that fills the
#: device may still fail to place or route.
LOGIC_HEADROOM = 0.9
_LOGIC = ("logic cells", "LUT4", "flip-flops", "LUT-RAM write ports")


def _fits_with_headroom(utilisation: list[Utilisation], headroom: float = LOGIC_HEADROOM) -> bool:
    return all(u.used <= (u.available * headroom if u.resource in _LOGIC else u.available)
               for u in utilisation)


def largest_array_that_fits(board, make_top, rows: int, cols: int, overflow: DoesNotFit, *,
                            progress=None, headroom: float = LOGIC_HEADROOM,
                            most_pes: bool = False, synth_opts: str | None = None):
    """The largest array whose design fits ``board`` after ``make_top(rows, cols)`` did not
    (``overflow``): ``(rows', cols', utilisation)`` with ``rows' <= rows`` and
    ``cols' <= cols`` as large as fits for that ``rows'``, or ``(0, 0, utilisation of 1x1)``
    if not even 1x1 fits. "Fits" leaves room for placement and routing: at most ``headroom``
    (``LOGIC_HEADROOM`` by default) of the logic (block RAMs and DSPs may be used up);
    ``headroom=1`` asks only that the packed design fits the device. With ``most_pes`` the
    arrays with fewer rows are then tried too, and the one with the most PEs is returned (a
    squarer array may fit more PEs than the model of the first search allows).
    ``synth_opts``: as ``build``'s.

    The overflowing resource is modelled as a fixed cost plus a cost per PE from two packed
    designs (the requested size and 1x1); sizes near what that model allows are then
    synthesized and packed until the boundary is found (``cols'`` fits, ``cols' + 1`` does
    not).
    """
    say = progress or (lambda line: None)
    board = board if isinstance(board, Board) else find_board(board)
    seen = {}

    def fits(r, c):
        if (r, c) not in seen:
            say(f"synthesizing a {r}x{c} array to find the largest that fits")
            packed = estimate(board, make_top(r, c), synth_opts=synth_opts)
            seen[r, c] = packed if _fits_with_headroom(packed, headroom) else None
        return seen[r, c] is not None

    seen[rows, cols] = None
    if not fits(1, 1):
        return 0, 0, estimate(board, make_top(1, 1), synth_opts=synth_opts)
    resource = overflow.resource
    small = {u.resource: u.used for u in seen[1, 1]}[resource]
    limit = overflow.available * (headroom if resource in _LOGIC else 1)
    per_pe = max(1.0, (overflow.needed - small) / max(1, rows * cols - 1))
    pes = 1 + int((limit - small) // per_pe)
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
    if most_pes:
        best = (r, c)
        for r2 in range(r - 1, 0, -1):
            c2 = best[0] * best[1] // r2 + 1      # the fewest columns with more PEs
            if c2 > cols or not fits(r2, c2):
                continue
            while c2 < cols and fits(r2, c2 + 1):
                c2 += 1
            best = (r2, c2)
        r, c = best
    return r, c, seen[r, c]
