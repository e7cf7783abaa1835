"""`udrfs.Repo`: the Python API over one store.

A `Repo` holds the store's `Catalog` (`repo.catalog`), which does the versioning, and a
query engine made on first use; it adds what needs the query layer (SQL, row-level diffs and
merges, subscriptions). The catalog's methods are the Repo's too, each forwarded by one line
below (`_via_catalog`, checked by mypy against the catalog's signature). Each method here is
a thin call into `udrfs.query`; the query modules are imported on first use, so opening a
store stays cheap for callers that never query. The catalog itself runs DuckDB for one thing
only: the change log counts the rows each commit of a keyed table added, removed and modified
(catalog/rowcounts.py, which imports DuckDB when it does; catalog/late_counts.py, after the
commit point).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from udrfs.catalog import Catalog, ChangeEntry, Commit, late_counts
from udrfs.catalog.catalog import MAIN, init_store
from udrfs.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from udrfs.catalog.remote import SyncResult
    from udrfs.catalog.remote_config import RemoteConfig
    from udrfs.catalog.retention import Retention
    from udrfs.catalog.staging import StagingArea
    from udrfs.catalog.undo import ResetResult
    from udrfs.query.changefeed import Callback, Subscription
    from udrfs.query.diff import RowDiff, SnapshotDiff
    from udrfs.query.engine import QueryEngine
    from udrfs.query.history import RowChange
    from udrfs.query.merge import KeySpec, MergeResult, StrategySpec
    from udrfs.store import Store
    from udrfs.store.transfer import Progress

P = ParamSpec("P")
R = TypeVar("R")


def _via_catalog(method: Callable[Concatenate[Catalog, P], R]) -> Callable[Concatenate[Repo, P], R]:
    """The catalog's `method` as a method of the Repo: same signature, same docstring."""

    @functools.wraps(method)
    def call(self: Repo, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self.catalog, *args, **kwargs)

    return call


