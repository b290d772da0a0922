"""Writing results: atomic files (temp file + rename) and collision-free output names."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import InvalidParameterError, OutputError

# mkstemp creates files readable by the owner only; outputs get the usual umask permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write a file through ``write(fileobj)`` into a temp file, then rename it into place, so
    that no reader or interrupted run sees a half-written file.

    Raises:
        OutputError: the file cannot be written (disk full, read-only...), with the reason.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, mode) as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise OutputError(f"{describe_os_error(err)} writing {path}") from None
        raise
    return path


def describe_os_error(err: OSError) -> str:
    """A one-line reason for a failed write ("no space left on device (disk full)")."""
    reasons = {
        errno.ENOSPC: "no space left on device (disk full)",
        errno.EACCES: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOTDIR: "a path component is a file, not a folder",
        errno.EEXIST: "a file is in the way of a folder",
        errno.EDQUOT: "disk quota exceeded",
    }
    if err.errno in reasons:
        return reasons[err.errno]
    if "requested and" in str(err) and "written" in str(err):  # numpy's short write
        return reasons[errno.ENOSPC]
    return (err.strerror or str(err)).lower()


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write ``data`` as indented UTF-8 JSON."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)
    return atomic_write(path, lambda fh: fh.write(text + "\n"), mode="w")


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """Atomically write a numpy array (.npy)."""
    return atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise InvalidParameterError(f"not JSON serialisable: {type(obj).__name__}")


class UniqueStems:
    """Hands out output stems, adding ``-2``, ``-3``... when two inputs share a file stem."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, path: str | Path) -> str:
        stem = Path(path).stem or "image"
        candidate, n = stem, 1
        while candidate.lower() in self._used:
            n += 1
            candidate = f"{stem}-{n}"
        self._used.add(candidate.lower())
        return candidate
