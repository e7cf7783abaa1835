"""Merging a branch into another, down to rows where both changed the same table.

The table-level plan is the catalog's (`udrfs.catalog.merge`). Here a table changed on both
sides is merged row by row, three-way by key, in DuckDB: for each key, with the row at the
merge base (b), on the target (o, ours) and on the source (t, theirs), absent rows included:

- o = t: keep it (also when both deleted it);
- o = b: take t (only the source changed the row);
- t = b: keep o (only the target changed it);
- otherwise the row changed differently on both sides: a conflict.

Rows are compared on the columns both rows have; a column only one side added is left out of
its comparisons with the base (the other side left it alone) and comes from that side. A
removed or retyped column is a conflict about the whole table (`_merge_columns`).

A *strategy* settles conflicts instead of reporting them: `"ours"` keeps the target's row
(or, for a conflict about a whole table, the target's table), `"theirs"` takes the source's;
given for the whole merge or per table (`{"scores": "theirs", "*": "ours"}`).

Every merged table is computed before anything is written. If any conflict is left the merge
applies nothing and raises `MergeConflictError` with the exact number of conflicts and the
first `MAX_REPORTED` (by table and key); `conflicts_file` receives all of them, one JSON line
each, streamed from DuckDB (memory stays bounded however many rows conflict). Otherwise one
merge commit lands through the usual compare-and-swap (a `Transaction` with a second parent).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from udrfs.catalog import Catalog, Commit, TableVersion
from udrfs.catalog.merge import MergeKind, MergePlan, TableMerge, plan_merge
from udrfs.catalog.rowcounts import key_is_unique, quote, values_differ
from udrfs.catalog.transaction import Transaction, normalize_key
from udrfs.errors import (
    ConflictError,
    KeyNotUniqueError,
    MergeConflictError,
    NotFoundError,
    UsageError,
)
from udrfs.parquet.inspect import ParquetDescription
from udrfs.query.engine import QueryEngine, scan_sql

KeySpec = Sequence[str] | str | Mapping[str, Sequence[str] | str] | None
Strategy = Literal["ours", "theirs"]
StrategySpec = Strategy | Mapping[str, Strategy] | None
Conflict = dict[str, object]
_SIDES = ("b", "o", "t")
STRATEGIES = ("ours", "theirs")
ANY_TABLE = "*"  # in a per-table strategy: every table not named
MAX_REPORTED = 100  # conflicts kept on the error; the count is exact


@dataclass(frozen=True)
class MergeResult:
    """What a merge did to the target branch."""

    source: str
    into: str
    kind: MergeKind
    commit: Commit | None  # the target's new head; None when already up to date
    tables: tuple[str, ...] = ()  # tables the merge changed on the target
    rows_merged: tuple[str, ...] = ()  # of those, the ones merged row by row
    resolved: tuple[str, ...] = ()  # tables where the strategy settled a conflict


def merge_branches(
    engine: QueryEngine,
    catalog: Catalog,
    source: str,
    into: str,
    key: KeySpec = None,
    message: str | None = None,
    author: str | None = None,
    strategy: StrategySpec = None,
    conflicts_file: str | os.PathLike[str] | None = None,
    attempts: int = 5,
) -> MergeResult:
    """Merge ref `source` into branch `into`; see the module docstring."""
    check_strategy(strategy)
    for attempt in range(attempts):
        tx = catalog.transaction(into, message or f"merge {source} into {into}", author)
        plan = plan_merge(catalog.history, catalog.retention, source, into, tx.base)
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
                return _merge_commit(engine, catalog, tx, plan, key, strategy, conflicts_file)
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


def check_strategy(strategy: StrategySpec) -> None:
    """UsageError unless `strategy` is None, "ours", "theirs", or a table -> one of them."""
    given = strategy.values() if isinstance(strategy, Mapping) else [strategy]
    for value in given:
        if value is not None and value not in STRATEGIES:
            raise UsageError(f"merge strategy {value!r} is not one of: ours, theirs")


def _strategy_for(strategy: StrategySpec, table: str) -> Strategy | None:
    if isinstance(strategy, Mapping):
        return strategy.get(table, strategy.get(ANY_TABLE))
    return strategy


class ConflictReport:
    """Conflicts as they are found: the exact count, the first `MAX_REPORTED` by table and
    key, and every one as a JSON line in `path` (written as `.NAME.partial` beside it and
    renamed when the merge fails; removed when nothing conflicts)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.first: list[Conflict] = []
        self.total = 0
        self.tables: set[str] = set()
        self.path = Path(path) if path is not None else None
        self._temp: Path | None = None
        self._out: Any = None
        if self.path is not None:
            self._temp = self.path.with_name(f".{self.path.name}.partial")
            self._out = self._temp.open("w", encoding="utf-8")

    @property
    def wants_all(self) -> bool:
        """Whether every conflict is wanted (for the file), not only the first ones."""
        return self._out is not None

    def add(self, conflict: Conflict) -> None:
        self.total += 1
        self.tables.add(str(conflict["table"]))
        if len(self.first) < MAX_REPORTED:
            self.first.append(conflict)
        if self._out is not None:
            self._out.write(json.dumps(conflict, default=str, sort_keys=True) + "\n")

    def count(self, table: str, n: int) -> None:
        """Conflicts counted but not kept (beyond the first ones, with no file to write)."""
        if n:
            self.total += n
            self.tables.add(table)

    def close(self) -> None:
        if self._out is None:
            return
        self._out.close()
        self._out = None
        assert self._temp is not None and self.path is not None
        if self.total:
            self._temp.replace(self.path)
        else:
            self._temp.unlink(missing_ok=True)

    def error(self, source: str, target: str) -> MergeConflictError:
        return MergeConflictError(
            source, target, self.first, self.total, sorted(self.tables), self.path
        )


