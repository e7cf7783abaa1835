"""The collector's record of condemned files, `gc/condemned.json` (docs/format.md, "Garbage
collection").

Only `udr gc` writes it (atomically, under `locks/gc.lock`). Writers read it without a lock:
a writer never reuses a condemned file, so a file that is still condemned a grace period
after it was recorded is one nobody has started to depend on since. `CondemnedView` is how a
writer reads it: one `stat` per check, a parse only when the file changed
(`RemoteCondemnedView`: one HEAD of the remote's record). The collector deletes a condemned
file of a directory through `remove_if_unchanged` (catalog/gc_storage.py).

On an object store, which has no rename, a run marks what it is about to delete
(`Condemned.deleting`) before its first DELETE; a writer that must write such a file again
waits until that run is over (`RemoteCondemnedView.rewrite`), so its write never lands between
the collector's check of a file and its DELETE (docs/architecture.md, "Garbage collection").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from udrfs.errors import CorruptObjectError, GcInterruptedError, NotFoundError
from udrfs.store.atomic import TEMP_PREFIX, fsync_dir, write_atomic
from udrfs.store.backends.base import BlobStore
from udrfs.store.keys import object_key

GC_DIR = "gc"
RECORD_NAME = "condemned.json"
RECORD_FORMAT = 1
RECORD_KEY = f"{GC_DIR}/{RECORD_NAME}"
# A file the collector moved aside, then checks (format.md, "Garbage collection").
TRASH_PREFIX = f"{TEMP_PREFIX}gc-"
# The lock that keeps a second collector out (on an object store, an object whose holder
# renews it; a lock not renewed for its `stale_after` seconds is taken over).
LOCK_KEY = "locks/gc.lock"
DEFAULT_LOCK_STALE_SECONDS = 15 * 60.0
# A writer waiting for a run to finish deleting a file it must write again: how often it
# looks, and for how long at most.
SETTLE_POLL_SECONDS = 0.25
SETTLE_TIMEOUT_SECONDS = 30 * 60.0


@dataclass(frozen=True)
class FileIdentity:
    """What tells a file from another written under the same name: its modification time,
    size and inode in a directory; its LastModified, size and ETag on an object store."""

    mtime_ns: int
    size: int
    ino: int = 0
    etag: str | None = None

    @classmethod
    def of_stat(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True)
class Condemned:
    """One condemned file: when (storage time) and which file exactly (its identity then)."""

    since: float  # the storage's clock when the run that condemned it began (seconds)
    mtime_ns: int
    size: int
    ino: int
    etag: str | None = None  # on an object store (format.md, "Garbage collection")
    # Set by the run that is deleting it (the storage's clock when that run began).
    deleting: float | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "since": self.since,
            "mtime_ns": self.mtime_ns,
            "size": self.size,
            "ino": self.ino,
        }
        if self.etag is not None:
            doc["etag"] = self.etag
        if self.deleting is not None:
            doc["deleting"] = self.deleting
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Condemned:
        etag, deleting = doc.get("etag"), doc.get("deleting")
        return cls(
            float(doc["since"]),
            int(doc["mtime_ns"]),
            int(doc["size"]),
            int(doc["ino"]),
            None if etag is None else str(etag),
            None if deleting is None else float(deleting),
        )

    def same_as(self, f: FileIdentity) -> bool:
        """Whether `f` is still the file that was condemned (not rewritten since)."""
        return (f.mtime_ns, f.size, f.ino, f.etag) == (
            self.mtime_ns,
            self.size,
            self.ino,
            self.etag,
        )

    def same_file(self, st: os.stat_result) -> bool:
        """`same_as` for a file in a directory."""
        return self.same_as(FileIdentity.of_stat(st))


def identity(f: FileIdentity, since: float) -> Condemned:
    return Condemned(since, f.mtime_ns, f.size, f.ino, f.etag)


def record_path(root: Path) -> Path:
    return root / GC_DIR / RECORD_NAME


def parse_record(raw: bytes, where: str, store: str) -> dict[str, Condemned]:
    """The record's files (store-relative key -> condemnation); CorruptObjectError if damaged."""
    try:
        doc = json.loads(raw)
        if doc.get("format") != RECORD_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        return {str(k): Condemned.from_json(v) for k, v in doc["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptObjectError(
            f"{where} is damaged ({exc}); delete it and run `udr gc {store}` again (files it "
            "condemned are condemned again by later runs, nothing is deleted without it)"
        ) from None


def encode_record(files: dict[str, Condemned]) -> bytes:
    doc = {
        "format": RECORD_FORMAT,
        "files": {k: files[k].to_json() for k in sorted(files)},
    }
    return json.dumps(doc, indent=0, sort_keys=True).encode()


def read_record(root: Path) -> dict[str, Condemned]:
    """Store-relative path -> its condemnation; {} when no gc has condemned anything."""
    path = record_path(root)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    return parse_record(raw, str(path), str(root))


def write_record(root: Path, files: dict[str, Condemned]) -> None:
    write_atomic(record_path(root), encode_record(files))


def read_remote_record(blobs: BlobStore) -> dict[str, Condemned] | None:
    """The record of a store behind a backend (`gc/condemned.json` there); None when no
    collector ever ran on it."""
    try:
        raw = blobs.get(RECORD_KEY)
    except NotFoundError:
        return None
    return parse_record(raw, f"{blobs.url}/{RECORD_KEY}", blobs.url)


def condemned_packs(record: dict[str, Condemned]) -> set[str]:
    """Ids of the packs a record condemns."""
    return {k[9:-5] for k in record if k.startswith("packs/") and k.endswith(".pack")}


class CondemnedView:
    """What a writer needs from the record: is this pack or object condemned? Re-read when
    the file changed (by its mtime, size and inode), never more than one `stat` per call."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._seen: object | None = None
        self._files: dict[str, Condemned] = {}
        # Counts the changes seen, so that several users of one view each notice a change.
        self.generation = 0

    def _version(self) -> object | None:
        """What changes when the record is written again (None: there is no record)."""
        try:
            st = record_path(self.root).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> dict[str, Condemned]:
        return read_record(self.root)

    def _changed(self) -> None:
        """Called once a change of the record was seen (before `refresh` returns)."""

    def refresh(self) -> int:
        """Re-read the record if it changed; returns `generation` (which grows on a change)."""
        key = self._version()
        with self._lock:
            if key == self._seen:
                return self.generation
            try:
                files = self._read() if key is not None else {}
            except CorruptObjectError:
                files = self._files  # a damaged record: keep what was known
            self._files, self._seen = files, key
            self.generation += 1
            generation = self.generation
        self._changed()
        return generation

    def packs(self) -> list[str]:
        with self._lock:
            return sorted(condemned_packs(self._files))

    def has_object(self, object_id: str) -> bool:
        with self._lock:
            return object_key(object_id) in self._files

    def empty(self) -> bool:
        """Whether the record (as last read) condemns nothing."""
        with self._lock:
            return not self._files

    def rewrite(self, key: str, write: Callable[[], None]) -> None:
        """Write again a file the collector condemned (`key` as in the record), so that it is
        kept. In a directory the collector moves a file aside before checking it, which
        covers a write at any moment: nothing to wait for."""
        write()


class RemoteCondemnedView(CondemnedView):
    """The record of a store on a remote (`gc/condemned.json` there), re-read when its ETag
    changes: one HEAD per call. `on_change` is told when it did (the remote store forgets
    the packs the collector deleted). A remote that cannot be reached raises RemoteError:
    a writer that cannot see the record does not write."""

    def __init__(
        self, root: Path, blobs: BlobStore, on_change: Callable[[], object] | None = None
    ) -> None:
        super().__init__(root)
        self.blobs = blobs
        self.on_change = on_change

    def _version(self) -> object | None:
        info = self.blobs.stat(RECORD_KEY)
        return None if info is None else (info.etag, info.size, info.mtime)

    def _read(self) -> dict[str, Condemned]:
        return read_remote_record(self.blobs) or {}

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def rewrite(self, key: str, write: Callable[[], None]) -> None:
        """Write again a condemned file: never while a run is deleting it (its write could land
        between that run's check and its DELETE, and be lost), and again if a run began
        deleting it while it was being written (module docstring)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while True:
            while self._being_deleted(key, deadline):
                time.sleep(SETTLE_POLL_SECONDS)
            write()
            if not self._being_deleted(key, deadline):
                return

    def _being_deleted(self, key: str, deadline: float) -> bool:
        """Whether a collector run may be deleting `key` now: the record marks it and the run
        still holds the lock (a run ends by deleting it). GcInterruptedError if that run
        stopped renewing its lock, or is still at it after `SETTLE_TIMEOUT_SECONDS`."""
        self.refresh()
        with self._lock:
            condemned = self._files.get(key)
        if condemned is None or condemned.deleting is None:
            return False
        lock = self.blobs.stat(LOCK_KEY)
        if lock is None:
            return False
        holder = read_lock(self.blobs)
        stale_after = holder.get("stale_after", DEFAULT_LOCK_STALE_SECONDS)
        if time.time() - lock.mtime > float(stale_after) or time.monotonic() > deadline:
            raise GcInterruptedError(
                f"a `udr gc` run on {self.blobs.url} holds its lock ({describe_lock(holder)}) "
                f"and is deleting {key}, which this write needs; it stopped renewing the lock "
                f"or runs too long, so this write stops and nothing it belongs to lands: run "
                f"`udr gc {self.blobs.url}` (it takes over a stale lock and finishes the "
                "deletion), then write again"
            )
        return True


def read_lock(blobs: BlobStore) -> dict[str, Any]:
    """The holder of a remote's collector lock ({} if absent or unreadable)."""
    try:
        doc = json.loads(blobs.get(LOCK_KEY))
    except (NotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def describe_lock(holder: dict[str, Any]) -> str:
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder["time"])))
        return f"taken by pid {holder['pid']} on {holder['host']} at {when}"
    except (KeyError, TypeError, ValueError):
        return "its holder cannot be read"


def remove_if_unchanged(path: Path, condemned: Condemned | None) -> bool:
    """Delete `path` if it is still the file that was condemned (any file if None); True if
    it is gone. It is first moved aside (a rename within its directory), then checked: a
    writer that rewrote it just before the move gets its file back (format.md, "Garbage
    collection"). A temporary file a live process holds is left alone."""
    if path.name.startswith(TEMP_PREFIX) and in_use(path):
        return False
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return True
    if condemned is not None and not condemned.same_file(trash.stat()):
        restore(trash, path)
        return False
    trash.unlink()
    fsync_dir(path.parent)
    return True


def restore(trash: Path, path: Path) -> None:
    """Put a file moved aside back under its name."""
    # FileExistsError: written again meanwhile, the same content under the same name.
    with contextlib.suppress(FileExistsError):
        os.link(trash, path)
    trash.unlink()
    fsync_dir(path.parent)


def in_use(path: Path) -> bool:
    """Whether a live process holds this temporary file open (the chunk engine keeps a
    shared flock on the packs it is writing, which the kernel drops when it exits)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False
