"""Differences between versions: of whole snapshots (which tables) and of one table (which rows).

A row-level diff runs in DuckDB over the two versions' bytes (udr:// views) and reads only what
can differ (`udrfs.catalog.rowgroups`): row groups made of the same chunks in both versions are
skipped, and where a row group's keys are the same bytes on both sides only the columns whose
bytes changed are read. The result tables hold only changed rows.

With a key, rows are matched by key: a key only in the new version is *added*, only in the old
one *removed*, in both with some other column different *modified* (the comparison the change
log's counts use). Without a key, rows are compared whole: `added` holds the rows of the new
version that are not in the old (as a multiset), `removed` the reverse, and nothing is modified.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from udrfs.catalog import Catalog, TableVersion
from udrfs.catalog.rowcounts import compared_columns, key_is_unique, quote, values_differ
from udrfs.catalog.rowgroups import (
    ComparisonPlan,
    RowGroups,
    plan_comparison,
    row_filter,
    row_groups,
)
from udrfs.catalog.specs import parse_ref_version
from udrfs.catalog.transaction import normalize_key
from udrfs.errors import KeyNotUniqueError, NotFoundError, UdrError
from udrfs.query.engine import Located, QueryEngine, scan_sql

CHANGED_COLUMNS = "changed_columns"
BEFORE, AFTER = "_before", "_after"


# ---- which tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class TableDifference:
    """One table that differs between two snapshots."""

    table: str
    status: str  # "added", "removed" or "changed"
    old_version: int | None
    new_version: int | None
    old_rows: int | None
    new_rows: int | None


@dataclass(frozen=True)
class SnapshotDiff:
    """Tables added, removed and changed from one ref to another."""

    old_ref: str
    new_ref: str
    tables: tuple[TableDifference, ...]

    @property
    def added(self) -> list[TableDifference]:
        return [t for t in self.tables if t.status == "added"]

    @property
    def removed(self) -> list[TableDifference]:
        return [t for t in self.tables if t.status == "removed"]

    @property
    def changed(self) -> list[TableDifference]:
        return [t for t in self.tables if t.status == "changed"]

    def __bool__(self) -> bool:
        return bool(self.tables)


def same_content(a: TableVersion, b: TableVersion) -> bool:
    """Two versions hold the same bytes and key (their numbers may differ)."""
    return a.blake3 == b.blake3 and a.key == b.key


def diff_snapshots(catalog: Catalog, old_ref: str, new_ref: str) -> SnapshotDiff:
    old = catalog.commit(catalog.resolve(old_ref)).tables
    new = catalog.commit(catalog.resolve(new_ref)).tables
    out = []
    for table in sorted(set(old) | set(new)):
        a = catalog.manifest(old[table]) if table in old else None
        b = catalog.manifest(new[table]) if table in new else None
        if a is not None and b is not None and (a.id == b.id or same_content(a, b)):
            continue
        status = "added" if a is None else "removed" if b is None else "changed"
        out.append(
            TableDifference(
                table=table,
                status=status,
                old_version=a.version if a else None,
                new_version=b.version if b else None,
                old_rows=a.rows if a else None,
                new_rows=b.rows if b else None,
            )
        )
    return SnapshotDiff(old_ref, new_ref, tuple(out))


# ---- which rows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RowDiff:
    """Rows added, removed and modified from one version of a table to another.

    `modified` has the key columns, then `<column>_before` and `<column>_after` for every
    column that changed in at least one row, then `changed_columns`: which changed in that row.
    """

    table: str
    old: TableVersion
    new: TableVersion
    key: tuple[str, ...] | None
    added: pa.Table
    removed: pa.Table
    modified: pa.Table
    columns_added: tuple[str, ...] = ()
    columns_removed: tuple[str, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        return {
            "added": self.added.num_rows,
            "removed": self.removed.num_rows,
            "modified": self.modified.num_rows,
        }

    def __bool__(self) -> bool:
        return any(self.counts.values()) or bool(self.columns_added or self.columns_removed)

    def __getitem__(self, name: str) -> pa.Table:
        # Also answers the change-log spelling: diff["rows_modified"].
        part = name.removeprefix("rows_")
        if part not in ("added", "removed", "modified"):
            raise KeyError(name)
        table: pa.Table = getattr(self, part)
        return table

    def write_parquet(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write added.parquet, removed.parquet and modified.parquet into `directory`."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for part in ("added", "removed", "modified"):
            path = out / f"{part}.parquet"
            pq.write_table(getattr(self, part), path)
            paths[part] = path
        return paths


def resolve_side(catalog: Catalog, table: str, spec: int | str, branch: str) -> Located:
    """A diff side: a version number on `branch`, or "REF" (its newest) or "REF@N"."""
    side = parse_ref_version(str(spec))  # catalog/specs.py
    commit_id = catalog.resolve(side.ref or branch)
    return commit_id, catalog.version(table, side.version, commit_id)


def diff_rows(
    engine: QueryEngine,
    catalog: Catalog,
    table: str,
    old: Located,
    new: Located,
    key: Sequence[str] | str | None = None,
) -> RowDiff:
    """The rows that differ between two versions of `table` (see the module's docstring)."""
    (old_commit, a), (new_commit, b) = old, new
    old_groups = row_groups(catalog.store.chunks, a)
    new_groups = row_groups(catalog.store.chunks, b)
    key_columns = normalize_key(key) or b.key or a.key
    if key_columns is not None:
        for version, groups in ((a, old_groups), (b, new_groups)):
            missing = [k for k in key_columns if k not in groups.schema.names]
            if missing:
                raise NotFoundError(
                    f"key column(s) {', '.join(missing)} not in {table} v{version.version} "
                    f"(columns: {', '.join(groups.schema.names)})"
                )
    plan = plan_comparison(old_groups, new_groups, key_columns)
    con = engine.cursor()
    try:
        views = {
            "old_full": _scan(old_commit, a, old_groups, plan.old_full),
            "new_full": _scan(new_commit, b, new_groups, plan.new_full),
            "old_aligned": _scan(old_commit, a, old_groups, plan.old_aligned),
            "new_aligned": _scan(new_commit, b, new_groups, plan.new_aligned),
        }
        for name, sql in views.items():
            con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
        if key_columns is None:
            parts = _diff_whole_rows(con, old_groups, new_groups)
        else:
            for version in (a, b):
                if not key_is_unique(catalog.store.chunks, version, key_columns):
                    raise KeyNotUniqueError(table, version.version, key_columns)
            parts = _diff_by_key(con, old_groups, new_groups, key_columns, plan)
    finally:
        con.close()
    old_names, new_names = set(old_groups.schema.names), set(new_groups.schema.names)
    return RowDiff(
        table=table,
        old=a,
        new=b,
        key=key_columns,
        added=parts[0],
        removed=parts[1],
        modified=parts[2],
        columns_added=tuple(n for n in new_groups.schema.names if n not in old_names),
        columns_removed=tuple(n for n in old_groups.schema.names if n not in new_names),
    )


def _scan(commit_id: str, version: TableVersion, groups: RowGroups, selected: Sequence[int]) -> str:
    return scan_sql(commit_id, version, row_filter(groups, selected, "file_row_number"))


def _diff_by_key(
    con: duckdb.DuckDBPyConnection,
    old: RowGroups,
    new: RowGroups,
    key: tuple[str, ...],
    plan: ComparisonPlan,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    # Columns get positional names (o_3, n_5) in the joined table so no user name can clash.
    o_name = {c: f"o_{i}" for i, c in enumerate(old.schema.names)}
    n_name = {c: f"n_{i}" for i, c in enumerate(new.schema.names)}
    columns = compared_columns(old.schema, new.schema, key)
    differs = {
        c: values_differ(
            f"{o_name[c]}", f"{n_name[c]}", old.schema.field(c).type == new.schema.field(c).type
        )
        for c in columns
    }
    any_differs = " OR ".join(differs.values()) or "false"
    o_cols = ", ".join(f"{quote(c)} AS {o_name[c]}" for c in old.schema.names)
    n_cols = ", ".join(f"{quote(c)} AS {n_name[c]}" for c in new.schema.names)
    joined = " AND ".join(f"o.{o_name[k]} IS NOT DISTINCT FROM n.{n_name[k]}" for k in key)
    # Row groups compared whole: every column, rows matched by key.
    con.execute(
        f"""
        CREATE TEMP TABLE changed AS
        SELECT o.in_old, n.in_new, * EXCLUDE (in_old, in_new)
        FROM (SELECT true AS in_old, {o_cols} FROM old_full) AS o
        FULL JOIN (SELECT true AS in_new, {n_cols} FROM new_full) AS n ON {joined}
        WHERE o.in_old IS NULL OR n.in_new IS NULL OR ({any_differs})
        """
    )
    if plan.old_aligned and plan.aligned_columns:
        # Aligned row groups: the same keys on both sides, only some columns' bytes changed.
        # Read those, plus any column the whole-row part found changed (its values show in
        # `modified` for every row); the rest of these rows' columns stay NULL, unused.
        full_changed = _changed_columns(con, columns, differs)
        wanted = [c for c in columns if c in plan.aligned_columns or c in full_changed]
        o_sel = ", ".join(f"{quote(c)} AS {o_name[c]}" for c in [*key, *wanted])
        n_sel = ", ".join(f"{quote(c)} AS {n_name[c]}" for c in [*key, *wanted])
        aligned_differs = " OR ".join(differs[c] for c in plan.aligned_columns if c in differs)
        targets = ", ".join(
            ["in_old", "in_new", *(o_name[c] for c in [*key, *wanted])]
            + [n_name[c] for c in [*key, *wanted]]
        )
        values = ", ".join(
            ["true", "true", *(f"o.{o_name[c]}" for c in [*key, *wanted])]
            + [f"n.{n_name[c]}" for c in [*key, *wanted]]
        )
        con.execute(
            f"""
            INSERT INTO changed ({targets})
            SELECT {values}
            FROM (SELECT {o_sel} FROM old_aligned) AS o
            JOIN (SELECT {n_sel} FROM new_aligned) AS n ON {joined}
            WHERE {aligned_differs or "false"}
            """
        )
    o_key = ", ".join(o_name[k] for k in key)
    n_key = ", ".join(n_name[k] for k in key)
    added = con.sql(
        f"SELECT {', '.join(f'{n_name[c]} AS {quote(c)}' for c in new.schema.names)} "
        f"FROM changed WHERE in_old IS NULL ORDER BY {n_key}"
    ).to_arrow_table()
    removed = con.sql(
        f"SELECT {', '.join(f'{o_name[c]} AS {quote(c)}' for c in old.schema.names)} "
        f"FROM changed WHERE in_new IS NULL ORDER BY {o_key}"
    ).to_arrow_table()
    both = "in_old AND in_new"
    changed_cols = _changed_columns(con, columns, differs)
    select = [f"{n_name[k]} AS {quote(k)}" for k in key]
    for c in changed_cols:
        select.append(f"{o_name[c]} AS {quote(c + BEFORE)}")
        select.append(f"{n_name[c]} AS {quote(c + AFTER)}")
    names = ", ".join(f"CASE WHEN {differs[c]} THEN {_literal(c)} END" for c in changed_cols)
    select.append(
        f"list_filter([{names}], lambda x: x IS NOT NULL) AS {CHANGED_COLUMNS}"
        if changed_cols
        else f"[]::VARCHAR[] AS {CHANGED_COLUMNS}"
    )
    modified = con.sql(
        f"SELECT {', '.join(select)} FROM changed WHERE {both} ORDER BY {n_key}"
    ).to_arrow_table()
    return added, removed, modified


def _changed_columns(
    con: duckdb.DuckDBPyConnection, columns: Sequence[str], differs: dict[str, str]
) -> list[str]:
    """The columns that differ in at least one modified row of the `changed` table."""
    if not columns:
        return []
    flags = ", ".join(f"coalesce(bool_or({differs[c]}), false)" for c in columns)
    (row,) = con.sql(f"SELECT {flags} FROM changed WHERE in_old AND in_new").fetchall()
    return [c for c, flag in zip(columns, row, strict=True) if flag]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _diff_whole_rows(
    con: duckdb.DuckDBPyConnection, old: RowGroups, new: RowGroups
) -> tuple[pa.Table, pa.Table, pa.Table]:
    old_names = set(old.schema.names)
    common = ", ".join(quote(c) for c in new.schema.names if c in old_names)
    if not common:
        raise UdrError("the two versions share no column: there are no rows to compare")
    added = con.sql(
        f"SELECT {common} FROM new_full EXCEPT ALL SELECT {common} FROM old_full"
    ).to_arrow_table()
    removed = con.sql(
        f"SELECT {common} FROM old_full EXCEPT ALL SELECT {common} FROM new_full"
    ).to_arrow_table()
    modified = pa.table({CHANGED_COLUMNS: pa.array([], pa.list_(pa.string()))})
    return added, removed, modified
