"""Commits straight to a store on S3 (`udrfs.Repo("s3://...").write_table(...)`, transactions)
against a real S3 server (SeaweedFS on loopback): packs first, objects next, the branch last
by compare-and-swap; two machines (separate cache directories, separate processes) racing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3server import S3Server
from tcpproxy import SwitchableProxy
from test_remote_read import Pushed

import udrfs
from udrfs.errors import ConflictError, RemoteError


@pytest.fixture
def pushed(repo: udrfs.Repo, s3_url: str, nyc_parquet_dir: Path) -> Pushed:
    repo.import_file("weather", nyc_parquet_dir / "weather.parquet")
    repo.add_remote("origin", s3_url)
    repo.push("origin")
    return Pushed(repo, s3_url)


def test_a_commit_to_the_remote_is_read_elsewhere_and_a_clone_is_clean(
    pushed: Pushed, tmp_path: Path, nyc_parquet_dir: Path
) -> None:
    writer = udrfs.Repo(pushed.url, cache_dir=tmp_path / "a")
    weather = pq.read_table(nyc_parquet_dir / "weather.parquet")
    commit = writer.write_table("weather", weather.slice(0, 1000), message="first 1000 hours")
    assert commit is not None
    reader = udrfs.Repo(pushed.url, cache_dir=tmp_path / "b")
    assert reader.head() == commit.id
    assert reader.read_table("weather").equals(weather.slice(0, 1000))
    assert [v.rows for v in reader.versions("weather")] == [weather.num_rows, 1000]
    pushed.repo.pull("origin")
    assert pushed.repo.read_table("weather").equals(weather.slice(0, 1000))
    clone = udrfs.Repo.clone(pushed.url, tmp_path / "clone")
    assert clone.fsck().ok


def test_a_new_version_uploads_only_the_chunks_the_remote_lacks(
    pushed: Pushed, tmp_path: Path, nyc_parquet_dir: Path
) -> None:
    flights = pq.read_table(nyc_parquet_dir / "flights.parquet")
    first = udrfs.Repo(pushed.url, cache_dir=tmp_path / "first")
    first.write_table("flights", flights)
    size = first.version("flights").size
    # Another machine, which has read nothing: it learns the remote's chunks from its index.
    other = udrfs.Repo(pushed.url, cache_dir=tmp_path / "other")
    other.write_table("flights", flights.slice(100))  # 100 rows fewer
    uploaded = sum(p.stat().st_size for p in (tmp_path / "other").rglob("*.pack"))
    assert uploaded < size / 4
    assert other.read_table("flights").equals(flights.slice(100))


def test_two_machines_writing_one_table_one_wins_the_other_gets_a_conflict(
    pushed: Pushed, tmp_path: Path
) -> None:
    a = udrfs.Repo(pushed.url, cache_dir=tmp_path / "a")
    b = udrfs.Repo(pushed.url, cache_dir=tmp_path / "b")
    ta, tb = a.transaction(message="a"), b.transaction(message="b")
    ta.write_table("scores", pa.table({"k": [1], "v": [1.0]}))
    tb.write_table("scores", pa.table({"k": [1], "v": [2.0]}))
    ta.commit()
    with pytest.raises(ConflictError, match="scores changed on main"):
        tb.commit()
    assert b.read_table("scores").to_pydict() == {"k": [1], "v": [1.0]}


def test_two_machines_writing_different_tables_both_land(pushed: Pushed, tmp_path: Path) -> None:
    a = udrfs.Repo(pushed.url, cache_dir=tmp_path / "a")
    b = udrfs.Repo(pushed.url, cache_dir=tmp_path / "b")
    ta, tb = a.transaction(message="a"), b.transaction(message="b")
    ta.write_table("left", pa.table({"x": [1]}))
    tb.write_table("right", pa.table({"y": [2]}))
    ta.commit()
    tb.commit()  # rebased over a's commit: a different table
    assert [t.name for t in a.tables()] == ["left", "right", "weather"]
    assert [c.message for c in a.log(limit=2)] == ["b", "a"]


RACER = """
import json, sys, pyarrow as pa, udrfs
from udrfs.catalog.transaction import retry_on_conflict
from udrfs.errors import ConflictError
url, cache, name, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
repo = udrfs.Repo(url, cache_dir=cache)
conflicts = 0
for n in range(rounds):
    def attempt():
        with repo.transaction(message=f"{name} {n}") as tx:
            tx.write_table(name, pa.table({"n": [n]}))
            tx.write_table("shared", pa.table({"writer": [name], "n": [n]}))
            tx.write_table("left", pa.table({"tag": [f"{name} {n}"]}))
            tx.write_table("right", pa.table({"tag": [f"{name} {n}"]}))
    def counted():
        global conflicts
        try:
            attempt()
        except ConflictError:
            conflicts += 1
            raise
    retry_on_conflict(counted, attempts=50, base_delay=0.01)
