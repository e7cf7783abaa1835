"""Row counts off the commit's critical path (docs/architecture.md, "Row counts").

A commit records the change log's row counts (rows added, removed, modified) of a table
when they are known without reading rows: no key, a new or dropped table, the same bytes,
or row-group fingerprints (the chunk ids of catalog/rowgroups.py) showing that no row can
differ. Every other table is listed in the commit as *pending*, and its counts are computed
after the commit point from the two versions the commit names, by exactly the code that
computed them before the commit (catalog/rowcounts.py), then written once as the commit's
row-count record (store/counts.py, docs/format.md "Row-count records").

Who computes them: a background thread of the process that committed (the writer, or the
mount daemon), and any reader of the change log that finds them missing (the writer may have
been killed): `complete` is idempotent, and every process computes the same record.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from udrfs.catalog.crashpoints import crashpoint
from udrfs.catalog.model import Commit, TableVersion
from udrfs.catalog.rowcounts import RowCounts, count_row_changes, unique_cache
from udrfs.errors import CorruptObjectError, UdrError
from udrfs.lru import LruCache

if TYPE_CHECKING:
    from udrfs.catalog.roles import Objects
    from udrfs.store import Store
    from udrfs.store.chunks import ChunkStore

log = logging.getLogger(__name__)

CountsByTable = Mapping[str, Mapping[str, int] | None]


class Pending:
    """The counts of a table are computed after the commit."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Final = Pending()

# Process-wide, by (store, commit id): records read or computed. A record never changes.
records: LruCache[tuple[Path, str], CountsByTable] = LruCache(4096)
# One computation at a time per process: a reader asking for counts the background thread is
# computing waits for it instead of computing them again.
_computing = threading.Lock()


def inline_counts(
    chunks: ChunkStore, old: TableVersion | None, new: TableVersion | None
) -> RowCounts | Pending | None:
    """The counts if they are known without reading a row, else PENDING."""
    key = new.key if new is not None else old.key if old is not None else None
    if not key or old is None or new is None or old.blake3 == new.blake3:
        return count_row_changes(chunks, old, new)  # reads nothing in these cases
    from udrfs.catalog.rowgroups import plan_comparison, row_groups

    old_groups, new_groups = row_groups(chunks, old), row_groups(chunks, new)
    if not all(k in old_groups.schema.names and k in new_groups.schema.names for k in key):
        return None
    plan = plan_comparison(old_groups, new_groups, key)
    if not (plan.old_full or plan.new_full or plan.aligned_columns):
        # Every row group of each side is the same bytes as one of the other's: the same
        # rows. Whether the key identifies them is known if the old version was counted.
        unique = unique_cache.get((old.id, tuple(key)))
        if unique is not None:
            return RowCounts(0, 0, 0) if unique else None
    return PENDING


def as_record(counts: RowCounts | None) -> dict[str, int] | None:
    if counts is None:
        return None
    return {
        "rows_added": counts.added,
        "rows_removed": counts.removed,
        "rows_modified": counts.modified,
    }


def compute(store: Store, objects: Objects, commit: Commit) -> dict[str, dict[str, int] | None]:
    """The counts of the commit's pending tables, from its first parent's versions to its own
    (what the commit point would have computed: a table changed since the transaction's
    base makes a commit fail, never rebase, so the first parent holds the base's version)."""
    parent = objects.commit(commit.parents[0]) if commit.parents else None
    out: dict[str, dict[str, int] | None] = {}
    for table in commit.pending_counts:
        old_id = parent.tables.get(table) if parent is not None else None
        new_id = commit.tables.get(table)
        old = objects.manifest(old_id) if old_id else None
        new = objects.manifest(new_id) if new_id else None
        out[table] = as_record(count_row_changes(store.chunks, old, new))
    return out


def recorded(store: Store, commit: Commit) -> CountsByTable | None:
    """The commit's late counts if they are known (a record, here or in memory), else None."""
    cache_key = (store.root, commit.id)
    known = records.get(cache_key)
    if known is not None:
        return known
    try:
        doc = store.counts.get(commit.id)
    except CorruptObjectError as exc:
        log.warning("%s; counting again", exc)
        return None
    if doc is None:
        return None
    records.put(cache_key, doc["tables"])
    return doc["tables"]


def counted(store: Store, objects: Objects, commit: Commit, wait: bool = True) -> Commit:
    """The commit with its late counts filled in. Without `wait`, counts not computed yet stay
    pending (`TableChange.counts_pending`); with it, they are computed here if need be."""
    if not commit.pending_counts:
        return commit
    known = recorded(store, commit)
    if known is None and wait:
        known = complete(store, objects, commit)
    return commit if known is None else commit.with_counts(known)


def complete(store: Store, objects: Objects, commit: Commit) -> CountsByTable:
    """Compute and record the commit's late counts unless they are known; return them."""
    with _computing:
        known = recorded(store, commit)
        if known is not None:
            return known
        tables = compute(store, objects, commit)
        crashpoint("before-counts-record")
        try:
            store.counts.put(commit.id, tables)
        except (OSError, UdrError) as exc:
            # A read-only or full store: the counts are exact all the same; keep them here.
            log.warning("row counts of commit %s not recorded: %s", commit.id, exc)
        records.put((store.root, commit.id), tables)
        return tables


class CountWorker:
    """A background thread that completes the late counts of commits, one at a time."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Store, Objects, str]] = queue.Queue()
        self._queued: set[tuple[Path, str]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition(self._lock)
        # Whether the process waits at exit for the counts of its commits (a writer does; the
        # mount daemon leaves them to the next reader rather than delay an unmount).
        self.finish_at_exit = True

    def submit(self, store: Store, objects: Objects, commit_id: str) -> None:
        """Complete this commit's counts soon (once, however often it is submitted)."""
        with self._lock:
            key = (store.root, commit_id)
            if key in self._queued or records.get(key) is not None:
                return
            self._queued.add(key)
            self._queue.put((store, objects, commit_id))
            if self._thread is None or not self._thread.is_alive():
                if self._thread is None:
                    atexit.register(self._at_exit)
                self._thread = threading.Thread(
                    target=self._run, name="udr-row-counts", daemon=True
                )
                self._thread.start()

    def wait_idle(self, timeout: float | None = None, root: Path | None = None) -> bool:
        """Wait until every submitted commit (of the store at `root`, if given) is counted:
        for orderly exits, a `Repo.close`, and tests."""
        with self._idle:
            return self._idle.wait_for(
                lambda: not any(root is None or r == root for r, _c in self._queued), timeout
            )

    def _at_exit(self) -> None:
        """A writer finishes the counts of its own commits before it exits, so readers need
        not; interrupted (or killed), it leaves them to the next reader."""
        if self.finish_at_exit:
            with contextlib.suppress(KeyboardInterrupt):
                self.wait_idle()

    def _run(self) -> None:
        while True:
            store, objects, commit_id = self._queue.get()
            try:
                commit = objects.commit(commit_id)
                try:
                    complete(store, objects, commit)
                except UdrError as exc:
                    # Damage (`udr fsck` names it): this process shows the counts as unknown
                    # rather than hold the log back; none is recorded, so a process started
                    # after a repair counts them.
                    log.error("row counts of commit %s cannot be computed: %s", commit_id, exc)
                    records.put((store.root, commit_id), dict.fromkeys(commit.pending_counts))
            except Exception:  # a reader computes them again; the worker must not stop
                log.exception("row counts of commit %s failed", commit_id)
            finally:
                with self._idle:
                    self._queued.discard((store.root, commit_id))
                    self._idle.notify_all()


worker = CountWorker()
