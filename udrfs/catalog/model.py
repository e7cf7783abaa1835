"""The catalog's records: table versions, commits and change-log entries (docs/format.md)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from udrfs import _native
from udrfs.errors import CorruptObjectError
from udrfs.store.chunks import chunk_list

FORMAT = 1

# How a table's files are stored (docs/format.md, "Table settings"): `exact` keeps a
# committed file's bytes; `dedup` rewrites its rows with the dedup writer first.
EXACT = "exact"
DEDUP = "dedup"
LAYOUTS = (EXACT, DEDUP)
# The zstd levels a table's dedup writer may use (docs/format.md, "Table settings").
ZSTD_LEVELS = range(1, 23)
# The level of a new table, recorded with its first version so later versions keep it
# whatever this becomes. Measured on the 856k-row parcel table (benchmarks/
# bench_write_table.py, one thread): level 3 encodes in 0.3x the time of level 9 for 8% more
# bytes (49.0 vs 45.4 MB), level 6 in 0.55x for 4% more.
DEFAULT_ZSTD_LEVEL = 3
# The level of a table whose versions were written before levels were recorded.
UNRECORDED_ZSTD_LEVEL = 9


def is_zstd_level(level: object) -> bool:
    return type(level) is int and level in ZSTD_LEVELS


def writer_level(recorded: int | None, has_versions: bool) -> int:
    """The zstd level the dedup writer writes a table's rows at: its recorded level; without
    one, the level of versions written before levels were recorded, or a new table's."""
    if recorded is not None:
        return recorded
    return UNRECORDED_ZSTD_LEVEL if has_versions else DEFAULT_ZSTD_LEVEL


