"""Branches and tags: the only mutable files of a store (docs/format.md, "Refs").

A branch moves only by compare-and-swap under an exclusive flock; the atomic rename of the
ref file is the one commit point of the whole store.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from udrfs.errors import AlreadyExistsError, CorruptObjectError, NotFoundError
from udrfs.store.atomic import write_atomic
from udrfs.store.refnames import check_ref_name, is_valid_ref_name

RefKind = Literal["heads", "tags"]


class RefStore:
    def __init__(self, refs_dir: Path, locks_dir: Path) -> None:
        self.refs_dir = refs_dir
        self.locks_dir = locks_dir

    def path(self, kind: RefKind, name: str) -> Path:
        # Every read, write, lock and delete of a ref computes its path here, after the check.
        check_ref_name(name, "branch" if kind == "heads" else "tag")
        return self.refs_dir / kind / name

    def get(self, kind: RefKind, name: str) -> str | None:
        try:
            # A damaged (non-ASCII) ref reads as a value that names no commit, like any
            # other garbage: one bad ref must not make every ref unreadable.
            text = self.path(kind, name).read_bytes().decode("ascii", "replace").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except UnicodeDecodeError:
            raise CorruptObjectError(
                f"ref file {self.path(kind, name)} is not a commit id; `udr fsck --repair "
                f"{self.refs_dir.parent}` restores it"
            ) from None
        return text or None

    def list(self, kind: RefKind) -> dict[str, str]:
        base = self.refs_dir / kind
        found: dict[str, str] = {}
        for dirpath, _dirs, files in os.walk(base):
            for fname in files:
                name = os.path.relpath(os.path.join(dirpath, fname), base)
                if not is_valid_ref_name(name):
                    continue  # a temporary file, or a name no ref may have
                value = self.get(kind, name)
                if value:
                    found[name] = value
        return dict(sorted(found.items()))

    @contextmanager
    def locked(self, kind: RefKind, name: str) -> Iterator[None]:
        """Hold the ref's exclusive lock (across processes) for a read-compare-write."""
        check_ref_name(name, "branch" if kind == "heads" else "tag")
        lock_path = self.locks_dir / kind / f"{name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def set_locked(self, kind: RefKind, name: str, value: str) -> None:
        """Write a ref; the caller holds `locked(kind, name)` and has compared."""
        write_atomic(self.path(kind, name), f"{value}\n".encode("ascii"))

    def cas(self, kind: RefKind, name: str, expected: str | None, value: str) -> bool:
        """Set the ref to `value` if it still holds `expected` (None: must not exist)."""
        with self.locked(kind, name):
            if self.get(kind, name) != expected:
                return False
            self.set_locked(kind, name, value)
            return True

    def create(self, kind: RefKind, name: str, value: str) -> None:
        check_ref_name(name, "branch" if kind == "heads" else "tag")
        self._check_no_prefix_clash(kind, name)
        if not self.cas(kind, name, None, value):
            what = "branch" if kind == "heads" else "tag"
            raise AlreadyExistsError(f"{what} {name!r} already exists")

    def delete(self, kind: RefKind, name: str) -> None:
        with self.locked(kind, name):
            path = self.path(kind, name)
            if self.get(kind, name) is None:
                what = "branch" if kind == "heads" else "tag"
                raise NotFoundError(f"no {what} named {name!r}")
            path.unlink()
            # Drop now-empty parent directories of a nested name.
            parent = path.parent
            while parent != self.refs_dir / kind and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    def _check_no_prefix_clash(self, kind: RefKind, name: str) -> None:
        # "a" and "a/b" cannot both exist: one would be a file, the other a directory.
        parts = name.split("/")
        for i in range(1, len(parts)):
            if self.path(kind, "/".join(parts[:i])).is_file():
                raise AlreadyExistsError(
                    f"cannot create {name!r}: {'/'.join(parts[:i])!r} already exists"
                )
        if self.path(kind, name).is_dir():
            raise AlreadyExistsError(f"cannot create {name!r}: names below it exist")
