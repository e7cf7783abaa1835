"""`udr bulk-import`: many Parquet files land in one commit, each as the table its file name
says, or none of them does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import udrfs

pytestmark = pytest.mark.timeout(120)


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def store(tmp_path: Path) -> udrfs.Repo:
    return udrfs.Repo.init(tmp_path / "store")


def test_a_directory_lands_in_one_commit_named_by_its_files(
    store: udrfs.Repo, nyc_parquet_dir: Path
) -> None:
    result = udr("bulk-import", str(store.path), str(nyc_parquet_dir), "-m", "nightly")
    assert result.returncode == 0, result.stderr
    assert "5 tables on main, 0 unchanged" in result.stdout
    (commit,) = store.log()[:1]
    assert commit.message == "nightly" and commit.seq == 1
    assert sorted(commit.tables) == ["airlines", "airports", "flights", "planes", "weather"]
    for table in commit.tables:
        assert store.version(table, 1).blake3 == udrfs._native.blake3_file(
            str(nyc_parquet_dir / f"{table}.parquet")
        )


def test_files_unchanged_since_the_last_import_are_counted_not_committed(
    store: udrfs.Repo, nyc_parquet_dir: Path
) -> None:
    store.import_file("airlines", nyc_parquet_dir / "airlines.parquet")
    files = [str(nyc_parquet_dir / f"{t}.parquet") for t in ("airlines", "planes")]
    result = udr("bulk-import", str(store.path), *files)
    assert result.returncode == 0, result.stderr
    assert "1 table on main, 1 unchanged" in result.stdout
    assert [v.version for v in store.versions("airlines")] == [1]


def test_a_file_that_is_not_parquet_commits_nothing(
    store: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(nyc_parquet_dir / "airlines.parquet", batch / "airlines.parquet")
    (batch / "broken.parquet").write_text("id,name\n1,a\n")
    result = udr("bulk-import", str(store.path), str(batch))
    assert result.returncode == 2
    assert result.stderr.startswith("udr: error: ") and result.stderr.count("\n") == 1
    assert "broken" in result.stderr
    assert store.tables() == [] and len(store.log()) == 1  # the root commit alone
    assert store.fsck().ok


def test_two_files_for_one_table_are_refused_before_anything_is_read(
    store: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(nyc_parquet_dir / "planes.parquet", other / "airlines.parquet")
    result = udr(
        "bulk-import", str(store.path), str(nyc_parquet_dir / "airlines.parquet"), str(other)
    )
    assert result.returncode == 2
    assert "would both be table 'airlines'" in result.stderr
    assert store.tables() == [] and store.fsck().ok


def test_a_missing_path_is_not_found(store: udrfs.Repo, tmp_path: Path) -> None:
    result = udr("bulk-import", str(store.path), str(tmp_path / "nowhere"))
    assert result.returncode == 3
    assert "nowhere: no such file or directory" in result.stderr
    assert store.fsck().ok


def test_import_of_a_directory_is_a_bulk_import(store: udrfs.Repo, nyc_parquet_dir: Path) -> None:
    result = udr("import", str(store.path), str(nyc_parquet_dir))
    assert result.returncode == 0, result.stderr
    assert "5 tables on main, 0 unchanged" in result.stdout
    assert [c.seq for c in store.log()] == [1, 0]  # one commit after the store's creation
    result = udr("import", str(store.path), str(nyc_parquet_dir / "planes.parquet"))
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_verify_names_each_table_that_differs_from_its_file(
    store: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    assert udr("import", str(store.path), str(nyc_parquet_dir)).returncode == 0
    result = udr("verify", str(store.path), str(nyc_parquet_dir))
    assert result.returncode == 0, result.stderr
    assert "all 5 table(s) match their files" in result.stdout
    # A source that moved on since the import, and one the store never saw.
    changed = tmp_path / "changed"
    changed.mkdir()
    shutil.copy(nyc_parquet_dir / "planes.parquet", changed / "airlines.parquet")
    shutil.copy(nyc_parquet_dir / "planes.parquet", changed / "permits.parquet")
    shutil.copy(nyc_parquet_dir / "weather.parquet", changed / "weather.parquet")
    results = {r.table: r for r in store.verify(changed)}
    assert {t: r.verdict for t, r in results.items()} == {
        "airlines": "different",
        "permits": "not in store",
        "weather": "same",
    }
    assert results["airlines"].version == 1 and results["permits"].version is None
    result = udr("verify", str(store.path), str(changed), "--json")
    assert result.returncode == 1
    assert "2 of 3 table(s) differ from their files" in result.stderr
    assert store.fsck().ok