@contextmanager
def malformed_object(object_id: str, kind: str) -> Iterator[None]:
    """A stored document that hashes right but lacks a field or has one of the wrong type."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptObjectError(
            f"{kind} {object_id} is malformed ({type(exc).__name__}: {exc}); "
            "`udr fsck STORE` lists the versions this affects"
        ) from None


def now_utc() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class TableVersion:
    """One version of one table: the exact bytes of a Parquet file, as a chunk list."""

    id: str
    table: str
    version: int
    parent: str | None
    size: int
    blake3: str
    chunks: _native.ChunkList = field(repr=False, compare=False)
    rows: int
    schema: tuple[dict[str, str], ...] = field(repr=False)
    key: tuple[str, ...] | None
    columns: tuple[dict[str, Any], ...] = field(repr=False)
    created: datetime

    @staticmethod
    def document(
        *,
        table: str,
        version: int,
        parent: str | None,
        size: int,
        blake3: str,
        chunks: _native.ChunkList,
        rows: int,
        schema: list[dict[str, str]],
        key: tuple[str, ...] | None,
        columns: list[dict[str, Any]],
    ) -> dict[str, Any]:
        return {
            "kind": "table_version",
            "format": FORMAT,
            "table": table,
            "version": version,
            "parent": parent,
            "size": size,
            "blake3": blake3,
            "chunks": base64.b64encode(chunks.to_bytes()).decode("ascii"),
            "rows": rows,
            "schema": schema,
            "key": list(key) if key else None,
            "columns": columns,
            "created": format_time(now_utc()),
        }

    @classmethod
    def from_document(cls, object_id: str, doc: Mapping[str, Any]) -> TableVersion:
        with malformed_object(object_id, "table-version manifest"):
            return cls._from_document(object_id, doc)

    @classmethod
    def _from_document(cls, object_id: str, doc: Mapping[str, Any]) -> TableVersion:
        return cls(
            id=object_id,
            table=doc["table"],
            version=int(doc["version"]),
            parent=doc["parent"],
            size=int(doc["size"]),
            blake3=doc["blake3"],
            chunks=chunk_list(doc["chunks"]),
            rows=int(doc["rows"]),
            schema=tuple(doc["schema"]),
            key=tuple(doc["key"]) if doc.get("key") else None,
            columns=tuple(doc.get("columns") or ()),
            created=parse_time(doc["created"]),
        )


@dataclass(frozen=True)
class TablePolicy:
    """A table's settings, carried by every commit: its declared key, its layout, and the
    zstd level its rows are written at by the dedup writer (None: not recorded, see
    `Transaction.zstd_level`)."""

    key: tuple[str, ...] | None = None
    layout: str = EXACT
    zstd_level: int | None = None

    @property
    def is_default(self) -> bool:
        """No key, byte-exact, no level: what a table without settings has (not written
        down)."""
        return self.key is None and self.layout == EXACT and self.zstd_level is None

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"key": list(self.key) if self.key else None, "layout": self.layout}
        if self.zstd_level is not None:
            doc["zstd_level"] = self.zstd_level
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> TablePolicy:
        key = doc.get("key")
        layout = doc.get("layout", EXACT)
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}")
        level = doc.get("zstd_level")
        if level is not None and not is_zstd_level(level):
            raise ValueError(f"zstd level {level!r} is not one of 1..22")
        return cls(tuple(key) if key else None, layout, level)


@dataclass(frozen=True)
class ColumnChange:
    """A column a commit added, removed or retyped in a table (logical types,
    catalog/schema_change.py): `before` is None for an added column, `after` for a removed
    one."""

    column: str
    before: str | None
    after: str | None

    def text(self) -> str:
        """`+zoning`, `−engine`, `year int32→int64`."""
        name = _one_line(self.column)
        if self.before is None:
            return f"+{name}"
        if self.after is None:
            return f"−{name}"
        return f"{name} {self.before}→{self.after}"


@dataclass(frozen=True)
class TableChange:
    """What one commit did to one table."""

    table: str
    old_version: int | None
    new_version: int | None
    rows: int | None
    rows_before: int | None = None
    rows_added: int | None = None
    rows_removed: int | None = None
    rows_modified: int | None = None
    # The counts are computed after the commit and not known yet (docs/format.md, "Commit"):
    # rows_added/removed/modified are null until then. Null counts without it: never known.
    counts_pending: bool = False
    # Columns this commit added, removed or retyped (between the old and the new version).
    schema_changes: tuple[ColumnChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The change as a change-log line shows it: `counts_pending` only while true,
        `schema_changes` only when a column changed."""
        doc = asdict(self)
        if not self.counts_pending:
            del doc["counts_pending"]
        if self.schema_changes:
            doc["schema_changes"] = list(doc["schema_changes"])
        else:
            del doc["schema_changes"]
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], counts_pending: bool) -> TableChange:
        fields = {k: v for k, v in doc.items() if k != "schema_changes"}
        columns = tuple(ColumnChange(**c) for c in doc.get("schema_changes") or ())
        return cls(**fields, counts_pending=counts_pending, schema_changes=columns)

    def with_counts(self, counts: Mapping[str, int] | None) -> TableChange:
        """This change with its late counts filled in (None: they cannot be known)."""
        return replace(
            self,
            rows_added=counts["rows_added"] if counts else None,
            rows_removed=counts["rows_removed"] if counts else None,
            rows_modified=counts["rows_modified"] if counts else None,
            counts_pending=False,
        )

    def __getitem__(self, key: str) -> Any:
        # change["old_version"], and the migration plan's change["table_name"] for `table`.
        name = CHANGE_ALIASES.get(key, key)
        if name not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, name)


# Names code written for other change feeds reads entries by (docs/usage.md, "The change
# feed"): spellings of the canonical fields, nothing more. One canonical name each: `seq`,
# `tables`, `table`.
ENTRY_ALIASES = {"tx_id": "seq", "changes": "tables"}
CHANGE_ALIASES = {"table_name": "table"}


