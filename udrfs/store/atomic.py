"""The one way UDR-FS writes a file: temp file in the same directory, fsync, rename, fsync dir."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from udrfs.errors import StoreFullError

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` so that a crash leaves either no file or the whole file."""
    with atomic_file(path, durable) as f:
        f.write(data)


@contextmanager
def atomic_file(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """A file to write `path` through: it takes `path`'s name only once the block ends
    without an exception; on any failure `path` is left as it was and the temp file removed.

    Without `durable` nothing is fsynced: readers never see a torn file, but a crash may
    lose it (or leave it empty). Only for caches whose files are checked when read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.rename(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise_if_full(exc, path)
        raise


def raise_if_full(exc: OSError, path: Path | str) -> None:
    """Turn ENOSPC/EDQUOT into a StoreFullError that says what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StoreFullError(
            exc.errno,
            f"disk full while writing {path}; nothing was committed. Free space (`udr gc STORE` "
            "reclaims what aborted writes left, after its grace period) and retry.",
        ) from exc
