"""Stored bytes reach pyarrow as native in-memory files (`udrfs.catalog.files.arrow_file`):
a read of some columns or row groups sees exactly what a read of the whole file sees."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

import udrfs
from udrfs.catalog.files import VersionFile

ROWS = 40_000


def _table() -> pa.Table:
    ids = pa.array(range(ROWS))
    return pa.table(
        {
            "id": ids,
            "kind": pa.array([f"k{i % 7}" for i in range(ROWS)]).dictionary_encode(),
            "point": pa.StructArray.from_arrays(
                [pa.array([i * 0.5 for i in range(ROWS)]), pa.array([-i for i in range(ROWS)])],
                names=["x", "y"],
            ),
            "tags": pa.array([[i % 3] * (i % 4) for i in range(ROWS)], pa.list_(pa.int64())),
            "note": pa.array([None if i % 5 else f"n{i}" for i in range(ROWS)]),
        }
    )


def test_a_read_of_some_columns_and_row_groups_equals_the_whole_files(repo: udrfs.Repo) -> None:
    repo.write_table("t", _table(), key="id")
    version = repo.version("t")
    with VersionFile(repo.store.chunks, version) as f:
        whole = pq.ParquetFile(f.arrow())
        assert whole.metadata.num_row_groups > 2
        groups = [1, whole.metadata.num_row_groups - 1]
        for columns in (["id"], ["kind", "tags"], ["point"], ["point.y", "note"]):
            expected = whole.read_row_groups(groups, columns=columns)
            assert f.parquet(columns, groups).read_row_groups(groups, columns=columns) == expected
        assert f.metadata().equals(whole.metadata)
        assert f.parquet(columns=()).schema_arrow == whole.schema_arrow


def test_repo_reads_of_columns_equal_the_stored_table(repo: udrfs.Repo) -> None:
    table = _table()
    repo.write_table("t", table, key="id")
    assert repo.read_table("t") == table
    assert repo.read_table("t", columns=["note", "point"]) == table.select(["note", "point"])
