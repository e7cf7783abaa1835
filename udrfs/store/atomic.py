"""The one way UDR-FS writes a file: temp file in the same directory, fsync, rename, fsync dir."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from udrfs.errors import StoreFullError

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise_if_full(exc, path)
        raise


def raise_if_full(exc: OSError, path: Path | str) -> None:
    """Turn ENOSPC/EDQUOT into a StoreFullError that says what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StoreFullError(
            exc.errno,
            f"disk full while writing {path}; nothing was committed. "
            "Free space and retry (unreferenced data is reclaimed by `udr gc`).",
        ) from exc
