"""Transactions: stage table versions on a snapshot, then commit them all at once.

The commit protocol (docs/architecture.md, "Commits"):
1. staging: chunks go into the open pack; each staged table gets a manifest object;
2. flush: packs and index fragments become durable;
3. the optimistic loop (`store.refs.update_ref`): read the branch head; if other commits
   landed since the base, rebase over them unless they changed a table this transaction
   writes (ConflictError); write the commit object; compare-and-swap the ref (the one commit
   point). A lost swap reads the head again and repeats step 3.
A crash before the swap leaves only unreachable objects; after it, the commit is durable.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from udrfs import _native
from udrfs.catalog.clock import commit_time
from udrfs.catalog.crashpoints import crashpoint
from udrfs.catalog.files import VersionFile
from udrfs.catalog.late_counts import PENDING, Pending, inline_counts
from udrfs.catalog.layout import (
    LaidOut,
    check_key_columns,
    check_layout,
    check_zstd_level,
    lay_out,
    read_chunks,
    read_file,
)
from udrfs.catalog.model import (
    DEDUP,
    Commit,
    TableChange,
    TablePolicy,
    TableVersion,
    writer_level,
)
from udrfs.catalog.names import check_table_name
from udrfs.catalog.rowcounts import RowCounts, count_row_changes
from udrfs.catalog.schema_change import check_schema_change, column_changes
from udrfs.errors import ConflictError, NotFoundError, UsageError
from udrfs.store.refs import RefMoved, update_ref

if TYPE_CHECKING:
    import pyarrow as pa

    from udrfs.catalog.history import History
    from udrfs.catalog.retention import Retention
    from udrfs.parquet.inspect import ParquetDescription
    from udrfs.store import Store

T = TypeVar("T")


Isolation = Literal["snapshot", "serializable"]
ISOLATION_LEVELS: tuple[Isolation, ...] = ("snapshot", "serializable")


def normalize_key(key: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if key is None:
        return None
    if isinstance(key, str):
        return (key,)
    return tuple(key) or None


class Transaction:
    """A set of table writes on one branch that commits atomically, or not at all.

    Used as a context manager it commits on normal exit and aborts on an exception.
    Reads inside the transaction see the snapshot it began on plus its own writes.

    Isolation (docs/usage.md, "Transactions"): with "snapshot" (the default) the commit fails
    only if a table it writes changed on the branch meanwhile; with "serializable" also if a
    table it read (`version`, `open`, `read_table`) changed, so a table derived from others
    (the master built from its compounds) is never committed from stale inputs.
    """

    def __init__(
        self,
        store: Store,
        history: History,
        retention: Retention,
        branch: str,
        message: str,
        author: str,
        inline_counts: bool = False,
        isolation: Isolation = "snapshot",
    ) -> None:
        if isolation not in ISOLATION_LEVELS:
            raise UsageError(
                f"isolation {isolation!r} is not one of: {', '.join(ISOLATION_LEVELS)}"
            )
        self._store = store
        self._history = history
        self._retention = retention
        self.isolation = isolation
        self._read: set[str] = set()  # tables read from the snapshot (for "serializable")
        # Compute every row count before the commit point (the commit waits for them), not
        # only those known without reading rows (catalog/late_counts.py).
        self.inline_counts = inline_counts
        self.branch = branch
        self.message = message
        self.author = author
        self.base = history.head(branch)
        self._base_commit = history.commit(self.base)
        self._staged: dict[str, str | None] = {}
        # Table settings this transaction changes (docs/architecture.md, "Table layouts").
        self._settings: dict[str, TablePolicy] = {}
        self._merged: str | None = None
        self.state = "open"
        self.result: Commit | None = None
        self.name: str | None = None  # set for the mount's named transactions (staging.py)

    @classmethod
    def resume(
        cls,
        store: Store,
        history: History,
        retention: Retention,
        *,
        branch: str,
        base: str,
        staged: dict[str, str | None],
        message: str,
        author: str,
    ) -> Transaction:
        """Rebuild a transaction from its saved state (catalog/staging.py)."""
        tx = cls(store, history, retention, branch, message, author)
        tx.base = base
        tx._base_commit = history.commit(base)
        tx._staged = dict(staged)
        return tx

    # ---- context manager --------------------------------------------------------------

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state != "open":
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # ---- staging ----------------------------------------------------------------------

    @property
    def staged(self) -> dict[str, str | None]:
        """Table -> staged manifest id (None: the table is dropped)."""
        return dict(self._staged)

    def tables(self) -> list[str]:
        names = set(self._base_commit.tables)
        for table, manifest_id in self._staged.items():
            if manifest_id is None:
                names.discard(table)
            else:
                names.add(table)
        return sorted(names)

    # ---- table settings ---------------------------------------------------------------

    def policy(self, table: str) -> TablePolicy:
        """`table`'s settings as this transaction sees them: its snapshot's, or as it set them."""
        return self._settings.get(table) or self._base_commit.policy(table)

    def set_policy(
        self,
        table: str,
        key: Sequence[str] | str | None = None,
        layout: str | None = None,
        zstd_level: int | None = None,
    ) -> TablePolicy:
        """Declare `table`'s key, layout and zstd level for this commit and those after it.
        `key` None keeps the key (an empty sequence clears it); `layout` and `zstd_level` None
        keep theirs. A key is checked against the columns of the table's current version, if
        it has one."""
        check_table_name(table)
        self._check_open()
        current = self.policy(table)
        if layout is not None:
            check_layout(layout)
        if zstd_level is not None:
            check_zstd_level(zstd_level)
        new_key = current.key if key is None else normalize_key(key)
        version = self._current(table)
        if new_key and version is not None:
            check_key_columns(table, new_key, [c["name"] for c in version.schema])
        level = current.zstd_level if zstd_level is None else zstd_level
        policy = TablePolicy(new_key, layout or current.layout, level)
        if policy == self._base_commit.policy(table):
            self._settings.pop(table, None)
        else:
            self._settings[table] = policy
        return policy

    def zstd_level(self, table: str) -> int:
        """The zstd level the dedup writer writes `table`'s rows at: its setting; for a table
        whose versions predate recorded levels, the level they were written at (so a new
        version shares their bytes); for a new table, the writer's default, recorded with its
        first version (`_record_level`)."""
        return writer_level(self.policy(table).zstd_level, table in self._base_commit.tables)

    def _record_level(self, table: str) -> None:
        """A new table's first version from the dedup writer records the level it was
        written at, so later versions keep it whatever the default becomes."""
        policy = self.policy(table)
        if policy.zstd_level is None and table not in self._base_commit.tables:
            self._settings[table] = replace(policy, zstd_level=self.zstd_level(table))

    # ---- staging (continued) -----------------------------------------------------------

    def import_file(
        self,
        table: str,
        path: str | os.PathLike[str],
        key: Sequence[str] | str | None = None,
        allow_schema_change: bool = False,
        layout: str | None = None,
    ) -> TableVersion | None:
        """Stage a Parquet file: its exact bytes, or with `layout="dedup"` (or the table's
        layout, when `layout` is None) its rows rewritten by the dedup writer. None if it
        equals the current version (the same bytes; for a dedup table, the same rows).

        SchemaChangeError if a column changes type, unless `allow_schema_change`."""
        from udrfs.parquet.writer import check_file_key

        check_table_name(table)
        self._check_open()
        policy = self.policy(table)
        if (check_layout(layout) if layout else policy.layout) == DEDUP:
            data = read_file(path)
            key_columns = normalize_key(key) or self._policy_key(table, data.column_names, DEDUP)
            laid = lay_out(self._store, data, key_columns, self.zstd_level(table))
            return self._stage_laid_out(table, laid, allow_schema_change)
        key_columns = normalize_key(key)
        if normalize_key(key):
            check_file_key(path, normalize_key(key) or ())
        return self._ingest(table, Path(path), key_columns, allow_schema_change)

    def lay_out_file(self, table: str, path: str | os.PathLike[str]) -> LaidOut | None:
        """A local Parquet file rewritten in `table`'s layout and chunked into the store, not
        staged (the mount does this when a file is closed); None for an exact table.
        InvalidKeyError if the key is missing, null or repeated."""
        if self.policy(table).layout != DEDUP:
            return None
        data = read_file(path)
        key = self._policy_key(table, data.column_names)
        return lay_out(self._store, data, key, self.zstd_level(table))

    def _policy_key(
        self, table: str, names: Sequence[str], layout: str | None = None
    ) -> tuple[str, ...] | None:
        """The table's declared key for a file with columns `names`. A dedup table's key
        decides its layout, so its columns must be there (InvalidKeyError); an exact table's
        key is recorded only where the file has its columns (as a recorded key is kept)."""
        policy = self.policy(table)
        if policy.key is None:
            return None
        if (layout or policy.layout) == DEDUP:
            check_key_columns(table, policy.key, names)
            return policy.key
        return policy.key if set(policy.key) <= set(names) else None

    def write_table(
        self,
        table: str,
        data: object,
        key: Sequence[str] | str | None = None,
        allow_schema_change: bool = False,
    ) -> TableVersion | None:
        """Stage a DataFrame or Arrow table written by the dedup-friendly writer.

        SchemaChangeError if a column changes type, unless `allow_schema_change`."""
        from udrfs.parquet.writer import to_arrow

        check_table_name(table)
        self._check_open()
        policy = self.policy(table)
        data = to_arrow(data)
        key_columns = normalize_key(key)
        unique = True
        if key_columns is None:
            # The table's declared key orders the rows as `key=` would, so the version shares
            # bytes with the last. A dedup table's key must be in the data and identify its
            # rows; an exact table's orders them where the data has it (as `.tx` files record
            # it), and a key that repeats leaves the change counts unknown.
            key_columns = self._policy_key(table, data.column_names)
            unique = policy.layout == DEDUP
        # write_table(key=...) declares the table's key when it has none.
        declares = key_columns and policy.key is None and table not in self._settings
        laid = lay_out(self._store, data, key_columns, self.zstd_level(table), unique)
        staged = self._stage_laid_out(table, laid, allow_schema_change)
        if declares and staged is not None:
            self._settings[table] = replace(self.policy(table), key=key_columns)
        return staged

    def _stage_laid_out(
        self, table: str, laid: LaidOut, allow_schema_change: bool
    ) -> TableVersion | None:
        check_schema_change(table, self._current(table), laid.desc.schema, allow_schema_change)
        crashpoint("after-ingest")
        return self.stage_chunks(table, laid.chunks, laid.blake3, laid.desc, laid.key, True)

    def _ingest(
        self, table: str, path: Path, key: tuple[str, ...] | None, allow_schema_change: bool
    ) -> TableVersion | None:
        check_table_name(table)
        self._check_open()
        from udrfs.parquet.inspect import describe_parquet

        desc = describe_parquet(path)
        check_schema_change(table, self._current(table), desc.schema, allow_schema_change)
        chunks, digest = self._store.chunks.ingest_file_hashed(path, desc.cut_points)
        crashpoint("after-ingest")
        return self.stage_chunks(table, chunks, digest, desc, key)

    def stage_chunks(
        self,
        table: str,
        chunks: _native.ChunkList,
        blake3: str,
        desc: ParquetDescription,
        key: tuple[str, ...] | None = None,
        laid_out: bool = False,
    ) -> TableVersion | None:
        """Stage bytes already chunked into the store (by an import or a mount writer).

        Bytes not `laid_out` in the table's layout yet are rewritten first when the table's
        layout is dedup (read back from the store). A key declared in the table's settings
        must be among the file's columns (InvalidKeyError)."""
        self._check_open()
        policy = self.policy(table)
        if not laid_out and policy.layout == DEDUP:
            if policy.key:
                check_key_columns(table, policy.key, [c["name"] for c in desc.schema])
            rows = read_chunks(self._store, chunks, table)
            laid = lay_out(self._store, rows, policy.key, self.zstd_level(table))
            chunks, blake3, desc, key = laid.chunks, laid.blake3, laid.desc, laid.key
            laid_out = True
        names = [c["name"] for c in desc.schema]
        if key is None and policy.key is not None and set(policy.key) <= set(names):
            key = policy.key
        base_id = self._base_commit.tables.get(table)
        base = self._history.manifest(base_id) if base_id else None
        if key is None and base is not None and base.key:
            # Keep a key recorded earlier if the new file still has those columns.
            key = base.key if set(base.key) <= set(names) else None
        if base is not None and base.blake3 == blake3 and base.key == key:
            self._staged.pop(table, None)  # identical to the snapshot: nothing to commit
            return None
        doc = TableVersion.document(
            table=table,
            version=self._next_version(table),
            parent=base_id,
            size=chunks.size,
            blake3=blake3,
            chunks=chunks,
            rows=desc.rows,
            schema=desc.schema,
            key=key,
            columns=desc.columns,
        )
        manifest_id = self._store.objects.put(doc)
        crashpoint("after-manifests")
        self._staged[table] = manifest_id
        if laid_out:
            self._record_level(table)
        return self._history.manifest(manifest_id)

    def _current(self, table: str) -> TableVersion | None:
        """The version a write replaces: staged here, or the snapshot's (None: new table)."""
        manifest_id = self._staged.get(table, self._base_commit.tables.get(table))
        return self._history.manifest(manifest_id) if manifest_id else None

    def unstage(self, table: str) -> None:
        """Take `table` out of what this transaction writes: the snapshot's version stays."""
        self._check_open()
        self._staged.pop(table, None)

    def drop_table(self, table: str) -> None:
        self._check_open()
        if table in self._base_commit.tables:
            self._staged[table] = None
        elif self._staged.pop(table, None) is None:
            raise NotFoundError(f"no table named {table!r} on {self.branch!r} to drop")

    def merge_from(self, commit_id: str) -> None:
        """Make the commit a merge: `commit_id` becomes its second parent.

        A merge commits even when it stages nothing, so the merged history is recorded.
        """
        self._check_open()
        self._merged = commit_id

    def _next_version(self, table: str) -> int:
        versions = self._history.versions_at(table, self.base)
        return versions[-1].version + 1 if versions else 1

    # ---- reading the snapshot ---------------------------------------------------------

    def version(self, table: str, version: int | None = None) -> TableVersion:
        if version is None and table not in self._staged:
            # The snapshot's current version (an explicit one never changes); recorded even
            # if the table is missing: one made meanwhile conflicts too.
            self._read.add(table)
        if version is None and table in self._staged:
            manifest_id = self._staged[table]
            if manifest_id is None:
                raise NotFoundError(f"table {table!r} is dropped in this transaction")
            return self._history.manifest(manifest_id)
        found = self._history.find_version(table, version, branch=self.base)
        return self._retention.check_readable(found)

    def open(self, table: str, version: int | None = None) -> VersionFile:
        return VersionFile(self._store.chunks, self.version(table, version))

    def read_table(
        self, table: str, version: int | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        with self.open(table, version) as f:
            return f.read_arrow(columns)

    # ---- ending -----------------------------------------------------------------------

    def abort(self) -> None:
        """Discard everything staged. Staged chunks stay as unreferenced garbage in packs."""
        self._check_open()
        self._staged.clear()
        self.state = "aborted"

    def commit(self) -> Commit | None:
        """Commit every staged table at once. None if nothing changed."""
        self._check_open()
        if not self._staged and not self._settings and self._merged is None:
            self.state = "committed"
            return None
        crashpoint("before-commit")
        store = self._store
        self._keep_from_collector()
        store.chunks.flush()
        crashpoint("after-flush")
        # Counts known without reading rows (or all, with inline_counts) are taken before the
        # ref is read, not in the loop; the rest are pending, computed after the commit point.
        counts = self._row_counts()
        packs = self._packs()
        written: dict[str, dict[str, Any]] = {}

        def prepare(head_id: str | None) -> str:
            if head_id is None:
                raise NotFoundError(f"branch {self.branch!r} was deleted during the transaction")
            head = self._history.commit(head_id)
            if head_id != self.base:
                self._check_rebase(head)
            commit_id, doc = self._write_commit(head, counts, packs)
            crashpoint("after-commit-object")
            written[commit_id] = doc
            return commit_id

        try:
            commit_id = update_ref(store.refs, "heads", self.branch, prepare)
        except RefMoved:
            self.state = "failed"
            raise ConflictError(self.branch, self._staged) from None
        crashpoint("after-ref")
        assert commit_id is not None  # a new commit object always differs from the head
        self.state = "committed"
        self.result = Commit.from_document(commit_id, written[commit_id])
        if self.result.pending_counts:
            self._history.count_later(commit_id)
        return self.result

    def _keep_from_collector(self) -> None:
        """What this commit will name must not be condemned by the collector: chunks only a
        condemned pack holds are written again, condemned manifests rewritten. Done just
        before the ref moves, so a transaction may take any time, however short the grace
        period (docs/architecture.md, "Garbage collection")."""
        store = self._store
        store.condemned.refresh()  # as the collector last wrote it (on a remote: one HEAD)
        for manifest_id in self._staged.values():
            if manifest_id is None:
                continue
            store.chunks.keep(self._history.manifest(manifest_id).chunks)
            store.objects.keep(manifest_id)

    def _check_rebase(self, head: Commit) -> None:
        base = self._base_commit.tables
        changed = {t for t in set(base) | set(head.tables) if base.get(t) != head.tables.get(t)}
        base_settings, head_settings = self._base_commit.settings, head.settings
        changed |= {
            t
            for t in set(base_settings) | set(head_settings)
            if base_settings.get(t) != head_settings.get(t)
        }
        clash = changed & (set(self._staged) | set(self._settings))
        if self.isolation == "serializable":
            clash |= changed & self._read
        if clash:
            self.state = "failed"
            raise ConflictError(self.branch, clash)

    def _row_counts(self) -> dict[str, RowCounts | Pending | None]:
        """Rows added, removed, modified per staged table against the base (key known only),
        or PENDING where they need rows read (unless `inline_counts`).

        The base's version is also the head's when the commit lands: a table changed on the
        branch since the base makes the commit fail instead of rebasing.
        """
        chunks = self._store.chunks
        count = count_row_changes if self.inline_counts else inline_counts
        counts: dict[str, RowCounts | Pending | None] = {}
        for table, manifest_id in self._staged.items():
            base_id = self._base_commit.tables.get(table)
            old = self._history.manifest(base_id) if base_id else None
            new = self._history.manifest(manifest_id) if manifest_id else None
            counts[table] = count(chunks, old, new)
        return counts

    def _packs(self) -> list[str]:
        """The packs holding the chunks of the staged versions (format.md, "Commits"): a
        pull learns from them which packs to fetch without listing the remote."""
        chunks = self._store.chunks
        packs: set[str] = set()
        for manifest_id in self._staged.values():
            if manifest_id is not None:
                for chunk_id in set(self._history.manifest(manifest_id).chunks.ids()):
                    pack = chunks.pack_of(chunk_id)
                    if pack is not None:
                        packs.add(pack)
        return sorted(packs)

    def _write_commit(
        self, head: Commit, counts: dict[str, RowCounts | Pending | None], packs: list[str]
    ) -> tuple[str, dict[str, Any]]:
        tables = dict(head.tables)
        changes = []
        for table, manifest_id in sorted(self._staged.items()):
            old = self._history.manifest(tables[table]) if table in tables else None
            new = self._history.manifest(manifest_id) if manifest_id else None
            if manifest_id is None:
                tables.pop(table, None)
            else:
                tables[table] = manifest_id
            rows = counts.get(table)
            pending = rows is PENDING
            if not isinstance(rows, RowCounts):
                rows = None
            changes.append(
                TableChange(
                    table=table,
                    old_version=old.version if old else None,
                    new_version=new.version if new else None,
                    rows=new.rows if new else None,
                    rows_before=old.rows if old else None,
                    rows_added=rows.added if rows else None,
                    rows_removed=rows.removed if rows else None,
                    rows_modified=rows.modified if rows else None,
                    counts_pending=pending,
                    schema_changes=column_changes(old.schema, new.schema) if old and new else (),
                )
            )
        settings = {**head.settings, **self._settings}
        when = commit_time(head, self.branch)  # in order, unless a clock jumped (clock.py)
        doc = Commit.document(
            parents=[head.id] if self._merged is None else [head.id, self._merged],
            branch=self.branch,
            seq=head.seq + 1,
            time=when,
            author=self.author,
            message=self.message,
            tables=tables,
            changes=changes,
            packs=packs,
            settings=settings,
        )
        return self._store.objects.put(doc), doc

    def _check_open(self) -> None:
        if self.state != "open":
            raise UsageError(
                f"transaction on {self.branch!r} is already {self.state}: start a new one"
            )


def retry_on_conflict(attempt: Callable[[], T], attempts: int = 5, base_delay: float = 0.05) -> T:
    """Run `attempt` (which opens and commits its own transaction) until it wins its race.

    Waits with jittered exponential backoff between tries; the last ConflictError propagates.
    """
    for n in range(attempts):
        try:
            return attempt()
        except ConflictError:
            if n == attempts - 1:
                raise
            time.sleep(base_delay * (2**n) * (0.5 + random.random()))
    raise AssertionError("unreachable")
