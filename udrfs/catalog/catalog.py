"""The catalog of a store: the composition root of its parts.

`Catalog` opens a store and builds its parts once: the read model (history.py: refs,
commits, manifests, version lists and their caches) and retention (retention.py). The
parts that write or check (transaction.py, staging.py, fsck.py, gc.py, repack.py, ...) are
built from these on use, and take only the parts they need, never the catalog. Every
public method here is a thin call into a part; docs/architecture.md draws the whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from udrfs.catalog.authors import default_author, user_at_host
from udrfs.catalog.files import ChunkFile, VersionFile
from udrfs.catalog.fsck import FsckReport
from udrfs.catalog.history import (
    MAIN,
    History,
    weigh_commit,
    weigh_manifest,
    weigh_versions,
)
from udrfs.catalog.keep import keep_reached
from udrfs.catalog.model import (
    ChangeEntry,
    Commit,
    TableInfo,
    TablePolicy,
    TableVersion,
    VersionInfo,
    now_utc,
)
from udrfs.catalog.paths import Ref, may_name_commit
from udrfs.catalog.repack import DEFAULT_MAX_UNUSED, RepackResult
from udrfs.catalog.repair import fsck
from udrfs.catalog.retention import ExpirePolicy, ExpireResult, RemoteRetention, Retention
from udrfs.catalog.staging import StagingArea
from udrfs.catalog.transaction import Isolation, Transaction
from udrfs.errors import InvalidNameError, NotLocalError, UdrError, UsageError
from udrfs.store import Store
from udrfs.store.chunks import ChunkList, ChunkStream
from udrfs.store.refnames import check_ref_name
from udrfs.store.remote_store import RemoteStore, is_store_url, open_store
from udrfs.store.store import read_head

if TYPE_CHECKING:  # pyarrow loads only where a table's data is read (a fast CLI start)
    import pyarrow as pa

    from udrfs.catalog.footprint import BranchBytes, Footprint, TableBytes
    from udrfs.catalog.gc import GcResult
    from udrfs.catalog.verify import VerifiedTable
    from udrfs.parquet.inspect import ParquetDescription

__all__ = [
    "MAIN",
    "Catalog",
    "StoreStats",
    "default_author",
    "default_branch_of",
    "init_store",
    "is_store_url",
    "user_at_host",
    "weigh_commit",
    "weigh_manifest",
    "weigh_versions",
]


def default_branch_of(path: str | os.PathLike[str]) -> str:
    """The checked-out branch of the store at `path` (main unless set), without opening it."""
    return read_head(path) or MAIN


def init_store(path: str | os.PathLike[str]) -> None:
    """Create a store in directory `path` with an empty root commit on `main`."""
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
        # The read model, with the bounded caches of decoded manifests and version lists.
        self.history = History(self.store)
        # The versions whose data `udr expire` released (catalog/retention.py).
        self.retention: Retention = (
            RemoteRetention(self.store, self.history, self.store.blobs)
            if isinstance(self.store, RemoteStore)
            else Retention(self.store, self.history)
        )

    @classmethod
    def init(cls, path: str | os.PathLike[str]) -> Self:
        """Create a store with an empty root commit on `main`."""
        init_store(path)
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

    # ---- refs (read through history.py) --------------------------------------------------

    def branches(self) -> dict[str, str]:
        return self.history.branches()

    def tags(self) -> dict[str, str]:
        return self.history.tags()

    def head(self, branch: str = MAIN) -> str:
        return self.history.head(branch)

    def resolve(self, ref: str) -> str:
        """A branch, a tag, a remote-tracking ref (`r2/main`), a commit id or a unique prefix
        of one (8+ hex) -> commit id."""
        return self.history.resolve(ref)

    def resolve_ref(self, name: str) -> Ref:
        """What `name` means where a commit is expected: the one precedence rule of
        catalog/paths.py (`pick`); AmbiguousRefError when it could mean several things."""
        return self.history.resolve_ref(name)

    def commits_with_prefix(self, prefix: str) -> list[str]:
        """Ids of the commits that begin with `prefix` (a full id, or 8+ lowercase hex digits)."""
        return self.history.commits_with_prefix(prefix)

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
            keep_reached(self.store, self.history, self.retention, commit_id)
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
            keep_reached(self.store, self.history, self.retention, commit_id)
        self.store.refs.create("tags", name, commit_id)
        return commit_id

    def delete_tag(self, name: str) -> None:
        self.store.refs.delete("tags", name)

    # ---- objects and history (history.py) ----------------------------------------------

    def commit(self, commit_id: str) -> Commit:
        """The commit with this id, or with the one id that begins so (8+ hex digits)."""
        return self.history.commit(commit_id)

    def counted(self, commit_id: str, wait: bool = True) -> Commit:
        """The commit with the row counts computed after it filled in: computed here if they
        are not yet, or with `wait=False` left pending (docs/architecture.md, "Row counts")."""
        return self.history.counted(commit_id, wait)

    def manifest(self, manifest_id: str) -> TableVersion:
        return self.history.manifest(manifest_id)

    def first_parent_history(self, branch: str = MAIN) -> Iterator[Commit]:
        """Commits along the first-parent chain of a branch, tag or commit, newest first."""
        return self.history.first_parent_history(branch)

    def log(
        self, branch: str = MAIN, table: str | None = None, limit: int | None = None
    ) -> list[Commit]:
        """Commits, newest first; with `table`, only those that changed it."""
        return self.history.log(branch, table, limit)

    def changes(
        self, branch: str = MAIN, since: int = 0, table: str | None = None, wait: bool = True
    ) -> list[ChangeEntry]:
        """Change-log entries after sequence number `since`, oldest first.

        Row counts computed after a commit are filled in; those not computed yet are computed
        here first, or with `wait=False` left pending (`TableChange.counts_pending`)."""
        return self.history.changes(branch, since, table, wait)

    def commit_at(self, branch: str, as_of: datetime) -> Commit:
        """The newest commit on `branch`'s history made at or before `as_of`."""
        return self.history.commit_at(branch, as_of)

    def table_versions(self, table: str, branch: str = MAIN) -> list[VersionInfo]:
        """Every version of `table` along `branch`'s first-parent history, oldest first.

        `branch` may also be a tag or a commit id, as everywhere in this API.
        """
        return self.history.table_versions(table, branch)

    def versions(self, table: str, branch: str = MAIN) -> list[VersionInfo]:
        """Every version of `table` on `branch`, oldest first (same as `table_versions`)."""
        return self.history.table_versions(table, branch)

    def tables(self, branch: str = MAIN) -> list[TableInfo]:
        """The tables of a branch's head: name, latest version, rows, size."""
        return self.history.tables(branch)

    def version(
        self,
        table: str,
        version: int | None = None,
        branch: str = MAIN,
        as_of: datetime | None = None,
    ) -> TableVersion:
        """Resolve `table` (at `version`, or as of a time, or the newest) on `branch`.

        VersionExpiredError if `udr expire` released that version's data."""
        return self.retention.check_readable(
            self.history.find_version(table, version, branch, as_of)
        )

    # ---- reading bytes ----------------------------------------------------------------

    def read_into(self, manifest: TableVersion, offset: int, buf: Any) -> int:
        return self.store.chunks.read_into(manifest.chunks, offset, buf)

    def read_local_into(self, manifest: TableVersion, offset: int, buf: Any) -> int:
        """`read_into` of what this machine holds, never waiting for the network
        (`ChunkStore.read_local_into`)."""
        return self.store.chunks.read_local_into(manifest.chunks, offset, buf)

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
            self.store,
            self.history,
            self.retention,
            branch,
            message,
            author or default_author(),
            inline_counts,
            isolation,
        )

    @property
    def staging(self) -> StagingArea:
        """Named transactions that survive restarts (the mount's `.tx` directories)."""
        return StagingArea(self.store, self.history, self.retention)

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
        return verify_files(self.history, self.retention, given, branch, progress)

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
        """`table`'s key, layout and zstd level at `branch`'s head (the default, byte-exact,
        without a key or a recorded level, for a table that has no settings)."""
        return self.commit(self.resolve(branch)).policy(table)

    def set_table(
        self,
        table: str,
        key: list[str] | tuple[str, ...] | str | None = None,
        layout: str | None = None,
        branch: str = MAIN,
        message: str | None = None,
        author: str | None = None,
        zstd_level: int | None = None,
    ) -> Commit | None:
        """Declare `table`'s key (None keeps it, [] clears it), layout (`"exact"` keeps
        a committed file's bytes, `"dedup"` rewrites its rows with the dedup writer; None
        keeps it) and the zstd level the dedup writer uses for it (1-22; None keeps it) in a
        commit of its own, which changes no data. The table need not exist yet. None if the
        settings were already so."""
        with self.transaction(branch, message or f"set table {table}", author) as tx:
            tx.set_policy(table, key=key, layout=layout, zstd_level=zstd_level)
        return tx.result

    def fsck(self, verify_packs: bool = True, repair: bool = False) -> FsckReport:
        """Check every invariant of the store; with `repair`, repair what can be (see
        catalog/fsck.py and catalog/repair.py) and report what is still wrong."""
        if self.is_remote:
            raise NotLocalError(self.location, "`udr fsck`")
        return fsck(self.store, self.history, verify_packs, repair)

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
        policy = ExpirePolicy(keep_last, keep_within, branch)
        return expire(self.store, self.history, self.retention, policy, dry_run)

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

        return repack(self.store, self.history, max_unused, max_bytes, dry_run)

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
            self.store,
            self.history,
            seconds(grace),
            dry_run=dry_run,
            force=force,
            progress=progress,
            stale_lock=seconds(stale_lock),
        )

    # ---- accounting -------------------------------------------------------------------

    def reachable_commits(self) -> dict[str, Commit]:
        """Every commit reachable from any branch or tag (all parents)."""
        return self.history.reachable_commits()

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

        return measure(self.store, self.history)

    def _footprint(self) -> Footprint | None:
        if self.is_remote:
            return None
        try:
            return self.footprint()
        except UdrError:
            return None
