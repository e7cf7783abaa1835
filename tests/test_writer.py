"""The dedup-friendly Parquet writer: deterministic bytes, content-anchored row groups."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from udrfs import _native
from udrfs.parquet import writer
from udrfs.parquet.writer import (
    MAX_ROWS,
    MIN_ROWS,
    row_group_boundaries,
    row_hashes,
    to_arrow,
    write_parquet,
)


def make_table(rows: int = 30_000, seed: int = 0) -> pa.Table:
    """Mixed types, nulls, an unhashable nested column, keys in random order."""
    rng = np.random.default_rng(seed)
    keys = rng.permutation(rows).astype(np.int64) * 7
    nulls = rng.random(rows) < 0.05
    return pa.table(
        {
            "id": pa.array(keys),
            "name": pa.array([f"lot {k} street {k % 97}" for k in keys], mask=nulls),
            "value": pa.array(rng.normal(size=rows), mask=nulls[::-1].copy()),
            "flag": pa.array(rng.random(rows) < 0.3),
            "day": pa.array(rng.integers(0, 20_000, rows).astype(np.int32), pa.date32()),
            "at": pa.array(rng.integers(0, 10**15, rows), pa.timestamp("us")),
            "price": pa.array(
                [decimal.Decimal(int(v)) / 100 for v in rng.integers(0, 10**6, rows)],
                pa.decimal128(10, 2),
            ),
            "tags": pa.array([[int(k) % 5] * int(k % 3) for k in keys], pa.list_(pa.int64())),
        }
    )


def write_bytes(data: object, key: list[str] | None = None) -> bytes:
    sink = io.BytesIO()
    write_parquet(data, sink, key=key, zstd_level=3)
    return sink.getvalue()


def read(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


def metadata(data: bytes) -> pq.FileMetaData:
    return pq.read_metadata(pa.BufferReader(data))


def group_bytes(data: bytes) -> list[bytes]:
    """Each row group's column-chunk bytes, read at the ranges the footer gives."""
    meta = metadata(data)
    groups = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        parts = []
        for c in range(group.num_columns):
            col = group.column(c)
            start = col.data_page_offset
            if col.has_dictionary_page and col.dictionary_page_offset is not None:
                start = min(start, col.dictionary_page_offset)
            parts.append(data[start : start + col.total_compressed_size])
        groups.append(b"".join(parts))
    return groups


def hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    found = row_hashes(table, columns)
    assert found is not None
    return found


def sorted_by_id(table: pa.Table) -> pa.Table:
    return table.sort_by([("id", "ascending")])


# Determinism


def test_same_table_writes_same_bytes() -> None:
    table = make_table()
    first, second = write_bytes(table, key=["id"]), write_bytes(table, key=["id"])
    assert _native.blake3_hex(first) == _native.blake3_hex(second)
    assert first == second


def test_chunking_of_the_input_does_not_change_the_bytes() -> None:
    table = make_table()
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=777))
    assert write_bytes(rechunked, key=["id"]) == write_bytes(table, key=["id"])
    assert write_bytes(rechunked) == write_bytes(table)


def test_path_and_file_object_get_the_same_bytes(tmp_path: Path) -> None:
    table = make_table(5_000)
    result = write_parquet(table, tmp_path / "t.parquet", key=["id"], zstd_level=3)
    data = (tmp_path / "t.parquet").read_bytes()
    assert data == write_bytes(table, key=["id"])
    assert result.size == len(data)
    assert result.rows == table.num_rows
    assert result.row_groups == metadata(data).num_row_groups
    assert result.key == ("id",)


def test_file_object_is_written_from_its_position_and_left_open() -> None:
    table = make_table(2_000)
    sink = io.BytesIO()
    sink.write(b"header")
    result = write_parquet(table, sink, zstd_level=3)
    assert not sink.closed
    assert sink.getvalue()[6:] == write_bytes(table)
    assert result.size == len(sink.getvalue()) - 6


