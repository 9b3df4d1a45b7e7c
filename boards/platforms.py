"""The boards mulfree builds for: amaranth-boards platforms by name, and what their devices hold.

Two boards are tested targets: ``icebreaker`` (iCE40UP5K, 12 MHz) and ``ulx3s-85f`` (ECP5
LFE5U-85F, 25 MHz). Any other amaranth-boards platform can be named too: those whose
toolchain is open (iCE40 with IceStorm, ECP5 with Trellis: Yosys + nextpnr through YoWASP)
are built here; for the others the build tree is written and the vendor tool it needs named.

Names: a module of amaranth-boards with one platform is named after the module
(``icebreaker_bitsy`` -> ``icebreaker-bitsy``); a module with several is named after the
module and what tells them apart (``ULX3S_85F_Platform`` -> ``ulx3s-85f``,
``ArtyA7_35Platform`` -> ``arty-a7-35``). The class name itself is accepted as well.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re

__all__ = ["Board", "TESTED_BOARDS", "OPEN_TOOLCHAINS", "VENDOR_TOOLS", "find_board",
           "list_boards"]

#: Board name -> (amaranth-boards module, platform class): the targets mulfree is tested on.
TESTED_BOARDS = {
    "icebreaker": ("icebreaker", "ICEBreakerPlatform"),
    "ulx3s-85f": ("ulx3s", "ULX3S_85F_Platform"),
}

#: Toolchains whose tools mulfree has (through YoWASP) and runs.
OPEN_TOOLCHAINS = ("IceStorm", "Trellis")

#: What each toolchain that is not run here needs.
VENDOR_TOOLS = {
    "Vivado": "AMD Vivado",
    "ISE": "Xilinx ISE 14.7",
    "Quartus": "Intel Quartus Prime",
    "Mistral": "Yosys with Mistral and nextpnr-mistral (not packaged for YoWASP)",
    "Diamond": "Lattice Diamond",
    "Radiant": "Lattice Radiant",
    "Oxide": "nextpnr-nexus and prjoxide (not packaged for YoWASP)",
    "Gowin": "Gowin EDA",
    "Apicula": "nextpnr-himbaechel and Apicula's gowin_pack (not packaged for YoWASP)",
    "QLSymbiflow": "QuickLogic SymbiFlow",
    "Symbiflow": "F4PGA (SymbiFlow)",
}

_SKIPPED_MODULES = {"test", "resources", "extensions"}


@dataclasses.dataclass(frozen=True)
class Board:
    """One board: its name, its amaranth-boards platform class, and how it is built."""

    name: str
    module: str
    class_name: str
    tested: bool

    @property
    def platform_class(self):
        return getattr(importlib.import_module(f"amaranth_boards.{self.module}"),
                       self.class_name)

    def platform(self):
        """A new platform object (a build uses one platform object once)."""
        try:
            return self.platform_class()
        except Exception as exc:  # some board files are broken in amaranth-boards itself
            raise ValueError(f"board {self.name!r} cannot be set up by amaranth-boards: "
                             f"{exc}") from None

    def describe(self) -> dict:
        """Device, family, toolchain, clock, and whether mulfree runs its toolchain."""
        p = self.platform()
        toolchain = getattr(p, "toolchain", None)
        runs_here = toolchain in OPEN_TOOLCHAINS
        return {
            "device": getattr(p, "device", "?"),
            "family": getattr(p, "family", None) or type(p).__mro__[1].__name__,
            "toolchain": toolchain,
            "clock_hz": p.default_clk_frequency if p.default_clk is not None else None,
            "open_toolchain": runs_here,
            "needs": None if runs_here else VENDOR_TOOLS.get(toolchain, f"the {toolchain} tools")
                     + f" ({', '.join(p.required_tools)})",
        }


def _compact(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _names_for(module: str, class_names: list[str]) -> dict[str, str]:
    """Canonical board name for each platform class of one amaranth-boards module."""
    base = module.replace("_", "-").lower()
    if len(class_names) == 1:
        return {class_names[0]: base}
    names = {}
    for cls in class_names:
        stem = re.sub(r"Platform$", "", cls).strip("_")
        compact = _compact(stem)
        if compact.startswith(_compact(module)):
            rest = compact[len(_compact(module)):]
            names[cls] = base + (f"-{rest}" if rest else "")
        else:
            names[cls] = stem.lower().replace("_", "-")
    return names


def _platform_classes(module: str) -> list[str]:
    from amaranth.build import Platform

    try:
        mod = importlib.import_module(f"amaranth_boards.{module}")
    except Exception:
        return []
    return [n for n in getattr(mod, "__all__", [])
            if isinstance(getattr(mod, n, None), type) and issubclass(getattr(mod, n), Platform)]


def list_boards() -> list[Board]:
    """Every platform of amaranth-boards, the tested ones first."""
    import amaranth_boards

    tested = {v: k for k, v in TESTED_BOARDS.items()}
    boards = []
    for info in sorted(pkgutil.iter_modules(amaranth_boards.__path__), key=lambda i: i.name):
        if info.name in _SKIPPED_MODULES:
            continue
        classes = _platform_classes(info.name)
        for cls, name in _names_for(info.name, classes).items():
            key = (info.name, cls)
            boards.append(Board(tested.get(key, name), info.name, cls, key in tested))
    return sorted(boards, key=lambda b: (not b.tested, b.name))


def find_board(name: str) -> Board:
    """The board called ``name`` (case-insensitive; a platform class name works too)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"board name must be a non-empty string, not {name!r}")
    key = name.lower()
    if key in TESTED_BOARDS:
        module, cls = TESTED_BOARDS[key]
        return Board(key, module, cls, True)
    boards = list_boards()
    for board in boards:
        if key in (board.name, board.class_name.lower()):
            return board
    close = [b.name for b in boards if _compact(key)[:4] in _compact(b.name)][:6]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown board {name!r}; tested: {', '.join(TESTED_BOARDS)} "
                     f"(`mulfree build --list-boards` lists all {len(boards)}){hint}")
