"""`udrfs.equals`: the migration plan's validation step, done so it holds for data that came
back whole (categorical columns, a pandas index, key order)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import udrfs


@pytest.fixture
def original(nyc_parquet_dir: Path, tmp_path: Path) -> pd.DataFrame:
    """planes with a categorical column and a named index, as a compound file holds them."""
    df = pd.read_parquet(nyc_parquet_dir / "planes.parquet")
    df["manufacturer"] = df["manufacturer"].astype("category")
    df = df.sample(frac=1.0, random_state=7).set_index("tailnum")  # not in key order
    df.to_parquet(tmp_path / "nyc_planes.parquet")
    return pd.read_parquet(tmp_path / "nyc_planes.parquet")


def test_equals_holds_where_dataframe_equals_does_not(
    repo: udrfs.Repo, original: pd.DataFrame, tmp_path: Path
) -> None:
    repo.import_file("nyc_planes", tmp_path / "nyc_planes.parquet")
    queried = repo.query("SELECT * FROM nyc_planes").to_pandas()
    assert not original.equals(queried)  # the plan's check: strings and a column `tailnum`
    assert udrfs.equals(original, queried)
    assert udrfs.equals(original, repo.read_table("nyc_planes"))
    assert original.equals(repo.read_table("nyc_planes").to_pandas())  # exact bytes: exact frame


def test_equals_in_key_order_after_write_table(repo: udrfs.Repo, original: pd.DataFrame) -> None:
    repo.write_table("nyc_planes", original, key="tailnum")
    stored = repo.read_table("nyc_planes")
    assert not udrfs.equals(original, stored)  # rows are stored in key order
    assert udrfs.equals(original, stored, key="tailnum")
    assert udrfs.equals(original, repo.query("SELECT * FROM nyc_planes").to_pandas(), key="tailnum")


def test_equals_finds_a_changed_value_a_type_and_a_missing_column(
    repo: udrfs.Repo, original: pd.DataFrame, tmp_path: Path
) -> None:
    repo.import_file("nyc_planes", tmp_path / "nyc_planes.parquet")
    stored = repo.read_table("nyc_planes")
    seats = stored.schema.get_field_index("seats")
    values = stored.column("seats").to_pylist()
    changed = stored.set_column(seats, "seats", pa.array([values[0] + 1, *values[1:]]))
    assert not udrfs.equals(original, changed)
    as_float = stored.set_column(seats, "seats", stored.column("seats").cast(pa.float64()))
    assert not udrfs.equals(original, as_float)
    assert not udrfs.equals(original, stored.drop_columns(["seats"]))
    assert not udrfs.equals(original, stored, key="no_such_column")
