"""Rows added, removed and modified between two versions of a table, for the change log.

The change log records these counts for every table whose key is known (docs/format.md,
"Commit"). A transaction computes them before it takes its branch lock, in DuckDB, reading only
what can differ (catalog/rowgroups.py): row groups that are the same chunks in both versions
are skipped, and in row groups whose keys are the same bytes only the columns whose bytes
changed are read. The row-level diff (query/diff.py) plans and compares the same way, so its
counts and the change log's agree.

A row is *modified* when some column present in both versions differs (NULLs compare equal;
a column whose type changed is compared as text). The key must identify rows: when it does
not, the counts are left unknown.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from udrfs.catalog.files import VersionFile
from udrfs.catalog.model import TableVersion
from udrfs.lru import LruCache

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from udrfs.store.chunks import ChunkStore

_BATCH_ROWS = 65536
# Process-wide: (manifest id, key columns) -> whether the key identifies the version's rows.
unique_cache: LruCache[tuple[str, tuple[str, ...]], bool] = LruCache(4096)


@dataclass(frozen=True)
class RowCounts:
    added: int
    removed: int
    modified: int


# ---- SQL shared with the row-level diff ---------------------------------------------------


def quote(name: str) -> str:
    """A SQL identifier, quoted for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def compared_columns(old: pa.Schema, new: pa.Schema, key: Sequence[str]) -> list[str]:
    """Columns whose values decide whether a row was modified: non-key columns in both."""
    old_names = set(old.names)
    return [n for n in new.names if n in old_names and n not in key]


def values_differ(left: str, right: str, same_type: bool = True) -> str:
    """SQL that is true when two values differ (NULLs equal; a changed type compares as text)."""
    if not same_type:
        left, right = f"CAST({left} AS VARCHAR)", f"CAST({right} AS VARCHAR)"
    return f"{left} IS DISTINCT FROM {right}"


def row_differs(a: str, b: str, columns: Sequence[str], old: pa.Schema, new: pa.Schema) -> str:
    """SQL that is true when rows `a` (old) and `b` (new) differ in any of `columns`."""
    terms = [
        values_differ(f"{a}.{quote(c)}", f"{b}.{quote(c)}", old.field(c).type == new.field(c).type)
        for c in columns
    ]
    return " OR ".join(terms) if terms else "false"


def key_matches(a: str, b: str, key: Sequence[str]) -> str:
    """SQL joining rows of `a` and `b` on the key (a NULL key value matches a NULL)."""
    return " AND ".join(f"{a}.{quote(k)} IS NOT DISTINCT FROM {b}.{quote(k)}" for k in key)


def key_unique_sql(relation: str, key: Sequence[str]) -> str:
    """SQL returning one boolean: no two rows of `relation` share a key (NULL is a value)."""
    cols = ", ".join(quote(k) for k in key)
    return (
        f"SELECT count(*) = (SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {relation})) "
        f"FROM {relation}"
    )


# ---- counting -----------------------------------------------------------------------------


def count_row_changes(
    chunks: ChunkStore, old: TableVersion | None, new: TableVersion | None
) -> RowCounts | None:
    """Rows added, removed and modified from `old` to `new` (None: a side that does not exist).

    None when the key is unknown, is not in both versions, or does not identify rows.
    """
    key = new.key if new is not None else old.key if old is not None else None
    if not key:
        return None
    if old is None and new is not None:
        return RowCounts(added=new.rows, removed=0, modified=0)
    if new is None and old is not None:
        return RowCounts(added=0, removed=old.rows, modified=0)
    assert old is not None and new is not None
    if old.blake3 == new.blake3:
        return RowCounts(0, 0, 0)
    from udrfs.catalog.rowgroups import row_groups

    old_groups, new_groups = row_groups(chunks, old), row_groups(chunks, new)
    a, b = old_groups.schema, new_groups.schema
    if not all(k in a.names and k in b.names for k in key):
        return None

    import duckdb

    try:
        return _count(chunks, old, new, key)
    except duckdb.Error:
        # Values DuckDB cannot compare (exotic types) leave the counts unknown; counting must
        # never make a commit fail.
        return None


