"""The ``mulfree`` command line.

Each subcommand lives in its own module of ``mulfree.commands`` and provides
``register(subparsers)``, which adds its parser and sets ``func`` (taking the parsed
arguments, returning an exit status). Bad input raises ``UsageError`` or ``ValueError``
and becomes one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import mulfree
import mulfree.commands
from mulfree.errors import UsageError

# The order commands are listed in ``mulfree --help`` (others follow alphabetically).
_ORDER = ["demo", "train", "evaluate", "inspect", "quantize", "compress", "import", "generate",
          "run-layer", "energy", "build", "doctor"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2 (argparse's own usage dump is noise)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mulfree", description=(
        "Generate multiplier-free FPGA accelerators for quantized neural networks, "
        "and prove every output bit against the golden model."))
    parser.add_argument("--version", action="version", version=f"mulfree {mulfree.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = [importlib.import_module(f"mulfree.commands.{m.name}")
               for m in pkgutil.iter_modules(mulfree.commands.__path__)]
    rank = {name.replace("-", "_"): i for i, name in enumerate(_ORDER)}
    # A module named after a Python keyword has a trailing underscore (import_).
    for module in sorted(modules, key=lambda m: (rank.get(m.__name__.rsplit(".", 1)[1]
                                                          .rstrip("_"), 99), m.__name__)):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError) as exc:
        print(f"mulfree {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mulfree: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