@dataclass(frozen=True)
class Commit:
    id: str
    parents: tuple[str, ...]
    branch: str
    seq: int
    time: datetime
    author: str
    message: str
    tables: Mapping[str, str] = field(repr=False)
    changes: tuple[TableChange, ...] = ()
    # The packs holding the chunks of the table versions this commit wrote (format.md,
    # "Commits"); None for commits written before the field existed.
    packs: tuple[str, ...] | None = None
    # Table settings (key, layout) as of this commit; tables with none are absent.
    settings: Mapping[str, TablePolicy] = field(default_factory=dict, repr=False)

    def policy(self, table: str) -> TablePolicy:
        """The settings of `table` at this commit (the default if it has none)."""
        return self.settings.get(table) or TablePolicy()

    @property
    def pending_counts(self) -> tuple[str, ...]:
        """Tables whose row counts are computed after the commit (a row-count record)."""
        return tuple(c.table for c in self.changes if c.counts_pending)

    def with_counts(self, tables: Mapping[str, Mapping[str, int] | None]) -> Commit:
        """The commit with the late counts of a row-count record filled in."""
        return replace(
            self,
            changes=tuple(
                c.with_counts(tables.get(c.table)) if c.counts_pending else c for c in self.changes
            ),
        )

    @staticmethod
    def document(
        *,
        parents: list[str],
        branch: str,
        seq: int,
        time: datetime,
        author: str,
        message: str,
        tables: Mapping[str, str],
        changes: list[TableChange],
        packs: list[str] | None = None,
        settings: Mapping[str, TablePolicy] | None = None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": "commit",
            "format": FORMAT,
            "parents": parents,
            "branch": branch,
            "seq": seq,
            "time": format_time(time),
            "author": author,
            "message": message,
            "tables": dict(sorted(tables.items())),
            "changes": [
                {k: v for k, v in c.to_dict().items() if k != "counts_pending"} for c in changes
            ],
        }
        pending = sorted(c.table for c in changes if c.counts_pending)
        if pending:
            doc["pending_counts"] = pending
        if packs is not None:
            doc["packs"] = sorted(packs)
        kept = {t: p.to_document() for t, p in sorted((settings or {}).items()) if not p.is_default}
        if kept:
            doc["settings"] = kept
        return doc

    @classmethod
    def from_document(cls, object_id: str, doc: Mapping[str, Any]) -> Commit:
        with malformed_object(object_id, "commit"):
            return cls._from_document(object_id, doc)

    @classmethod
    def _from_document(cls, object_id: str, doc: Mapping[str, Any]) -> Commit:
        pending = set(doc.get("pending_counts") or ())
        return cls(
            id=object_id,
            parents=tuple(doc["parents"]),
            branch=doc["branch"],
            seq=int(doc["seq"]),
            time=parse_time(doc["time"]),
            author=doc["author"],
            message=doc["message"],
            tables=dict(doc["tables"]),
            changes=tuple(
                TableChange.from_document(c, c["table"] in pending) for c in doc["changes"]
            ),
            packs=tuple(doc["packs"]) if "packs" in doc else None,
            settings={
                t: TablePolicy.from_document(p) for t, p in (doc.get("settings") or {}).items()
            },
        )

    def change_entry(self, table: str | None = None) -> ChangeEntry:
        changes = tuple(c for c in self.changes if table is None or c.table == table)
        changed = {c.table for c in changes}
        return ChangeEntry(
            seq=self.seq,
            commit=self.id,
            time=self.time,
            branch=self.branch,
            message=self.message,
            author=self.author,
            tables=changes,
            unchanged=None if table is not None else sum(t not in changed for t in self.tables),
        )