def _merge_commit(
    engine: QueryEngine,
    catalog: Catalog,
    tx: Transaction,
    plan: MergePlan,
    key: KeySpec,
    strategy: StrategySpec,
    conflicts_file: str | os.PathLike[str] | None,
) -> MergeResult:
    report = ConflictReport(conflicts_file)
    merged: dict[str, tuple[pa.Table, tuple[str, ...]]] = {}
    whole: dict[str, Strategy] = {}  # tables a strategy settles as a whole
    resolved: set[str] = set()
    try:
        for item in plan.tables:
            side = _strategy_for(strategy, item.table)
            columns: tuple[str, ...] | None = None
            if item.action == "conflict":
                table_conflict = item.reason
            elif item.action == "rows":
                columns = _key_for(item, key)
                if columns is None:
                    table_conflict = (
                        "changed on both sides and no key is known to merge rows by "
                        "(record one with write_table(key=...) or pass key=)"
                    )
                else:
                    merged_columns = _merge_columns(catalog, item)
                    table_conflict = merged_columns if isinstance(merged_columns, str) else ""
            else:
                continue
            if table_conflict:
                if side is None:
                    report.add({"table": item.table, "kind": table_conflict})
                else:
                    whole[item.table] = side
                continue
            assert columns is not None
            assert not isinstance(merged_columns, str)
            found = merge_rows(engine, catalog, item, plan, columns, merged_columns, side, report)
            if found is not None:
                rows, settled = found
                merged[item.table] = (rows, columns)
                if settled:
                    resolved.add(item.table)
    finally:
        report.close()
    if report.total:
        tx.abort()
        raise report.error(plan.source, plan.target)
    for item in plan.tables:
        action = item.action
        if item.table in whole:
            resolved.add(item.table)
            if whole[item.table] == "ours":
                continue  # the target's table stays as it is
            action = "take" if item.theirs is not None else "drop"
        if action == "take":
            assert item.theirs is not None
            tx.stage_chunks(
                item.table,
                item.theirs.chunks,
                item.theirs.blake3,
                _description(item.theirs),
                item.theirs.key,
                laid_out=True,  # the source's version, as it is
            )
        elif action == "drop":
            tx.drop_table(item.table)
        elif action == "rows":
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
        tuple(sorted(resolved)),
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


