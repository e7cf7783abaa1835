"""Which parts of two versions of a table can differ, read off the chunks their bytes are made of.

Every Parquet column chunk starts on a chunk boundary (the importer cuts there: docs/format.md,
"Chunks"), so a column chunk, or a whole row group, is a run of whole chunks. Two such runs
with the same chunk ids are the same bytes; with the same column descriptions in the footer
they decode to the same values. Comparing two versions can therefore skip:

- *shared* row groups: the same bytes in both versions hold the same rows in both;
- in *aligned* row groups (the same key column chunks, so the same keys in the same order),
  every column whose column chunks are the same bytes: only the other columns can differ.

Everything else is compared value by value. With the dedup writer a local edit changes a few
row groups, and an edit to one column changes only that column's chunks, so a comparison
reads little more than what changed. This is used by the change log's row counts
(catalog/rowcounts.py) and the row-level diff (query/diff.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from udrfs.catalog.files import VersionFile
from udrfs.catalog.model import TableVersion
from udrfs.lru import LruCache, MiB
from udrfs.parquet.inspect import column_chunk_range

if TYPE_CHECKING:
    from udrfs.store.chunks import ChunkStore

# What a run of bytes is: the ids of its chunks plus the footer's description of it.
Signature = tuple[object, ...]

_CHUNK_ENTRY = np.dtype([("id", "V32"), ("len", "<u4")])
CACHE_ENTRIES = 256
CACHE_BYTES = 32 * MiB


@dataclass(frozen=True)
class RowGroups:
    """A version's row groups: first row, row count and identities of their bytes."""

    schema: pa.Schema
    starts: tuple[int, ...]
    rows: tuple[int, ...]
    # Per row group; None where the bytes do not start and end on chunk boundaries.
    signatures: tuple[Signature | None, ...]
    # Per row group, per top-level column: the identity of that column's bytes in the group.
    column_signatures: tuple[Mapping[str, Signature | None], ...]


@dataclass(frozen=True)
class ComparisonPlan:
    """What comparing two versions must read. Rows outside these groups are in both, equal."""

    old_full: tuple[int, ...]  # groups whose rows are compared whole, matched by key
    new_full: tuple[int, ...]
    old_aligned: tuple[int, ...]  # groups holding the same keys, in order, on both sides
    new_aligned: tuple[int, ...]
    aligned_columns: tuple[str, ...]  # the only columns that can differ in aligned groups


def weigh_row_groups(groups: RowGroups) -> int:
    """Roughly the memory a layout holds: its chunk ids (32 bytes each) and a small tuple per
    row group and column."""
    ids = sum(
        len(leaf[0])
        for columns in groups.column_signatures
        for signature in columns.values()
        if signature is not None
        for leaf in signature[1:]
        if isinstance(leaf, tuple)
    )
    return 1024 + ids + 128 * len(groups.rows) * (1 + len(groups.schema.names))


# Process-wide, keyed by manifest id (the same id means the same bytes in any store).
cache: LruCache[str, RowGroups] = LruCache(CACHE_ENTRIES, CACHE_BYTES, weigh_row_groups)


def row_groups(chunks: ChunkStore, version: TableVersion) -> RowGroups:
    """A version's row groups, from its footer and chunk list.

    Cached by manifest id: a manifest names exact bytes, so its row groups never change.
    """
    return cache.get_or_load(version.id, lambda: _read_row_groups(chunks, version))


def plan_comparison(
    old: RowGroups, new: RowGroups, key: Sequence[str] | None = None
) -> ComparisonPlan:
    """Pair shared row groups, then (with a key) aligned ones; the rest is compared whole."""
    everything = ComparisonPlan(
        tuple(range(len(old.rows))), tuple(range(len(new.rows))), (), (), ()
    )
    if not old.schema.equals(new.schema):
        return everything
    old_left, new_left = _unshared(old.signatures, new.signatures)
    if not key or not all(k in old.schema.names for k in key):
        return ComparisonPlan(tuple(old_left), tuple(new_left), (), (), ())
    by_keys: dict[tuple[object, ...], list[int]] = {}
    for g in new_left:
        keys = _key_identity(new, g, key)
        if keys is not None:
            by_keys.setdefault(keys, []).append(g)
    pairs = []
    for g in old_left:
        keys = _key_identity(old, g, key)
        if keys is not None and by_keys.get(keys):
            pairs.append((g, by_keys[keys].pop(0)))
    paired_old = {g for g, _ in pairs}
    paired_new = {h for _, h in pairs}
    differing = {
        c
        for g, h in pairs
        for c in old.schema.names
        if c not in key
        and (
            old.column_signatures[g][c] is None
            or old.column_signatures[g][c] != new.column_signatures[h][c]
        )
    }
    return ComparisonPlan(
        old_full=tuple(g for g in old_left if g not in paired_old),
        new_full=tuple(h for h in new_left if h not in paired_new),
        old_aligned=tuple(sorted(paired_old)),
        new_aligned=tuple(sorted(paired_new)),
        aligned_columns=tuple(c for c in old.schema.names if c in differing),
    )


