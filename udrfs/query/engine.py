"""DuckDB over one snapshot of a store: every table name in the SQL reads a chosen version.

A query runs in a DuckDB connection that has one temporary view per table it names, reading
that table's version through `udr://` (query/fsspec.py, registered in the engine's private
DuckDB database). A view's path names a commit id, so it always means the same bytes; a view is
replaced only when a query wants another version under that name. DuckDB keeps the footers and
the column bytes it has read (`parquet_metadata_cache`, `cache_local_files`), checked against
the file's modification time, which for a version never changes: a repeated query over
unchanged versions neither re-registers nor re-reads anything.

Temporary views belong to one DuckDB connection, so each thread gets its own connection; two
threads can query different versions of the same table at once.
"""

from __future__ import annotations

import atexit
import json
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from udrfs.catalog import Catalog, Commit, TableVersion
from udrfs.catalog.paths import REF_MARK, version_file_name
from udrfs.catalog.rowcounts import quote
from udrfs.errors import QueryError
from udrfs.query.fsspec import UdrFileSystem

_FIXED_TIME = datetime(2000, 1, 1, tzinfo=UTC)

# DuckDB databases still holding a Python filesystem at interpreter exit make the bindings
# report leaks on stderr; engines left open are closed first.
_open_engines: weakref.WeakSet[QueryEngine] = weakref.WeakSet()


@atexit.register
def _close_open_engines() -> None:
    for engine in list(_open_engines):
        engine.close()


# Where a version is read from: a commit on whose history it is, and the version.
Located = tuple[str, TableVersion]


def version_url(commit_id: str, version: TableVersion) -> str:
    """The udr:// path of a version, through a commit (so its meaning never changes)."""
    return f"udr://{REF_MARK}{commit_id}/{version.table}/{version_file_name(version.version)}"


def scan_sql(commit_id: str, version: TableVersion, rows: str | None = None) -> str:
    """SQL reading one version; `rows` filters on `file_row_number` (whole row groups skip)."""
    url = version_url(commit_id, version).replace("'", "''")
    if rows is None:
        return f"SELECT * FROM read_parquet('{url}')"
    return (
        f"SELECT * EXCLUDE (file_row_number) FROM read_parquet('{url}', file_row_number = true) "
        f"WHERE {rows}"
    )


class SnapshotFiles(UdrFileSystem):
    """The engine's udr:// filesystem, whose views name versions through commit ids.

    Such a file never changes, but DuckDB does not trust its caches for a file modified in the
    last few seconds (it might still be being written), which would make every query on a
    fresh version re-read it. So a file named through a commit id reports one fixed
    modification time; any other path (`@main/t/latest.parquet` written into a query by hand)
    reports its real one.
    """

    def modified(self, path: str) -> datetime:
        if self.names_fixed_bytes(path):
            return _FIXED_TIME
        return super().modified(path)


