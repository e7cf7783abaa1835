"""Merging a branch into another, down to rows where both changed the same table.

The table-level plan is the catalog's (`udrfs.catalog.merge`). Here a table changed on both
sides is merged row by row, three-way by key, in DuckDB: for each key, with the row at the
merge base (b), on the target (o, ours) and on the source (t, theirs), absent rows included:

- o = t: keep it (also when both deleted it);
- o = b: take t (only the source changed the row);
- t = b: keep o (only the target changed it);
- otherwise the row changed differently on both sides: a conflict.

Every merged table is computed before anything is written. If any table has a conflict the
merge applies nothing and raises `MergeConflictError` listing every conflict; otherwise one
merge commit lands through the usual compare-and-swap (a `Transaction` with a second parent).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from udrfs.catalog import Catalog, Commit, TableVersion
from udrfs.catalog.merge import MergeKind, MergePlan, TableMerge, plan_merge
from udrfs.catalog.rowcounts import key_is_unique, quote, values_differ
from udrfs.catalog.transaction import Transaction, normalize_key
from udrfs.errors import ConflictError, KeyNotUniqueError, MergeConflictError, NotFoundError
from udrfs.parquet.inspect import ParquetDescription
from udrfs.query.engine import QueryEngine, scan_sql

KeySpec = Sequence[str] | str | Mapping[str, Sequence[str] | str] | None
Conflict = dict[str, object]
_SIDES = ("b", "o", "t")


@dataclass(frozen=True)
class MergeResult:
    """What a merge did to the target branch."""

    source: str
    into: str
    kind: MergeKind
    commit: Commit | None  # the target's new head; None when already up to date
    tables: tuple[str, ...] = ()  # tables the merge changed on the target
    rows_merged: tuple[str, ...] = ()  # of those, the ones merged row by row


def merge_branches(
    engine: QueryEngine,
    catalog: Catalog,
    source: str,
    into: str,
    key: KeySpec = None,
    message: str | None = None,
    author: str | None = None,
    attempts: int = 5,
) -> MergeResult:
    """Merge ref `source` into branch `into`; see the module docstring."""
    for attempt in range(attempts):
        tx = catalog.transaction(into, message or f"merge {source} into {into}", author)
        plan = plan_merge(catalog, source, into, tx.base)
        if plan.kind == "up-to-date":
            tx.abort()
            return MergeResult(source, into, "up-to-date", None)
        if plan.kind == "fast-forward":
            tx.abort()
            if catalog.fast_forward(into, plan.target_head, plan.source_head):
                changed = tuple(sorted(_changed_tables(catalog, plan)))
                return MergeResult(
                    source, into, "fast-forward", catalog.commit(plan.source_head), changed
                )
        else:
            try:
                return _merge_commit(engine, catalog, tx, plan, key)
            except ConflictError:
                if attempt == attempts - 1:
                    raise
        # The target moved while we planned: plan again against its new head.
        time.sleep(0.01 * (attempt + 1))
    raise ConflictError(into, [])


def _changed_tables(catalog: Catalog, plan: MergePlan) -> set[str]:
    before = catalog.commit(plan.target_head).tables
    after = catalog.commit(plan.source_head).tables
    return {t for t in set(before) | set(after) if before.get(t) != after.get(t)}


def _merge_commit(
    engine: QueryEngine, catalog: Catalog, tx: Transaction, plan: MergePlan, key: KeySpec
) -> MergeResult:
    conflicts: list[Conflict] = plan.conflicts()
    merged: dict[str, tuple[pa.Table, tuple[str, ...]]] = {}
    for item in plan.tables:
        if item.action != "rows":
            continue
        columns = _key_for(item, key)
        if columns is None:
            conflicts.append(
                {
                    "table": item.table,
                    "kind": "changed on both sides and no key is known to merge rows by "
                    "(record one with write_table(key=...) or pass key=)",
                }
            )
            continue
        rows, row_conflicts = merge_rows(engine, catalog, item, plan, columns)
        conflicts.extend(row_conflicts)
        if rows is not None:
            merged[item.table] = (rows, columns)
    if conflicts:
        tx.abort()
        raise MergeConflictError(plan.source, plan.target, conflicts)
    for item in plan.tables:
        if item.action == "take":
            assert item.theirs is not None
            tx.stage_chunks(
                item.table,
                item.theirs.chunks,
                item.theirs.blake3,
                _description(item.theirs),
                item.theirs.key,
                laid_out=True,  # the source's version, as it is
            )
        elif item.action == "drop":
            tx.drop_table(item.table)
        elif item.action == "rows":
            rows, columns = merged[item.table]
            tx.write_table(item.table, rows, key=columns)
    tx.merge_from(plan.source_head)
    commit = tx.commit()
    assert commit is not None  # a merge always commits
    return MergeResult(
        plan.source,
        plan.target,
        "merge",
        commit,
        tuple(c.table for c in commit.changes),
        tuple(sorted(merged)),
    )


def _key_for(item: TableMerge, key: KeySpec) -> tuple[str, ...] | None:
    given = normalize_key(key.get(item.table) if isinstance(key, Mapping) else key)
    assert item.ours is not None and item.theirs is not None
    return given or item.ours.key or item.theirs.key


def _description(version: TableVersion) -> ParquetDescription:
    # The manifest already describes these exact bytes; no need to read the footer again.
    return ParquetDescription(
        rows=version.rows,
        schema=list(version.schema),
        columns=list(version.columns),
        cut_points=[],
    )


# ---- rows ---------------------------------------------------------------------------------


def merge_rows(
    engine: QueryEngine,
    catalog: Catalog,
    item: TableMerge,
    plan: MergePlan,
    key: tuple[str, ...],
) -> tuple[pa.Table | None, list[Conflict]]:
    """Three-way merge of one table's rows by `key`: (merged rows, []) or (None, conflicts)."""
    assert item.ours is not None and item.theirs is not None
    schema = _arrow_schema(catalog, item.ours)
    sides = {"o": (plan.target_head, item.ours), "t": (plan.source_head, item.theirs)}
    if item.base is not None:
        assert plan.base is not None
        sides["b"] = (plan.base, item.base)
    for name, (_, version) in sides.items():
        other = _arrow_schema(catalog, version)
        if not other.equals(schema):
            side = {"b": "merge base", "o": "target", "t": "source"}[name]
            return None, [
                {
                    "table": item.table,
                    "kind": f"columns differ between the target and the {side}; "
                    "rows can only be merged when both sides keep the same columns",
                }
            ]
    missing = [k for k in key if k not in schema.names]
    if missing:
        raise NotFoundError(
            f"key column(s) {', '.join(missing)} not in {item.table} "
            f"(columns: {', '.join(schema.names)})"
        )
    con = engine.cursor()
    try:
        for name, (commit_id, version) in sides.items():
            if not key_is_unique(catalog.store.chunks, version, key):
                raise KeyNotUniqueError(item.table, version.version, key)
            con.execute(f"CREATE TEMP VIEW side_{name} AS {scan_sql(commit_id, version)}")
        if "b" not in sides:
            con.execute("CREATE TEMP VIEW side_b AS SELECT * FROM side_o WHERE false")
        _join_sides(con, schema, key)
        conflicts = _conflicts(con, item.table, schema, key)
        if conflicts:
            return None, conflicts
        merged = _merged_rows(con, schema, key)
    finally:
        con.close()
    return merged, []