def row_filter(groups: RowGroups, selected: Sequence[int], column: str) -> str:
    """SQL over a file-row-number column that keeps only the selected row groups.

    DuckDB skips whole row groups that such a filter excludes.
    """
    if len(selected) == len(groups.rows):
        return "true"
    ranges: list[tuple[int, int]] = []
    for g in sorted(selected):
        start, stop = groups.starts[g], groups.starts[g] + groups.rows[g]
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], stop)
        else:
            ranges.append((start, stop))
    if not ranges:
        return "false"
    return " OR ".join(f"{column} BETWEEN {a} AND {b - 1}" for a, b in ranges)


# ---- reading a version's layout -----------------------------------------------------------


def _read_row_groups(chunks: ChunkStore, version: TableVersion) -> RowGroups:
    with VersionFile(chunks, version) as f:
        meta = f.parquet().metadata
    schema = meta.schema.to_arrow_schema()
    entries = np.frombuffer(version.chunks.to_bytes(), dtype=_CHUNK_ENTRY)
    ids = entries["id"]
    bounds = np.zeros(len(entries) + 1, dtype=np.int64)
    np.cumsum(entries["len"], out=bounds[1:])
    leaves_of: dict[str, list[int]] = {name: [] for name in schema.names}
    for k in range(meta.num_columns):
        leaves_of[_top_level(meta.schema.column(k).path, schema.names)].append(k)

    starts, rows, signatures, column_signatures = [], [], [], []
    first_row = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        leaves = [group.column(k) for k in range(group.num_columns)]
        ranges = np.array([column_chunk_range(c) for c in leaves], dtype=np.int64)
        ranges = ranges.reshape(-1, 2)
        at = np.searchsorted(bounds, ranges)
        on_boundaries = (
            (ranges[:, 1] > ranges[:, 0])
            & (at[:, 1] < len(bounds))
            & (bounds[np.minimum(at, len(bounds) - 1)] == ranges).all(axis=1)
        )
        # A leaf's identity: the ids of the chunks holding its bytes, and the footer's
        # description of it (same chunks, same description: the values decode the same).
        leaf: list[Signature | None] = [
            (ids[i:j].tobytes(), c.physical_type, c.compression, c.num_values) if ok else None
            for (i, j), ok, c in zip(at.tolist(), on_boundaries.tolist(), leaves, strict=True)
        ]
        signatures.append(_combine(group.num_rows, leaf))
        column_signatures.append(
            {
                name: _combine(group.num_rows, [leaf[k] for k in mine])
                for name, mine in leaves_of.items()
            }
        )
        starts.append(first_row)
        rows.append(group.num_rows)
        first_row += group.num_rows
    return RowGroups(
        schema, tuple(starts), tuple(rows), tuple(signatures), tuple(column_signatures)
    )


def _combine(rows: int, parts: Sequence[Signature | None]) -> Signature | None:
    return None if any(p is None for p in parts) else (rows, *parts)


def _top_level(path: str, names: Sequence[str]) -> str:
    """The top-level column a leaf's dotted path belongs to (names may hold dots)."""
    owners = [n for n in names if path == n or path.startswith(n + ".")]
    return max(owners, key=len) if owners else names[0]


def _unshared(
    old: Sequence[Signature | None], new: Sequence[Signature | None]
) -> tuple[list[int], list[int]]:
    """Indices of row groups left over after pairing equal signatures one to one."""
    available: dict[Signature, int] = {}
    for sig in old:
        if sig is not None:
            available[sig] = available.get(sig, 0) + 1
    new_left = []
    for g, sig in enumerate(new):
        if sig is not None and available.get(sig, 0) > 0:
            available[sig] -= 1
        else:
            new_left.append(g)
    old_left = []
    for g, sig in enumerate(old):
        # Where more old groups than new ones carry a signature, the extras are unshared.
        if sig is None or available.get(sig, 0) > 0:
            if sig is not None:
                available[sig] -= 1
            old_left.append(g)
    return old_left, new_left


def _key_identity(groups: RowGroups, g: int, key: Sequence[str]) -> tuple[object, ...] | None:
    sigs = tuple(groups.column_signatures[g][k] for k in key)
    return None if any(s is None for s in sigs) else (groups.rows[g], *sigs)
