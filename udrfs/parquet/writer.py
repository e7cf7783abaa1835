"""The deterministic, dedup-friendly Parquet writer.

A content-addressed store only saves bytes when a new version of a table
reproduces the bytes of the old one wherever the data did not change. This
writer is built for that:

* Deterministic: the same table gives the same bytes, always. Every writer
  option is pinned here rather than left to library defaults, nothing
  time-dependent is written, and each row group is re-chunked to one Arrow
  chunk before it is encoded, because page breaks depend on how the input
  happens to be chunked.
* zstd at the level the caller names (a table's setting: catalog/model.py,
  `DEFAULT_ZSTD_LEVEL`), dictionary encoding with a small dictionary page (past it
  a column chunk falls back to plain), delta encoding for integer key
  columns, statistics; no page index, no page checksums and no page-level
  content-defined chunking (pyarrow's carries state from one row group into
  the next, so an untouched group would change).
* Row groups are encoded independently of one another, so a group whose rows
  did not change is byte-identical in the new file (only the footer, which
  holds file offsets, changes).
* Row-group boundaries are anchored on content, the way CDC anchors chunk
  boundaries: a row ends a group when the hash of its anchor columns falls
  below a threshold, and group sizes are bounded on both sides (a too-large
  group makes a small edit expensive; a too-small one bloats the footer).
  An insert or delete then moves at most the boundaries next to it.

With a key the rows are sorted by it (stable, nulls last), the anchor is the
hash of the key columns, and the file records the order as the row groups'
``sorting_columns``. Without a key the input order is kept and the anchor is
the hash of the whole row over every column whose type can be hashed
(integers, floats, booleans, dates/times/timestamps/durations, strings,
binary, decimals, dictionary-encoded columns of those); nested and other
types are left out of the hash. If no column can be hashed, rows are cut into
fixed-size groups of ``avg_rows``.

Hashes: fixed-width values go through splitmix64 over their bit patterns
(numpy, vectorized); strings and binary go through the native engine's
``hash_binary``; nulls hash to a fixed constant; several columns combine in
order as ``acc = splitmix64(acc ^ column_hash)``. Changing the hashes or
the group sizes changes every file written afterwards (one full re-store per
table), so they are constants, not options of ``write_parquet``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from udrfs.errors import InvalidKeyError
from udrfs.parquet.splice import MAGIC, Joiner

__all__ = [
    "AVG_ROWS",
    "MAX_ROWS",
    "MIN_ROWS",
    "WriteResult",
    "row_group_boundaries",
    "to_arrow",
    "write_parquet",
]

U64 = npt.NDArray[np.uint64]

# Row-group sizes, chosen with benchmarks/bench_dedup.py --group-rows on the
# 856k-row parcel table at zstd level 9 (new bytes for a localized edit / an append,
# file size):
#   4k: 3.0% / 1.3%, 49.3 MB   8k: 3.4% / 1.5%, 45.4 MB
#  16k: 6.3% / 1.9%, 43.9 MB  32k: 6.1% / 1.7%, 42.8 MB
# An edit rewrites the one or two groups it falls in, so its cost grows with the
# group; small groups re-store dictionaries and grow the footer. 8k halves the
# cost of an edit for a file 3-6% larger than 16k-32k; 4k gains little more.
AVG_ROWS = 8192
MIN_ROWS = 2048
MAX_ROWS = 32768

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL_HASH = np.uint64(0x5BD1E9955BD1E995)
_ROW_SEED = np.uint64(0)


@dataclass(frozen=True)
class WriteResult:
    """What a write produced."""

    rows: int
    row_groups: int
    size: int
    key: tuple[str, ...] | None


def to_arrow(data: object) -> pa.Table:
    """Return ``data`` as an Arrow table.

    Accepts a pyarrow Table or RecordBatch, a pandas DataFrame and a polars
    DataFrame. A pandas index is data only when it says so (`_index_as_columns`).
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    # Look the frameworks up only if the caller has imported them: neither is
    # a hard dependency, and importing polars just to reject an input is slow.
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return pa.Table.from_pandas(_index_as_columns(data, pandas), preserve_index=False)
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(data, polars.DataFrame):
        table = data.to_arrow()
        assert isinstance(table, pa.Table)
        return table
    kind = f"{type(data).__module__}.{type(data).__qualname__}"
    raise TypeError(
        f"cannot write {kind} as Parquet: pass a pyarrow Table or RecordBatch, "
        "a pandas DataFrame or a polars DataFrame"
    )


