"""Row history: one row's value, by key, in every version of a table where it changed
(docs/usage.md, "Row history"). One DuckDB query reads every version, each filtered by the
key (row groups whose statistics exclude it are skipped), rather than one query a version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from udrfs.catalog.rowcounts import quote
from udrfs.errors import KeyNotUniqueError, NotFoundError, UsageError
from udrfs.query.engine import scan_sql

if TYPE_CHECKING:
    from udrfs.catalog import Catalog
    from udrfs.query.engine import QueryEngine

_VERSION = "__udr_version"


@dataclass(frozen=True)
class RowChange:
    """The row in one version where it differs from the version before (a first appearance
    included); `row` is None when the version no longer has it."""

    version: int
    commit: str
    time: datetime
    row: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "commit": self.commit,
            "time": self.time.isoformat(),
            "row": self.row,
        }


def row_history(
    engine: QueryEngine,
    catalog: Catalog,
    table: str,
    key: Mapping[str, Any],
    branch: str,
) -> list[RowChange]:
    """Every change of the row whose columns equal `key`, oldest first. Versions whose data
    `udr expire` released are left out (they cannot be read)."""
    if not key:
        raise UsageError("a row history needs the key of the row, e.g. key={'bbl': 1000010001}")
    released = catalog.retention.released()
    versions = [v for v in catalog.table_versions(table, branch) if v.manifest_id not in released]
    if not versions:
        raise NotFoundError(f"no table named {table!r} on {branch!r}")
    parts: list[str] = []
    params: list[object] = []
    columns_of: dict[int, set[str]] = {}
    for v in versions:
        manifest = catalog.manifest(v.manifest_id)
        columns = columns_of[v.version] = {field["name"] for field in manifest.schema}
        missing = sorted(set(key) - columns)
        if missing:
            raise NotFoundError(
                f"{table} v{v.version} has no column {', '.join(missing)} "
                f"(columns: {', '.join(sorted(columns))})"
            )
        where = " AND ".join(f"{quote(c)} IS NOT DISTINCT FROM ?" for c in key)
        parts.append(
            f"SELECT {v.version} AS {_VERSION}, * FROM ({scan_sql(v.commit_id, manifest)}) "
            f"WHERE {where}"
        )
        params.extend(key.values())
    con = engine.cursor()
    try:
        found = con.sql(" UNION ALL BY NAME ".join(parts), params=params).to_arrow_table()
    finally:
        con.close()
    rows: dict[int, dict[str, Any]] = {}
    for row in found.to_pylist():
        number = row.pop(_VERSION)
        if number in rows:
            raise KeyNotUniqueError(table, number, tuple(key))
        # A union by name gives every version every column: keep the ones it has.
        rows[number] = {k: v for k, v in row.items() if k in columns_of[number]}
    out: list[RowChange] = []
    before: dict[str, Any] | None = None
    for v in versions:
        now = rows.get(v.version)
        if now != before:
            out.append(RowChange(v.version, v.commit_id, v.time, now))
        before = now
    return out
