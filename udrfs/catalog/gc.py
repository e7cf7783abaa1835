"""`udr gc`: the collector of what nothing reaches (docs/architecture.md, "Garbage
collection"; the record it keeps: docs/format.md, "Garbage collection").

Two phases and no lock that writers wait on. A run condemns unreferenced files older than the
grace period (records them in `gc/condemned.json`); a later run, at least the grace period
after, deletes those still unreferenced and unchanged, and un-condemns those that became
referenced again. Writers never reuse a condemned pack or object (the chunk engine writes the
chunk again; `ObjectStore.put` rewrites the object), so a file still condemned after the grace
period is one that no writer started to depend on since; a writer must move its ref within
the grace period of reusing a file.

Ages come from the storage's clock (file mtimes, and a probe file this run writes), never
from this machine's clock, which must agree with the storage's (`MAX_SKEW_SECONDS`).
Everything fails closed: an error while listing or reading aborts before anything is deleted.
Deletion goes from referrers to what they refer to (objects, then each pack's index fragment,
then the pack), so a run killed at any step leaves a store whose every ref reads intact.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from udrfs.catalog.crashpoints import crashpoint
from udrfs.catalog.gc_storage import (
    LOCK_NAME,
    GcRefused,
    GcStorage,
    LocalGcStorage,
    RemoteGcStorage,
    StoredFile,
)
from udrfs.catalog.liveness import Live, LiveVisitor, UnsafeToCollect, find_live
from udrfs.errors import UdrError, UsageError
from udrfs.store.condemned import DEFAULT_LOCK_STALE_SECONDS, Condemned, identity, record_path
from udrfs.store.keys import fragment_key, pack_key
from udrfs.store.packs import fragment_entries

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.store import Store

DEFAULT_GRACE_SECONDS = 24 * 3600.0
# Deleting more than this share of the store's bytes in one run needs `force`.
DEFAULT_MAX_SHARE = 0.5
# The machine's clock may differ from the storage's by this much at most.
MAX_SKEW_SECONDS = 60.0
LOST_AND_FOUND = "lost+found"

Progress = Callable[[str, int, int], None]  # (step, done, total)
OnKeeper = Callable[[str, str, int], None]  # (chunk id, pack id, stored length)


@dataclass(frozen=True)
class GcFile:
    """One file the collector considered: its store-relative key, size and kind."""

    key: str
    size: int
    kind: str  # "pack" (with its index fragment), "index", "object", "temp", "spill"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "kind": self.kind}


@dataclass
class GcResult:
    """What a run did (or, with `dry_run`, would do)."""

    dry_run: bool
    grace: float
    storage_time: float
    store_bytes: int = 0
    condemned: list[GcFile] = field(default_factory=list)  # newly condemned by this run
    deleted: list[GcFile] = field(default_factory=list)
    uncondemned: list[str] = field(default_factory=list)  # referenced again, or rewritten
    waiting: list[GcFile] = field(default_factory=list)  # condemned, grace not yet over
    unreferenced: list[GcFile] = field(default_factory=list)  # every file nothing reaches
    notes: list[str] = field(default_factory=list)  # e.g. a stale lock taken over

    @property
    def deleted_bytes(self) -> int:
        return sum(f.size for f in self.deleted)

    @property
    def condemned_bytes(self) -> int:
        return sum(f.size for f in self.condemned)

    @property
    def reclaimable_bytes(self) -> int:
        """Bytes of every unreferenced file, whatever its age (what gc frees in the end)."""
        return sum(f.size for f in self.unreferenced)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "grace_seconds": self.grace,
            "storage_time": self.storage_time,
            "store_bytes": self.store_bytes,
            "deleted": [f.to_dict() for f in self.deleted],
            "deleted_bytes": self.deleted_bytes,
            "condemned": [f.to_dict() for f in self.condemned],
            "condemned_bytes": self.condemned_bytes,
            "uncondemned": self.uncondemned,
            "waiting": [f.to_dict() for f in self.waiting],
            "waiting_bytes": sum(f.size for f in self.waiting),
            "reclaimable_bytes": self.reclaimable_bytes,
            "notes": self.notes,
        }


@dataclass
class Survey:
    """One read of a store: its files by key, what is live, which pack keeps each live chunk
    and the keys of the files nothing reaches."""

    files: dict[str, StoredFile]
    live: Live
    holders: dict[str, str]
    garbage: set[str]


class Collector:
    """One run over one store. `run()` does the steps in order."""

    def __init__(
        self,
        store: Store,
        history: History,
        grace: float = DEFAULT_GRACE_SECONDS,
        dry_run: bool = False,
        force: bool = False,
        max_share: float = DEFAULT_MAX_SHARE,
        max_skew: float = MAX_SKEW_SECONDS,
        progress: Progress | None = None,
        stale_lock: float = DEFAULT_LOCK_STALE_SECONDS,
    ) -> None:
        if grace < 0:
            raise UsageError(f"the grace period must not be negative (got {grace} s)")
        self.store = store
        self.history = history
        self.storage = storage_of(store, stale_lock)
        self.where = self.storage.where
        self.grace = float(grace)
        self.dry_run = dry_run
        self.force = force
        self.max_share = max_share
        self.max_skew = max_skew
        self.progress = progress or (lambda step, done, total: None)
        self._listing: dict[str, StoredFile] = {}

    # ---- the run ---------------------------------------------------------------------

    def run(self) -> GcResult:
        with self._locked():
            if not self.dry_run:
                self.storage.recover()
            now = self._storage_time()
            result = GcResult(self.dry_run, self.grace, now, notes=list(self.storage.notes))
            record = self.storage.read_record()
            survey = self.survey()
            files = survey.files
            result.store_bytes = sum(f.size for f in files.values())
            garbage = survey.garbage
            result.unreferenced = [self._gc_file(k, files[k]) for k in sorted(garbage)]
            new_record, delete = self._decide(files, garbage, record, now, result)
            self._check_share(result)
            if self.dry_run:
                return result
            self.storage.write_record(new_record)
            crashpoint("gc-after-record")
            self._delete(delete, files, new_record, result)
            self.storage.write_record(new_record)
            return result

    def survey(
        self, visitor: LiveVisitor | None = None, on_keeper: OnKeeper | None = None
    ) -> Survey:
        """What exists and what is garbage; reads only. `visitor` is told what the liveness
        walk finds, `on_keeper` each time a pack becomes a live chunk's keeper (the last call
        for a chunk names its keeper), so `udr stats` accounts in the same pass."""
        # The walk before the listing: a pack a commit flushed meanwhile is listed but not
        # walked (young, so never condemned), never walked but not listed (a live chunk in
        # no pack would stop the run).
        live = find_live(
            self.store,
            self.history,
            self.storage.read_expired(),
            visitor=visitor,
            read_refs=self.storage.read_refs,
        )
        self.progress("live", 1, 1)
        files = self._list_files()
        self._listing = files
        holders = self._live_packs(files, live, on_keeper)
        return Survey(files, live, holders, self._garbage(files, live, set(holders.values())))

    def unreferenced(self, survey: Survey | None = None) -> list[GcFile]:
        """Every file nothing reaches, whatever its age; reads only (for `udr stats`)."""
        survey = self.survey() if survey is None else survey
        return [self._gc_file(k, survey.files[k]) for k in sorted(survey.garbage)]

    def file_size(self, key: str, survey: Survey) -> int:
        """The bytes a file stands for (a pack: with its index fragment); a file written
        after the listing (a pack or object a commit added meanwhile) is looked at now."""
        listed = survey.files.get(key) or self.storage.stat(key)
        if listed is None:
            return 0
        return self._gc_file(key, listed).size

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Only one collector per store (writers never take this lock); a dry run takes none."""
        if self.dry_run:
            yield
            return
        with self.storage.locked():
            yield

    def _storage_time(self) -> float:
        """The storage's clock: the time of a probe file written now. Refuses to run when
        this machine's clock disagrees with it by more than `max_skew` seconds."""
        before = time.time()
        storage = self.storage.probe_time()
        after = time.time()
        if storage < before - self.max_skew or storage > after + self.max_skew:
            raise GcRefused(
                f"this machine's clock differs from the storage's by {storage - before:+.0f} s "
                f"(more than {self.max_skew:.0f} s); ages would be wrong, so gc does not run: "
                "set the clock (NTP) and run it again"
            )
        return storage

    # ---- what exists, what is garbage ---------------------------------------------------

    def _list_files(self) -> dict[str, StoredFile]:
        """Every file the collector may consider, by store-relative key (strict listing)."""
        out = self.storage.list_files()
        self.progress("list", len(out), len(out))
        return out

    def _garbage(self, files: dict[str, StoredFile], live: Live, live_packs: set[str]) -> set[str]:
        """Keys of the files nothing reaches. Packs: see `_live_packs`."""
        live_objects = live.objects
        garbage = set()
        for key, f in files.items():
            name = key.rsplit("/", 1)[-1]
            if f.kind == "pack":
                if name[:-5] not in live_packs:
                    garbage.add(key)
            elif f.kind == "index":
                # A fragment goes with its pack; one whose pack is gone is garbage of its own.
                if pack_key(name[:-4]) not in files:
                    garbage.add(key)
            elif f.kind == "object":
                if name not in live_objects:
                    garbage.add(key)
            elif f.kind in ("spill", "temp") and self.storage.unused(f):
                garbage.add(key)
        return garbage

    def _live_packs(
        self, files: dict[str, StoredFile], live: Live, on_keeper: OnKeeper | None = None
    ) -> dict[str, str]:
        """Live chunk -> the pack that keeps it: of the packs holding it, the first in one
        order over all packs (not condemned first, then newest, then by id); a live chunk in
        no pack aborts the run. The packs to keep are the keepers."""
        record = self.storage.read_record()
        holders: dict[str, str] = {}
        rank: dict[str, tuple[int, int, str]] = {}
        # A fragment whose pack is gone holds nothing.
        fragments = sorted(
            k for k, f in files.items() if f.kind == "index" and pack_key(k[6:-4]) in files
        )
        read = self.storage.read_fragments(fragments)
        for done, (frag, data) in enumerate(read):
            pack = frag[6:-4]
            key = pack_key(pack)
            listed = files[key]
            try:
                ids = fragment_entries(data, pack, self.where)
            except UdrError as exc:
                raise UnsafeToCollect(f"{exc}; nothing was deleted") from None
            rank[pack] = (1 if key in record else 0, -listed.identity.mtime_ns, pack)
            for chunk, stored in ids.items():
                if chunk in live.chunks:
                    held = holders.get(chunk)
                    if held is None or rank[pack] < rank[held]:
                        holders[chunk] = pack
                        if on_keeper is not None:
                            on_keeper(chunk, pack, stored)
            self.progress("index", done + 1, len(fragments))
        missing = len(live.chunks) - len(holders)
        if missing:
            example = next(c for c in live.chunks if c not in holders)
            raise UnsafeToCollect(
                f"{missing} live chunk(s) are in no pack (e.g. {example}); nothing was "
                f"deleted: `udr fsck {self.where}` says which versions this affects and "
                f"`udr fsck --repair {self.where}` rebuilds lost index fragments"
            )
        return holders

    # ---- decisions -------------------------------------------------------------------

    def _decide(
        self,
        files: dict[str, StoredFile],
        garbage: set[str],
        record: dict[str, Condemned],
        now: float,
        result: GcResult,
    ) -> tuple[dict[str, Condemned], list[str]]:
        """The new record and the keys to delete; fills `result`'s lists."""
        new_record: dict[str, Condemned] = {}
        delete: list[str] = []
        for key in sorted(garbage):
            f = files[key]
            old = record.get(key)
            if old is not None and old.same_as(f.identity):
                # Marked in the record before the first deletion, so that a writer to a
                # remote waits for this run rather than write it between check and DELETE.
                if now - old.since >= self.grace:
                    new_record[key] = replace(old, deleting=now)
                    delete.append(key)
                    result.deleted.append(self._gc_file(key, f))
                else:
                    new_record[key] = replace(old, deleting=None)
                    result.waiting.append(self._gc_file(key, f))
                continue
            if old is not None:
                result.uncondemned.append(key)  # rewritten since: its condemnation lapses
            if now - f.mtime >= self.grace:
                new_record[key] = identity(f.identity, now)
                result.condemned.append(self._gc_file(key, f))
        for key in sorted(record):
            if key not in garbage and key in files:
                result.uncondemned.append(key)  # referenced again
        return new_record, delete

    def _gc_file(self, key: str, f: StoredFile) -> GcFile:
        size = f.size
        if f.kind == "pack":
            frag_key = fragment_key(key.rsplit("/", 1)[-1][:-5])
            frag = self._listing.get(frag_key) or self.storage.stat(frag_key)
            if frag is not None:  # no fragment: a deletion in progress
                size += frag.size
        return GcFile(key, size, f.kind)

    def _check_share(self, result: GcResult) -> None:
        if self.force or not result.store_bytes:
            return
        share = result.deleted_bytes / result.store_bytes
        if share > self.max_share:
            raise GcRefused(
                f"gc would delete {result.deleted_bytes} of {result.store_bytes} bytes "
                f"({share:.0%} of the store, more than {self.max_share:.0%}); check with "
                f"`udr gc --dry-run {self.where}`, then pass --force if that is right"
            )

    # ---- deletion --------------------------------------------------------------------

    def _delete(
        self,
        delete: list[str],
        files: dict[str, StoredFile],
        record: dict[str, Condemned],
        result: GcResult,
    ) -> None:
        """Objects, then each pack's fragment and the pack, then orphan fragments and
        temporary files: what refers comes out before what it refers to."""
        phases = (("object",), ("pack",), ("index", "temp", "spill"))
        after = ("gc-after-objects", "gc-after-packs", None)
        gone: set[str] = set()
        done, total = 0, len(delete)
        first_fragment = True
        for kinds, point in zip(phases, after, strict=True):
            for key in sorted(k for k in delete if files[k].kind in kinds):
                self.storage.check_held()
                f = files[key]
                if f.kind == "pack":
                    if not self._unchanged(key, record[key]):
                        continue  # written again: kept, and its condemnation lapses below
                    frag = fragment_key(key.rsplit("/", 1)[-1][:-5])
                    if self.storage.stat(frag) is not None:
                        self.storage.remove_if_unchanged(frag, None)
                        if first_fragment:
                            first_fragment = False
                            crashpoint("gc-after-fragment")
                if self.storage.remove_if_unchanged(key, record[key]):
                    gone.add(key)
                done += 1
                self.progress("delete", done, total)
            if point:
                crashpoint(point)
        crashpoint("gc-after-files")
        for key in gone:
            record.pop(key, None)
        # Files that changed under us were not deleted: their condemnation lapses.
        for key in delete:
            if key not in gone:
                record.pop(key, None)
                result.uncondemned.append(key)
        result.deleted = [g for g in result.deleted if g.key in gone]

    def _unchanged(self, key: str, condemned: Condemned) -> bool:
        now = self.storage.stat(key)
        return now is None or condemned.same_as(now.identity)