@dataclass
class _Session:
    """One thread's connection and what its views show (view name -> SQL of the view)."""

    con: duckdb.DuckDBPyConnection
    views: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class QueryEngine:
    """Runs SQL over snapshots of one store's tables."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._db = duckdb.connect()
        self._files = SnapshotFiles(catalog=catalog, skip_instance_cache=True)
        self._db.register_filesystem(self._files)
        self._db.execute("SET parquet_metadata_cache = true")
        self._db.execute("SET cache_local_files = true")
        # Cache in 1 MiB blocks rather than 16 KiB: far fewer calls through Python on a first read.
        self._db.execute("SET external_file_cache_local_max_block_size = 1048576")
        # Table names come from a bare database: DuckDB's name lister binds the SQL while
        # holding the GIL, which against views reading udr:// (needing the GIL) would deadlock.
        self._parser = duckdb.connect()
        self._local = threading.local()
        self._sessions: list[_Session] = []
        self._lock = threading.Lock()
        self.views_created = 0
        _open_engines.add(self)

    @property
    def bytes_read(self) -> int:
        """Bytes this engine's queries have read from the store so far."""
        return self._files.read_counter.bytes

    # ---- connections ------------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh connection to the engine's database (the caller closes it)."""
        with self._lock:
            return self._db.cursor()

    def _session(self) -> _Session:
        session: _Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _Session(self.cursor())
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        _open_engines.discard(self)
        with self._lock:
            for session in self._sessions:
                session.con.close()
            self._sessions.clear()
            self._parser.close()
            self._db.close()

    # ---- snapshots --------------------------------------------------------------------

    def snapshot(self, branch: str, as_of: datetime | None) -> Commit:
        """The commit a query reads: the branch head, or its newest commit at `as_of`."""
        if as_of is not None:
            return self._catalog.commit_at(branch, as_of)
        return self._catalog.commit(self._catalog.resolve(branch))

    def resolve_tables(
        self, names: Sequence[str], snapshot: Commit, versions: Mapping[str, int]
    ) -> dict[str, Located]:
        """Which version each name means at `snapshot`; names not in the store are left out."""
        chosen: dict[str, Located] = {}
        for table, number in versions.items():
            chosen[table] = (snapshot.id, self._catalog.version(table, number, snapshot.id))
        by_lower: dict[str, list[str]] = {}
        for table in snapshot.tables:
            by_lower.setdefault(table.lower(), []).append(table)
        for name in names:
            if name in chosen:
                continue
            # SQL names are case-insensitive; an exact match wins over a case-folded one.
            folded = by_lower.get(name.lower(), [])
            if name in snapshot.tables:
                table = name
            elif len(folded) == 1:
                table = folded[0]
            else:
                continue
            if table in versions:
                chosen[name] = chosen[table]
            else:
                manifest = self._catalog.manifest(snapshot.tables[table])
                # An `as_of` snapshot may hold a version `udr expire` released.
                chosen[name] = (snapshot.id, self._catalog.retention.check_readable(manifest))
        return chosen

    # ---- queries ----------------------------------------------------------------------

    def query(
        self,
        sql: str,
        versions: Mapping[str, int] | None = None,
        branch: str = "main",
        as_of: datetime | None = None,
        params: Sequence[object] | Mapping[str, object] | None = None,
    ) -> pa.Table:
        """Run `sql` with every table name bound to its version in one snapshot."""
        snapshot = self.snapshot(branch, as_of)
        session = self._session()
        with session.lock:
            names = self.table_names(sql)
            chosen = self.resolve_tables(names, snapshot, versions or {})
            for name in names:
                located = chosen.get(name)
                if located is None:
                    self._drop_view(session, name)
                else:
                    self._set_view(session, name, scan_sql(*located))
            for name, located in chosen.items():
                if name not in names:  # named in versions= but not seen in the SQL text
                    self._set_view(session, name, scan_sql(*located))
            try:
                result = session.con.sql(sql, params=params)
                if result is None:
                    return pa.table({})
                return result.to_arrow_table()
            except duckdb.Error as exc:
                raise QueryError(f"SQL failed: {exc}") from exc

    def table_names(self, sql: str) -> list[str]:
        """The table names `sql` refers to ([] if it does not parse: the query reports that).

        SELECTs are parsed without binding (DuckDB's json_serialize_sql): binding would fail on
        names not registered yet. Other statements fall back to DuckDB's own lister.
        """
        with self._lock:
            (text,) = self._parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0]
            tree = json.loads(text)
            if not tree.get("error"):
                return sorted(set(_base_tables(tree)))
            try:
                return sorted(self._parser.get_table_names(sql))
            except duckdb.Error:
                return []

    def _set_view(self, session: _Session, name: str, sql: str) -> None:
        if session.views.get(name) == sql:
            return
        session.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS {sql}")
        session.views[name] = sql
        self.views_created += 1

    def _drop_view(self, session: _Session, name: str) -> None:
        if session.views.pop(name, None) is not None:
            session.con.execute(f"DROP VIEW IF EXISTS {quote(name)}")


def _base_tables(tree: object) -> Iterator[str]:
    """Names of the tables in a parsed statement (CTE names included: harmless extras)."""
    if isinstance(tree, dict):
        if tree.get("type") == "BASE_TABLE" and tree.get("schema_name") in ("", "main"):
            yield str(tree["table_name"])
        for value in tree.values():
            yield from _base_tables(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _base_tables(value)
