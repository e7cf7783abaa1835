"""`.changes` and row counts computed after the commit point: a line appears once, complete."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from mounting import mounted, requires_fuse, wait_for

import udrfs
from udrfs.catalog.crashpoints import ENV

pytestmark = [pytest.mark.mount, pytest.mark.timeout(180), requires_fuse]

ROWS = 30_000
WRITER = Path(__file__).with_name("crashwriter.py")


def master(generation: int) -> pa.Table:
    """Keyed rows; each generation edits 300, drops 10 and adds 10."""
    keys = list(range(generation * 10, ROWS + generation * 10))
    values = [k % 97 + (generation if k % 100 == 0 else 0) for k in keys]
    names = [f"lot {k}" for k in keys]
    return pa.table({"bbl": pa.array(keys, pa.int64()), "v": values, "name": names})


def commit_through_tx(mountpoint: Path, name: str, table: pa.Table) -> str:
    tx = mountpoint / "@main" / ".tx" / name
    tx.mkdir()
    table.to_pandas().to_parquet(tx / "nyc_master.parquet", index=False)  # as a pipeline does
    assert "staged nyc_master.parquet" in (tx / ".control").read_text()
    (tx / ".control").write_text(f"commit {name}\n")
    status = (tx / ".control").read_text().split()
    assert status[0] == "committed", status
    return status[1]


def test_tail_f_sees_each_commit_once_with_its_counts(tmp_path: Path) -> None:
    store = tmp_path / "store"
    repo = udrfs.Repo.init(store)
    repo.write_table("nyc_master", master(0), key="bbl")
    with mounted(store, tmp_path / "mnt") as m:
        changes = m.path / "@main" / ".changes"
        tail = subprocess.Popen(
            ["tail", "-f", "-n", "+1", "-s", "0.1", str(changes)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            snapshots = [changes.read_bytes()]
            commits = [commit_through_tx(m.path, f"night{n}", master(n)) for n in (1, 2)]
            assert udrfs.Repo(store).commit(commits[0]).pending_counts == ("nyc_master",)

            def shows_both() -> bool:
                snapshots.append(changes.read_bytes())
                return commits[1].encode() in snapshots[-1]

            wait_for(shows_both, timeout=60)
            # The file only grew: every read is a prefix of the next, no line rewritten.
            for before, after in itertools.pairwise(snapshots):
                assert after.startswith(before)
            assert tail.stdout is not None
            seen = [json.loads(tail.stdout.readline()) for _ in range(3)]
        finally:
            tail.kill()
            tail.wait()
    assert [e["commit"] for e in seen[1:]] == commits
    for n, entry in enumerate(seen[1:], start=1):
        (change,) = entry["tables"]
        assert "counts_pending" not in change
        edited = len([k for k in range(n * 10, ROWS + (n - 1) * 10) if k % 100 == 0])
        got = (change["rows_added"], change["rows_removed"], change["rows_modified"])
        assert got == (10, 10, edited)
    lines = snapshots[-1].decode().splitlines()
    assert lines == [json.dumps(e, separators=(", ", ": "), ensure_ascii=False) for e in seen]


def test_the_mount_completes_counts_a_killed_writer_left(tmp_path: Path) -> None:
    store = tmp_path / "store"
    udrfs.Repo.init(store)
    env = dict(os.environ)
    writer = [sys.executable, str(WRITER), str(store), "1"]
    assert subprocess.run(writer, env=env).returncode == 0
    env[ENV] = "after-ref"
    assert subprocess.run(writer, env=env).returncode == -signal.SIGKILL
    head = udrfs.Repo(store).head()
    assert not udrfs.Repo(store).store.counts.exists(head)
    with mounted(store, tmp_path / "mnt") as m:
        changes = m.path / "@main" / ".changes"
        wait_for(lambda: head.encode() in changes.read_bytes(), timeout=60)
        last = json.loads(changes.read_text().splitlines()[-1])
    assert [(c["rows_added"], c["rows_modified"]) for c in last["tables"]] == [(1, 20_001)] * 3
    assert udrfs.Repo(store).store.counts.exists(head)
    assert udrfs.Repo(store).fsck().ok
