"""Table layouts: how a file committed into a table is stored.

A table's settings (`TablePolicy`: key, layout, zstd level) travel in every commit
(docs/format.md, "Table settings"). `exact` keeps a committed file's bytes; `dedup` rewrites
the file's rows with the dedup writer (udrfs/parquet/writer.py, the one `write_table` uses, at
the table's zstd level) before they are chunked, so a file written by any tool deduplicates
like `write_table` and a file whose rows did not change is the current version's bytes again
(docs/architecture.md, "Table layouts")."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from udrfs.catalog.files import ChunkFile
from udrfs.catalog.model import LAYOUTS, ZSTD_LEVELS, is_zstd_level
from udrfs.errors import InvalidKeyError, InvalidLayoutError

if TYPE_CHECKING:
    import pyarrow as pa

    from udrfs.parquet.inspect import ParquetDescription
    from udrfs.store import Store
    from udrfs.store.chunks import ChunkList


@dataclass(frozen=True)
class LaidOut:
    """A table written by the dedup writer and chunked into the store (not staged yet)."""

    chunks: ChunkList
    blake3: str
    desc: ParquetDescription
    key: tuple[str, ...] | None


def check_layout(layout: str) -> str:
    """`layout` if it is one (InvalidLayoutError naming the layouts if not)."""
    if layout not in LAYOUTS:
        raise InvalidLayoutError(
            f"unknown layout {layout!r}: a table's layout is one of {', '.join(LAYOUTS)} "
            "(exact keeps a file's bytes; dedup rewrites its rows to deduplicate)"
        )
    return layout


def check_zstd_level(level: int) -> int:
    """`level` if the dedup writer can use it (InvalidLayoutError if not)."""
    if not is_zstd_level(level):
        raise InvalidLayoutError(
            f"zstd level {level!r}: a table's zstd level is a whole number from "
            f"{ZSTD_LEVELS.start} to {ZSTD_LEVELS.stop - 1} (higher: smaller files, slower "
            "writes)"
        )
    return level


def check_key_columns(table: str, key: Sequence[str], names: Sequence[str]) -> None:
    """InvalidKeyError unless every key column is among the file's columns `names`."""
    missing = [k for k in key if k not in names]
    if missing:
        raise InvalidKeyError(
            f"{table}: key column(s) {', '.join(missing)} not in the file (its columns: "
            f"{', '.join(names)}); write the column, or change the table's key with "
            f"`udr table set STORE {table} --key COL` (or --no-key)"
        )


def lay_out(
    store: Store,
    data: object,
    key: tuple[str, ...] | None,
    zstd_level: int,
    unique: bool = True,
) -> LaidOut:
    """Write `data` (an Arrow table or DataFrame) with the dedup writer at `zstd_level` and
    chunk the result into the store, cut at its column chunks. With `key` the rows are sorted
    by it, and, `unique` unless told otherwise, a key that is null or repeats is refused
    (InvalidKeyError)."""
    from udrfs.parquet.inspect import describe_parquet
    from udrfs.parquet.writer import write_parquet

    tmp = store.staging_dir / f".tmp-write-{secrets.token_hex(8)}.parquet"
    try:
        write_parquet(data, tmp, key=key, unique_key=unique, zstd_level=zstd_level)
        desc = describe_parquet(tmp)
        chunks, digest = store.chunks.ingest_file_hashed(tmp, desc.cut_points)
    finally:
        tmp.unlink(missing_ok=True)
    return LaidOut(chunks, digest, desc, key)


def read_file(path: str | os.PathLike[str]) -> pa.Table:
    """Every row of a local Parquet file, as the dedup writer takes it."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(path))


def read_chunks(store: Store, chunks: ChunkList, name: str) -> pa.Table:
    """Every row of a Parquet file already chunked into the store."""
    with ChunkFile(store.chunks, chunks, name) as f:
        return f.read_arrow()
