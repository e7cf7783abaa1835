"""Retention: `udr expire` releases the data of table versions a policy no longer keeps.

A released version keeps its commit and its manifest (`udr log` and `udr versions` still show
it); what goes is the claim of its manifest on its chunks. The release is one immutable file
per version, `expired/<manifest id>.json` (docs/format.md, "Expired versions"), which the
collector reads (catalog/liveness.py) and every read path checks (`Retention.check_readable`),
so reading a released version says when and by which policy it was released, before and after
its bytes are collected.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from udrfs.catalog.ancestry import merge_base
from udrfs.catalog.model import Commit, TableVersion, now_utc
from udrfs.catalog.specs import format_duration
from udrfs.errors import NotFoundError, UdrError, UsageError, VersionExpiredError
from udrfs.store.atomic import write_atomic
from udrfs.store.expired import (
    EXPIRED_DIR,
    ExpiredRecord,
    expired_key,
    format_expired_time,
    is_record_name,
)

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.store import Store
    from udrfs.store.backends.base import BlobStore

# A listing of expired/ is reused while the directory's mtime is unchanged, unless it changed
# this recently (a second write within the file system's timestamp granularity).
_SETTLED_SECONDS = 2.0
# A store read from a remote lists the remote's expired/ at most this often.
REMOTE_LISTING_SECONDS = 5.0


class Retention:
    """The `expired/` records of one store, and the check every read of a version makes."""

    def __init__(self, store: Store, history: History) -> None:
        self._store = store
        self._history = history
        self.directory = store.root / EXPIRED_DIR
        self._listed: tuple[int, frozenset[str]] | None = None

    def path(self, manifest_id: str) -> Path:
        return self.directory / f"{manifest_id}.json"

    def record(self, manifest_id: str) -> ExpiredRecord | None:
        """The record releasing this manifest, or None (one failed open when there is none)."""
        path = self.path(manifest_id)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ExpiredRecord.from_json(data, path)

    def ids(self) -> frozenset[str]:
        """Manifest ids with a record (one listing, reused while `expired/` is unchanged)."""
        try:
            st = self.directory.stat()
        except FileNotFoundError:
            return frozenset()
        if self._listed is not None and self._listed[0] == st.st_mtime_ns:
            return self._listed[1]
        ids = frozenset(n[:-5] for n in os.listdir(self.directory) if is_record_name(n))
        if time.time() - st.st_mtime > _SETTLED_SECONDS:
            self._listed = (st.st_mtime_ns, ids)
        return ids

    def write(self, record: ExpiredRecord) -> bool:
        """Write a record unless one exists (records are immutable); True if written."""
        path = self.path(record.manifest)
        if path.exists():
            return False
        write_atomic(path, record.to_json())
        return True

    def may_have_records(self) -> bool:
        """False only when no version was ever released here (one stat: the mount asks this
        on its event loop before it asks anything that reads)."""
        return self.directory.exists()

    def _held(self) -> set[str]:
        from udrfs.catalog.liveness import held_manifests

        return held_manifests(self._store, self._history)

    def released(self) -> frozenset[str]:
        """Manifests whose reads are refused: recorded, and held by no ref head or staged
        transaction (catalog/liveness.py, `held_manifests`). Cheap when nothing is expired."""
        ids = self.ids()
        if not ids:
            return ids
        return ids - self._held()

    def check_readable(self, manifest: TableVersion) -> TableVersion:
        """`manifest`, or VersionExpiredError if a record released it. A released version a
        ref's head or a transaction still holds stays readable while all its chunks are."""
        record = self.record(manifest.id)
        if record is None:
            return manifest
        chunks = self._store.chunks
        if manifest.id in self._held() and all(chunks.contains(c) for c in manifest.chunks.ids()):
            return manifest
        raise self.error(record, manifest.table, manifest.version)

    def check_commit(self, commit: Commit) -> None:
        """Refuse to make a ref point at a commit whose tables include released versions
        (their bytes may be gone): VersionExpiredError naming the first."""
        ids = self.ids()
        for table, manifest_id in sorted(commit.tables.items()):
            if manifest_id in ids and (record := self.record(manifest_id)) is not None:
                raise self.error(record, table, record.version)

    def refusal(self, manifest_id: str, table: str, version: int) -> NotFoundError:
        """The error for reading a version a listing showed as released: its record's
        VersionExpiredError (a plain NotFoundError if the record went meanwhile)."""
        record = self.record(manifest_id)
        if record is None:
            return NotFoundError(f"v{version} of {table} cannot be read; list the table again")
        return self.error(record, table, version)

    def error(self, record: ExpiredRecord, table: str, version: int) -> VersionExpiredError:
        return VersionExpiredError(
            table, version, record.expired_on, record.policy, self._store.location
        )