print(json.dumps({"conflicts": conflicts}))
"""


@pytest.mark.timeout(300)
def test_machines_racing_in_separate_processes_lose_no_update_and_never_tear_a_pair(
    pushed: Pushed, tmp_path: Path
) -> None:
    rounds = 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, pushed.url, str(tmp_path / name), name, str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("east", "west")
    ]
    # A third machine reads the pair each commit writes together: never one without the other.
    reader = udrfs.Repo(pushed.url, cache_dir=tmp_path / "reader")
    seen: set[str] = set()
    deadline = time.monotonic() + 240
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        commit = reader.head()
        if commit not in seen and "left" in reader.commit(commit).tables:
            seen.add(commit)
            left = reader.read_table("left", branch=commit).column("tag")[0].as_py()
            right = reader.read_table("right", branch=commit).column("tag")[0].as_py()
            assert left == right, (commit, left, right)
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _out, err in outs]
    assert seen  # the reader saw commits while they landed
    for name in ("east", "west"):
        assert len(reader.versions(name)) == rounds  # every round landed, none lost
    assert len(reader.versions("shared")) == 2 * rounds
    # Each lost race was a ConflictError, retried (any other error fails its process).
    print("conflicts retried:", [json.loads(out)["conflicts"] for out, _err in outs])
    assert udrfs.Repo.clone(pushed.url, tmp_path / "clone").fsck().ok


@pytest.mark.timeout(180)
def test_a_server_lost_during_a_commit_leaves_the_branch_where_it_was(
    pushed: Pushed, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UDR_REMOTE_TIMEOUT", "5")
    proxy = SwitchableProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    try:
        writer = udrfs.Repo(pushed.url, endpoint=proxy.endpoint, cache_dir=tmp_path / "a")
        before = writer.head()
        assert writer.store.chunks.outbox.engine  # the remote's index is read while it is up
        proxy.down()
        with pytest.raises(RemoteError):
            writer.write_table("big", pa.table({"x": list(range(200_000))}))
        proxy.up()
        assert udrfs.Repo(pushed.url, cache_dir=tmp_path / "b").head() == before
        commit = writer.write_table("big", pa.table({"x": list(range(200_000))}))
        assert commit is not None and writer.head() == commit.id
        assert udrfs.Repo.clone(pushed.url, tmp_path / "clone").fsck().ok
    finally:
        proxy.down()


def test_udr_import_commits_to_a_store_url(
    pushed: Pushed, s3_server: S3Server, tmp_path: Path, nyc_parquet_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    where = ["--endpoint", s3_server.endpoint, "--cache-dir", str(tmp_path / "cache")]
    source = nyc_parquet_dir / "planes.parquet"
    command = [sys.executable, "-m", "udrfs.cli.main", "import", pushed.url, "planes"]
    done = subprocess.run(
        [*command, str(source), *where],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    reader = udrfs.Repo(pushed.url, cache_dir=tmp_path / "reader")
    assert reader.open("planes").read() == source.read_bytes()


def test_late_row_counts_of_a_remote_commit_are_kept_on_the_remote(
    pushed: Pushed, tmp_path: Path
) -> None:
    writer = udrfs.Repo(pushed.url, cache_dir=tmp_path / "a")
    rows = pa.table({"k": range(5000), "v": [float(i) for i in range(5000)]})
    writer.write_table("scores", rows, key="k")
    edited = rows.set_column(1, "v", pa.array([i + float(i % 100 == 0) for i in range(5000)]))
    commit = writer.write_table("scores", edited, key="k")
    assert commit is not None and commit.pending_counts == ("scores",)
    (change,) = writer.counted(commit.id).changes
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (0, 0, 50)
    # Another machine, with nothing cached, reads the record the writer put on the remote.
    other = udrfs.Repo(pushed.url, cache_dir=tmp_path / "b")
    record = other.store.counts.get(commit.id)
    assert record is not None and record["tables"]["scores"]["rows_modified"] == 50
    (seen,) = other.counted(commit.id, wait=False).changes
    assert not seen.counts_pending and seen.rows_modified == 50


def test_packs_written_here_leave_the_cache_directory_past_its_share_and_read_back(
    pushed: Pushed, tmp_path: Path, nyc_parquet_dir: Path
) -> None:
    """Uploaded packs stay in the cache directory only up to a quarter of the cache's bound;
    past it they are deleted there, and what they held is read from the remote (by the
    process that wrote them too)."""
    flights = pq.read_table(nyc_parquet_dir / "flights.parquet")
    cache = tmp_path / "w"
    writer = udrfs.Repo(pushed.url, cache_dir=cache, cache_size="4MB")
    writer.write_table("flights", flights)
    writer.write_table("flights", flights.slice(1000))
    written = writer.version("flights", 1).size + writer.version("flights", 2).size
    kept = sum(p.stat().st_size for p in cache.glob("stores/*/packs/??/*.pack"))
    assert written > 4 * 2**20 and kept <= 2**20
    assert writer.read_table("flights").equals(flights.slice(1000))
    assert writer.read_table("flights", version=1).equals(flights)
    reader = udrfs.Repo(pushed.url, cache_dir=tmp_path / "r")
    assert reader.read_table("flights", version=1).equals(flights)
