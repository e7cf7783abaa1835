"""A store's files in a local directory: the layout of docs/format.md, as the store has it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from udrfs.errors import NotFoundError
from udrfs.store.atomic import TEMP_PREFIX, fsync_dir, raise_if_full, write_atomic
from udrfs.store.backends.base import Backend, BlobInfo, BlobStore
from udrfs.store.refs import LocalRefStore


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{key} is missing from {self.root}") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{key} is missing from {self.root}") from None

    def put_if_absent(self, key: str, data: bytes) -> bool:
        # Written whole to a temporary file, then linked into place: link() refuses an
        # existing name, so two writers of the same key cannot both "create" it.
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            fsync_dir(path.parent)
            return True
        except OSError as exc:
            raise_if_full(exc, path)
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def put(self, key: str, data: bytes) -> None:
        write_atomic(self._path(key), data)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        fsync_dir(path.parent)

    def stat(self, key: str) -> BlobInfo | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return BlobInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str) -> list[BlobInfo]:
        base = self._path(prefix.rstrip("/")) if prefix.endswith("/") else self.root
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = path.stat()
                    out.append(BlobInfo(key, st.st_size, st.st_mtime))
        return sorted(out, key=lambda b: b.key)


def open_local(path: str) -> Backend:
    root = Path(path).absolute()
    return Backend(str(root), LocalBlobStore(root), LocalRefStore(root / "refs", root / "locks"))
