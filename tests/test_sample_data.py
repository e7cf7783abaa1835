"""The sample data fixtures deliver the real tables, complete and reproducible."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tools import sample_data

# Row counts of the nycflights13 tables (the R package's documented sizes).
NYC_ROW_COUNTS = {
    "flights": 336_776,
    "weather": 26_115,
    "planes": 3_322,
    "airports": 1_458,
    "airlines": 16,
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("table", "rows"), sorted(NYC_ROW_COUNTS.items()))
def test_nyc_table_reads_back_with_known_row_count(
    nyc_parquet_dir: Path, table: str, rows: int
) -> None:
    read = pq.read_table(nyc_parquet_dir / f"{table}.parquet")
    assert read.num_rows == rows
    assert read.schema.equals(sample_data.NYC_SCHEMAS[table])


def test_nyc_flights_keeps_missing_values_as_nulls(nyc_parquet_dir: Path) -> None:
    flights = pq.read_table(nyc_parquet_dir / "flights.parquet", columns=["dep_time", "tailnum"])
    # Cancelled flights have no departure time; some have no tail number.
    assert flights["dep_time"].null_count == 8_255
    assert flights["tailnum"].null_count == 2_512


def test_nyc_write_is_byte_for_byte_reproducible(nyc_parquet_dir: Path, tmp_path: Path) -> None:
    again = sample_data.write_nyc_parquet(tmp_path / "nyc")
    assert sorted(again) == sorted(NYC_ROW_COUNTS)
    for table, path in again.items():
        assert _sha256(path) == _sha256(nyc_parquet_dir / f"{table}.parquet"), table


def test_nyc_write_leaves_a_complete_set_untouched(tmp_path: Path) -> None:
    first = sample_data.write_nyc_parquet(tmp_path / "nyc")
    mtimes = {table: path.stat().st_mtime_ns for table, path in first.items()}
    second = sample_data.write_nyc_parquet(tmp_path / "nyc")
    assert {table: path.stat().st_mtime_ns for table, path in second.items()} == mtimes


def test_tpch_lineitem_has_rows(tpch_parquet_dir: Path) -> None:
    lineitem = pq.ParquetFile(tpch_parquet_dir / "lineitem.parquet")
    assert lineitem.metadata.num_rows > 0


def test_tpch_generates_every_table(tpch_parquet_dir: Path) -> None:
    for table in sample_data.TPCH_TABLES:
        assert pq.ParquetFile(tpch_parquet_dir / f"{table}.parquet").metadata.num_rows > 0
