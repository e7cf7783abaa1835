"""Where the collector (catalog/gc.py) finds, reads and deletes a store's files: one small
interface, `GcStorage`, with a store in a local directory (`LocalGcStorage`) and a store on
an object store such as S3 or R2 (`RemoteGcStorage`, over the store's `BlobStore` and
`RefStore`). The collector's rules are written once, in gc.py; what differs is here
(docs/architecture.md, "Garbage collection"):

- a file's age: its mtime, or the object's LastModified; the storage's clock: the mtime of a
  probe file, or the LastModified of a probe object;
- a file's identity, which tells a rewrite: mtime, size and inode, or LastModified, size and
  ETag;
- the lock that keeps a second collector out: a `flock` on `locks/gc.lock`, or the object
  `locks/gc.lock` created by a conditional PUT (If-None-Match), renewed while the run lasts
  (a conditional PUT, If-Match), taken over once not renewed for its `stale_after` seconds,
  removed when the run ends;
- deleting a condemned file only if unchanged: moved aside, checked, then unlinked; or a HEAD
  that checks it, then a DELETE (an object store has no rename; writers wait for a run that
  marked a file as being deleted: store/condemned.py).

Every read fails closed: an error while listing or reading raises `UnsafeToCollect`.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from udrfs.catalog.crashpoints import crashpoint
from udrfs.catalog.liveness import (
    REF_KINDS,
    UnsafeToCollect,
    read_expired,
    read_refs_of,
    walk_files,
)
from udrfs.catalog.tx_files import process_alive
from udrfs.errors import CorruptObjectError, NotFoundError, UdrError, UsageError
from udrfs.store.atomic import TEMP_PREFIX
from udrfs.store.backends.base import BlobInfo, BlobStore
from udrfs.store.condemned import (
    DEFAULT_LOCK_STALE_SECONDS,
    GC_DIR,
    LOCK_KEY,
    RECORD_KEY,
    TRASH_PREFIX,
    Condemned,
    FileIdentity,
    describe_lock,
    encode_record,
    in_use,
    parse_record,
    read_lock,
    read_record,
    remove_if_unchanged,
    restore,
    write_record,
)
from udrfs.store.expired import EXPIRED_DIR, ExpiredRecord, is_record_name
from udrfs.store.keys import pack_key
from udrfs.store.objects import is_object_id
from udrfs.store.refnames import is_valid_ref_name
from udrfs.store.refs import RefKind

if TYPE_CHECKING:
    from udrfs.store.remote_store import RemoteStore

LOCK_NAME = LOCK_KEY.rsplit("/", 1)[-1]
# Fragments read from a remote at once.
FRAGMENT_READERS = 8

T = TypeVar("T")


class GcRefused(UsageError):
    """The collector will not run as asked (another run holds the lock, clock skew, or a
    deletion larger than allowed without `force`). Nothing was changed."""


@dataclass(frozen=True)
class StoredFile:
    """One file the collector may consider: its kind, size, age and identity."""

    key: str  # store-relative, as in docs/format.md ("packs/ab/<id>.pack")
    kind: str  # "pack", "index", "object", "temp", "spill"
    size: int
    mtime: float  # the storage's clock, seconds
    identity: FileIdentity


def kind_of(key: str) -> str | None:
    """The kind of a packs/, index/ or objects/ file by its key; None for any other file."""
    name = key.rsplit("/", 1)[-1]
    if name.startswith(TEMP_PREFIX):
        return "temp"
    top = key.split("/", 1)[0]
    if top == "packs" and name.endswith(".pack") and is_object_id(name[:-5]):
        return "pack"
    if top == "index" and name.endswith(".idx") and is_object_id(name[:-4]):
        return "index"
    if top == "objects" and is_object_id(name):
        return "object"
    return None


class GcStorage(ABC):
    """What the collector needs of the storage a store lives on (the module docstring)."""

    where: str  # the store as its user names it (a directory, or s3://BUCKET/PREFIX)

    @abstractmethod
    def locked(self) -> AbstractContextManager[None]:
        """A context in which no other collector runs on this store (GcRefused if one does)."""

    @abstractmethod
    def probe_time(self) -> float:
        """The storage's clock now: the time it gives a file written for the purpose."""

    @abstractmethod
    def list_files(self) -> dict[str, StoredFile]:
        """Every file the collector may consider, by key (a strict listing)."""

    @abstractmethod
    def stat(self, key: str) -> StoredFile | None:
        """One file as it is now, or None if it does not exist."""

    @abstractmethod
    def read_fragments(self, keys: list[str]) -> Iterator[tuple[str, bytes]]:
        """The bytes of each index fragment (in the order given); a fragment removed since
        it was listed is left out; any other error raises UnsafeToCollect."""

    @abstractmethod
    def read_refs(self) -> dict[str, str]:
        """The roots: every branch, tag and remote-tracking ref ("heads/main" -> commit)."""

    @abstractmethod
    def read_expired(self) -> set[str]:
        """The manifests whose data `udr expire` released (their records checked)."""

    @abstractmethod
    def read_record(self) -> dict[str, Condemned]:
        """The collector's record of condemned files ({} if none)."""

    @abstractmethod
    def write_record(self, files: dict[str, Condemned]) -> None: ...

    @abstractmethod
    def remove_if_unchanged(self, key: str, condemned: Condemned | None) -> bool:
        """Delete the file if it is still the one condemned (any file if None); True if it
        is gone."""

    def unused(self, f: StoredFile) -> bool:
        """Whether a temporary or spill file is no longer anyone's (its writer is gone)."""
        return True

    def check_held(self) -> None:  # noqa: B027 (a flock cannot be lost)
        """Raise UnsafeToCollect if this run no longer holds the lock (before each deletion)."""

    notes: tuple[str, ...] = ()  # what a run should tell its user (a lock taken over)

    def recover(self) -> None:  # noqa: B027 (nothing to do unless a storage says so)
        """Finish what a run killed mid-deletion left (see `LocalGcStorage.recover`)."""