def _index_as_columns(frame: Any, pandas: Any) -> Any:
    """The frame with its index as ordinary columns, or dropped.

    Unnamed row numbers (a RangeIndex, or the integer labels filtering leaves) are dropped;
    a named index becomes columns of its names; any other unnamed index becomes a column
    `index` (`level_N` per level), as `DataFrame.reset_index` names them. Never the hidden
    `__index_level_0__` that pandas writes to Parquet.
    """
    index = frame.index
    unnamed = all(name is None for name in index.names)
    if unnamed and (
        isinstance(index, pandas.RangeIndex) or pandas.api.types.is_integer_dtype(index.dtype)
    ):
        return frame.reset_index(drop=True)
    return frame.reset_index()


def write_parquet(
    data: object,
    sink: str | os.PathLike[str] | BinaryIO,
    key: Sequence[str] | None = None,
    *,
    unique_key: bool = False,
    zstd_level: int,
) -> WriteResult:
    """Write ``data`` to ``sink`` as deterministic, dedup-friendly Parquet.

    With ``key`` the rows are sorted by those columns (stable, nulls last). With
    ``unique_key`` the key must also identify rows: a null or a repeated key value
    raises InvalidKeyError, showing a few of the offending rows or values.
    ``zstd_level`` is part of the output: the same rows at another level are other bytes.
    A path is created or truncated; a file object is written from its current
    position and left open.
    """
    table = to_arrow(data)
    key_names = _check_key(table, key)
    order = None  # the order of the rows in the file, if not the input's
    anchored = table  # the rows whose anchor columns cut the row groups, in the file's order
    anchor = table.column_names
    if key_names:
        if unique_key:
            _refuse_null_keys(table, key_names)
        order = _key_order(table, key_names)
        # Only the key columns are put in order here; each row group's rows are taken in
        # order as the group is encoded (on the encoding threads), never the whole table.
        anchored = table.select(list(key_names))
        anchored = anchored if order is None else anchored.take(order)
        if unique_key:
            _refuse_repeated_keys(anchored, key_names)
        anchor = list(key_names)
    # The sizes are read here, not bound as defaults, so a benchmark can sweep them.
    ends = row_group_boundaries(
        anchored, anchor, avg_rows=AVG_ROWS, min_rows=MIN_ROWS, max_rows=MAX_ROWS
    )

    stream, owned = _open_sink(sink)
    try:
        start_pos = stream.tell()
        options = _writer_options(table.schema, key_names, zstd_level)
        if len(ends) < 2 or _THREADS < 2:
            _write_groups(stream, table, options, ends, order)
        else:
            _write_groups_apart(stream, table, options, ends, order)
        size = stream.tell() - start_pos
    finally:
        if owned:
            stream.close()
    return WriteResult(rows=table.num_rows, row_groups=len(ends), size=size, key=key_names)


# Threads encoding row groups at once (pyarrow encodes and compresses without the GIL).
_THREADS = min(8, os.cpu_count() or 1)


def _write_groups(
    stream: pa.NativeFile,
    table: pa.Table,
    options: dict[str, Any],
    ends: Sequence[int],
    order: pa.UInt64Array | None = None,
) -> None:
    """The rows of `table`, in `order` (None: as they are), as one file of row groups ending
    at `ends`, one after another."""
    with pq.ParquetWriter(stream, table.schema, **options) as writer:
        start = 0
        for end in ends:
            writer.write_table(_rows(table, order, start, end), row_group_size=end - start)
            start = end


def _rows(table: pa.Table, order: pa.UInt64Array | None, start: int, end: int) -> pa.Table:
    """Rows `start`..`end` of `table` in `order`, as one Arrow chunk (page breaks depend on
    how the input is chunked)."""
    rows = table.slice(start, end - start) if order is None else table.take(order[start:end])
    return rows.combine_chunks()


def _write_groups_apart(
    stream: pa.NativeFile,
    table: pa.Table,
    options: dict[str, Any],
    ends: Sequence[int],
    order: pa.UInt64Array | None,
) -> None:
    """What `_write_groups` writes, byte for byte, with each group encoded on a thread of
    its own into a one-group file and the files joined as they come (splice.py)."""

    def encode(span: tuple[int, int]) -> bytes:
        sink = pa.BufferOutputStream()
        _write_groups(sink, _rows(table, order, *span), options, [span[1] - span[0]])
        return cast(bytes, sink.getvalue().to_pybytes())

    joiner = Joiner()
    stream.write(MAGIC)
    with ThreadPoolExecutor(_THREADS, thread_name_prefix="udr-parquet") as pool:
        for file in pool.map(encode, zip([0, *ends[:-1]], ends, strict=True)):
            stream.write(joiner.add(file))
    stream.write(joiner.footer())


