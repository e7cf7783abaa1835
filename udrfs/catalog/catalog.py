"""The catalog of a store: branches, tags, commits, table versions and their history.

Reading a version: ref -> commit -> manifest -> chunk list -> packs. The commit protocol
(staging, compare-and-swap of the branch ref) lives in transaction.py; docs/architecture.md
explains both.
"""

from __future__ import annotations

import getpass
import os
import pwd
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from udrfs.catalog.ancestry import reachable
from udrfs.catalog.files import ChunkFile, VersionFile
from udrfs.catalog.fsck import FsckReport
from udrfs.catalog.keep import keep_reached
from udrfs.catalog.late_counts import counted
from udrfs.catalog.model import (
    ChangeEntry,
    Commit,
    TableInfo,
    TablePolicy,
    TableVersion,
    VersionInfo,
    now_utc,
)
from udrfs.catalog.paths import Ref, is_commit_id, may_name_commit, pick
from udrfs.catalog.repack import DEFAULT_MAX_UNUSED, RepackResult
from udrfs.catalog.repair import fsck
from udrfs.catalog.retention import ExpirePolicy, ExpireResult, RemoteRetention, Retention
from udrfs.catalog.staging import StagingArea
from udrfs.catalog.transaction import Isolation, Transaction
from udrfs.errors import (
    CorruptObjectError,
    InvalidNameError,
    NotFoundError,
    NotLocalError,
    UdrError,
    UsageError,
)
from udrfs.lru import LruCache, MiB
from udrfs.store import Store
from udrfs.store.chunks import ChunkList, ChunkStream
from udrfs.store.objects import is_object_id
from udrfs.store.refnames import check_ref_name
from udrfs.store.refs import RefKind
from udrfs.store.remote_store import RemoteStore, is_store_url, open_store
from udrfs.store.store import read_head

if TYPE_CHECKING:  # pyarrow loads only where a table's data is read (a fast CLI start)
    import pyarrow as pa

    from udrfs.catalog.footprint import BranchBytes, Footprint, TableBytes
    from udrfs.catalog.gc import GcResult
    from udrfs.catalog.verify import VerifiedTable
    from udrfs.parquet.inspect import ParquetDescription

MAIN = "main"

# Bounds of the catalog's caches (docs/architecture.md, "Caches").
MANIFEST_CACHE_ENTRIES = 1024
MANIFEST_CACHE_BYTES = 32 * MiB
VERSIONS_CACHE_ENTRIES = 4096
VERSIONS_CACHE_BYTES = 16 * MiB


def weigh_manifest(manifest: TableVersion) -> int:
    """Roughly the memory a decoded manifest holds: 36 bytes per chunk, plus its schema."""
    return 1024 + 36 * manifest.chunks.count + 256 * (len(manifest.schema) + len(manifest.columns))


def weigh_commit(commit: Commit) -> int:
    """Roughly the memory a decoded commit holds: it grows with its tables and changes."""
    return 512 + 160 * (len(commit.tables) + len(commit.changes))


def weigh_versions(versions: Sequence[VersionInfo]) -> int:
    """A version list: a pointer per version plus its newest record (the older records are
    shared with the lists cached for earlier commits)."""
    return 512 + 8 * len(versions)


def default_branch_of(path: str | os.PathLike[str]) -> str:
    """The checked-out branch of the store at `path` (main unless set), without opening it."""
    return read_head(path) or MAIN


def default_author() -> str:
    """Who a commit is by unless the caller says: $UDR_AUTHOR, else `user@host`."""
    return os.environ.get("UDR_AUTHOR") or user_at_host()


def user_at_host(uid: int | None = None) -> str:
    """`user@host` of the user `uid` (the mount names the process that asked), or of this
    process's user."""
    try:
        user = getpass.getuser() if uid is None else pwd.getpwuid(uid).pw_name
    except (KeyError, OSError):
        user = "unknown" if uid is None else str(uid)
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class StoreStats:
    tables: int
    versions: int
    commits: int
    branches: int
    tags: int
    logical_bytes: int
    stored_bytes: int
    unique_chunk_bytes: int
    chunks: int
    packs: int
    # Bytes of files nothing reaches (what `udr gc` frees); None if the store could not be
    # read well enough to tell (`udr fsck` says why), or is remote.
    reclaimable_bytes: int | None = None
    # Bytes per table and per branch (catalog/footprint.py; docs/usage.md, "Where the
    # bytes are"); None when `reclaimable_bytes` is.
    by_table: tuple[TableBytes, ...] | None = None
    by_branch: tuple[BranchBytes, ...] | None = None

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        out = {**self.__dict__, "dedup_ratio": round(self.dedup_ratio, 3)}
        for key in ("by_table", "by_branch"):
            rows = getattr(self, key)
            out[key] = None if rows is None else [row.to_dict() for row in rows]
        return out


