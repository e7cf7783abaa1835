"""A key is checked where it is declared: `write_table(key=...)` refuses a key that cannot
identify rows, showing (a bounded number of) the offending values, and commits nothing."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udrfs
from udrfs.errors import InvalidKeyError, UdrError


def _nothing_committed(repo: udrfs.Repo) -> bool:
    return "t" not in repo.commit(repo.head("main")).tables


def test_missing_key_column_is_refused_naming_it(repo: udrfs.Repo) -> None:
    with pytest.raises(InvalidKeyError, match=r"key column\(s\) bbl not in the table") as info:
        repo.write_table("t", pa.table({"id": [1, 2]}), key="bbl")
    assert isinstance(info.value, UdrError)
    assert _nothing_committed(repo)


def test_duplicate_keys_are_refused_showing_the_values(repo: udrfs.Repo) -> None:
    table = pa.table({"id": [5, 1, 7, 1, 5, 2], "v": list("abcdef")})
    with pytest.raises(InvalidKeyError, match=r"2 row\(s\) share a key value") as info:
        repo.write_table("t", table, key="id")
    assert "e.g. 1, 5;" in str(info.value)
    assert _nothing_committed(repo)


def test_duplicate_keys_shown_are_bounded(repo: udrfs.Repo) -> None:
    table = pa.table({"id": list(range(10_000)) * 2})
    with pytest.raises(InvalidKeyError, match=r"10,000 row\(s\)") as info:
        repo.write_table("t", table, key="id")
    message = str(info.value)
    assert "e.g. 0, 1, 2, 3, 4, ...;" in message
    assert len(message) < 300


def test_duplicate_composite_keys_are_refused_as_tuples(repo: udrfs.Repo) -> None:
    table = pa.table({"a": [1, 1, 2, 1], "b": ["x", "y", "x", "x"]})
    with pytest.raises(InvalidKeyError, match=r"e\.g\. \(1, 'x'\);"):
        repo.write_table("t", table, key=["a", "b"])


def test_null_keys_are_refused_showing_the_rows(repo: udrfs.Repo) -> None:
    table = pa.table({"id": [3, None, 1, None], "v": [1, 2, 3, 4]})
    with pytest.raises(InvalidKeyError, match=r"key column id is null in 2 row\(s\) \(rows 1, 3\)"):
        repo.write_table("t", table, key="id")
    assert _nothing_committed(repo)


def test_transaction_write_refuses_duplicate_keys(repo: udrfs.Repo) -> None:
    with pytest.raises(InvalidKeyError), repo.transaction() as tx:
        tx.write_table("t", pa.table({"id": [1, 1]}), key="id")
    assert _nothing_committed(repo)


def test_a_unique_key_is_accepted_and_recorded(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"id": [3, 1, 2]}), key="id")
    assert repo.version("t").key == ("id",)
    assert repo.read_table("t").column("id").to_pylist() == [1, 2, 3]


def test_import_file_refuses_a_declared_key_that_repeats(repo: udrfs.Repo, tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [2, 1, 2], "v": [1, 2, 3]}), path)
    with pytest.raises(InvalidKeyError, match=r"e\.g\. 2;"):
        repo.import_file("t", path, key="id")
    assert _nothing_committed(repo)