@dataclass(frozen=True)
class _Columns:
    """The columns of a row merge: the merged table's schema (the target's columns, then those
    only the source added) and which of them each side ("b", "o", "t") has."""

    schema: pa.Schema
    has: dict[str, frozenset[str]]

    def index(self, name: str) -> int:
        return self.schema.get_field_index(name)

    def compared(self, a: str, b: str) -> list[int]:
        """Indexes of the columns a comparison of sides `a` and `b` compares: those both have;
        against the merge base, also a column both target and source added (the base's value
        counts as NULL), while one that a single side added is left out (the other side left
        it alone)."""
        common = self.has[a] & self.has[b]
        if "b" in (a, b):
            other = a if b == "b" else b
            common = self.has[other] & (self.has["b"] | (self.has["o"] & self.has["t"]))
        return [i for i, n in enumerate(self.schema.names) if n in common]


def _merge_columns(catalog: Catalog, item: TableMerge) -> _Columns | str:
    """The columns of `item`'s row merge, or why its rows cannot be merged: a column of the
    merge base that a side removed, or a column whose type differs between sides. A column
    one side added (or both, with one type) is merged: the side without it left it alone."""
    assert item.ours is not None and item.theirs is not None
    ours, theirs = _arrow_schema(catalog, item.ours), _arrow_schema(catalog, item.theirs)
    base = _arrow_schema(catalog, item.base) if item.base is not None else ours
    fields = {f.name: f for f in ours}
    for side, schema in (("source", theirs), ("merge base", base)):
        for f in schema:
            known = fields.setdefault(f.name, f)
            if not known.type.equals(f.type):
                return (
                    f"column {f.name} is {known.type} on the target but {f.type} on the {side}; "
                    "rows can only be merged when a column keeps its type"
                )
    for name in base.names:
        for side, schema in (("target", ours), ("source", theirs)):
            if name not in schema.names:
                return (
                    f"column {name} was removed on the {side}; rows can only be merged when "
                    "both sides keep the merge base's columns"
                )
    return _Columns(
        pa.schema([*ours, *(f for f in theirs if f.name not in ours.names)]),
        {"o": frozenset(ours.names), "t": frozenset(theirs.names), "b": frozenset(base.names)},
    )


def merge_rows(
    engine: QueryEngine,
    catalog: Catalog,
    item: TableMerge,
    plan: MergePlan,
    key: tuple[str, ...],
    columns: _Columns,
    side: Strategy | None = None,
    report: ConflictReport | None = None,
) -> tuple[pa.Table, int] | None:
    """Three-way merge of one table's rows by `key`, over `columns` (`_merge_columns`): rows
    are compared on the columns both sides of a comparison have. Rows changed differently on
    both sides are settled by `side` if given, else added to `report` (then None). Returns
    the merged rows and how many conflicting rows `side` settled."""
    assert item.ours is not None and item.theirs is not None
    report = report if report is not None else ConflictReport(None)
    schema = columns.schema
    sides = {"o": (plan.target_head, item.ours), "t": (plan.source_head, item.theirs)}
    if item.base is not None:
        assert plan.base is not None
        sides["b"] = (plan.base, item.base)
    missing = [k for k in key if any(k not in names for names in columns.has.values())]
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
        _join_sides(con, columns, key)
        if side is None:
            if _report_conflicts(con, item.table, columns, key, report):
                return None
            settled = 0
        else:
            settled = _settle(con, "o" if side == "ours" else "t")
        merged = _merged_rows(con, columns, key)
    finally:
        con.close()
    return merged, settled


def _arrow_schema(catalog: Catalog, version: TableVersion) -> pa.Schema:
    with catalog.open_chunks(version.chunks, version.table) as f:
        return f.parquet(columns=()).schema_arrow.remove_metadata()


def _col(side: str, i: int) -> str:
    return f"{side}_{i}"


