"""Check that a file is Parquet and describe it: rows, schema, column stats, chunk cut points."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from udrfs.errors import NotFoundError, NotParquetError

MAGIC = b"PAR1"
# The largest footer read: its length is the file's word, and parsing it takes memory of a
# few times its size (a file of 100,000 column chunks has a footer of ~20 MB).
MAX_FOOTER = 64 << 20


@dataclass(frozen=True)
class ParquetDescription:
    rows: int
    schema: list[dict[str, str]]
    columns: list[dict[str, Any]]
    cut_points: list[int]


def describe_parquet(
    source: str | os.PathLike[str] | BinaryIO, name: str | None = None
) -> ParquetDescription:
    """Read only the footer; refuse anything that is not a whole Parquet file.

    `source` is a path or a seekable binary file (e.g. a staged file read back from packs);
    `name` is what error messages call it.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            with open(path, "rb") as f:
                return describe_parquet(f, name or str(path))
        except FileNotFoundError:
            raise NotFoundError(f"file {path} does not exist") from None
        except IsADirectoryError:
            raise NotParquetError(f"{path} is a directory, not a Parquet file") from None
    label = name or getattr(source, "name", "the file")
    size = source.seek(0, os.SEEK_END)
    source.seek(0)
    head = source.read(4)
    source.seek(max(size - 8, 0))
    footer_length, tail = source.read(4), source.read(4)
    source.seek(0)
    if size < 12 or head != MAGIC or tail != MAGIC:
        raise NotParquetError(
            f"{label} is not a Parquet file (no PAR1 magic at both ends); only Parquet files "
            "can become table versions"
        )
    footer = int.from_bytes(footer_length, "little")
    if footer > min(MAX_FOOTER, size - 12):
        raise NotParquetError(
            f"{label} is not a readable Parquet file: its footer would be {footer} bytes "
            f"(at most {MAX_FOOTER} are read, and the file has {size})"
        )
    try:
        meta = pq.read_metadata(source)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise NotParquetError(f"{label} is not a readable Parquet file: {exc}") from None
    return ParquetDescription(
        rows=meta.num_rows,
        schema=[{"name": f.name, "type": str(f.type)} for f in schema],
        columns=column_stats(meta),
        cut_points=column_chunk_cut_points(meta),
    )


def column_chunk_cut_points(meta: pq.FileMetaData) -> list[int]:
    """Offsets where column chunks start, plus the footer's start.

    Chunk boundaries there keep an edit in one column from bleeding into its neighbours
    (docs/format.md, "Chunks").
    """
    points: set[int] = set()
    end = 4
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            start, stop = column_chunk_range(group.column(c))
            points.add(start)
            end = max(end, stop)
    points.add(end)
    return sorted(p for p in points if p > 0)


def column_chunk_range(col: pq.ColumnChunkMetaData) -> tuple[int, int]:
    """[start, stop) of a column chunk's bytes in the file: from its dictionary page, if it
    has one, to the end of its data pages. The importer cuts chunks at `start`, and
    catalog/rowgroups.py reads a column chunk's identity off the chunks covering this range,
    so both must use this one function."""
    start = col.data_page_offset
    if col.has_dictionary_page and col.dictionary_page_offset:
        start = min(start, col.dictionary_page_offset)
    return start, start + col.total_compressed_size


def column_stats(meta: pq.FileMetaData) -> list[dict[str, Any]]:
    """Null counts and min/max per column, combined over row groups where statistics exist."""
    schema = meta.schema
    out: list[dict[str, Any]] = []
    for c in range(meta.num_columns if meta.num_row_groups else 0):
        nulls: int | None = 0
        lo: Any = None
        hi: Any = None
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(c).statistics
            if stats is None:
                nulls, lo, hi = None, None, None
                break
            if nulls is not None:
                nulls = None if stats.null_count is None else nulls + stats.null_count
            if stats.has_min_max:
                try:
                    lo = stats.min if lo is None else min(lo, stats.min)
                    hi = stats.max if hi is None else max(hi, stats.max)
                except TypeError:
                    lo, hi = None, None
        out.append(
            {
                "name": schema.column(c).path,
                "nulls": nulls,
                "min": _jsonable(lo),
                "max": _jsonable(hi),
            }
        )
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 64 else None
    text = str(value)
    return text if len(text) <= 200 else None