@dataclass(frozen=True)
class ChangeEntry:
    """One line of a change log: what one commit changed."""

    seq: int
    commit: str
    time: datetime
    branch: str
    message: str
    author: str
    tables: tuple[TableChange, ...]
    # Tables of the commit this entry left as they were (None in one table's log); only the
    # text line shows it, the JSON line stays as it was.
    unchanged: int | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "commit": self.commit,
            "time": self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "branch": self.branch,
            "message": self.message,
            "author": self.author,
            "tables": [c.to_dict() for c in self.tables],
        }

    def to_json_line(self) -> str:
        return json.dumps(self.to_dict(), separators=(", ", ": "))

    def to_text_line(self) -> str:
        """One short line for people (`udr changes --format text`):
        `seq 57 2026-12-03 02:00 nightly: nyc_master v11→v12 +2,004 −1,998 ~1,003; 76 tables
        unchanged`. A commit of many tables stays one line: the first few, then `+N more`."""
        when = self.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        message = _one_line(self.message) or "(no message)"
        shown = [_change_text(c) for c in self.tables[:TEXT_LINE_TABLES]]
        if len(self.tables) > TEXT_LINE_TABLES:
            shown.append(f"+{len(self.tables) - TEXT_LINE_TABLES:,} more")
        line = f"seq {self.seq} {when} {message}: {', '.join(shown) or 'no table changed'}"
        if self.unchanged:
            line += f"; {self.unchanged:,} table{'s' if self.unchanged != 1 else ''} unchanged"
        return line

    def __getitem__(self, key: str) -> Any:
        # Lets code written for the plain-dict change feed (entry["seq"]) keep working; an
        # alias (entry["tx_id"], entry["changes"]) answers as its canonical field.
        if key == "changes":
            return list(self.tables)  # TableChange, which answers change["table_name"] too
        return self.to_dict()[ENTRY_ALIASES.get(key, key)]


# Tables named on a change log's text line; the rest are counted.
TEXT_LINE_TABLES = 3


def _one_line(text: str) -> str:
    """The first line of `text`, control characters shown as escapes (a message cannot add
    lines to the log or rewrite a terminal)."""
    first = text.strip().split("\n", 1)[0]
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in first)


def _change_text(change: TableChange) -> str:
    """`nyc_master v11→v12 +2,004 −1,998 ~1,003`; rows as before→after when unknown, and
    `(counts pending)` while they are being computed."""
    name = _one_line(change.table)
    if change.old_version is None:
        rows = f" +{change.rows:,}" if change.rows is not None else ""
        return f"{name} new v{change.new_version}{rows}"
    if change.new_version is None:
        rows = f" −{change.rows_before:,}" if change.rows_before is not None else ""
        return f"{name} v{change.old_version} removed{rows}"
    text = f"{name} v{change.old_version}→v{change.new_version}"
    if change.schema_changes:
        text += f" [{', '.join(c.text() for c in change.schema_changes)}]"
    added, removed, modified = change.rows_added, change.rows_removed, change.rows_modified
    if added is not None and removed is not None and modified is not None:
        return f"{text} +{added:,} −{removed:,} ~{modified:,}"
    pending = " (counts pending)" if change.counts_pending else ""
    if change.rows_before is not None and change.rows is not None:
        return f"{text} {change.rows_before:,}→{change.rows:,} rows{pending}"
    return text + pending


@dataclass(frozen=True)
class VersionInfo:
    """A version of a table as seen from one commit's history."""

    table: str
    version: int
    manifest_id: str
    commit_id: str
    time: datetime
    size: int
    rows: int
    message: str

    @classmethod
    def of(cls, table: str, manifest_id: str, m: TableVersion, commit: Commit) -> VersionInfo:
        """Version `m` (manifest `manifest_id`) of `table` as first written by `commit`."""
        return cls(
            table=table,
            version=m.version,
            manifest_id=manifest_id,
            commit_id=commit.id,
            time=commit.time,
            size=m.size,
            rows=m.rows,
            message=commit.message,
        )


@dataclass(frozen=True)
class TableInfo:
    name: str
    version: int
    rows: int
    size: int
    manifest_id: str