def storage_of(store: Store, stale_lock: float = DEFAULT_LOCK_STALE_SECONDS) -> GcStorage:
    """Where the collector works: the store's directory, or the remote it is read from (whose
    lock a later run takes over once not renewed for `stale_lock` seconds)."""
    from udrfs.store.remote_store import RemoteStore

    if isinstance(store, RemoteStore):
        return RemoteGcStorage(store, stale_lock)
    return LocalGcStorage(store.root)


def collect(
    store: Store,
    history: History,
    grace: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    max_share: float = DEFAULT_MAX_SHARE,
    max_skew: float = MAX_SKEW_SECONDS,
    stale_lock: float = DEFAULT_LOCK_STALE_SECONDS,
) -> GcResult:
    """Run the collector once (see the module docstring)."""
    try:
        return Collector(
            store, history, grace, dry_run, force, max_share, max_skew, progress, stale_lock
        ).run()
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EIO, errno.EROFS):
            raise UnsafeToCollect(
                f"gc stopped: {exc.strerror} ({exc.filename}); what was deleted before this "
                "was condemned and unreferenced, the rest is untouched; fix it and run gc again"
            ) from None
        raise


__all__ = ["LOCK_NAME", "GcFile", "GcRefused", "GcResult", "collect", "record_path"]
