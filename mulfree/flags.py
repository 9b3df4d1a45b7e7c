"""Argument types for the command line: every flag is checked when it is parsed.

Each factory returns a function for ``argparse``'s ``type=``; a bad value becomes argparse's
one-line error naming the flag, the value and what is allowed (``mulfree CMD: error:
argument --rows: must be an integer in [1, 64], not 0``), exit status 2, before any work.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["integer", "real", "power_of_two", "choice", "checked", "config_field", "MAX_EPOCHS",
           "SEED", "output_folder"]

#: The most training epochs a command accepts (a run of days, not a typo of forever).
MAX_EPOCHS = 100_000


def _bounds(lo, hi) -> str:
    """`` in [lo, hi]``, `` >= lo``, `` <= hi`` or nothing."""
    if lo is None and hi is None:
        return ""
    return " " + _range(lo, hi)


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"in [{lo:g}, {hi:g}]" if isinstance(lo, float) or isinstance(hi, float) \
            else f"in [{lo}, {hi}]"
    if lo is not None:
        return f">= {lo}"
    return f"<= {hi}"


def integer(lo: int | None = None, hi: int | None = None):
    """An integer in ``[lo, hi]`` (either bound may be None): "8", not "8.0" or "1e3"."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer{_bounds(lo, hi)}, not {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer{_bounds(lo, hi)}, "
                                             f"not {value}")
        return value

    parse.__name__ = "integer"
    return parse


def real(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False):
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""

    def allowed() -> str:
        if lo_open and hi is None:
            return f"a finite number > {lo:g}"
        if lo_open:
            return f"a finite number in ({lo:g}, {hi:g}]"
        return f"a finite number{_bounds(lo, hi)}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed()}, not {text!r}") from None
        if not math.isfinite(value) or (lo is not None and (value <= lo if lo_open
                                                            else value < lo)) \
                or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {allowed()}, not {text}")
        return value

    parse.__name__ = "number"
    return parse


def power_of_two(lo: int, hi: int):
    """A power of two in ``[lo, hi]``."""
    check = integer(lo, hi)

    def parse(text: str) -> int:
        try:
            value = check(text)
        except argparse.ArgumentTypeError:
            value = None
        if value is None or value & (value - 1):
            raise argparse.ArgumentTypeError(f"must be a power of two in [{lo}, {hi}], not "
                                             f"{text!r}")
        return value

    parse.__name__ = "power of two"
    return parse


def choice(names, what: str = ""):
    """One of ``names`` (like ``choices=``, with the allowed names in the message); ``what``
    names the kind of thing (``"network"``)."""
    names = tuple(names)
    noun = f"{what} " if what else ""

    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"unknown {noun}{text!r}; allowed: "
                                             f"{', '.join(names)}")
        return text

    parse.__name__ = "name"
    return parse


def checked(check):
    """A string accepted by ``check`` (which returns it or raises ``ValueError``)."""

    def parse(text: str):
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


def config_field(name: str):
    """An integer the accelerator's parameter ``name`` accepts (``--rows``, ``--lanes``...):
    checked by ``hw.schedule.AcceleratorConfig`` itself, the one place its limits are
    written, with the other parameters at their defaults (a check across parameters follows
    once all are known)."""
    from hw.schedule import AcceleratorConfig
    as_integer = integer()

    def parse(text: str) -> int:
        value = as_integer(text)
        try:
            AcceleratorConfig(**{name: value})
        except ValueError as exc:
            message = str(exc)
            raise argparse.ArgumentTypeError(message[len(name) + 1:] if message.startswith(
                f"{name} ") else message) from None
        return value

    parse.__name__ = "integer"
    return parse


#: A seed of NumPy's random generators: a non-negative integer.
SEED = integer(0, 2**63 - 1)


def output_folder(parser: argparse.ArgumentParser, holds: str) -> None:
    """``-o/--output DIR`` (an output folder holding ``holds``) and ``--force`` (replace an
    existing one), as every command writing a folder takes them."""
    parser.add_argument("-o", "--output", metavar="DIR", help=f"output folder: {holds}")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
