"""What the mount's write side asks of the catalog, without a mount: streamed files, notes
beside a named transaction, finding a transaction that already landed; and the nightly
pipeline example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udrfs
from udrfs import _native
from udrfs.catalog.tx_files import TxFileNote, TxFiles, landed_commit, remove_stale_spills
from udrfs.errors import NotParquetError

EXAMPLE = Path(__file__).resolve().parents[1] / "tools" / "examples" / "nightly_pipeline.py"


def parquet_bytes(tmp_path: Path, rows: int) -> bytes:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"k": list(range(rows))}), path)
    return path.read_bytes()


def test_a_streamed_file_reads_back_and_hashes_like_its_bytes(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    data = parquet_bytes(tmp_path, 50_000)
    stream = repo.stream()
    for start in range(0, len(data), 4096):
        stream.write(data[start : start + 4096])
    chunks, blake3 = repo.finish_stream(stream)
    assert blake3 == _native.blake3_hex(data)
    assert repo.open_chunks(chunks, "t").read() == data
    assert repo.describe_chunks(chunks, "t").rows == 50_000
    with pytest.raises(NotParquetError, match="bad is not a Parquet file"):
        repo.describe_chunks(repo.store.chunks.ingest_bytes(b"hello"), "bad")


def test_notes_round_trip_and_vanish_when_empty(repo: udrfs.Repo) -> None:
    notes = TxFiles(repo.store)
    chunks = repo.store.chunks.ingest_bytes(b"not parquet")
    notes.save("main", "nightly", {"x.parquet": TxFileNote(problem="bad", chunks=chunks, size=11)})
    loaded = notes.load("main", "nightly")["x.parquet"]
    assert loaded.problem == "bad" and loaded.chunks == chunks and not loaded.writing
    notes.save("main", "nightly", {})
    assert notes.load("main", "nightly") == {}
    assert repo.staging.names("main") == []  # notes are not transactions


def test_landed_commit_finds_the_commit_that_applied_a_transaction(repo: udrfs.Repo) -> None:
    tx = repo.staging.open("main", "nightly")
    tx.write_table("a", pa.table({"k": [1]}))
    repo.staging.save(tx)
    resumed = repo.staging.get("main", "nightly")
    assert landed_commit(repo.catalog.history, resumed) is None
    commit = resumed.commit()  # as if the process died before forgetting it
    assert commit is not None
    repo.write_table("b", pa.table({"k": [2]}))  # later commits do not hide it
    assert landed_commit(repo.catalog.history, repo.staging.get("main", "nightly")) == commit.id


def test_spill_files_of_dead_processes_are_removed(repo: udrfs.Repo) -> None:
    folder = repo.store.staging_dir / "spill"
    folder.mkdir(parents=True)
    dead = folder / "999999999.abc"  # no such pid
    dead.write_bytes(b"x")
    ours = folder / f"{os.getpid()}.def"
    ours.write_bytes(b"x")
    assert remove_stale_spills(repo.store) == 1
    assert not dead.exists() and ours.exists()


def test_the_nightly_pipeline_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    assert "night 3 failed in phase 2" in proc.stdout
    assert "seq 9: night 3: master: nyc_master v2->v3" in proc.stdout


def test_landed_commit_finds_a_transaction_that_only_dropped_tables(repo: udrfs.Repo) -> None:
    """Nothing staged is new: the commit is the one by its author that dropped exactly its
    tables (before, such a transaction read as open after a restart)."""
    repo.write_table("a", pa.table({"k": [1]}))
    repo.write_table("b", pa.table({"k": [2]}))
    tx = repo.staging.open("main", "cleanup")
    tx.drop_table("a")
    repo.staging.save(tx)
    repo.write_table("c", pa.table({"k": [3]}))  # another commit since its base
    resumed = repo.staging.get("main", "cleanup")
    assert landed_commit(repo.catalog.history, resumed) is None
    commit = resumed.commit()  # as if the process died before forgetting it
    assert commit is not None
    with repo.transaction() as later:
        later.drop_table("b")  # a later drop of another table is not it
    assert landed_commit(repo.catalog.history, repo.staging.get("main", "cleanup")) == commit.id
