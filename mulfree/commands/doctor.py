"""``mulfree doctor``: which tools were found, their versions, and what is missing."""

from __future__ import annotations


from sim import toolchain

#: The Python packages of the ``qonnx`` extra (``mulfree import``).
QONNX_EXTRA = ("qonnx", "onnx", "onnxruntime")


def qonnx_extra() -> dict[str, str | None]:
    """The installed version of each package of the ``qonnx`` extra (None: missing)."""
    return toolchain.package_versions(QONNX_EXTRA)


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
    extra = qonnx_extra()
    print("qonnx extra: " + ", ".join(f"{name} {version or '-'}"
                                      for name, version in extra.items()))
    missing = [t for t in tools if not t.found]
    for t in missing:
        print(f"unavailable without {t.name}: {t.needed_for}")
    absent = [name for name, version in extra.items() if version is None]
    if absent:
        print(f"unavailable without {', '.join(absent)} (pip install 'mulfree[qonnx]'): "
              "mulfree import")
    if not missing and not absent:
        print("all tools found: every feature is available")
    return 0