# Round trips


def test_arrow_table_round_trips_without_key() -> None:
    table = make_table()
    back = read(write_bytes(table))
    assert back.schema.equals(table.schema, check_metadata=True)
    assert back.equals(table)


def test_arrow_table_round_trips_sorted_by_key() -> None:
    table = make_table()
    back = read(write_bytes(table, key=["id"]))
    assert back.equals(sorted_by_id(table))


def test_rows_in_key_order_and_shuffled_rows_write_the_same_bytes() -> None:
    ordered = sorted_by_id(make_table())
    shuffled = ordered.take(np.random.default_rng(7).permutation(ordered.num_rows))
    assert write_bytes(ordered, key=["id"]) == write_bytes(shuffled, key=["id"])
    assert read(write_bytes(shuffled, key=["id"])).equals(ordered)


def test_record_batch_is_accepted() -> None:
    table = make_table(1_000)
    batch = table.combine_chunks().to_batches()[0]
    assert read(write_bytes(batch)).equals(table)


def test_pandas_named_index_becomes_a_column() -> None:
    df = pd.DataFrame(
        {
            "id": [3, 1, 2, 5],
            "name": ["c", "a", None, "e"],
            "when": pd.to_datetime(["2024-01-03", "2024-01-01", "2024-01-02", "NaT"]),
        },
        index=pd.Index(["r3", "r1", "r2", "r5"], name="row"),
    )
    back = pd.read_parquet(io.BytesIO(write_bytes(df)))
    pd.testing.assert_frame_equal(back, df.reset_index())

    by_key = pd.read_parquet(io.BytesIO(write_bytes(df, key=["id"])))
    pd.testing.assert_frame_equal(by_key, df.reset_index().sort_values("id", ignore_index=True))


def test_pandas_default_range_index_is_dropped() -> None:
    table = to_arrow(pd.DataFrame({"id": [3, 1, 2]}))
    assert table.column_names == ["id"]
    assert json.loads(table.schema.metadata[b"pandas"])["index_columns"] == []


def test_pandas_unnamed_row_numbers_left_by_filtering_are_dropped() -> None:
    df = pd.DataFrame({"id": [3, 1, 2, 4], "v": [0.3, 0.1, 0.2, 0.4]})
    assert to_arrow(df[df.v > 0.15]).column_names == ["id", "v"]


def test_pandas_unnamed_label_index_becomes_an_index_column() -> None:
    df = pd.DataFrame({"v": [1, 2]}, index=pd.Index(["a", "b"]))
    table = to_arrow(df)
    assert table.column_names == ["index", "v"]
    assert table.column("index").to_pylist() == ["a", "b"]


def test_pandas_categorical_round_trips() -> None:
    # pyarrow reads dictionary<large_string> back as dictionary<string> (a reader limit, the
    # same for any writer); the DataFrame still comes back equal.
    df = pd.DataFrame({"id": [2, 1, 3], "kind": pd.Categorical(["x", "y", "x"])})
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(write_bytes(df))), df)


def test_pandas_range_index_renumbers_after_sorting() -> None:
    # A RangeIndex is stored as metadata (positions), so sorted rows read back as 0..n-1.
    df = pd.DataFrame({"id": [3, 1, 2], "v": [0.3, 0.1, 0.2]})
    back = pd.read_parquet(io.BytesIO(write_bytes(df, key=["id"])))
    expected = df.sort_values("id", kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(back, expected)


def test_polars_round_trips() -> None:
    pl = pytest.importorskip("polars")
    df = pl.DataFrame(
        {
            "id": [3, 1, 2, None],
            "name": ["c", "a", None, "n"],
            "day": [dt.date(2024, 1, 3), None, dt.date(2024, 1, 2), dt.date(2024, 1, 4)],
        }
    )
    assert pl.read_parquet(io.BytesIO(write_bytes(df))).equals(df)
    by_key = pl.read_parquet(io.BytesIO(write_bytes(df, key=["id"])))
    assert by_key.equals(df.sort("id", nulls_last=True, maintain_order=True))


def test_unsupported_input_type_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"builtins\.dict"):
        to_arrow({"id": [1, 2]})
    with pytest.raises(TypeError, match=r"builtins\.list"):
        write_parquet([1, 2, 3], io.BytesIO(), zstd_level=3)


