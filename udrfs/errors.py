"""Typed errors. Every message tells the user what happened and what to do next."""

from __future__ import annotations

from collections.abc import Iterable


class UdrError(Exception):
    """Base class of every error UDR-FS raises on purpose."""


class NotFoundError(UdrError, LookupError):
    """A store, table, version, branch, tag, commit or file does not exist."""


class InvalidNameError(UdrError, ValueError):
    """A table, branch or tag name is not allowed."""


class AlreadyExistsError(UdrError):
    """Something that must be new (a store, branch or tag) already exists."""


class NotParquetError(UdrError, ValueError):
    """A file given as a table is not a valid Parquet file."""


class FormatVersionError(UdrError):
    """The store was written in a format version this code does not know."""


class CorruptObjectError(UdrError):
    """Stored bytes do not match their hash, or a stored file is damaged."""


class StoreFullError(UdrError, OSError):
    """The disk filled up during a write; nothing was committed."""


class ConflictError(UdrError):
    """A commit lost a race: tables it writes changed on the branch since it began."""

    def __init__(self, branch: str, tables: Iterable[str]) -> None:
        self.branch = branch
        self.tables = tuple(sorted(tables))
        names = ", ".join(self.tables)
        super().__init__(
            f"conflict: {names} changed on {branch} since this transaction began; re-read and retry"
        )


class MergeConflictError(UdrError):
    """A merge found changes that cannot be combined; nothing was applied."""

    def __init__(self, source: str, target: str, conflicts: list[dict[str, object]]) -> None:
        self.source = source
        self.target = target
        self.conflicts = conflicts
        tables = sorted({str(c.get("table")) for c in conflicts})
        super().__init__(
            f"merge of {source} into {target} has {len(conflicts)} conflict(s) in "
            f"{', '.join(tables)}; nothing was applied"
        )


class InvalidKeyError(UdrError, ValueError):
    """A key declared for a table cannot be its key: a column is missing, or values repeat
    or are null (refused when the table is written, not when it is later diffed or merged)."""


class KeyNotUniqueError(UdrError, ValueError):
    """Rows were to be matched by a key, but the key does not identify rows."""

    def __init__(self, table: str, version: int, key: tuple[str, ...]) -> None:
        self.table = table
        self.version = version
        self.key = key
        super().__init__(
            f"key ({', '.join(key)}) does not identify rows of {table} v{version}: some rows "
            "share a key value; give a key that is unique (key=[...] or --key)"
        )
