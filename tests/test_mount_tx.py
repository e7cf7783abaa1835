"""Writing through the mount: `.tx` directories stage files and commit them atomically."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mounting import Mount, SampleStore, make_store, mounted, requires_fuse, wait_for, write_version

from udrfs import _native

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]


@pytest.fixture
def store(tmp_path: Path) -> SampleStore:
    return make_store(tmp_path, {"nyc_master": 1, "nyc_city_owned": 1}, rows=3000)


@pytest.fixture
def mount(store: SampleStore, tmp_path: Path) -> Iterator[Mount]:
    with mounted(store.path, tmp_path / "mnt") as m:
        yield m


def sh(command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def tx_dir(mount: Mount, name: str, branch: str = "main") -> Path:
    return mount.at(f"@{branch}", ".tx", name)


def control(tx: Path) -> list[str]:
    return (tx / ".control").read_text().splitlines()


def head(store: SampleStore) -> str:
    return store.catalog().head("main")


def b3(path: Path) -> str:
    return _native.blake3_file(str(path))


def test_two_tables_from_cp_and_pandas_commit_as_one_commit(
    mount: Mount, store: SampleStore, tmp_path: Path
) -> None:
    tx = tx_dir(mount, "nightly")
    tx.mkdir()
    source = write_version(tmp_path / "city.parquet", "nyc_city_owned", 7, 4000)
    assert sh(f"cp {source} {tx / 'nyc_city_owned.parquet'}").returncode == 0
    permits = pd.DataFrame({"permit": range(500), "kind": ["new"] * 500})
    permits.to_parquet(tx / "nyc_dob_permits.parquet")
    before = head(store)

    done = sh(f"echo 'commit nightly refresh' > {tx / '.control'}")

    assert done.returncode == 0, done.stderr
    status = control(tx)[0]
    assert status.startswith("committed ")
    commit = store.catalog().commit(status.split()[1])
    assert list(commit.parents) == [before] and commit.message == "nightly refresh"
    assert sorted(c.table for c in commit.changes) == ["nyc_city_owned", "nyc_dob_permits"]
    # Visible at once, without waiting for the refs poll.
    city = mount.at("@main", "nyc_city_owned", "latest.parquet")
    assert os.readlink(city) == "v2.parquet"
    assert b3(city) == b3(source)
    got = pd.read_parquet(mount.at("@main", "nyc_dob_permits", "v1.parquet"))
    pd.testing.assert_frame_equal(got, permits)


def test_staged_files_read_back_exactly_as_written(mount: Mount, tmp_path: Path) -> None:
    tx = tx_dir(mount, "readback")
    tx.mkdir()
    source = write_version(tmp_path / "m.parquet", "nyc_master", 5, 20000)  # several chunks
    assert sh(f"cp {source} {tx / 'nyc_master.parquet'}").returncode == 0
    assert b3(tx / "nyc_master.parquet") == b3(source)
    assert os.stat(tx / "nyc_master.parquet").st_size == source.stat().st_size
    assert sorted(os.listdir(tx)) == [".control", "nyc_master.parquet"]
    assert "staged nyc_master.parquet: 20000 rows" in (tx / ".control").read_text()


def test_abort_leaves_nothing(mount: Mount, store: SampleStore, tmp_path: Path) -> None:
    before = head(store)
    tx = tx_dir(mount, "oops")
    tx.mkdir()
    write_version(tx / "nyc_master.parquet", "nyc_master", 9, 1000)
    assert sh(f"echo abort > {tx / '.control'}").returncode == 0
    assert control(tx)[0] == "aborted: nothing was applied"
    assert os.listdir(tx) == [".control"]
    assert sh(f"rm -r {tx}").returncode == 0
    assert not tx.exists()
    assert head(store) == before
    assert not list((store.path / "staging" / "tx").rglob("*.json"))


def test_rm_r_discards_an_open_transaction(mount: Mount, store: SampleStore) -> None:
    before = head(store)
    tx = tx_dir(mount, "scratch")
    tx.mkdir()
    write_version(tx / "nyc_master.parquet", "nyc_master", 9, 1000)
    write_version(tx / "brand_new.parquet", "brand_new", 1, 100)
    assert sh(f"rm -r {tx}").returncode == 0
    assert os.listdir(mount.at("@main", ".tx")) == []
    assert head(store) == before
    assert store.catalog().staging.names("main") == []


def test_rmdir_of_a_transaction_with_files_is_refused(mount: Mount) -> None:
    tx = tx_dir(mount, "full")
    tx.mkdir()
    write_version(tx / "nyc_master.parquet", "nyc_master", 9, 100)
    with pytest.raises(OSError, match="not empty"):
        os.rmdir(tx)


def test_a_name_that_is_not_parquet_is_refused_and_logged(mount: Mount) -> None:
    tx = tx_dir(mount, "names")
    tx.mkdir()
    for bad in ("notes.txt", "nyc_master.csv", ".hidden.parquet", "sub"):
        with pytest.raises(OSError) as raised:
            (tx / bad).write_bytes(b"x")
        assert raised.value.errno == 22  # EINVAL
    line = "refused create /@main/.tx/names/notes.txt: 'notes.txt': only NAME.parquet files"
    wait_for(lambda: line in mount.log_text(), 2.0)
    assert sum(line in text for text in mount.log_text().splitlines()) == 1
    assert os.listdir(tx) == [".control"]


def test_an_invalid_parquet_file_fails_the_commit_naming_it(
    mount: Mount, store: SampleStore
) -> None:
    before = head(store)
    tx = tx_dir(mount, "broken")
    tx.mkdir()
    write_version(tx / "nyc_master.parquet", "nyc_master", 9, 100)
    (tx / "nyc_city_owned.parquet").write_bytes(b"PAR1 this is not parquet")

    done = sh(f"echo commit > {tx / '.control'}")

    assert done.returncode != 0
    assert "write error" in done.stderr
    status = control(tx)[0]
    assert status.startswith("invalid: broken/nyc_city_owned.parquet is not")
    assert "nothing was applied" in status
    assert head(store) == before
    # The bad file still reads back as written; fixing it lets the commit through.
    assert (tx / "nyc_city_owned.parquet").read_bytes() == b"PAR1 this is not parquet"
    os.unlink(tx / "nyc_city_owned.parquet")
    assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    assert control(tx)[0].startswith("committed ")


def test_same_table_in_two_transactions_only_one_commits(mount: Mount, store: SampleStore) -> None:
    first, second = tx_dir(mount, "first"), tx_dir(mount, "second")
    first.mkdir()
    second.mkdir()
    write_version(first / "nyc_master.parquet", "nyc_master", 21, 1000)
    write_version(second / "nyc_master.parquet", "nyc_master", 22, 1000)

    won = sh(f"echo commit first > {first / '.control'}")
    lost = sh(f"echo commit second > {second / '.control'}")

    assert won.returncode == 0, won.stderr
    assert lost.returncode != 0
    assert control(second)[0].startswith(
        "conflict: nyc_master changed on main since this transaction began"
    )
    assert [c.message for c in store.catalog().log("main", limit=1)] == ["first"]
    assert "transaction second on main: failed" in (second / ".control").read_text()


def test_commits_to_other_tables_meanwhile_are_rebased(mount: Mount, store: SampleStore) -> None:
    tx = tx_dir(mount, "rebase")
    tx.mkdir()
    write_version(tx / "nyc_city_owned.parquet", "nyc_city_owned", 30, 500)
    store.commit_version("nyc_master")  # another writer, another table
    assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    tables = {t.name: t.version for t in store.catalog().tables("main")}
    assert tables == {"nyc_master": 2, "nyc_city_owned": 2}


def test_drop_command_deletes_a_table(mount: Mount, store: SampleStore) -> None:
    tx = tx_dir(mount, "cleanup")
    tx.mkdir()
    assert sh(f"echo 'drop nyc_city_owned' > {tx / '.control'}").returncode == 0
    assert "drop nyc_city_owned" in control(tx)
    missing = sh(f"echo 'drop no_such_table' > {tx / '.control'}")
    assert missing.returncode != 0
    assert control(tx)[0] == "error: no table named 'no_such_table' on main"
    assert sh(f"echo 'commit drop it' > {tx / '.control'}").returncode == 0
    assert [t.name for t in store.catalog().tables("main")] == ["nyc_master"]
    assert not mount.at("@main", "nyc_city_owned").exists()


def test_commit_while_a_file_is_still_open_for_writing_fails(
    mount: Mount, store: SampleStore, tmp_path: Path
) -> None:
    tx = tx_dir(mount, "busy")
    tx.mkdir()
    data = write_version(tmp_path / "m.parquet", "nyc_master", 3, 2000).read_bytes()
    with open(tx / "nyc_master.parquet", "wb") as writer:
        writer.write(data[:1000])
        writer.flush()
        done = sh(f"echo commit > {tx / '.control'}")
        assert done.returncode != 0
        assert control(tx)[0].startswith("busy: nyc_master.parquet still open for writing")
        with pytest.raises(OSError):  # EBUSY: the bytes so far are not readable yet
            (tx / "nyc_master.parquet").read_bytes()
        writer.write(data[1000:])
    assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    assert store.catalog().open("nyc_master").read() == data


def test_out_of_order_writes_and_truncate_go_through_a_spill_file(
    mount: Mount, store: SampleStore, tmp_path: Path
) -> None:
    tx = tx_dir(mount, "spill")
    tx.mkdir()
    data = write_version(tmp_path / "m.parquet", "nyc_master", 4, 20000).read_bytes()
    target = tx / "nyc_master.parquet"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        half = len(data) // 2
        os.pwrite(fd, data[half:], half)  # the second half first
        os.pwrite(fd, data[:half], 0)
        os.pwrite(fd, b"junk past the end", len(data))
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    assert target.read_bytes() == data
    with open(target, "r+b") as f:  # reopened without O_TRUNC: patch one byte back and forth
        f.seek(10)
        f.write(b"\x00")
        f.seek(10)
        f.write(data[10:11])
    assert target.read_bytes() == data
    assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    assert store.catalog().open("nyc_master").read() == data
    assert not list((store.path / "staging" / "spill").iterdir())


def test_duckdb_copy_to_and_overwrite(mount: Mount, store: SampleStore) -> None:
    tx = tx_dir(mount, "duck")
    tx.mkdir()
    target = tx / "nyc_city_owned.parquet"
    duckdb.sql(f"COPY (SELECT range AS id FROM range(1000)) TO '{target}' (FORMAT parquet)")
    # The target exists now: DuckDB writes a temporary file and renames it over the target.
    duckdb.sql(f"COPY (SELECT range AS id FROM range(77)) TO '{target}' (FORMAT parquet)")
    assert sorted(os.listdir(tx)) == [".control", "nyc_city_owned.parquet"]
    assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    assert store.catalog().read_table("nyc_city_owned").num_rows == 77


def test_pyarrow_and_polars_writes_are_staged(mount: Mount, store: SampleStore) -> None:
    import polars as pl

    tx = tx_dir(mount, "writers")
    tx.mkdir()
    pq.write_table(pa.table({"k": list(range(300))}), tx / "from_pyarrow.parquet")
    pl.DataFrame({"z": list(range(200))}).write_parquet(tx / "from_polars.parquet")
    text = (tx / ".control").read_text()
    assert "staged from_polars.parquet: 200 rows" in text
    assert "staged from_pyarrow.parquet: 300 rows" in text
    assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    assert {"from_pyarrow", "from_polars"} <= {t.name for t in store.catalog().tables("main")}


def test_rm_of_a_staged_file_keeps_the_branch_version(mount: Mount, store: SampleStore) -> None:
    tx = tx_dir(mount, "unstage")
    tx.mkdir()
    write_version(tx / "nyc_master.parquet", "nyc_master", 9, 100)
    write_version(tx / "nyc_city_owned.parquet", "nyc_city_owned", 9, 100)
    os.unlink(tx / "nyc_master.parquet")
    assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    tables = {t.name: t.version for t in store.catalog().tables("main")}
    assert tables == {"nyc_master": 1, "nyc_city_owned": 2}


def test_stats_count_writes_and_commits(mount: Mount) -> None:
    tx = tx_dir(mount, "counted")
    tx.mkdir()
    write_version(tx / "nyc_master.parquet", "nyc_master", 9, 100)
    assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    stats = json.loads(mount.at(".stats").read_text())
    assert stats["commits"] == 1 and stats["writes"] >= 1 and stats["bytes_written"] > 0