# Keys


def test_rows_are_sorted_by_key_stably_with_nulls_last() -> None:
    table = pa.table(
        {
            "a": pa.array(["x", None, "x", "b", "x", "b", None]),
            "b": pa.array([2, 1, 1, None, 2, 1, 0]),
            "seq": pa.array(range(7)),
        }
    )
    back = read(write_bytes(table, key=["a", "b"]))
    assert back.column("a").to_pylist() == ["b", "b", "x", "x", "x", None, None]
    assert back.column("b").to_pylist() == [1, None, 1, 2, 2, 0, 1]
    assert back.column("seq").to_pylist() == [5, 3, 2, 0, 4, 6, 1]  # ties keep input order


def test_key_order_is_recorded_as_sorting_columns() -> None:
    meta = metadata(write_bytes(make_table(), key=["id"]))
    assert meta.num_row_groups > 1
    for g in range(meta.num_row_groups):
        (sorting,) = meta.row_group(g).sorting_columns
        assert (sorting.column_index, sorting.descending, sorting.nulls_first) == (0, False, False)


def test_missing_key_columns_are_named() -> None:
    with pytest.raises(ValueError, match="nope, gone"):
        write_parquet(make_table(100), io.BytesIO(), key=["id", "nope", "gone"], zstd_level=3)


def test_a_nested_key_column_is_refused() -> None:
    with pytest.raises(ValueError, match="tags"):
        write_parquet(make_table(100), io.BytesIO(), key=["tags"], zstd_level=3)


def test_a_lone_column_name_is_a_key_of_one_column() -> None:
    assert write_bytes(make_table(3_000), key="id") == write_bytes(make_table(3_000), key=["id"])  # type: ignore[arg-type]


# Row groups


def test_group_sizes_stay_within_bounds() -> None:
    meta = metadata(write_bytes(make_table(120_000), key=["id"]))
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sum(sizes) == 120_000
    assert len(sizes) > 1
    assert all(MIN_ROWS <= n <= MAX_ROWS for n in sizes[:-1])
    assert 0 < sizes[-1] <= MAX_ROWS


def test_groups_are_cut_at_max_rows_when_no_row_hits() -> None:
    # Every row has the same key, so either every row is a cut or none is.
    table = pa.table({"k": pa.array([7] * 5_000)})
    ends = row_group_boundaries(table, ["k"], avg_rows=100, min_rows=20, max_rows=400)
    sizes = np.diff([0, *ends])
    assert set(sizes[:-1]) <= {20, 400}
    assert ends[-1] == 5_000


def test_untouched_row_groups_stay_byte_identical_after_a_localized_edit() -> None:
    v1 = sorted_by_id(make_table(60_000))
    deleted = pa.concat_tables([v1.slice(0, 20_000), v1.slice(20_500)])
    values = deleted.column("value").to_numpy(zero_copy_only=False).copy()
    values[40_000:40_300] += 1.0
    v2 = deleted.set_column(2, "value", pa.array(values, mask=np.isnan(values)))

    old, new = group_bytes(write_bytes(v1, key=["id"])), group_bytes(write_bytes(v2, key=["id"]))
    assert len(old) >= 6
    changed = set(new) - set(old)
    # One group around the deletion, one around the edit; a moved boundary may add one more.
    assert 2 <= len(changed) <= 4
    assert len(set(old) & set(new)) >= len(old) - 4