def _join_sides(con: duckdb.DuckDBPyConnection, columns: _Columns, key: tuple[str, ...]) -> None:
    names = columns.schema.names
    selects = {
        side: ", ".join(
            f"{quote(c) if c in columns.has[side] else 'NULL'} AS {_col(side, i)}"
            for i, c in enumerate(names)
        )
        for side in _SIDES
    }

    def on(a: str, b: str) -> str:
        return " AND ".join(
            f"{a}.{_col(a, columns.index(k))} IS NOT DISTINCT FROM {b}.{_col(b, columns.index(k))}"
            for k in key
        )

    # Join base to whichever of ours/theirs has the key (coalesce over the two).
    base_on = " AND ".join(
        f"b.{_col('b', columns.index(k))} IS NOT DISTINCT FROM "
        f"coalesce(o.{_col('o', columns.index(k))}, t.{_col('t', columns.index(k))})"
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
    same = {p: _same_rows(p[0], p[1], columns) for p in (("o", "t"), ("o", "b"), ("t", "b"))}
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


def _same_rows(a: str, b: str, columns: _Columns) -> str:
    """Rows `a` and `b` are both absent, or both present and equal in every column
    `columns.compared` names."""
    differs = " OR ".join(values_differ(_col(a, i), _col(b, i)) for i in columns.compared(a, b))
    return (
        f"(({a}_p IS NULL AND {b}_p IS NULL) OR "
        f"({a}_p IS NOT NULL AND {b}_p IS NOT NULL AND NOT ({differs})))"
    )


def _settle(con: duckdb.DuckDBPyConnection, pick: str) -> int:
    """Give every conflicting row the side `pick` ("o" or "t"); how many there were."""
    total = _count_conflicts(con)
    con.execute(f"UPDATE decided SET pick = '{pick}' WHERE pick = 'conflict'")
    return total


def _count_conflicts(con: duckdb.DuckDBPyConnection) -> int:
    ((total,),) = con.sql("SELECT count(*) FROM decided WHERE pick = 'conflict'").fetchall()
    return int(total)


def _report_conflicts(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: _Columns,
    key: tuple[str, ...],
    report: ConflictReport,
) -> int:
    """Add the conflicting rows to `report`, ordered by key (nulls last): all of them when the
    report keeps them all, else only the first ones it shows (the rest are counted)."""
    total = _count_conflicts(con)
    if not total:
        return 0
    names = columns.schema.names
    rows = ", ".join(
        f"CASE WHEN {s}_p THEN struct_pack("
        + ", ".join(
            f"{quote(c)} := {_col(s, i)}" for i, c in enumerate(names) if c in columns.has[s]
        )
        + f") END AS {s}_row"
        for s in _SIDES
    )
    order = ", ".join(
        f"coalesce({', '.join(_col(s, columns.index(k)) for s in ('o', 't', 'b'))}) NULLS LAST"
        for k in key
    )
    kind = (
        "CASE WHEN b_p IS NULL THEN 'added on both sides with different values' "
        "WHEN o_p IS NULL THEN 'deleted on the target, changed on the source' "
        "WHEN t_p IS NULL THEN 'changed on the target, deleted on the source' "
        "ELSE 'changed differently on both sides' END"
    )
    limit = "" if report.wants_all else f" LIMIT {max(MAX_REPORTED - len(report.first), 0)}"
    reader = con.sql(
        f"SELECT {kind} AS kind, {rows} FROM decided WHERE pick = 'conflict' "
        f"ORDER BY {order}{limit}"
    ).to_arrow_reader(10_000)
    shown = 0
    for batch in reader:
        for row in batch.to_pylist():
            present = next(row[f"{s}_row"] for s in ("o", "t", "b") if row[f"{s}_row"])
            report.add(
                {
                    "table": table,
                    "key": {k: present[k] for k in key},
                    "kind": row["kind"],
                    "base": row["b_row"],
                    "target": row["o_row"],
                    "source": row["t_row"],
                }
            )
            shown += 1
    report.count(table, total - shown)
    return total


def _merged_rows(
    con: duckdb.DuckDBPyConnection, columns: _Columns, key: tuple[str, ...]
) -> pa.Table:
    """The picked side's row for each key; a column only one side has comes from that side
    (the other left it alone)."""
    schema = columns.schema

    def value(i: int, name: str) -> str:
        if name not in columns.has["t"]:
            return _col("o", i)
        if name not in columns.has["o"]:
            return _col("t", i)
        return f"CASE WHEN pick = 't' THEN {_col('t', i)} ELSE {_col('o', i)} END"

    selected = ", ".join(f"{value(i, c)} AS {quote(c)}" for i, c in enumerate(schema.names))
    order = ", ".join(value(columns.index(k), k) for k in key)
    rows = con.sql(
        f"SELECT {selected} FROM decided "
        f"WHERE (pick = 't' AND t_p IS NOT NULL) OR (pick = 'o' AND o_p IS NOT NULL) "
        f"ORDER BY {order}"
    ).to_arrow_table()
    try:
        return rows.cast(schema)  # back to the exact Arrow types the table was written with
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return rows
