"""The catalog's records: table versions, commits and change-log entries (docs/format.md)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from udrfs import _native
from udrfs.errors import CorruptObjectError
from udrfs.store.chunks import chunk_list

FORMAT = 1


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
    ) -> dict[str, Any]:
        return {
            "kind": "commit",
            "format": FORMAT,
            "parents": parents,
            "branch": branch,
            "seq": seq,
            "time": format_time(time),
            "author": author,
            "message": message,
            "tables": dict(sorted(tables.items())),
            "changes": [c.to_dict() for c in changes],
        }

    @classmethod
    def from_document(cls, object_id: str, doc: Mapping[str, Any]) -> Commit:
        with malformed_object(object_id, "commit"):
            return cls._from_document(object_id, doc)

    @classmethod
    def _from_document(cls, object_id: str, doc: Mapping[str, Any]) -> Commit:
        return cls(
            id=object_id,
            parents=tuple(doc["parents"]),
            branch=doc["branch"],
            seq=int(doc["seq"]),
            time=parse_time(doc["time"]),
            author=doc["author"],
            message=doc["message"],
            tables=dict(doc["tables"]),
            changes=tuple(TableChange(**c) for c in doc["changes"]),
        )

    def change_entry(self, table: str | None = None) -> ChangeEntry:
        changes = tuple(c for c in self.changes if table is None or c.table == table)
        return ChangeEntry(
            seq=self.seq,
            commit=self.id,
            time=self.time,
            branch=self.branch,
            message=self.message,
            author=self.author,
            tables=changes,
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

    def __getitem__(self, key: str) -> Any:
        # Lets code written for the plain-dict change feed (entry["seq"]) keep working; an
        # alias (entry["tx_id"], entry["changes"]) answers as its canonical field.
        if key == "changes":
            return list(self.tables)  # TableChange, which answers change["table_name"] too
        return self.to_dict()[ENTRY_ALIASES.get(key, key)]


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


@dataclass(frozen=True)
class TableInfo:
    name: str
    version: int
    rows: int
    size: int
    manifest_id: str