class RemoteRetention(Retention):
    """The `expired/` records of a store read from a remote (`Repo("s3://...")`): the remote's
    `expired/` is listed at most every `REMOTE_LISTING_SECONDS`, and a record is fetched once,
    checked, into the cache directory (records are immutable). While the remote cannot be
    reached, the last listing and the records fetched before stand."""

    def __init__(self, store: Store, history: History, blobs: BlobStore) -> None:
        super().__init__(store, history)
        self.blobs = blobs
        self._remote: tuple[float, frozenset[str]] | None = None

    def ids(self) -> frozenset[str]:
        now = time.monotonic()
        if self._remote is None or now - self._remote[0] > REMOTE_LISTING_SECONDS:
            try:
                listed = self.blobs.list(f"{EXPIRED_DIR}/")
            except UdrError:
                known = self._remote[1] if self._remote else frozenset()
                return known | super().ids()
            names = (info.key.rsplit("/", 1)[-1] for info in listed)
            self._remote = (now, frozenset(n[:-5] for n in names if is_record_name(n)))
        return self._remote[1]

    def record(self, manifest_id: str) -> ExpiredRecord | None:
        found = super().record(manifest_id)
        if found is not None or manifest_id not in self.ids():
            return found
        key = expired_key(manifest_id)
        try:
            data = self.blobs.get(key)
        except NotFoundError:
            return None
        found = ExpiredRecord.from_json(data, Path(f"{self.blobs.url}/{key}"))
        write_atomic(self.path(manifest_id), data)
        return found

    def may_have_records(self) -> bool:
        return True  # only a listing of the remote can tell: the caller's worker thread asks

    def _held(self) -> set[str]:
        # The remote's refs, as this store shows them (its cache directory holds none).
        from udrfs.catalog.liveness import held_manifests

        refs = {f"heads/{name}": commit for name, commit in self._history.branches().items()}
        refs |= {f"tags/{name}": commit for name, commit in self._history.tags().items()}
        return held_manifests(self._store, self._history, refs)


# ---- the policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpirePolicy:
    """Which versions of each table along `branch`'s history keep their data: the last
    `keep_last`, and every version that was current at some moment within `keep_within` of
    now (so `as_of` reads within the window keep working). Heads and tags keep theirs, and
    so do the merge bases of other branches with this one."""

    keep_last: int | None = None
    keep_within: timedelta | None = None
    branch: str = "main"

    def __post_init__(self) -> None:
        if self.keep_last is None and self.keep_within is None:
            raise UsageError(
                "say what to keep: --keep-last N and/or --keep-within DURATION "
                "(keep_last=, keep_within=)"
            )
        if self.keep_last is not None and self.keep_last < 0:
            raise UsageError(f"--keep-last must be 0 or more, not {self.keep_last}")
        if self.keep_within is not None and self.keep_within.total_seconds() < 0:
            raise UsageError("--keep-within must not be negative")

    def command(self) -> str:
        """The command line that applies this policy (recorded in each record)."""
        words = ["udr expire"]
        if self.keep_last is not None:
            words.append(f"--keep-last {self.keep_last}")
        if self.keep_within is not None:
            words.append(f"--keep-within {format_duration(self.keep_within)}")
        if self.branch != "main":
            words.append(f"--branch {self.branch}")
        return " ".join(words)


@dataclass(frozen=True)
class ReleasedVersion:
    table: str
    version: int
    manifest: str
    size: int  # the version's file size