def test_boundaries_survive_inserts_and_deletes() -> None:
    v1 = sorted_by_id(make_table(60_000))
    inserted = pa.table({"id": pa.array(np.arange(3, 7 * 3_000, 7, dtype=np.int64))})
    v2 = pa.concat_tables(
        [v1.select(["id"]).slice(0, 10_000), inserted, v1.select(["id"]).slice(10_000)]
    )
    v2 = pa.concat_tables([v2.slice(0, 40_000), v2.slice(41_000)])

    def boundary_keys(table: pa.Table) -> set[int]:
        ids = table.column("id").to_numpy()
        return {int(ids[end - 1]) for end in row_group_boundaries(table, ["id"])}

    before, after = boundary_keys(v1), boundary_keys(v2)
    assert len(before) >= 6
    assert len(before & after) >= len(before) - 3


def test_without_key_input_order_is_kept_and_boundaries_follow_row_content() -> None:
    table = make_table(60_000)
    data = write_bytes(table)
    assert read(data).column("id").equals(table.column("id"))

    grown = pa.concat_tables([table.slice(0, 30_000), make_table(500, seed=9), table.slice(30_000)])
    old, new = group_bytes(data), group_bytes(write_bytes(grown))
    assert len(set(old) & set(new)) >= len(old) - 3


def test_unhashable_columns_are_left_out_of_the_row_hash() -> None:
    table = make_table(5_000)
    hashable = table.drop_columns(["tags"])
    assert np.array_equal(
        hashes(table, table.column_names), hashes(hashable, hashable.column_names)
    )


def test_without_hashable_columns_groups_have_a_fixed_size() -> None:
    table = pa.table({"tags": pa.array([[i] for i in range(20_000)], pa.list_(pa.int64()))})
    ends = row_group_boundaries(table, table.column_names)
    assert ends == [*range(writer.AVG_ROWS, 20_000, writer.AVG_ROWS), 20_000]
    assert read(write_bytes(table)).equals(table)


def test_empty_table_writes_a_valid_file() -> None:
    table = make_table(10).slice(0, 0)
    data = write_bytes(table, key=["id"])
    assert metadata(data).num_row_groups == 0
    assert read(data).schema.equals(table.schema)


# Hashing


def test_hashes_do_not_depend_on_slicing_or_chunking() -> None:
    table = make_table(4_000).drop_columns(["tags"])
    names = table.column_names
    whole = hashes(table, names)
    sliced = table.slice(1_234, 1_000)
    assert np.array_equal(hashes(sliced, names), whole[1_234:2_234])
    assert np.array_equal(hashes(sliced.combine_chunks(), names), whole[1_234:2_234])
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=333))
    assert np.array_equal(hashes(rechunked, names), whole)


def test_string_types_and_dictionary_columns_hash_by_value() -> None:
    values = ["b", "a", None, "b", "ccc", ""]
    plain = hashes(pa.table({"s": pa.array(values)}), ["s"])
    for typ in (pa.large_string(), pa.string_view()):
        assert np.array_equal(hashes(pa.table({"s": pa.array(values, typ)}), ["s"]), plain)
    encoded = pa.array(values).dictionary_encode()
    assert np.array_equal(hashes(pa.table({"s": encoded}), ["s"]), plain)


def test_nulls_hash_alike_in_every_type() -> None:
    table = pa.table(
        {
            "i": pa.array([None, 1], pa.int64()),
            "s": pa.array([None, "x"]),
            "b": pa.array([None, True]),
            "d": pa.array([None, decimal.Decimal("1.5")], pa.decimal128(5, 2)),
        }
    )
    found = {int(hashes(table, [name])[0]) for name in table.column_names}
    assert len(found) == 1


def test_column_order_changes_the_row_hash() -> None:
    table = pa.table({"a": pa.array([1, 2, 3]), "b": pa.array([4, 5, 6])})
    assert not np.array_equal(hashes(table, ["a", "b"]), hashes(table, ["b", "a"]))