class Catalog:
    """Everything a client (the mount, the CLI, the Python API) needs from a store."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        endpoint: str | None = None,
        profile: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_size: str | int | None = None,
    ) -> None:
        """Open the store in directory `path`, or one read and written straight on a remote
        when `path` is `s3://BUCKET/PREFIX` (`endpoint`, `profile`: where and as whom; `cache_dir`,
        `cache_size`: the local cache of what was read; docs/usage.md, "A store on S3/R2")."""
        self.store: Store = open_store(path, endpoint, profile, cache_dir, cache_size)
        self.manifest_cache: LruCache[str, TableVersion] = LruCache(
            MANIFEST_CACHE_ENTRIES, MANIFEST_CACHE_BYTES, weigh_manifest
        )
        # (commit id, table) -> every version of the table on that commit's history.
        self.versions_cache: LruCache[tuple[str, str], tuple[VersionInfo, ...]] = LruCache(
            VERSIONS_CACHE_ENTRIES, VERSIONS_CACHE_BYTES, weigh_versions
        )
        # The versions whose data `udr expire` released (catalog/retention.py).
        self.retention = (
            RemoteRetention(self, self.store.blobs)
            if isinstance(self.store, RemoteStore)
            else Retention(self)
        )

    @classmethod
    def init(cls, path: str | os.PathLike[str]) -> Self:
        """Create a store with an empty root commit on `main`."""
        if is_store_url(path):
            raise UsageError(
                f"a store is created in a directory, not at {path}: `udr init DIR`, then "
                f"`udr remote add DIR NAME {path}` and `udr push DIR NAME`"
            )
        store = Store.init(path)
        root = Commit.document(
            parents=[],
            branch=MAIN,
            seq=0,
            time=now_utc(),
            author=default_author(),
            message="create store",
            tables={},
            changes=[],
        )
        store.refs.create("heads", MAIN, store.objects.put(root))
        return cls(path)

    @property
    def path(self) -> Path:
        return self.store.root

    @property
    def location(self) -> str:
        """Where the store is, as a user names it: its directory, or a remote's URL."""
        return self.store.location

    @property
    def is_remote(self) -> bool:
        """Whether the store is read and written straight on a remote (s3://...)."""
        return self.store.is_remote

    # ---- refs -------------------------------------------------------------------------

    def branches(self) -> dict[str, str]:
        return self.store.refs.list("heads")

    def tags(self) -> dict[str, str]:
        return self.store.refs.list("tags")

    def _ref(self, kind: RefKind, name: str) -> str | None:
        """A ref's commit id (None if absent); CorruptObjectError if its file holds no id."""
        value = self.store.refs.get(kind, name)
        if value is not None and not is_object_id(value):
            raise CorruptObjectError(
                f"ref file refs/{kind}/{name} holds {value[:40]!r}, not a commit id; "
                f"`udr fsck --repair {self.path}` restores it"
            )
        return value

    def head(self, branch: str = MAIN) -> str:
        commit_id = self._ref("heads", branch)
        if commit_id is None:
            known = ", ".join(self.branches()) or "none"
            raise NotFoundError(f"no branch named {branch!r} (branches: {known})")
        return commit_id

    def resolve(self, ref: str) -> str:
        """A branch, a tag, a remote-tracking ref (`r2/main`), a commit id or a unique prefix
        of one (8+ hex) -> commit id."""
        return self.resolve_ref(ref).commit_id

    def resolve_ref(self, name: str) -> Ref:
        """What `name` means where a commit is expected: the one precedence rule of
        catalog/paths.py (`pick`); AmbiguousRefError when it could mean several things."""
        named: Ref | None = None
        if not is_commit_id(name):
            check_ref_name(name, "branch or tag")
            # One or two small reads instead of listing every ref; a branch wins over a tag.
            if (head := self._ref("heads", name)) is not None:
                named = Ref("branch", name, head)
            elif (tagged := self._ref("tags", name)) is not None:
                named = Ref("tag", name, tagged)
            elif (tracked := self._ref("remotes", name)) is not None:
                named = Ref("remote", name, tracked)
        ids = self.commits_with_prefix(name) if may_name_commit(name) else []
        return pick(name, named, ids)

    def commits_with_prefix(self, prefix: str) -> list[str]:
        """Ids of the commits that begin with `prefix` (a full id, or 8+ lowercase hex digits).

        One fan-out directory of `objects/` is listed; only the few objects whose ids match
        are read, to keep the commits among them.
        """
        if not may_name_commit(prefix):
            return []
        if is_commit_id(prefix):  # no listing: the object's path is known
            try:
                self.commit(prefix)
            except NotFoundError:
                return []
            return [prefix]
        found = []
        for object_id in self.store.objects.ids_with_prefix(prefix):
            try:
                self.commit(object_id)
            except NotFoundError:
                continue  # gone meanwhile, or a table-version manifest
            found.append(object_id)
        return found

    def _refuse_commit_like(self, name: str, what: str) -> None:
        first = name.partition("/")[0]
        commits = self.commits_with_prefix(first) if may_name_commit(first) else []
        if commits:
            raise InvalidNameError(
                f"{name!r} is not a valid {what} name: {first!r} begins the id of commit "
                f"{commits[0][:12]} and would be read as that commit; choose another name"
            )

    def create_branch(self, name: str, from_: str = MAIN) -> str:
        check_ref_name(name, "branch")
        self._refuse_commit_like(name, "branch")
        source = self.resolve_ref(from_)
        commit_id = source.commit_id
        self.retention.check_commit(self.commit(commit_id))
        if source.kind == "commit":  # a ref's head needs nothing kept
            keep_reached(self, commit_id)
        self.store.refs.create("heads", name, commit_id)
        return commit_id

    def fast_forward(self, branch: str, expected: str, commit_id: str) -> bool:
        """Move `branch` from `expected` to `commit_id` (a descendant) by compare-and-swap.

        False if the branch no longer holds `expected`; the caller plans again.
        """
        return self.store.refs.cas("heads", branch, expected, commit_id)

    @property
    def default_branch(self) -> str:
        """The store's checked-out branch (`udr checkout`), which commands default to; main
        unless set. It is local to this store: push and clone never send it."""
        return default_branch_of(self.path)

    def set_default_branch(self, name: str) -> None:
        self.head(name)  # NotFoundError naming the branches if there is none
        self.store.set_default_branch(name)

    def delete_branch(self, name: str) -> None:
        if name != MAIN and name == self.store.default_branch():
            raise UsageError(
                f"refusing to delete branch {name!r}: it is the store's checked-out branch; "
                f"`udr checkout {self.path} main` first"
            )
        if name == MAIN:
            raise UsageError(
                "refusing to delete branch 'main': every store keeps it (delete the other "
                "branches you no longer need, or `udr branch STORE create NAME` to work apart)"
            )
        self.store.refs.delete("heads", name)

    def create_tag(self, name: str, ref: str = MAIN) -> str:
        check_ref_name(name, "tag")
        self._refuse_commit_like(name, "tag")
        source = self.resolve_ref(ref)
        commit_id = source.commit_id
        self.retention.check_commit(self.commit(commit_id))
        if source.kind == "commit":
            keep_reached(self, commit_id)
        self.store.refs.create("tags", name, commit_id)
        return commit_id

    def delete_tag(self, name: str) -> None:
        self.store.refs.delete("tags", name)

    # ---- objects ----------------------------------------------------------------------

    def commit(self, commit_id: str) -> Commit:
        """The commit with this id, or with the one id that begins so (8+ hex digits)."""
        if len(commit_id) < 64 and may_name_commit(commit_id):
            commit_id = pick(commit_id, None, self.commits_with_prefix(commit_id)).commit_id
        doc = self.store.objects.get(commit_id)
        if doc.get("kind") != "commit":
            raise NotFoundError(f"object {commit_id} is not a commit")
        return Commit.from_document(commit_id, doc)

    def counted(self, commit_id: str, wait: bool = True) -> Commit:
        """The commit with the row counts computed after it filled in: computed here if they
        are not yet, or with `wait=False` left pending (docs/architecture.md, "Row counts")."""
        return counted(self, self.commit(commit_id), wait)

    def manifest(self, manifest_id: str) -> TableVersion:
        cached = self.manifest_cache.get(manifest_id)
        if cached is not None:
            return cached
        doc = self.store.objects.get(manifest_id, cache=False)  # kept decoded, below
        if doc.get("kind") != "table_version":
            raise CorruptObjectError(f"object {manifest_id} is not a table-version manifest")
        version = TableVersion.from_document(manifest_id, doc)
        self.manifest_cache.put(manifest_id, version)
        return version

    # ---- history ----------------------------------------------------------------------

    def first_parent_history(self, branch: str = MAIN) -> Iterator[Commit]:
        """Commits along the first-parent chain of a branch, tag or commit, newest first."""
        commit_id: str | None = self.resolve(branch)
        while commit_id is not None:
            commit = self.commit(commit_id)
            yield commit
            commit_id = commit.parents[0] if commit.parents else None

    def log(
        self, branch: str = MAIN, table: str | None = None, limit: int | None = None
    ) -> list[Commit]:
        """Commits, newest first; with `table`, only those that changed it."""
        out: list[Commit] = []
        for commit in self.first_parent_history(branch):
            if table is None or any(c.table == table for c in commit.changes):
                out.append(commit)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def changes(
        self, branch: str = MAIN, since: int = 0, table: str | None = None, wait: bool = True
    ) -> list[ChangeEntry]:
        """Change-log entries after sequence number `since`, oldest first.

        Row counts computed after a commit are filled in; those not computed yet are computed
        here first, or with `wait=False` left pending (`TableChange.counts_pending`)."""
        entries = []
        for commit in self.first_parent_history(branch):
            if commit.seq <= since:
                break
            entry = counted(self, commit, wait).change_entry(table)
            if entry.tables:
                entries.append(entry)
        entries.reverse()
        return entries

    def commit_at(self, branch: str, as_of: datetime) -> Commit:
        """The newest commit on `branch`'s history made at or before `as_of`."""
        if as_of.tzinfo is None:
            as_of = as_of.astimezone()
        for commit in self.first_parent_history(branch):
            if commit.time <= as_of:
                return commit
        raise NotFoundError(f"{branch!r} has no commit at or before {as_of.isoformat()}")

    def table_versions(self, table: str, branch: str = MAIN) -> list[VersionInfo]:
        """Every version of `table` along `branch`'s first-parent history, oldest first.

        `branch` may also be a tag or a commit id, as everywhere in this API.
        """
        return list(self._versions_at(table, self.resolve(branch)))

    def versions(self, table: str, branch: str = MAIN) -> list[VersionInfo]:
        """Every version of `table` on `branch`, oldest first (same as `table_versions`)."""
        return self.table_versions(table, branch)

    def _versions_at(self, table: str, commit_id: str) -> tuple[VersionInfo, ...]:
        # Walk back to the nearest commit whose answer is cached, then build forward. Answers
        # are kept for the commits that changed the table and the one asked about, not for
        # every commit between: a walk from anywhere stops at the table's previous change.
        chain: list[Commit] = []
        cursor: str | None = commit_id
        known: tuple[VersionInfo, ...] = ()
        while cursor is not None:
            cached = self.versions_cache.get((cursor, table))
            if cached is not None:
                known = cached
                break
            commit = self.commit(cursor)
            chain.append(commit)
            cursor = commit.parents[0] if commit.parents else None
        for commit in reversed(chain):
            manifest_id = commit.tables.get(table)
            if manifest_id is not None and (not known or known[-1].manifest_id != manifest_id):
                m = self.manifest(manifest_id)
                info = VersionInfo(
                    table=table,
                    version=m.version,
                    manifest_id=manifest_id,
                    commit_id=commit.id,
                    time=commit.time,
                    size=m.size,
                    rows=m.rows,
                    message=commit.message,
                )
                known = (*known, info)
            elif commit.id != commit_id:
                continue
            self.versions_cache.put((commit.id, table), known)
        return known

    def tables(self, branch: str = MAIN) -> list[TableInfo]:
        """The tables of a branch's head: name, latest version, rows, size."""
        commit = self.commit(self.resolve(branch))
        out = []
        for name, manifest_id in sorted(commit.tables.items()):
            m = self.manifest(manifest_id)
            out.append(TableInfo(name, m.version, m.rows, m.size, manifest_id))
        return out

    def version(
        self,
        table: str,
        version: int | None = None,
        branch: str = MAIN,
        as_of: datetime | None = None,
    ) -> TableVersion:
        """Resolve `table` (at `version`, or as of a time, or the newest) on `branch`.

        VersionExpiredError if `udr expire` released that version's data."""
        commit = self.commit_at(branch, as_of) if as_of else self.commit(self.resolve(branch))
        if version is None:
            manifest_id = commit.tables.get(table)
            if manifest_id is None:
                raise NotFoundError(self._no_table(table, branch, commit))
            return self.retention.check_readable(self.manifest(manifest_id))
        for info in self._versions_at(table, commit.id):
            if info.version == version:
                return self.retention.check_readable(self.manifest(info.manifest_id))
        if not self._versions_at(table, commit.id):
            raise NotFoundError(self._no_table(table, branch, commit))
        last = self._versions_at(table, commit.id)[-1].version
        raise NotFoundError(f"table {table!r} on {branch!r} has versions 1..{last}, not {version}")

    def _no_table(self, table: str, branch: str, commit: Commit) -> str:
        names = ", ".join(sorted(commit.tables)[:20]) or "none"
        return f"no table named {table!r} on {branch!r} (tables: {names})"

    # ---- reading bytes ----------------------------------------------------------------

    def read_into(self, manifest: TableVersion, offset: int, buf: Any) -> int:
        return self.store.chunks.read_into(manifest.chunks, offset, buf)

    def read(self, manifest: TableVersion, offset: int, length: int) -> bytes:
        return self.store.chunks.read(manifest.chunks, offset, length)

    def prefetch(self, manifest: TableVersion, offset: int, length: int) -> int:
        return self.store.chunks.prefetch(manifest.chunks, offset, length)

    def load_index(self) -> int:
        """Learn where every chunk is now (a store on a remote fetches the index fragments
        it lacks), so that a first read need not; returns how many packs are new."""
        return self.store.chunks.reload_index()

    @property
    def read_ahead_limit(self) -> int:
        """How far a sequential reader may be read ahead (0: the reader's own default)."""
        return self.store.chunks.read_ahead_limit

    def open(
        self,
        table: str,
        version: int | None = None,
        branch: str = MAIN,
        as_of: datetime | None = None,
    ) -> VersionFile:
        """A seekable, read-only binary file of one version's exact bytes."""
        return VersionFile(self.store.chunks, self.version(table, version, branch, as_of))

    def open_chunks(self, chunks: ChunkList, name: str) -> ChunkFile:
        """Bytes already chunked into the store but not (yet) a version, e.g. a staged file."""
        return ChunkFile(self.store.chunks, chunks, name)

    def read_table(
        self,
        table: str,
        version: int | None = None,
        branch: str = MAIN,
        as_of: datetime | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        with self.open(table, version, branch, as_of) as f:
            return f.read_arrow(columns)

    # ---- writing ----------------------------------------------------------------------

    def transaction(
        self,
        branch: str = MAIN,
        message: str = "",
        author: str | None = None,
        inline_counts: bool = False,
        isolation: Isolation = "snapshot",
    ) -> Transaction:
        """A transaction on `branch`. Its commit computes the change log's row counts that
        need rows read after the commit point (`counted`), or before it with
        `inline_counts` (docs/architecture.md, "Row counts"). `isolation="serializable"`
        makes the commit fail with ConflictError if a table it read changed meanwhile, not
        only one it writes (docs/usage.md, "Transactions")."""
        return Transaction(
            self, branch, message, author or default_author(), inline_counts, isolation
        )

    @property
    def staging(self) -> StagingArea:
        """Named transactions that survive restarts (the mount's `.tx` directories)."""
        return StagingArea(self)

    # ---- files written through the mount (fs/: `.tx` directories) -----------------------

    def stream(self) -> ChunkStream:
        """Chunk a file into the store while it is written, in order (no copy on disk)."""
        return self.store.chunks.stream()

    def finish_stream(self, stream: ChunkStream) -> tuple[ChunkList, str]:
        """End `stream`: the file's chunk list and the BLAKE3 of all its bytes (hashed by the
        engine as they arrived)."""
        chunks = stream.finish()
        return chunks, stream.blake3_hex()

    def chunk_file(
        self, path: str | os.PathLike[str], cut_points: list[int] | None = None
    ) -> tuple[ChunkList, str]:
        """Chunk a finished local file (a mount's spill file): chunk list and BLAKE3, in one
        pass over the file."""
        return self.store.chunks.ingest_file_hashed(Path(path), cut_points)

    def describe_chunks(self, chunks: ChunkList, name: str) -> ParquetDescription:
        """Check that stored bytes are a Parquet file and describe them (NotParquetError)."""
        with self.open_chunks(chunks, name) as f:
            from udrfs.parquet.inspect import describe_parquet

            return describe_parquet(f.arrow(columns=()), name)

    def flush_chunks(self) -> None:
        """Make every chunk written so far durable (before a state file names it)."""
        self.store.chunks.flush()

    def verify(
        self,
        files: Mapping[str, str | os.PathLike[str]] | str | os.PathLike[str],
        branch: str = MAIN,
        progress: Callable[[int], None] | None = None,
    ) -> list[VerifiedTable]:
        """Check each table's latest bytes on `branch` against a Parquet file, by BLAKE3:
        `files` maps table -> file, or is a directory whose `TABLE.parquet` files are the
        tables (catalog/verify.py). One `VerifiedTable` a file, in table order."""
        from udrfs.catalog.verify import table_files, verify_files

        given = files if isinstance(files, Mapping) else table_files([files])
        return verify_files(self, given, branch, progress)

    def import_file(
        self,
        table: str,
        path: str | os.PathLike[str],
        branch: str = MAIN,
        message: str | None = None,
        author: str | None = None,
        key: list[str] | tuple[str, ...] | str | None = None,
        allow_schema_change: bool = False,
        layout: str | None = None,
    ) -> Commit | None:
        """Commit a Parquet file as the next version of `table`: its exact bytes, or with
        `layout="dedup"` (default: the table's layout, `set_table`) its rows rewritten by the
        dedup writer.

        Returns None when the file equals the current version (nothing to commit).
        """
        with self.transaction(branch, message or f"import {table}", author) as tx:
            tx.import_file(
                table, path, key=key, allow_schema_change=allow_schema_change, layout=layout
            )
        return tx.result

    def write_table(
        self,
        table: str,
        data: object,
        key: list[str] | tuple[str, ...] | str | None = None,
        branch: str = MAIN,
        message: str | None = None,
        author: str | None = None,
        allow_schema_change: bool = False,
    ) -> Commit | None:
        """Write a DataFrame or Arrow table as the next version of `table` (dedup-friendly)."""
        with self.transaction(branch, message or f"write {table}", author) as tx:
            tx.write_table(table, data, key=key, allow_schema_change=allow_schema_change)
        return tx.result

    # ---- table settings (catalog/layout.py) ----------------------------------------------

    def table_policy(self, table: str, branch: str = MAIN) -> TablePolicy:
        """`table`'s key and layout at `branch`'s head (the default, byte-exact and without a
        key, for a table that has no settings)."""
        return self.commit(self.resolve(branch)).policy(table)

    def set_table(
        self,
        table: str,
        key: list[str] | tuple[str, ...] | str | None = None,
        layout: str | None = None,
        branch: str = MAIN,
        message: str | None = None,
        author: str | None = None,
    ) -> Commit | None:
        """Declare `table`'s key (None keeps it, [] clears it) and layout (`"exact"` keeps
        a committed file's bytes, `"dedup"` rewrites its rows with the dedup writer; None
        keeps it) in a commit of its own, which changes no data. The table need not exist
        yet. None if the settings were already so."""
        with self.transaction(branch, message or f"set table {table}", author) as tx:
            tx.set_policy(table, key=key, layout=layout)
        return tx.result

    def fsck(self, verify_packs: bool = True, repair: bool = False) -> FsckReport:
        """Check every invariant of the store; with `repair`, repair what can be (see
        catalog/fsck.py and catalog/repair.py) and report what is still wrong."""
        if self.is_remote:
            raise NotLocalError(self.location, "`udr fsck`")
        return fsck(self, verify_packs, repair)

    # ---- retention (catalog/retention.py) and repacking (catalog/repack.py) -------------

    def expire(
        self,
        keep_last: int | None = None,
        keep_within: timedelta | str | None = None,
        branch: str = MAIN,
        dry_run: bool = False,
    ) -> ExpireResult:
        """Release the data of the versions of each table along `branch` that are neither
        among the last `keep_last` nor current within `keep_within` (`"90d"` or a timedelta);
        every branch head and tag keeps its versions. History stays; reading a released
        version raises VersionExpiredError. With `dry_run`, only say what would go."""
        if self.is_remote:
            raise NotLocalError(self.location, "`udr expire`")
        from udrfs.catalog.retention import expire
        from udrfs.catalog.specs import parse_duration

        if isinstance(keep_within, str):
            keep_within = parse_duration(keep_within)
        return expire(self, ExpirePolicy(keep_last, keep_within, branch), dry_run)

    def repack(
        self,
        max_unused: float = DEFAULT_MAX_UNUSED,
        max_bytes: int | None = None,
        dry_run: bool = False,
    ) -> RepackResult:
        """Copy the live chunks of packs whose unused share is above `max_unused` (and of
        small packs) into new packs, at most `max_bytes` per run. Deletes nothing: the old
        packs become reclaimable by the collector. A store read from a remote (`s3://...`)
        is repacked there: the chunks are read from it and the new packs uploaded."""
        from udrfs.catalog.repack import repack

        return repack(self, max_unused, max_bytes, dry_run)

    def gc(
        self,
        grace: float | str = 24 * 3600.0,
        dry_run: bool = False,
        force: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
        stale_lock: float | str = 15 * 60.0,
    ) -> GcResult:
        """Collect what nothing reaches, in two phases a grace period apart (seconds, or a
        duration such as "24h"): condemn unreferenced files older than `grace`, delete those
        condemned at least `grace` ago and still unreferenced (catalog/gc.py). `dry_run`
        changes nothing and reports what a run would do; `force` allows deleting more than
        half of the store's bytes. A store read from a remote (`s3://...`) is collected
        there, by the same rules (catalog/gc_storage.py); its lock, renewed while a run
        lasts, is taken over by a later run once not renewed for `stale_lock`."""
        from udrfs.catalog.gc import collect
        from udrfs.catalog.specs import parse_duration

        def seconds(d: float | str) -> float:
            return parse_duration(d).total_seconds() if isinstance(d, str) else float(d)

        return collect(
            self,
            seconds(grace),
            dry_run=dry_run,
            force=force,
            progress=progress,
            stale_lock=seconds(stale_lock),
        )

    # ---- accounting -------------------------------------------------------------------

    def reachable_commits(self) -> dict[str, Commit]:
        """Every commit reachable from any branch or tag (all parents)."""
        return reachable(self, [*self.branches().values(), *self.tags().values()])

    def engine_stats(self) -> dict[str, int]:
        """Cheap counters of the chunk engine (packs, chunks, bytes): no history walk."""
        return self.store.chunks.stats()

    def stats(self) -> StoreStats:
        """Counts and bytes of the store; with bytes per table and per branch and what gc
        would reclaim (one survey: catalog/footprint.py) unless the store is remote."""
        commits = self.reachable_commits()
        manifests = {m for c in commits.values() for m in c.tables.values()}
        logical = sum(self.manifest(m).size for m in manifests)
        tables = {self.manifest(m).table for m in manifests}
        engine = self.store.chunks.stats()
        footprint = self._footprint()
        return StoreStats(
            tables=len(tables),
            versions=len(manifests),
            commits=len(commits),
            branches=len(self.branches()),
            tags=len(self.tags()),
            logical_bytes=logical,
            stored_bytes=engine["stored_bytes"],
            unique_chunk_bytes=engine["raw_bytes"],
            chunks=engine["chunks"],
            packs=engine["packs"],
            reclaimable_bytes=footprint.reclaimable_bytes if footprint else None,
            by_table=footprint.tables if footprint else None,
            by_branch=footprint.branches if footprint else None,
        )

    def footprint(self) -> Footprint:
        """Bytes per table and per branch and what gc would reclaim (catalog/footprint.py);
        fails closed, as the collector does, on a store it cannot read whole."""
        if self.is_remote:
            raise NotLocalError(self.location, "`udr stats` per table and branch")
        from udrfs.catalog.footprint import measure

        return measure(self)

    def _footprint(self) -> Footprint | None:
        if self.is_remote:
            return None
        try:
            return self.footprint()
        except UdrError:
            return None
