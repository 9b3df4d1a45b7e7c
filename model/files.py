"""Output files and folders: checked before the work, written whole or not at all.

Every writer of mulfree goes through here:

- ``check_new_file`` / ``check_new_folder`` refuse an output path before any work starts, with
  one ``ValueError`` line naming it: a folder where a file is expected (or a file where a
  folder is expected: never replaced, not even with ``force``), an existing output without
  ``force``, a missing or read-only folder.
- ``atomic_write`` writes a file under a temporary name in the target folder and renames it
  into place only when the writing succeeded, so no half-written file is ever left under a
  final name; ``staged_folder`` does the same for a folder.
- Files and folders get the mode the umask gives (as ``open`` would), not the private mode
  of ``tempfile``.

Standard library only (``model`` stays free of hardware imports).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["umask", "check_new_file", "check_new_folder", "atomic_write", "staged_folder"]


def umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _check_writable_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise ValueError(f"folder {str(folder)!r} of {what} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} (the folder of {what}) is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"folder {str(folder)!r} of {what} is not writable")


def check_new_file(path, *, force: bool = False) -> Path:
    """``path`` as a ``Path`` if a file may be written there; else ``ValueError`` (one line).

    Refused: an existing folder, an existing file without ``force``, a folder that does not
    exist, is not a folder, or is not writable.
    """
    path = Path(os.fspath(path))
    if str(path) in ("", "."):
        raise ValueError("the output file name is empty")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; a file name is expected")
    if path.exists() and not force:
        raise ValueError(f"{str(path)!r} exists; use --force to overwrite it")
    _check_writable_folder(path.absolute().parent, repr(str(path)))
    return path


def check_new_folder(path, *, force: bool = False) -> Path:
    """``path`` as a ``Path`` if a folder may be written there (created with its parents);
    else ``ValueError`` (one line).

    Refused: an existing file (never replaced by a folder, even with ``force``), a non-empty
    folder without ``force``, and a nearest existing parent that is not a writable folder.
    """
    path = Path(os.fspath(path))
    if str(path) == "":
        raise ValueError("the output folder name is empty")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, not a folder; name another output folder "
                         "(a file is never replaced by a folder, even with --force)")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ValueError(f"output folder {str(path)!r} exists and is not empty; use --force to "
                         "replace it")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    _check_writable_folder(parent, f"output folder {str(path)!r}")
    return path


@contextlib.contextmanager
def atomic_write(path, *, force: bool = False, mode: str = "wb", encoding: str | None = None):
    """Write ``path`` whole or not at all: yields an open file (``mode`` ``"wb"`` or ``"w"``)
    on a temporary name in the target folder, renamed to ``path`` when the block ends
    without an exception and removed otherwise. The file gets the umask's mode.

    ``path`` is checked first (``check_new_file``); an existing file is replaced only with
    ``force``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', not {mode!r}")
    path = check_new_file(path, force=force)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                         dir=path.absolute().parent)
    try:
        text = {"encoding": encoding or "utf-8", "newline": "\n"} if mode == "w" else {}
        with os.fdopen(handle, mode, **text) as stream:
            yield stream
        os.chmod(temporary, 0o666 & ~umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def staged_folder(path, *, force: bool = False):
    """Build a folder whole or not at all: yields a temporary folder beside ``path`` that
    replaces ``path`` when the block ends without an exception and is removed otherwise.

    ``path`` is checked first (``check_new_folder``): an existing folder is replaced only with
    ``force`` (or when empty), an existing file never. The folder gets the umask's mode.
    """
    path = check_new_folder(path, force=force)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.absolute().parent))
    try:
        yield work
        os.chmod(work, 0o777 & ~umask())
        check_new_folder(path, force=force)  # nothing took its place meanwhile
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
