"""The catalog through the Python API: versions, time travel, exact bytes, transactions."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stores import pack_bytes

import udrfs
from udrfs import _native


def test_import_then_open_returns_the_exact_bytes(repo: udrfs.Repo, nyc_parquet_dir: Path) -> None:
    for name in ("flights", "weather", "planes", "airports", "airlines"):
        path = nyc_parquet_dir / f"{name}.parquet"
        repo.import_file(name, path, message=f"import {name}")
        with repo.open(name) as f:
            data = f.read()
        assert _native.blake3_hex(data) == _native.blake3_file(str(path))
        assert len(data) == path.stat().st_size


def test_tpch_tables_round_trip_byte_exact(repo: udrfs.Repo, tpch_parquet_dir: Path) -> None:
    files = sorted(tpch_parquet_dir.rglob("*.parquet"))
    assert files
    with repo.transaction(message="tpch") as tx:
        for path in files:
            tx.import_file(path.stem, path)
    for path in files:
        with repo.open(path.stem) as f:
            assert _native.blake3_hex(f.read()) == _native.blake3_file(str(path))


def test_every_version_stays_readable(repo: udrfs.Repo, tmp_path: Path) -> None:
    frames = []
    for v in range(1, 4):
        df = pd.DataFrame({"bbl": range(v * 10), "score": [float(v)] * (v * 10)})
        frames.append(df)
        repo.write_table("parcels", df, key=["bbl"], message=f"night {v}")
    assert [i.version for i in repo.table_versions("parcels")] == [1, 2, 3]
    for v, df in enumerate(frames, start=1):
        got = repo.read_table("parcels", version=v).to_pandas()
        pd.testing.assert_frame_equal(got, df)
    assert repo.read_table("parcels").num_rows == 30


def test_reimporting_identical_file_adds_no_pack_data(
    repo: udrfs.Repo, nyc_parquet_dir: Path
) -> None:
    path = nyc_parquet_dir / "flights.parquet"
    assert repo.import_file("flights", path) is not None
    before = pack_bytes(repo)
    assert repo.import_file("flights", path) is None
    copy = repo.path.parent / "copy.parquet"
    shutil.copy(path, copy)
    repo.import_file("flights_again", copy)  # same bytes under another name
    assert pack_bytes(repo) == before
    stats = repo.stats()
    assert stats.logical_bytes == 2 * path.stat().st_size
    assert stats.dedup_ratio > 1.9


def test_as_of_reads_the_version_current_at_that_time(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"x": [1]}))
    between = datetime.now(UTC)
    time.sleep(0.01)
    repo.write_table("t", pa.table({"x": [1, 2]}))
    assert repo.read_table("t", as_of=between).num_rows == 1
    assert repo.read_table("t").num_rows == 2
    with pytest.raises(udrfs.NotFoundError, match="no commit at or before"):
        repo.read_table("t", as_of=between - timedelta(days=365))


def test_transaction_commits_all_tables_in_one_commit(repo: udrfs.Repo) -> None:
    with repo.transaction(message="nightly") as tx:
        tx.write_table("a", pa.table({"k": [1, 2]}), key="k")
        tx.write_table("b", pa.table({"k": [3]}))
        assert tx.read_table("a").num_rows == 2  # sees its own writes
    (commit,) = repo.log(limit=1)
    assert commit.message == "nightly"
    assert sorted(c.table for c in commit.changes) == ["a", "b"]
    assert commit.seq == 1


def test_transaction_rolls_back_on_exception(repo: udrfs.Repo) -> None:
    repo.write_table("a", pa.table({"k": [1]}))
    head = repo.head()
    with pytest.raises(RuntimeError), repo.transaction() as tx:
        tx.write_table("a", pa.table({"k": [1, 2, 3]}))
        tx.write_table("b", pa.table({"k": [1]}))
        raise RuntimeError("source fetch failed")
    assert repo.head() == head
    assert [t.name for t in repo.tables()] == ["a"]


def test_same_table_race_one_wins_other_gets_conflict(repo: udrfs.Repo) -> None:
    repo.write_table("master", pa.table({"k": [1]}))
    first = repo.transaction(message="first")
    second = repo.transaction(message="second")
    first.write_table("master", pa.table({"k": [1, 2]}))
    second.write_table("master", pa.table({"k": [1, 3]}))
    first.commit()
    with pytest.raises(udrfs.ConflictError) as err:
        second.commit()
    assert err.value.tables == ("master",)
    assert "master changed on main" in str(err.value)
    assert repo.read_table("master").column("k").to_pylist() == [1, 2]


def test_different_tables_race_both_commit_by_rebase(repo: udrfs.Repo) -> None:
    first = repo.transaction()
    second = repo.transaction()
    first.write_table("a", pa.table({"k": [1]}))
    second.write_table("b", pa.table({"k": [2]}))
    c1 = first.commit()
    c2 = second.commit()
    assert c1 is not None and c2 is not None
    assert c2.parents == (c1.id,)
    assert sorted(repo.commit(repo.head()).tables) == ["a", "b"]


def test_drop_table_in_transaction(repo: udrfs.Repo) -> None:
    repo.write_table("old", pa.table({"k": [1]}))
    with repo.transaction() as tx:
        tx.drop_table("old")
    assert repo.tables() == []
    (change,) = repo.log(limit=1)[0].changes
    assert (change.old_version, change.new_version) == (1, None)
    assert repo.read_table("old", version=1).num_rows == 1  # history keeps it


def test_change_feed_lists_versions_and_rows(repo: udrfs.Repo) -> None:
    repo.write_table("a", pa.table({"k": [1, 2]}), message="one")
    repo.write_table("a", pa.table({"k": [1, 2, 3]}), message="two")
    entries = repo.changes(since=0)
    assert [e.seq for e in entries] == [1, 2]
    assert entries[1].tables[0].old_version == 1
    assert entries[1].tables[0].new_version == 2
    assert entries[1].tables[0].rows == 3
    assert repo.changes(since=1)[0].message == "two"
    assert '"old_version": 1' in entries[1].to_json_line()


def test_unknown_names_raise_not_found(repo: udrfs.Repo) -> None:
    repo.write_table("a", pa.table({"k": [1]}))
    with pytest.raises(udrfs.NotFoundError, match=r"no table named 'nope'"):
        repo.read_table("nope")
    with pytest.raises(udrfs.NotFoundError, match=r"versions 1\.\.1, not 7"):
        repo.read_table("a", version=7)
    with pytest.raises(udrfs.NotFoundError, match="no branch named 'dev'"):
        repo.write_table("a", pa.table({"k": [2]}), branch="dev")
    with pytest.raises(udrfs.NotFoundError, match="not a branch, tag or commit"):
        repo.tables("nope")


def test_invalid_table_name_is_refused(repo: udrfs.Repo) -> None:
    for bad in (".hidden", "a/b", "x.parquet", ""):
        with pytest.raises(udrfs.InvalidNameError):
            repo.write_table(bad, pa.table({"k": [1]}))


def test_non_parquet_file_is_refused_naming_it(repo: udrfs.Repo, tmp_path: Path) -> None:
    bad = tmp_path / "notes.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(udrfs.NotParquetError, match=r"notes\.csv"):
        repo.import_file("notes", bad)
    truncated = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"x": list(range(1000))}), truncated)
    truncated.write_bytes(truncated.read_bytes()[:-20] + b"PAR1")
    with pytest.raises(udrfs.NotParquetError, match=r"cut\.parquet"):
        repo.import_file("cut", truncated)
    assert repo.tables() == []
    assert repo.fsck().ok


def test_a_footer_claiming_gigabytes_is_refused_without_reading_it(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    crafted = tmp_path / "crafted.parquet"
    with open(crafted, "wb") as f:  # sparse: 1 GiB of hole
        f.write(b"PAR1")
        f.seek((1 << 30) - 8)
        f.write((900 << 20).to_bytes(4, "little") + b"PAR1")
    with pytest.raises(udrfs.NotParquetError, match="footer would be"):
        repo.import_file("crafted", crafted)
    assert repo.tables() == []


def test_missing_file_is_not_found(repo: udrfs.Repo, tmp_path: Path) -> None:
    with pytest.raises(udrfs.NotFoundError, match="does not exist"):
        repo.import_file("x", tmp_path / "missing.parquet")


def test_branch_is_a_pointer_and_diverges(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1]}))
    before = pack_bytes(repo)
    repo.create_branch("experiment")
    assert pack_bytes(repo) == before
    repo.write_table("t", pa.table({"k": [1, 2]}), branch="experiment")
    repo.write_table("t", pa.table({"k": [1, 2, 3]}))
    assert repo.read_table("t", version=2, branch="experiment").num_rows == 2
    assert repo.read_table("t", version=2).num_rows == 3
    assert repo.read_table("t", version=1, branch="experiment").num_rows == 1


def test_store_of_unknown_format_version_is_refused(tmp_path: Path) -> None:
    udrfs.Repo.init(tmp_path / "s")
    manifest = tmp_path / "s" / "udr.toml"
    manifest.write_text(manifest.read_text().replace("format_version = 2", "format_version = 9"))
    with pytest.raises(udrfs.FormatVersionError, match="format version 9"):
        udrfs.Repo(tmp_path / "s")


def test_opening_a_missing_store_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(udrfs.NotFoundError, match="udr init"):
        udrfs.Repo(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(udrfs.NotFoundError, match="not a UDR store"):
        udrfs.Repo(tmp_path / "plain")
