"""``mulfree doctor``: which tools were found, their versions, and what is missing."""

from __future__ import annotations

from sim import toolchain


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="list the simulators and FPGA tools found, and what needs them",
        description="Print each tool, its version and where it came from, and which "
                    "features are unavailable without it. The first run may take a minute "
                    "while the YoWASP tools compile their WebAssembly.")
    parser.set_defaults(func=run)


def run(args) -> int:
    toolchain.setup_environment()
    tools = toolchain.report()
    rows = [("tool", "version", "from", "path")]
    rows += [(t.name, t.version or ("?" if t.found else "-"), t.source, t.command or "-")
             for t in tools]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    print()
    missing = [t for t in tools if not t.found]
    for t in missing:
        print(f"unavailable without {t.name}: {t.needed_for}")
    if not missing:
        print("all tools found: every feature is available")
    return 0