def _arrow_schema(catalog: Catalog, version: TableVersion) -> pa.Schema:
    with catalog.open_chunks(version.chunks, version.table) as f:
        return f.parquet(columns=()).schema_arrow.remove_metadata()


def _col(side: str, i: int) -> str:
    return f"{side}_{i}"


def _join_sides(con: duckdb.DuckDBPyConnection, schema: pa.Schema, key: tuple[str, ...]) -> None:
    index = {name: i for i, name in enumerate(schema.names)}
    selects = {
        side: ", ".join(f"{quote(c)} AS {_col(side, i)}" for i, c in enumerate(schema.names))
        for side in _SIDES
    }

    def on(a: str, b: str) -> str:
        return " AND ".join(
            f"{a}.{_col(a, index[k])} IS NOT DISTINCT FROM {b}.{_col(b, index[k])}" for k in key
        )

    # Join base to whichever of ours/theirs has the key (coalesce over the two).
    base_on = " AND ".join(
        f"b.{_col('b', index[k])} IS NOT DISTINCT FROM "
        f"coalesce(o.{_col('o', index[k])}, t.{_col('t', index[k])})"
        for k in key
    )
    con.execute(
        f"""
        CREATE TEMP TABLE joined AS
        SELECT * FROM
            (SELECT true AS o_p, {selects["o"]} FROM side_o) AS o
            FULL JOIN (SELECT true AS t_p, {selects["t"]} FROM side_t) AS t ON {on("o", "t")}
            FULL JOIN (SELECT true AS b_p, {selects["b"]} FROM side_b) AS b ON {base_on}
        """
    )
    same = {p: _same_rows(p[0], p[1], schema) for p in (("o", "t"), ("o", "b"), ("t", "b"))}
    con.execute(
        f"""
        CREATE TEMP TABLE decided AS
        SELECT *, CASE
            WHEN {same[("o", "t")]} THEN 'o'
            WHEN {same[("o", "b")]} THEN 't'
            WHEN {same[("t", "b")]} THEN 'o'
            ELSE 'conflict' END AS pick
        FROM joined
        """
    )


