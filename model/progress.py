"""Progress on long work: a bar on a terminal, a line per stage otherwise.

``progress_bar(total, desc=..., enabled=...)`` gives a tqdm bar when standard error is a
terminal. When it is not (a log file, a pipe, CI), a bar would write every step; instead the
bar prints one line when it starts, one per stage (``set_description``) and one when it
ends, with the elapsed time. ``stage(...)`` does the same for a step with no count (a
Verilator build, a synthesis run). Both write to standard error.

``mulfree`` turns the lines of library code (``report(...)``, e.g. from
``sim.cocotb_runner``) on for a command unless it is asked to be quiet; they are logged
under the ``mulfree`` logger at INFO level and silent by default.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

__all__ = ["on_terminal", "progress_bar", "stage", "report", "LOGGER"]

#: The logger of progress lines from library code (silent unless a handler is added).
LOGGER = logging.getLogger("mulfree")


def on_terminal(stream=None) -> bool:
    """Whether ``stream`` (default: standard error) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("ch", "sh", "s", "x")) else "s")


def _elapsed(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


class _LineProgress:
    """The bar's interface (``update``, ``set_description``, ``set_postfix``, ``close``),
    writing a line per stage instead of redrawing."""

    def __init__(self, total, desc: str, unit: str, file):
        self.total, self.unit, self.file = total, unit, file
        self.n = 0
        self.desc = desc
        self.postfix = ""
        self.started = time.monotonic()
        self._closed = False
        self._say(f"{desc}: started" + (f" ({total:,} {_plural(unit)})" if total else ""))

    def _say(self, line: str) -> None:
        print(line, file=self.file, flush=True)

    def _stage_line(self) -> str:
        done = f"{self.n:,}/{self.total:,} {_plural(self.unit)}" if self.total else \
            f"{self.n:,} {_plural(self.unit)}"
        extra = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done}{extra}, {_elapsed(time.monotonic() - self.started)}"

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_description(self, desc: str, refresh: bool = True) -> None:
        if desc != self.desc and self.n:
            self._say(self._stage_line())
        self.desc = desc

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._say(self._stage_line().replace(": ", ": done, ", 1))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class _NoProgress(_LineProgress):
    def __init__(self, *args, **kwargs):
        self.n, self.total, self.desc, self.postfix = 0, None, "", ""

    def set_description(self, desc: str, refresh: bool = True) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total=None, *, desc: str = "", unit: str = "it", enabled: bool = True,
                 file=None):
    """A progress bar over ``total`` steps: tqdm on a terminal, a line per stage otherwise,
    nothing when not ``enabled``. Use it as a context manager or call ``close``."""
    file = sys.stderr if file is None else file
    if not enabled:
        return _NoProgress()
    if on_terminal(file):
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=file, leave=False,
                    dynamic_ncols=True)
    return _LineProgress(total, desc, unit, file)


def report(line: str) -> None:
    """A progress line from library code (shown by the ``mulfree`` commands)."""
    LOGGER.info(line)


@contextlib.contextmanager
def stage(what: str):
    """A step with no count: ``report`` a line when it starts and one when it ends."""
    started = time.monotonic()
    report(f"{what} ...")
    yield
    report(f"{what}: done in {_elapsed(time.monotonic() - started)}")