@dataclass
class ExpireResult:
    """What `expire` released (or, with `dry_run`, would release)."""

    policy: str
    branch: str
    dry_run: bool
    released: list[ReleasedVersion] = field(default_factory=list)
    kept: int = 0  # versions along the branch that keep their data
    already_expired: int = 0
    # Bytes of chunks that no kept version shares: what a collector can then reclaim.
    reclaimable_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "branch": self.branch,
            "dry_run": self.dry_run,
            "released": [asdict(r) for r in self.released],
            "kept": self.kept,
            "already_expired": self.already_expired,
            "reclaimable_bytes": self.reclaimable_bytes,
        }


@dataclass(frozen=True)
class _Version:
    table: str
    manifest: str
    made: datetime
    superseded: datetime | None  # when the next version (or a drop) replaced it


def versions_along(history: History, branch: str) -> dict[str, list[_Version]]:
    """Every version of every table along `branch`'s first-parent history, oldest first."""
    chain = list(history.first_parent_history(branch))
    chain.reverse()
    out: dict[str, list[_Version]] = {}
    current: dict[str, tuple[str, datetime]] = {}
    for commit in chain:
        for table in set(current) | set(commit.tables):
            manifest = commit.tables.get(table)
            before = current.get(table)
            if before is not None and before[0] == manifest:
                continue
            if before is not None:
                out.setdefault(table, []).append(_Version(table, before[0], before[1], commit.time))
            if manifest is None:
                del current[table]
            else:
                current[table] = (manifest, commit.time)
    for table, (manifest, made) in current.items():
        out.setdefault(table, []).append(_Version(table, manifest, made, None))
    return out


def expire(
    store: Store,
    history: History,
    retention: Retention,
    policy: ExpirePolicy,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ExpireResult:
    """Release the versions `policy` does not keep (docs/architecture.md, "Retention")."""
    from udrfs.catalog.liveness import find_live, held_manifests

    now = now or now_utc()
    head = history.head(policy.branch)  # NotFoundError naming the branches
    held = held_manifests(store, history) | merge_base_versions(history, policy.branch, head)
    recorded = retention.ids()
    result = ExpireResult(policy.command(), policy.branch, dry_run)
    cutoff = now - policy.keep_within if policy.keep_within is not None else None
    chosen: dict[str, ReleasedVersion] = {}
    for table, versions in sorted(versions_along(history, policy.branch).items()):
        last = policy.keep_last if policy.keep_last is not None else 0
        for i, v in enumerate(versions):
            if v.manifest in recorded:
                result.already_expired += 1
                continue
            keep = (
                i >= len(versions) - last
                or v.manifest in held
                or (cutoff is not None and (v.superseded is None or v.superseded > cutoff))
            )
            if keep:
                result.kept += 1
            elif v.manifest not in chosen:
                m = history.manifest(v.manifest)
                chosen[v.manifest] = ReleasedVersion(table, m.version, v.manifest, m.size)
    result.released = sorted(chosen.values(), key=lambda r: (r.table, r.version))
    if chosen:
        live = find_live(store, history, expired=recorded | set(chosen))
        result.reclaimable_bytes = _freed_bytes(store, history, chosen, live.chunks)
    if dry_run:
        return result
    stamp = format_expired_time(now)
    for r in result.released:
        retention.write(
            ExpiredRecord(r.manifest, r.table, r.version, policy.branch, stamp, policy.command())
        )
    return result


def merge_base_versions(history: History, branch: str, head: str) -> set[str]:
    """The versions at the merge base of `branch` with each other branch: a later merge of
    that branch compares rows against them, so the policy keeps them."""
    out: set[str] = set()
    for other, other_head in history.branches().items():
        if other == branch or other_head == head:
            continue
        base = merge_base(history, head, other_head)
        if base is not None:
            out.update(history.commit(base).tables.values())
    return out


def _freed_bytes(
    store: Store, history: History, released: Iterable[str], live: dict[str, int]
) -> int:
    """Bytes of the chunks of `released` manifests that nothing live shares and the store
    still holds."""
    chunks = store.chunks
    freed: dict[str, int] = {}
    for manifest_id in released:
        raw = history.manifest(manifest_id).chunks.to_bytes()
        for i in range(0, len(raw), 36):
            chunk_id = raw[i : i + 32].hex()
            if chunk_id not in live and chunk_id not in freed and chunks.contains(chunk_id):
                freed[chunk_id] = int.from_bytes(raw[i + 32 : i + 36], "little")
    return sum(freed.values())
