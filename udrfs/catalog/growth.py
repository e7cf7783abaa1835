"""How a table's bytes grow over its versions: what its files add up to (logical) beside what
its chunks add up to (stored), version after version along a branch. `udr stats --plot`
draws it.

Stored bytes count each chunk once per table, when the first version holding it was
written: the raw lengths from the chunk lists (docs/format.md, "Chunks"). Chunks that two
tables share count for each of them, so the tables' figures can add up to more than the
store's `stored_bytes`, which counts each chunk once for the whole store.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from udrfs.catalog.history import History

# One chunk-list entry: the 32-byte id, then the raw length as a little-endian u32.
_ENTRY = struct.Struct("<32sI")


@dataclass(frozen=True)
class VersionGrowth:
    """A table up to and including `version`: every version's size summed (`logical_bytes`)
    and its distinct chunks' raw bytes (`stored_bytes`)."""

    version: int
    logical_bytes: int
    stored_bytes: int


def _entries(encoded: bytes) -> Iterator[tuple[bytes, int]]:
    return _ENTRY.iter_unpack(encoded)


def table_growth(history: History, table: str, branch: str) -> list[VersionGrowth]:
    """The growth of `table` over its versions along `branch`'s history, oldest first."""
    seen: set[bytes] = set()
    logical = stored = 0
    out = []
    for info in history.table_versions(table, branch):
        version = history.manifest(info.manifest_id)
        logical += version.size
        for chunk_id, length in _entries(version.chunks.to_bytes()):
            if chunk_id not in seen:
                seen.add(chunk_id)
                stored += length
        out.append(VersionGrowth(info.version, logical, stored))
    return out


def store_growth(history: History, branch: str) -> dict[str, list[VersionGrowth]]:
    """`table_growth` of every table the head of `branch` holds, by table name."""
    tables = sorted(history.commit(history.head(branch)).tables)
    return {table: table_growth(history, table, branch) for table in tables}
