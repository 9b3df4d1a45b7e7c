"""The file container of mulfree's model files: ``.npz`` arrays plus a JSON manifest.

The manifest (stored as the UTF-8 bytes of the array ``manifest``) names the file's
``format`` and ``version`` and holds a SHA-256 of every array and of the manifest itself
(``whole_checksum``), so a file of another kind, another version, with damaged arrays or an
edited manifest is refused with one clear line. Writes are atomic (``model.files``): a
temporary file in the target folder renamed at the end, so no half-written file is left, and
an existing file is replaced only when asked (``--force``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np

from model.files import atomic_write

__all__ = ["checksum", "whole_checksum", "write_container", "read_container"]


def checksum(arrays: dict) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _manifest_text(manifest: dict) -> str:
    return json.dumps(_jsonable(manifest), indent=1, sort_keys=True)


def whole_checksum(arrays: dict, manifest: dict) -> str:
    """SHA-256 over every array (``checksum``) and the manifest without its ``sha256``."""
    rest = {k: v for k, v in manifest.items() if k != "sha256"}
    h = hashlib.sha256(checksum(arrays).encode())
    h.update(_manifest_text(rest).encode("utf-8"))
    return h.hexdigest()


def write_container(path, *, format: str, version: int, manifest: dict, arrays: dict,
                    overwrite: bool = False, compressed: bool = True) -> None:
    """Write ``arrays`` and ``manifest`` (plus format, version and checksum) to ``path``."""
    if "manifest" in arrays:
        raise ValueError("an array may not be called 'manifest'")
    manifest = dict(_jsonable(manifest), format=format, version=version)
    manifest["sha256"] = whole_checksum(arrays, manifest)
    text = _manifest_text(manifest)
    payload = dict(arrays, manifest=np.frombuffer(text.encode("utf-8"), dtype=np.uint8))
    with atomic_write(path, force=overwrite) as f:
        (np.savez_compressed if compressed else np.savez)(f, **payload)


def read_container(path, *, format: str, version: int | tuple[int, ...], what: str,
                   again: str = "") -> tuple[dict, dict]:
    """Read a file written by ``write_container``; return ``(manifest, arrays)``.

    ``version`` is the one version read, or a tuple of them; ``what`` names the kind of file
    in the messages ("mulfree model"); ``again`` is advice appended when the version differs.
    Every refusal is a one-line ``ValueError``.
    """
    versions = (version,) if isinstance(version, int) else tuple(version)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{what} file {path!r} not found")
    bad = f"{path!r} is not a valid {what} file"
    try:
        with open(path, "rb") as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise ValueError(f"{bad}: cannot read it as .npz ({type(exc).__name__})") from None
    if "manifest" not in arrays:
        raise ValueError(f"{bad}: no manifest")
    try:
        manifest = json.loads(arrays.pop("manifest").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{bad}: its manifest is not JSON") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != format:
        raise ValueError(f"{bad}: format is {found!r}, not {format!r}")
    found_version = manifest.get("version")
    if isinstance(found_version, bool) or found_version not in versions:
        readable = (f"version {versions[0]}" if len(versions) == 1 else
                    f"versions {', '.join(map(str, versions[:-1]))} and {versions[-1]}")
        raise ValueError(f"{path!r} is a version {found_version!r} {what}; this "
                         f"mulfree reads {readable} only{again}")
    if manifest.get("sha256") != whole_checksum(arrays, manifest):
        if manifest.get("sha256") == checksum(arrays):
            raise ValueError(f"{path!r} was written by an older mulfree whose checksum does not "
                             f"cover the manifest{again or '; write it again'}")
        raise ValueError(f"{bad}: checksum mismatch (the arrays or the manifest were changed "
                         "or damaged)")
    return manifest, arrays
