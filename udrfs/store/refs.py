"""Branches and tags: the only mutable files of a store (docs/format.md, "Refs").

`RefStore` is the compare-and-swap interface every ref update goes through: `read` returns a
ref's value and a token, `compare_and_swap` replaces the value only if the token still holds.
The local implementation compares under an exclusive flock and renames the ref file; the
object-store one (backends/s3.py) uses conditional PUTs. `update_ref` is the one optimistic
loop (read, prepare, swap, retry on a lost race) shared by commits, merges and pushes.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from udrfs.errors import AlreadyExistsError, NotFoundError
from udrfs.store.atomic import write_atomic
from udrfs.store.refnames import check_ref_name, is_valid_ref_name

RefKind = Literal["heads", "tags", "remotes"]


def _what(kind: RefKind) -> str:
    return {"heads": "branch", "tags": "tag", "remotes": "remote-tracking ref"}[kind]


class RefStore(ABC):
    """Named refs (kind/name -> commit id) moved only by compare-and-swap.

    A token is whatever the implementation needs to detect that a ref changed since it was
    read (the value itself locally, the ETag on an object store); None means "absent".
    """

    @abstractmethod
    def read(self, kind: RefKind, name: str) -> tuple[str | None, object | None]:
        """The ref's value (None if absent) and the token to swap it with."""

    @abstractmethod
    def compare_and_swap(self, kind: RefKind, name: str, token: object | None, new: str) -> bool:
        """Set the ref to `new` if it is unchanged since the read that gave `token`.

        A None token means the ref must not exist. False: it changed; read again.
        """

    @abstractmethod
    def delete(self, kind: RefKind, name: str) -> None:
        """Remove the ref (NotFoundError if it does not exist)."""

    @abstractmethod
    def delete_if_unchanged(self, kind: RefKind, name: str, token: object | None) -> bool:
        """Remove the ref if it is unchanged since the read that gave `token`; False: it
        moved (or is gone), and nothing was removed."""

    @abstractmethod
    def list(self, kind: RefKind) -> dict[str, str]:
        """Every ref of a kind, sorted by name."""

    def get(self, kind: RefKind, name: str) -> str | None:
        return self.read(kind, name)[0]

    def read_if_changed(
        self, kind: RefKind, name: str, token: object | None
    ) -> tuple[str | None, object | None] | None:
        """Like `read`, but None when the ref still holds what `token` was read with: a
        client polling a ref (a mount of a remote store) then costs a 304, not a body."""
        value, new_token = self.read(kind, name)
        return None if token is not None and new_token == token else (value, new_token)

    def check_cas(self) -> None:
        """Raise RemoteError if the swap is not really conditional (probed where it can lie)."""
        return None

    def create(self, kind: RefKind, name: str, value: str) -> None:
        """Create a ref that must not exist yet (AlreadyExistsError otherwise)."""
        if not self.compare_and_swap(kind, name, None, value):
            raise AlreadyExistsError(f"{_what(kind)} {name!r} already exists")

    def cas(self, kind: RefKind, name: str, expected: str | None, value: str) -> bool:
        """Set the ref to `value` if it still holds `expected` (None: must not exist)."""
        current, token = self.read(kind, name)
        if current != expected:
            return False
        return self.compare_and_swap(kind, name, token, value)


class RefMoved(Exception):
    """Raised by an `update_ref` preparer to give up: the ref moved in a way it cannot take."""


def update_ref(
    refs: RefStore,
    kind: RefKind,
    name: str,
    prepare: Callable[[str | None], str | None],
    attempts: int = 50,
) -> str | None:
    """The optimistic commit loop: read the ref, `prepare(current)` the new value, swap.

    `prepare` sees the ref's current value (None if absent) and returns the value to write
    (None: nothing to do), or raises to give up (a conflict it cannot rebase over). When the
    swap loses a race the ref is read again and `prepare` runs again on the new value, with a
    short jittered pause, up to `attempts` times (then RefMoved). Returns the value written.
    """
    for attempt in range(attempts):
        current, token = refs.read(kind, name)
        new = prepare(current)
        if new is None or new == current:
            return None
        if refs.compare_and_swap(kind, name, token, new):
            return new
        time.sleep(0.002 * min(attempt + 1, 20) * (0.5 + random.random()))
    raise RefMoved(f"{_what(kind)} {name!r} kept moving; gave up after {attempts} attempts")


class LocalRefStore(RefStore):
    """Refs as files under `refs/`, swapped under an exclusive flock (format.md, "Refs")."""

    def __init__(self, refs_dir: Path, locks_dir: Path) -> None:
        self.refs_dir = refs_dir
        self.locks_dir = locks_dir

    def path(self, kind: RefKind, name: str) -> Path:
        # Every read, write, lock and delete of a ref computes its path here, after the check.
        check_ref_name(name, _what(kind))
        return self.refs_dir / kind / name

    def get(self, kind: RefKind, name: str) -> str | None:
        try:
            # A damaged (non-ASCII) ref reads as a value that names no commit, like any
            # other garbage: one bad ref must not make every ref unreadable.
            text = self.path(kind, name).read_bytes().decode("ascii", "replace").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        return text or None

    def read(self, kind: RefKind, name: str) -> tuple[str | None, object | None]:
        # Locally the value is its own token: the swap compares it under the lock.
        value = self.get(kind, name)
        return value, value

    def compare_and_swap(self, kind: RefKind, name: str, token: object | None, new: str) -> bool:
        with self.locked(kind, name):
            if self.get(kind, name) != token:
                return False
            self.set_locked(kind, name, new)
            return True

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
        check_ref_name(name, _what(kind))
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
        return self.compare_and_swap(kind, name, expected, value)

    def create(self, kind: RefKind, name: str, value: str) -> None:
        check_ref_name(name, _what(kind))
        self._check_no_prefix_clash(kind, name)
        if not self.cas(kind, name, None, value):
            raise AlreadyExistsError(f"{_what(kind)} {name!r} already exists")

    def delete(self, kind: RefKind, name: str) -> None:
        with self.locked(kind, name):
            if self.get(kind, name) is None:
                raise NotFoundError(f"no {_what(kind)} named {name!r}")
            self._unlink_locked(kind, name)

    def delete_if_unchanged(self, kind: RefKind, name: str, token: object | None) -> bool:
        with self.locked(kind, name):
            if token is None or self.get(kind, name) != token:
                return False
            self._unlink_locked(kind, name)
            return True

    def _unlink_locked(self, kind: RefKind, name: str) -> None:
        path = self.path(kind, name)
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