class Repo:
    """A UDR store: `Repo.init(path)` creates one, `Repo(path)` opens one."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        endpoint: str | None = None,
        profile: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_size: str | int | None = None,
    ) -> None:
        """Open the store in directory `path`, or the one at `s3://BUCKET/PREFIX`, read and
        written straight there (with `endpoint` for R2 and other S3 services, `profile` for a
        named AWS profile's keys, and a local cache of what was read: `cache_dir`, default
        ~/.cache/udrfs, bounded by `cache_size`, e.g. "20GB")."""
        self._hold(
            Catalog(
                path, endpoint=endpoint, profile=profile, cache_dir=cache_dir, cache_size=cache_size
            )
        )

    def _hold(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._engine: QueryEngine | None = None
        self._engine_lock = threading.Lock()

    @classmethod
    def init(cls, path: str | os.PathLike[str]) -> Repo:
        """Create a store with an empty root commit on `main`, and open it."""
        init_store(path)
        return cls(path)

    @property
    def engine(self) -> QueryEngine:
        """The DuckDB engine over this store (made on first use, shared by threads)."""
        with self._engine_lock:
            if self._engine is None:
                from udrfs.query.engine import QueryEngine

                self._engine = QueryEngine(self.catalog)
            return self._engine

    def close(self) -> None:
        """Finish the row counts of commits made through this store (as a process does at
        exit; the store may be removed next) and release the query engine (DuckDB); the store
        itself holds nothing open."""
        late_counts.worker.wait_idle(root=self.store.root)
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    # ---- the catalog's API (udrfs/catalog/catalog.py) -----------------------------------

    @property
    def store(self) -> Store:
        return self.catalog.store

    @property
    def retention(self) -> Retention:
        return self.catalog.retention

    @property
    def path(self) -> Path:
        return self.catalog.path

    @property
    def location(self) -> str:
        """Where the store is, as a user names it: its directory, or a remote's URL."""
        return self.catalog.location

    @property
    def is_remote(self) -> bool:
        """Whether the store is read and written straight on a remote (s3://...)."""
        return self.catalog.is_remote

    @property
    def default_branch(self) -> str:
        """The store's checked-out branch (`udr checkout`), which commands default to; main
        unless set. It is local to this store: push and clone never send it."""
        return self.catalog.default_branch

    @property
    def staging(self) -> StagingArea:
        """Named transactions that survive restarts (the mount's `.tx` directories)."""
        return self.catalog.staging

    @property
    def read_ahead_limit(self) -> int:
        return self.catalog.read_ahead_limit

    branches = _via_catalog(Catalog.branches)
    tags = _via_catalog(Catalog.tags)
    head = _via_catalog(Catalog.head)
    resolve = _via_catalog(Catalog.resolve)
    resolve_ref = _via_catalog(Catalog.resolve_ref)
    commits_with_prefix = _via_catalog(Catalog.commits_with_prefix)
    create_branch = _via_catalog(Catalog.create_branch)
    fast_forward = _via_catalog(Catalog.fast_forward)
    set_default_branch = _via_catalog(Catalog.set_default_branch)
    delete_branch = _via_catalog(Catalog.delete_branch)
    create_tag = _via_catalog(Catalog.create_tag)
    delete_tag = _via_catalog(Catalog.delete_tag)
    commit = _via_catalog(Catalog.commit)
    counted = _via_catalog(Catalog.counted)
    manifest = _via_catalog(Catalog.manifest)
    first_parent_history = _via_catalog(Catalog.first_parent_history)
    log = _via_catalog(Catalog.log)
    changes = _via_catalog(Catalog.changes)
    commit_at = _via_catalog(Catalog.commit_at)
    table_versions = _via_catalog(Catalog.table_versions)
    versions = _via_catalog(Catalog.versions)
    tables = _via_catalog(Catalog.tables)
    version = _via_catalog(Catalog.version)
    read_into = _via_catalog(Catalog.read_into)
    read = _via_catalog(Catalog.read)
    prefetch = _via_catalog(Catalog.prefetch)
    load_index = _via_catalog(Catalog.load_index)
    open = _via_catalog(Catalog.open)
    open_chunks = _via_catalog(Catalog.open_chunks)
    read_table = _via_catalog(Catalog.read_table)
    transaction = _via_catalog(Catalog.transaction)
    stream = _via_catalog(Catalog.stream)
    finish_stream = _via_catalog(Catalog.finish_stream)
    chunk_file = _via_catalog(Catalog.chunk_file)
    describe_chunks = _via_catalog(Catalog.describe_chunks)
    flush_chunks = _via_catalog(Catalog.flush_chunks)
    verify = _via_catalog(Catalog.verify)
    import_file = _via_catalog(Catalog.import_file)
    write_table = _via_catalog(Catalog.write_table)
    table_policy = _via_catalog(Catalog.table_policy)
    set_table = _via_catalog(Catalog.set_table)
    fsck = _via_catalog(Catalog.fsck)
    expire = _via_catalog(Catalog.expire)
    repack = _via_catalog(Catalog.repack)
    gc = _via_catalog(Catalog.gc)
    reachable_commits = _via_catalog(Catalog.reachable_commits)
    engine_stats = _via_catalog(Catalog.engine_stats)
    stats = _via_catalog(Catalog.stats)
    footprint = _via_catalog(Catalog.footprint)

    # ---- a handle on one branch ---------------------------------------------------------

    def checkout(self, branch: str) -> BranchView:
        """A handle on `branch`: every call on it defaults to that branch (`branch=`, a merge's
        `into=`, a new branch's `from_=`, a tag's `ref=`); passing one still wins. The store's
        own default (`udr checkout`) is not changed: see `set_default_branch`."""
        return BranchView(self, branch)

    # ---- SQL --------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        versions: Mapping[str, int] | None = None,
        branch: str = MAIN,
        as_of: datetime | None = None,
        params: Sequence[object] | Mapping[str, object] | None = None,
    ) -> pa.Table:
        """Run DuckDB SQL over one snapshot; every table name reads its chosen version.

        The snapshot is `branch`'s head, or its newest commit at or before `as_of`; `versions`
        pins tables to version numbers along that history ({"nyc_master": 5}).
        """
        return self.engine.query(sql, versions, branch, as_of, params)

    # ---- differences ------------------------------------------------------------------

    def diff(
        self,
        table: str,
        old: int | str,
        new: int | str,
        key: Sequence[str] | str | None = None,
        branch: str = MAIN,
    ) -> RowDiff:
        """Rows added, removed and modified from `old` to `new` (numbers on `branch`, or
        "REF" for a ref's newest version, or "REF@N"). The key defaults to the one recorded."""
        from udrfs.query.diff import diff_rows, resolve_side

        return diff_rows(
            self.engine,
            self.catalog,
            table,
            resolve_side(self.catalog, table, old, branch),
            resolve_side(self.catalog, table, new, branch),
            key,
        )

    def diff_refs(self, old: str, new: str) -> SnapshotDiff:
        """Tables added, removed and changed from ref `old` to ref `new`."""
        from udrfs.query.diff import diff_snapshots

        return diff_snapshots(self.catalog, old, new)

    # ---- merging ----------------------------------------------------------------------

    def merge(
        self,
        source: str,
        into: str = MAIN,
        key: KeySpec = None,
        message: str | None = None,
        author: str | None = None,
        strategy: StrategySpec = None,
        conflicts_file: str | os.PathLike[str] | None = None,
    ) -> MergeResult:
        """Merge ref `source` into branch `into` (fast-forward, or three-way by table and,
        where both changed a table, by row). Conflicts are settled by `strategy` ("ours":
        the target's row or table, "theirs": the source's; or per table,
        `{"scores": "theirs", "*": "ours"}`); any left raise MergeConflictError, applying
        nothing, with the count and the first conflicts (all of them in `conflicts_file`,
        one JSON line each, if given)."""
        from udrfs.query.merge import merge_branches

        return merge_branches(
            self.engine, self.catalog, source, into, key, message, author, strategy, conflicts_file
        )

    def history(self, table: str, key: Mapping[str, object], branch: str = MAIN) -> list[RowChange]:
        """One row's value in every version of `table` on `branch` where it changed, found by
        its key (`key={"bbl": 1000010001}`), oldest first: `RowChange(version, commit, time,
        row)`, `row` None where the version no longer has it. One query over all versions."""
        from udrfs.query.history import row_history

        return row_history(self.engine, self.catalog, table, key, branch)

    # ---- undoing (catalog/undo.py) ----------------------------------------------------

    def revert(
        self,
        commit: str,
        branch: str = MAIN,
        force: bool = False,
        message: str | None = None,
        author: str | None = None,
    ) -> Commit | None:
        """A new commit on `branch` that undoes `commit`: the tables it changed go back to
        their versions before it (no data copied). RevertConflictError naming the tables if
        later commits changed them again, unless `force`. None if it changed no table."""
        from udrfs.catalog.undo import revert

        c = self.catalog
        return revert(c.store, c.history, c.retention, commit, branch, force, message, author)

    def reset(self, branch: str, to: str, force: bool = False) -> ResetResult:
        """Move `branch` to the commit `to` names; NonFastForwardError if that would leave
        commits no other ref reaches, unless `force`. Prefer `revert` on a shared branch."""
        from udrfs.catalog.undo import reset

        c = self.catalog
        return reset(c.store, c.history, c.retention, branch, to, force)

    # ---- the change feed --------------------------------------------------------------

    def latest_seq(self, branch: str = MAIN) -> int:
        """The sequence number of `branch`'s head (where a subscriber is up to date)."""
        return self.commit(self.head(branch)).seq

    def subscribe(
        self,
        callback: Callback,
        branch: str = MAIN,
        from_seq: int | None = None,
        table: str | None = None,
        poll_interval: float = 0.5,
        start: bool = True,
    ) -> Subscription:
        """Call `callback(entry)` once per new change-log entry of `branch`, in order.

        `from_seq` is the last seq already handled (None: start from now). With `start` the
        subscription polls in a background thread until `.stop()`; otherwise call `.poll()`.
        """
        from udrfs.query.changefeed import Subscription

        sub = Subscription(self.catalog, callback, branch, from_seq, table, poll_interval)
        return sub.start() if start else sub

    # ---- remotes (catalog/remote.py) ----------------------------------------------------

    def add_remote(
        self,
        name: str,
        url: str,
        endpoint: str | None = None,
        cas: bool = True,
        profile: str | None = None,
    ) -> RemoteConfig:
        """Record remote `name` at `url` (s3://BUCKET/PREFIX, or a directory) after checking
        it; `cas=False` records a remote with a single writer whose server ignores
        conditional writes; `profile` names the AWS profile (~/.aws) whose keys it uses."""
        from udrfs.catalog.remote import add_remote

        return add_remote(self.store, name, url, endpoint, cas, profile)

    def remotes(self) -> list[RemoteConfig]:
        from udrfs.catalog.remote_config import Remotes

        return Remotes(self.store).list()

    def remove_remote(self, name: str) -> None:
        from udrfs.catalog.remote_config import Remotes

        Remotes(self.store).remove(name)

    def push(
        self,
        remote: str = "origin",
        branches: Sequence[str] = (),
        tags: bool = False,
        all: bool = False,
        delete: Sequence[str] = (),
        force: bool = False,
        progress: Progress | None = None,
    ) -> SyncResult:
        """Send branches (default main) and their data to `remote`, data first and each ref
        last by compare-and-swap; NonFastForwardError if the remote ref moved meanwhile."""
        from udrfs.catalog.remote import push

        c = self.catalog
        return push(
            c.store, c.history, c.retention, remote, branches, tags, all, delete, force, progress
        )

    def fetch(
        self, remote: str = "origin", branches: Sequence[str] = (), progress: Progress | None = None
    ) -> SyncResult:
        """Bring `remote`'s branches (and tags) here as remote-tracking refs (`origin/main`)."""
        from udrfs.catalog.remote import fetch

        c = self.catalog
        return fetch(c.store, c.history, c.retention, remote, branches, progress)

    def pull(
        self, remote: str = "origin", branch: str = MAIN, progress: Progress | None = None
    ) -> SyncResult:
        """Fetch `branch` from `remote` and fast-forward it here (NonFastForwardError with
        the merge to run if the two have diverged)."""
        from udrfs.catalog.remote import pull

        c = self.catalog
        return pull(c.store, c.history, c.retention, remote, branch, progress)

    @classmethod
    def clone(
        cls,
        url: str,
        path: str | os.PathLike[str],
        endpoint: str | None = None,
        branch: str | None = None,
        progress: Progress | None = None,
    ) -> Repo:
        """A new store at `path` with the branches and tags of the store at `url`, which
        becomes its remote `origin`. Nothing is left at `path` if the clone fails."""
        from udrfs.catalog.remote import clone

        repo = cls.__new__(cls)
        repo._hold(clone(Catalog, url, path, endpoint, branch, progress))
        return repo

    # ---- names a migrating pipeline looks for -----------------------------------------

    def get_changes(
        self,
        since: int = 0,
        branch: str = MAIN,
        table: str | None = None,
        since_tx_id: int | None = None,
    ) -> list[ChangeEntry]:
        """`changes`; `since_tx_id` is another spelling of `since` (a seq, not a commit id)."""
        if since_tx_id is not None:
            if since:
                raise UsageError("give since or since_tx_id, not both (they are the same)")
            since = since_tx_id
        return self.changes(since=since, table=table, branch=branch)

    def latest_tx_id(self, branch: str = MAIN) -> int:
        """`latest_seq`: what `get_changes(since_tx_id=...)` takes."""
        return self.latest_seq(branch)

    def diff_versions(
        self,
        table: str,
        old: int | str,
        new: int | str,
        key_columns: Sequence[str] | str | None = None,
        branch: str = MAIN,
    ) -> RowDiff:
        return self.diff(table, old, new, key=key_columns, branch=branch)

    def merge_branch(self, source: str, into: str = MAIN, **kwargs: Any) -> MergeResult:
        return self.merge(source, into=into, **kwargs)


# The parameters through which a call names the branch it works on when none is given.
_BRANCH_PARAMETERS = ("branch", "into", "from_", "ref")


class BranchView:
    """`repo.checkout(branch)`: the Repo API with `branch` as the default branch.

    A thin wrapper, not a copy: each method of the Repo is looked up on use and called with
    `branch` filled in for the first of its branch parameters the caller left out.
    """

    def __init__(self, repo: Repo, branch: str) -> None:
        repo.head(branch)  # NotFoundError naming the branches there are
        self.repo = repo
        self.branch = branch

    def __repr__(self) -> str:
        return f"<udrfs.Repo {self.repo.path} on branch {self.branch!r}>"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.repo, name)
        if not inspect.ismethod(attr) or attr.__self__ is not self.repo:
            return attr  # a property's value, or a class method (`init`, `clone`)
        signature = inspect.signature(attr)
        params = [p for p in _BRANCH_PARAMETERS if p in signature.parameters]
        if not params:
            return attr

        @functools.wraps(attr)
        def on_branch(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind_partial(*args, **kwargs)
            if params[0] not in bound.arguments:
                bound.arguments[params[0]] = self.branch
            return attr(*bound.args, **bound.kwargs)

        return on_branch