def _same_rows(a: str, b: str, schema: pa.Schema) -> str:
    """Rows `a` and `b` are both absent, or both present with every column equal."""
    differs = " OR ".join(values_differ(_col(a, i), _col(b, i)) for i in range(len(schema.names)))
    return (
        f"(({a}_p IS NULL AND {b}_p IS NULL) OR "
        f"({a}_p IS NOT NULL AND {b}_p IS NOT NULL AND NOT ({differs})))"
    )


def _conflicts(
    con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema, key: tuple[str, ...]
) -> list[Conflict]:
    names = schema.names
    sides = ", ".join(
        f"CASE WHEN {s}_p THEN struct_pack("
        + ", ".join(f"{quote(c)} := {_col(s, i)}" for i, c in enumerate(names))
        + f") END AS {s}_row"
        for s in _SIDES
    )
    rows = (
        con.sql(f"SELECT o_p, t_p, b_p, {sides} FROM decided WHERE pick = 'conflict'")
        .to_arrow_table()
        .to_pylist()
    )
    out: list[Conflict] = []
    for row in rows:
        present = next(row[f"{s}_row"] for s in ("o", "t", "b") if row[f"{s}_row"] is not None)
        if row["b_p"] is None:
            kind = "added on both sides with different values"
        elif row["o_p"] is None:
            kind = "deleted on the target, changed on the source"
        elif row["t_p"] is None:
            kind = "changed on the target, deleted on the source"
        else:
            kind = "changed differently on both sides"
        out.append(
            {
                "table": table,
                "key": {k: present[k] for k in key},
                "kind": kind,
                "base": row["b_row"],
                "target": row["o_row"],
                "source": row["t_row"],
            }
        )
    out.sort(key=lambda c: _sortable(c["key"]))
    return out


def _sortable(key: object) -> tuple[Any, ...]:
    assert isinstance(key, dict)
    return tuple((v is None, v) for v in key.values())


def _merged_rows(
    con: duckdb.DuckDBPyConnection, schema: pa.Schema, key: tuple[str, ...]
) -> pa.Table:
    index = {name: i for i, name in enumerate(schema.names)}
    columns = ", ".join(
        f"CASE WHEN pick = 't' THEN {_col('t', i)} ELSE {_col('o', i)} END AS {quote(c)}"
        for i, c in enumerate(schema.names)
    )
    order = ", ".join(
        f"CASE WHEN pick = 't' THEN {_col('t', index[k])} ELSE {_col('o', index[k])} END"
        for k in key
    )
    rows = con.sql(
        f"SELECT {columns} FROM decided "
        f"WHERE (pick = 't' AND t_p IS NOT NULL) OR (pick = 'o' AND o_p IS NOT NULL) "
        f"ORDER BY {order}"
    ).to_arrow_table()
    try:
        return rows.cast(schema)  # back to the exact Arrow types the table was written with
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return rows