def row_group_boundaries(
    table: pa.Table,
    columns: Sequence[str],
    *,
    avg_rows: int = AVG_ROWS,
    min_rows: int = MIN_ROWS,
    max_rows: int = MAX_ROWS,
) -> list[int]:
    """Return where each row group ends (exclusive row offsets; the last is ``num_rows``).

    A row ends a group when the hash of its ``columns`` falls below a
    threshold, unless the group would be shorter than ``min_rows``; a group
    reaching ``max_rows`` ends there regardless. The threshold is set so that
    groups average ``avg_rows``. Columns whose type cannot be hashed are left
    out; with none left the groups are ``avg_rows`` long.
    """
    if not 0 < min_rows < avg_rows < max_rows:
        raise ValueError(
            f"need 0 < min_rows < avg_rows < max_rows, got {min_rows}, {avg_rows}, {max_rows}"
        )
    n = table.num_rows
    hashes = row_hashes(table, columns)
    if hashes is None:
        return [*range(avg_rows, n, avg_rows), n] if n else []
    # Past min_rows a row is a cut with probability 1/(avg-min), so groups
    # average min + (avg - min) = avg rows (a little less, given max_rows).
    threshold = np.uint64((1 << 64) // (avg_rows - min_rows))
    cuts = np.flatnonzero(hashes < threshold) + 1  # a cut after row i ends a group at i + 1
    ends: list[int] = []
    start = 0
    # One iteration per group, not per row: the candidates come from numpy.
    while start < n:
        i = int(np.searchsorted(cuts, start + min_rows))
        end = int(cuts[i]) if i < len(cuts) else n
        end = min(end, start + max_rows, n)
        ends.append(end)
        start = end
    return ends


def row_hashes(table: pa.Table, columns: Sequence[str]) -> U64 | None:
    """Hash each row over ``columns`` (unhashable ones skipped); None if none can be hashed."""
    acc: U64 | None = None
    for name in columns:
        column = table.column(name)
        if not _hashable(column.type):
            continue
        parts = [_hash_array(chunk) for chunk in column.chunks]
        h = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        acc = _splitmix64((_ROW_SEED if acc is None else acc) ^ h)
    return acc


def _check_key(table: pa.Table, key: Sequence[str] | None) -> tuple[str, ...] | None:
    if key is None:
        return None
    if isinstance(key, str):
        key = [key]  # a lone column name, not a sequence of one-letter names
    names = tuple(key)
    if not names:
        raise InvalidKeyError("key must name at least one column, or be None")
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise InvalidKeyError(
            f"key column(s) {', '.join(missing)} not in the table; "
            f"its columns are {', '.join(table.column_names)}"
        )
    bad = [name for name in names if not _hashable(table.schema.field(name).type)]
    if bad:
        raise InvalidKeyError(
            f"key column(s) {', '.join(bad)} have a type that cannot be a key "
            "(use scalar columns: numbers, strings, binary, dates/times, booleans)"
        )
    return names


def check_file_key(path: str | os.PathLike[str], key: Sequence[str]) -> None:
    """Refuse `key` for the Parquet file at `path` unless it identifies the file's rows
    (InvalidKeyError); a file pyarrow cannot read is left for the caller to report."""
    path = os.fspath(path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        return
    names = _check_key(schema.empty_table(), key)
    assert names is not None
    keys = pq.read_table(path, columns=list(names))
    _refuse_null_keys(keys, names)
    keys = keys.sort_by([(name, "ascending") for name in names])
    _refuse_repeated_keys(keys, names)


# How many offending rows or values an error message shows.
_SHOWN = 5


def _refuse_null_keys(table: pa.Table, key: tuple[str, ...]) -> None:
    """A key identifies each row, so no key column may be null (rows counted from 0)."""
    for name in key:
        column = table.column(name)
        if column.null_count:
            rows = pc.indices_nonzero(pc.is_null(column)).to_pylist()[:_SHOWN]
            more = ", ..." if column.null_count > len(rows) else ""
            raise InvalidKeyError(
                f"key column {name} is null in {column.null_count:,} row(s) "
                f"(rows {', '.join(map(str, rows))}{more}); a key identifies each row: "
                "fill or drop those rows, or write with another key (or none)"
            )


def _key_order(table: pa.Table, key: tuple[str, ...]) -> pa.UInt64Array | None:
    """The order of `table`'s rows sorted by `key` (ascending, nulls last), or None if they
    are in it already (a table exported in key order). Arrow's sort is stable: rows with equal
    keys keep their input order."""
    # (The type stubs predate per-key null placement, hence the cast.)
    keys = cast(Any, [(name, "ascending", "at_end") for name in key])
    order = pc.sort_indices(table.select(list(key)), options=pc.SortOptions(sort_keys=keys))
    in_order = np.array_equal(order.to_numpy(), np.arange(table.num_rows, dtype=np.uint64))
    return None if in_order else order


def _refuse_repeated_keys(table: pa.Table, key: tuple[str, ...]) -> None:
    """No two rows may share a key value; `table` is sorted by the key, so equal keys are
    neighbours."""
    if table.num_rows < 2:
        return
    same: pa.Array | None = None
    for name in key:
        column = table.column(name).combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        equal = pc.equal(column[1:], column[:-1])
        same = equal if same is None else pc.and_(same, equal)
    assert same is not None
    repeats = pc.indices_nonzero(same)
    if not len(repeats):
        return
    shown = table.select(list(key)).take(repeats[: _SHOWN * 4]).to_pylist()
    values: list[str] = []
    for row in shown:
        text = repr(row[key[0]]) if len(key) == 1 else repr(tuple(row[k] for k in key))
        if text not in values:
            values.append(text)
    more = ", ..." if len(repeats) > len(shown) or len(values) > _SHOWN else ""
    raise InvalidKeyError(
        f"key ({', '.join(key)}) repeats: {len(repeats):,} row(s) share a key value with "
        f"another row, e.g. {', '.join(values[:_SHOWN])}{more}; a key must identify each row: "
        "drop the duplicates, or write with a key of more columns (or none)"
    )


def _writer_options(
    schema: pa.Schema, key: tuple[str, ...] | None, zstd_level: int
) -> dict[str, Any]:
    """The `pq.ParquetWriter` options of a file of `schema` sorted by `key`."""
    sorting = None
    encoding: dict[str, str] | None = None
    dictionary: bool | list[str] = True
    if key:
        order: list[tuple[str, Literal["ascending"]]] = [(name, "ascending") for name in key]
        sorting = pq.SortingColumn.from_ordering(schema, order, null_placement="at_end")
        # Sorted integers are what delta encoding is for: it stores bbl-like
        # keys in a quarter of the space a per-group dictionary takes.
        delta = [name for name in key if _delta_encodable(schema.field(name).type)]
        if delta:
            encoding = dict.fromkeys(delta, "DELTA_BINARY_PACKED")
            dictionary = [path for path in _leaf_paths(schema) if path not in encoding]
    # Every option that decides the bytes is pinned, so that a change of a
    # library default cannot silently change the output. Measured on the
    # parcel table in 8k-row groups: zstd level 3 with 1 MiB dictionaries gave
    # 58.2 MB, with 4 KiB dictionaries and a delta-encoded key 49.0 MB (level 9:
    # 45.4 MB; pyarrow's defaults, one row group: 56.5 MB). Each small group re-stores
    # its dictionaries, which only pays for low-cardinality columns; past the
    # limit a column chunk falls back to plain encoding.
    return dict(
        version="2.6",
        data_page_version="1.0",
        compression="zstd",
        compression_level=zstd_level,
        use_dictionary=cast(bool, dictionary),  # the stubs miss that a list of paths is allowed
        column_encoding=encoding,
        dictionary_pagesize_limit=4096,
        data_page_size=1 << 20,
        max_rows_per_page=20_000,
        write_batch_size=1024,
        write_statistics=True,
        write_page_index=False,
        write_page_checksum=False,
        use_content_defined_chunking=False,
        store_schema=True,
        # Keep Arrow's list field names ("item") so a list column reads back with an equal
        # schema; readers accept either name.
        use_compliant_nested_type=False,
        sorting_columns=sorting,
    )


def _delta_encodable(typ: pa.DataType) -> bool:
    # Types stored as Parquet INT32/INT64, the physical types delta encoding takes.
    return pa.types.is_integer(typ) or _is_time(typ)


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Dotted Parquet column paths (``use_dictionary`` names leaves, not top-level fields)."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    meta = pq.read_metadata(pa.BufferReader(sink.getvalue()))
    return [meta.schema.column(i).path for i in range(meta.num_columns)]


def _open_sink(sink: str | os.PathLike[str] | BinaryIO) -> tuple[pa.NativeFile, bool]:
    if isinstance(sink, str | os.PathLike):
        return pa.OSFile(os.fspath(sink), "wb"), True
    if isinstance(sink, pa.NativeFile):
        return sink, False
    return pa.PythonFile(cast(Any, sink), mode="w"), False


def _hashable(typ: pa.DataType) -> bool:
    if pa.types.is_dictionary(typ):
        return _hashable(typ.value_type)
    if isinstance(typ, pa.ExtensionType):
        return _hashable(typ.storage_type)
    return (
        pa.types.is_null(typ)
        or pa.types.is_boolean(typ)
        or pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
        or _is_time(typ)
        or _is_fixed_bytes(typ)
        or _is_var_bytes(typ)
    )


def _is_time(typ: pa.DataType) -> bool:
    # Dates, times, timestamps, durations: 32- or 64-bit integers underneath. (Intervals are
    # temporal too, but Parquet cannot store them.)
    return pa.types.is_temporal(typ) and not pa.types.is_interval(typ)


def _is_fixed_bytes(typ: pa.DataType) -> bool:
    return pa.types.is_fixed_size_binary(typ) or pa.types.is_decimal(typ)


def _is_var_bytes(typ: pa.DataType) -> bool:
    return (
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_binary(typ)
        or pa.types.is_large_binary(typ)
        or pa.types.is_string_view(typ)
        or pa.types.is_binary_view(typ)
    )


def _hash_array(arr: pa.Array) -> U64:
    """Hash every value of one (hashable) array; nulls get ``_NULL_HASH``."""
    typ = arr.type
    if len(arr) == 0:
        # Empty arrays may come without buffers at all.
        return np.zeros(0, dtype=np.uint64)
    if isinstance(arr, pa.ExtensionArray):
        return _hash_array(arr.storage)
    if pa.types.is_null(typ):
        return np.full(len(arr), _NULL_HASH, dtype=np.uint64)
    if isinstance(arr, pa.DictionaryArray):
        # Hash the (small) dictionary once and gather: ids differ between
        # chunks and files, the values they stand for do not.
        values = _hash_array(arr.dictionary)
        indices = arr.indices.fill_null(0).to_numpy(zero_copy_only=False)
        h = values[indices] if len(values) else np.zeros(len(arr), dtype=np.uint64)
    elif _is_var_bytes(typ):
        h = _hash_var_bytes(arr)
    elif _is_fixed_bytes(typ):
        h = _hash_fixed_bytes(arr, typ.byte_width)
    else:
        h = _splitmix64(_value_bits(arr))
    if arr.null_count:
        # Every branch above returns a fresh array, so writing into it is safe.
        h[arr.is_null().to_numpy(zero_copy_only=False)] = _NULL_HASH
    return h


def _value_bits(arr: pa.Array) -> U64:
    """The bit pattern of each fixed-width value, zero-extended to 64 bits."""
    width = arr.type.bit_width
    data = memoryview(_buffer(arr, 1))
    if width == 1:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return bits[arr.offset : arr.offset + len(arr)].astype(np.uint64)
    dtype = {8: "<u1", 16: "<u2", 32: "<u4", 64: "<u8"}[width]
    values = np.frombuffer(data, dtype=dtype)[arr.offset : arr.offset + len(arr)]
    return values.astype(np.uint64)


def _hash_var_bytes(arr: pa.Array) -> U64:
    from udrfs._native import hash_binary

    arr = arr.cast(pa.large_binary())
    offsets = np.frombuffer(memoryview(_buffer(arr, 1)), dtype="<i8")
    offsets = offsets[arr.offset : arr.offset + len(arr) + 1]
    # Rebase to the array's own bytes so a slice hashes like a fresh array.
    first, last = int(offsets[0]), int(offsets[-1])
    data_buf = arr.buffers()[2]
    data = data_buf.slice(first, last - first) if data_buf is not None else b""
    return _from_native(hash_binary(offsets - first, data), len(arr))


def _hash_fixed_bytes(arr: pa.Array, width: int) -> U64:
    from udrfs._native import hash_binary

    offsets = np.arange(len(arr) + 1, dtype=np.int64) * width
    data = _buffer(arr, 1).slice(arr.offset * width, len(arr) * width)
    return _from_native(hash_binary(offsets, data), len(arr))


def _buffer(arr: pa.Array, index: int) -> pa.Buffer:
    buf = arr.buffers()[index]
    if buf is None:
        raise ValueError(f"{arr.type} array has no buffer {index}")
    return buf


def _from_native(raw: bytes, n: int) -> U64:
    h = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
    if len(h) != n:
        raise RuntimeError(f"hash_binary returned {len(h)} hashes for {n} values")
    return h


def _splitmix64(x: U64) -> U64:
    # The splitmix64 finalizer: a cheap bijection that spreads every input bit
    # over the whole word, so "hash below threshold" fires uniformly.
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
