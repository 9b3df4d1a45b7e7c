"""The ``mulfree`` command line.

Each subcommand lives in its own module of ``mulfree.commands`` and provides
``register(subparsers)``, which adds its parser and sets ``func`` (taking the parsed
arguments, returning an exit status). Every flag is checked when it is parsed
(``mulfree.flags``); bad input found later raises ``UsageError`` or ``ValueError`` before any
work starts, and becomes one line on stderr with exit status 2 (see ``main``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

import mulfree
import mulfree.commands
from model.progress import LOGGER
from mulfree.errors import UsageError

# The order commands are listed in ``mulfree --help`` (others follow alphabetically).
_ORDER = ["demo", "train", "evaluate", "inspect", "quantize", "compress", "import", "generate",
          "run-layer", "run-model", "energy", "build", "explore", "doctor"]


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


#: Set to 1 to see the traceback of an internal error instead of the one-line report.
TRACEBACK_VARIABLE = "MULFREE_TRACEBACK"


def _show_progress_lines(args) -> logging.Handler | None:
    """Print the progress lines of library code (``model.progress.report``) on stderr for
    this command, unless it was asked to be quiet."""
    if getattr(args, "quiet", False) or getattr(args, "no_progress", False):
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    return handler


def main(argv: list[str] | None = None) -> int:
    """Run ``mulfree`` with ``argv``; returns the exit status.

    0: done; 1: done, but the result is wrong (a mismatch) or the work failed (a tool, the
    file system); 2: bad input, refused before any work (one line naming the value and what
    is allowed); 130: interrupted. No traceback reaches the user: an unexpected error is
    reported as an internal error in one line (``MULFREE_TRACEBACK=1`` shows the traceback).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a flag refused (one line, status 2)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    name = f"mulfree {args.command}"
    handler = _show_progress_lines(args)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError) as exc:
        print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"{name}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        print(f"{name}: internal error: {type(exc).__name__}: {_one_line(exc)} -- this is a "
              f"bug in mulfree; please report it with the command line and `mulfree "
              f"--version` ({TRACEBACK_VARIABLE}=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        if handler is not None:
            LOGGER.removeHandler(handler)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