def _count(
    chunks: ChunkStore, old: TableVersion, new: TableVersion, key: Sequence[str]
) -> RowCounts | None:
    from udrfs.catalog.rowgroups import plan_comparison, row_groups

    if not (key_is_unique(chunks, old, key) and key_is_unique(chunks, new, key)):
        return None
    old_groups, new_groups = row_groups(chunks, old), row_groups(chunks, new)
    a, b = old_groups.schema, new_groups.schema
    with _connection() as con:
        plan = plan_comparison(old_groups, new_groups, key)
        columns = compared_columns(a, b, key)
        con.register("old_full", _reader(chunks, old, plan.old_full, [*key, *columns]))
        con.register("new_full", _reader(chunks, new, plan.new_full, [*key, *columns]))
        differs = row_differs("o", "n", columns, a, b)
        (full,) = con.sql(
            f"""
            SELECT
                count(*) FILTER (WHERE o.__present IS NULL),
                count(*) FILTER (WHERE n.__present IS NULL),
                count(*) FILTER (WHERE o.__present AND n.__present AND ({differs}))
            FROM (SELECT *, true AS __present FROM old_full) AS o
            FULL JOIN (SELECT *, true AS __present FROM new_full) AS n
                ON {key_matches("o", "n", key)}
            """
        ).fetchall()
        modified_in_aligned = 0
        if plan.old_aligned and plan.aligned_columns:
            # The same keys in the same order on both sides: only changed columns to compare.
            wanted = [*key, *plan.aligned_columns]
            con.register("old_aligned", _reader(chunks, old, plan.old_aligned, wanted))
            con.register("new_aligned", _reader(chunks, new, plan.new_aligned, wanted))
            differs = row_differs("o", "n", plan.aligned_columns, a, b)
            ((modified_in_aligned,),) = con.sql(
                f"SELECT count(*) FROM old_aligned AS o JOIN new_aligned AS n "
                f"ON {key_matches('o', 'n', key)} WHERE {differs}"
            ).fetchall()
    return RowCounts(
        added=int(full[0]),
        removed=int(full[1]),
        modified=int(full[2]) + int(modified_in_aligned),
    )


def key_is_unique(chunks: ChunkStore, version: TableVersion, key: Sequence[str]) -> bool:
    """No two rows of the version share a key value (NULL counts as a value).

    Cached by (manifest id, key): a version's rows never change.
    """
    cache_key = (version.id, tuple(key))
    known = unique_cache.get(cache_key)
    if known is not None:
        return known
    with VersionFile(chunks, version) as f:
        keys = f.parquet(columns=key).read(columns=list(key))  # (pq.read_table would import pandas)
    with _connection() as con:
        con.register("key_rows", keys)
        unique = con.sql(key_unique_sql("key_rows", key)).fetchall() == [(True,)]
    unique_cache.put(cache_key, unique)
    return unique


_REGISTERED = ("old_full", "new_full", "old_aligned", "new_aligned", "key_rows")
_local = threading.local()


@contextmanager
def _connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """This thread's DuckDB connection, its registered relations dropped after use.

    Opening a connection costs 10-20 ms, more than counting a small table: a night of 78
    tables opened three each. One per thread is kept for the life of the thread."""
    con = getattr(_local, "connection", None)
    if con is None:
        import duckdb

        con = _local.connection = duckdb.connect()
    try:
        yield con
    finally:
        for name in _REGISTERED:
            con.unregister(name)


def _reader(
    chunks: ChunkStore, version: TableVersion, groups: Sequence[int], columns: list[str]
) -> pa.RecordBatchReader:
    """The selected row groups' columns as a stream (the file is opened when it is read)."""
    import pyarrow as pa

    with VersionFile(chunks, version) as f:
        schema = f.parquet(columns=()).schema_arrow
    schema = pa.schema([schema.field(c) for c in columns])

    def batches() -> Iterator[pa.RecordBatch]:
        if not groups:
            return
        with VersionFile(chunks, version) as f:
            yield from f.parquet(columns, groups).iter_batches(
                batch_size=_BATCH_ROWS, row_groups=list(groups), columns=columns
            )

    return pa.RecordBatchReader.from_batches(schema, batches())