# ---- a store in a local directory ----------------------------------------------------------


class LocalGcStorage(GcStorage):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Only one collector per store (writers never take this lock)."""
        lock = self.root / "locks" / LOCK_NAME
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GcRefused(
                    f"another `udr gc` is running on {self.root}; wait for it to finish"
                ) from None
            yield
        finally:
            os.close(fd)

    def probe_time(self) -> float:
        probe = self.root / f"{TEMP_PREFIX}gc-probe-{secrets.token_hex(8)}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, b"probe\n")
                return os.fstat(fd).st_mtime
            finally:
                os.close(fd)
        except OSError as exc:
            raise UnsafeToCollect(
                f"cannot write to {self.root} ({exc.strerror or exc}); nothing was deleted"
            ) from None
        finally:
            probe.unlink(missing_ok=True)

    def _file(self, path: Path, kind: str) -> StoredFile | None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None  # removed since it was listed
        except OSError as exc:
            raise UnsafeToCollect(
                f"cannot stat {path}: {exc.strerror or exc}; nothing was deleted"
            ) from None
        key = path.relative_to(self.root).as_posix()
        return StoredFile(key, kind, st.st_size, st.st_mtime, FileIdentity.of_stat(st))

    def list_files(self) -> dict[str, StoredFile]:
        out: dict[str, StoredFile] = {}

        def add(path: Path, kind: str) -> None:
            f = self._file(path, kind)
            if f is not None:
                out[f.key] = f

        for sub in ("packs", "index", "objects", "staging", "refs", GC_DIR, "expired"):
            for path in walk_files(self.root / sub):
                kind = kind_of(path.relative_to(self.root).as_posix())
                if kind is not None:
                    add(path, kind)
                elif sub == "staging" and path.parent.name == "spill" and "." in path.name:
                    add(path, "spill")
        for path in self.root.glob(f"{TEMP_PREFIX}*"):
            add(path, "temp")
        return out

    def stat(self, key: str) -> StoredFile | None:
        return self._file(self.root / key, kind_of(key) or "")

    def read_fragments(self, keys: list[str]) -> Iterator[tuple[str, bytes]]:
        for key in keys:
            path = self.root / key
            try:
                yield key, path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise UnsafeToCollect(
                    f"cannot read {path}: {exc.strerror or exc}; nothing was deleted"
                ) from None

    def read_refs(self) -> dict[str, str]:
        return read_refs_of(self.root)

    def read_expired(self) -> set[str]:
        return read_expired(self.root)

    def read_record(self) -> dict[str, Condemned]:
        return read_record(self.root)

    def write_record(self, files: dict[str, Condemned]) -> None:
        write_record(self.root, files)

    def remove_if_unchanged(self, key: str, condemned: Condemned | None) -> bool:
        return remove_if_unchanged(self.root / key, condemned)

    def unused(self, f: StoredFile) -> bool:
        name = f.key.rsplit("/", 1)[-1]
        if f.kind == "spill":
            pid = name.split(".", 1)[0]
            return not (pid.isdigit() and process_alive(int(pid)))
        return not in_use(self.root / f.key)

    def recover(self) -> None:
        """A run killed between moving a file aside and checking it: put back whatever is not
        exactly the condemned file (a writer's new copy), delete the rest."""
        record = read_record(self.root)
        for sub in ("packs", "index", "objects"):
            for trash in walk_files(self.root / sub):
                if not trash.name.startswith(TRASH_PREFIX):
                    continue
                path = trash.with_name(trash.name[len(TRASH_PREFIX) :])
                key = path.relative_to(self.root).as_posix()
                condemned = record.get(key)
                if sub == "index":
                    condemned = record.get(pack_key(path.name[:-4]))
                    if condemned is not None:
                        trash.unlink()  # its pack is condemned: the fragment goes with it
                        continue
                try:
                    st = trash.stat()
                except FileNotFoundError:
                    continue
                if condemned is not None and condemned.same_file(st):
                    trash.unlink()
                else:
                    restore(trash, path)


# ---- a store on an object store (S3, R2) ---------------------------------------------------


class RemoteGcStorage(GcStorage):
    """A store read straight from a remote (store/remote_store.py): its files through the
    backend's `BlobStore`, its refs through the backend's `RefStore` (never the last values
    seen, which a store read from a remote shows while the remote cannot be reached)."""

    def __init__(self, store: RemoteStore, stale_after: float = DEFAULT_LOCK_STALE_SECONDS) -> None:
        if stale_after <= 0:
            raise UsageError(f"a lock's stale age must be positive (got {stale_after} s)")
        self.blobs = store.blobs
        self.refs = store.refs.remote  # not the last values seen
        self.where = store.url
        self.stale_after = stale_after
        self.notes: tuple[str, ...] = ()
        self._lease: _Lease | None = None

    def _strict(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except UdrError as exc:
            raise UnsafeToCollect(f"cannot {what}: {exc}; nothing was deleted") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The lock object: created only if absent (a conditional PUT), or taken over from a
        run that stopped renewing it; renewed while the run lasts; removed at the end."""
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
            "stale_after": self.stale_after,
        }
        data = json.dumps(holder).encode()
        created = self._strict(
            f"write {LOCK_KEY}", lambda: self.blobs.put_if_absent(LOCK_KEY, data)
        )
        if created:
            info = self._strict(f"look up {LOCK_KEY}", lambda: self.blobs.stat(LOCK_KEY))
            etag = None if info is None else info.etag
        else:
            etag = self._take_over(data)
        if etag is None:
            raise UnsafeToCollect(
                f"{self.where}/{LOCK_KEY} has no ETag to renew it by; nothing was deleted"
            )
        lease = _Lease(self.blobs, data, etag, self.stale_after)
        self._lease = lease
        lease.start()
        try:
            yield
        finally:
            lease.stop()
            self._lease = None
            if not lease.lost:
                # If this fails the lock stays, and a later run takes it over once stale.
                with suppress(UdrError):
                    self.blobs.delete(LOCK_KEY)

    def _take_over(self, data: bytes) -> str | None:
        """The lock's new ETag, taken over from a run that stopped renewing it; GcRefused if
        its holder renewed it within its `stale_after` seconds, or another run took it first."""
        info = self._strict(f"look up {LOCK_KEY}", lambda: self.blobs.stat(LOCK_KEY))
        holder = read_lock(self.blobs)
        stale_after = float(holder.get("stale_after", DEFAULT_LOCK_STALE_SECONDS))
        where = f"{self.where}/{LOCK_KEY}"
        if info is not None and info.etag is not None:
            etag_then = info.etag
            idle = self.probe_time() - info.mtime
            if idle <= stale_after:
                raise GcRefused(
                    f"another `udr gc` is running on {self.where}: {where} exists "
                    f"({describe_lock(holder)}, renewed {max(idle, 0):.0f} s ago); wait for it "
                    "to finish (a run that was killed leaves it, and a later run takes it "
                    f"over once it was not renewed for {stale_after:.0f} s)"
                )
            etag = self._strict(
                f"write {LOCK_KEY}", lambda: self.blobs.replace(LOCK_KEY, data, etag_then)
            )
            if etag is not None:
                self.notes = (
                    f"took over the lock of a run that stopped ({describe_lock(holder)}; "
                    f"not renewed for {idle:.0f} s)",
                )
                return etag
        raise GcRefused(f"another `udr gc` took {where} just now; wait for it to finish")

    def check_held(self) -> None:
        lease = self._lease
        if lease is not None and not lease.held():
            raise UnsafeToCollect(
                f"this run could not renew its lock {self.where}/{LOCK_KEY} in time (another "
                "run may take it over): it stopped before deleting more; what it deleted was "
                "condemned and unreferenced"
            )

    def probe_time(self) -> float:
        probe = f"{GC_DIR}/{TEMP_PREFIX}probe-{secrets.token_hex(8)}"
        try:
            self._strict(f"write {probe}", lambda: self.blobs.put(probe, b"probe\n"))
            info = self._strict(f"look up {probe}", lambda: self.blobs.stat(probe))
        finally:
            with suppress(UdrError):
                self.blobs.delete(probe)
        if info is None:
            raise UnsafeToCollect(
                f"{self.where}/{probe} was written but cannot be found; nothing was deleted"
            )
        return info.mtime

    def _list(self, prefix: str) -> list[BlobInfo]:
        return self._strict(f"list {self.where}/{prefix}", lambda: self.blobs.list(prefix))

    def _get(self, key: str) -> bytes:
        return self._strict(f"read {self.where}/{key}", lambda: self.blobs.get(key))

    def _file(self, info: BlobInfo, kind: str) -> StoredFile:
        mtime_ns = round(info.mtime * 1e9)
        return StoredFile(
            info.key, kind, info.size, info.mtime, FileIdentity(mtime_ns, info.size, 0, info.etag)
        )

    def list_files(self) -> dict[str, StoredFile]:
        out: dict[str, StoredFile] = {}
        for prefix in ("packs/", "index/", "objects/"):
            for info in self._list(prefix):
                kind = kind_of(info.key)
                if kind is not None and kind != "temp":
                    out[info.key] = self._file(info, kind)
        return out

    def stat(self, key: str) -> StoredFile | None:
        info = self._strict(f"look up {self.where}/{key}", lambda: self.blobs.stat(key))
        return None if info is None else self._file(info, kind_of(key) or "")

    def read_fragments(self, keys: list[str]) -> Iterator[tuple[str, bytes]]:
        def one(key: str) -> bytes | None:
            try:
                return self.blobs.get(key)
            except NotFoundError:
                return None  # its pack is being deleted

        with ThreadPoolExecutor(FRAGMENT_READERS) as pool:
            read = self._strict(f"read {self.where}/index/", lambda: list(pool.map(one, keys)))
        for key, data in zip(keys, read, strict=True):
            if data is not None:
                yield key, data

    def read_refs(self) -> dict[str, str]:
        refs: dict[str, str] = {}
        for kind in REF_KINDS:
            prefix = f"refs/{kind}/"
            for info in self._list(prefix):
                name = info.key[len(prefix) :]
                if not is_valid_ref_name(name):
                    continue
                value = self._read_ref(cast(RefKind, kind), name)
                if value is None:
                    continue  # deleted since it was listed
                if not is_object_id(value):
                    raise UnsafeToCollect(
                        f"ref {kind}/{name} on {self.where} holds {value[:80]!r}, not a commit "
                        "id; nothing was deleted"
                    )
                refs[f"{kind}/{name}"] = value
        return refs

    def _read_ref(self, kind: RefKind, name: str) -> str | None:
        what = f"read {self.where}/refs/{kind}/{name}"
        return self._strict(what, lambda: self.refs.read(kind, name))[0]

    def read_expired(self) -> set[str]:
        out: set[str] = set()
        for info in self._list(f"{EXPIRED_DIR}/"):
            name = info.key.rsplit("/", 1)[-1]
            if not is_record_name(name):
                continue
            raw = self._get(info.key)
            try:
                record = ExpiredRecord.from_json(raw, Path(info.key))
            except CorruptObjectError as exc:
                raise UnsafeToCollect(f"{exc}; nothing was deleted") from None
            out.add(record.manifest)
        return out

    def read_record(self) -> dict[str, Condemned]:
        try:
            raw = self.blobs.get(RECORD_KEY)
        except NotFoundError:
            return {}  # no collector condemned anything yet
        except UdrError as exc:
            raise UnsafeToCollect(f"cannot read {RECORD_KEY}: {exc}; nothing was deleted") from None
        return parse_record(raw, f"{self.where}/{RECORD_KEY}", self.where)

    def write_record(self, files: dict[str, Condemned]) -> None:
        self.blobs.put(RECORD_KEY, encode_record(files))

    def remove_if_unchanged(self, key: str, condemned: Condemned | None) -> bool:
        # No rename on an object store: a HEAD that checks, then the DELETE (format.md,
        # "Garbage collection", says why a writer's rewrite between the two is covered).
        if condemned is not None:
            now = self.stat(key)
            if now is None:
                return True
            if not condemned.same_as(now.identity):
                return False
            crashpoint("gc-checked")
        self.blobs.delete(key)
        return True


class _Lease(threading.Thread):
    """Renews the collector's lock object while a run lasts: a conditional PUT (If-Match the
    ETag it last wrote) every quarter of `stale_after`; one that finds the lock changed
    means another run took it over (`lost`)."""

    def __init__(self, blobs: BlobStore, data: bytes, etag: str, stale_after: float) -> None:
        super().__init__(name="udr-gc-lease", daemon=True)
        self.blobs, self.data, self.etag = blobs, data, etag
        self.stale_after = stale_after
        self.lost = False
        self.renewed = time.monotonic()
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.stale_after / 4):
            try:
                etag = self.blobs.replace(LOCK_KEY, self.data, self.etag)
            except UdrError:
                continue  # unreachable for now: `held` says when that is too long
            if etag is None:
                self.lost = True
                return
            self.etag, self.renewed = etag, time.monotonic()

    def held(self) -> bool:
        """Renewed recently enough that no other run can have taken it over."""
        return not self.lost and time.monotonic() - self.renewed < self.stale_after / 2

    def stop(self) -> None:
        self._stopped.set()
        self.join()
