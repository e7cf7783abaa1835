"""Writing through the mount of a store on S3 (real SeaweedFS on loopback): `.tx` stages on
this machine (in the cache directory) and a commit goes straight to the remote, the branch
moved last by compare-and-swap; two mounts with their own cache directories are two
machines."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mounting import Mount, mounted, requires_fuse
from test_remote_read import Pushed

import udrfs
from udrfs import _native
from udrfs.catalog.crashpoints import ENV

pytestmark = [pytest.mark.mount, requires_fuse, pytest.mark.timeout(300)]


@pytest.fixture
def pushed(repo: udrfs.Repo, s3_url: str, nyc_parquet_dir: Path) -> Pushed:
    repo.import_file("planes", nyc_parquet_dir / "planes.parquet")
    repo.import_file("airlines", nyc_parquet_dir / "airlines.parquet")
    repo.add_remote("origin", s3_url)
    repo.push("origin")
    return Pushed(repo, s3_url)


def machine(
    pushed: Pushed, root: Path, env: dict[str, str] | None = None
) -> AbstractContextManager[Mount]:
    """A mount of the remote store with its own cache directory: another machine."""
    return mounted(pushed.url, root / "mnt", "--cache-dir", str(root / "cache"), env=env)


def echo(line: str, tx: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"echo {line!r} > {tx / '.control'}"], capture_output=True, text=True
    )


def status(tx: Path) -> str:
    return (tx / ".control").read_text()


def test_files_copied_into_tx_commit_to_the_remote_in_one_commit(
    pushed: Pushed, tmp_path: Path, nyc_parquet_dir: Path
) -> None:
    weather = nyc_parquet_dir / "weather.parquet"
    planes = pq.read_table(nyc_parquet_dir / "planes.parquet").slice(0, 100)
    with machine(pushed, tmp_path / "a") as m:
        tx = m.at("@main", ".tx", "night")
        tx.mkdir()
        subprocess.run(["cp", str(weather), str(tx / "weather.parquet")], check=True)
        pq.write_table(planes, tx / "planes.parquet")
        done = echo("commit night 1", tx)
        assert done.returncode == 0, done.stderr + status(tx)
        assert status(tx).startswith("committed ")
        # The mount shows it, byte-exact.
        shown = m.at("@main", "weather", "v1.parquet")
        assert _native.blake3_file(str(shown)) == _native.blake3_file(str(weather))
    other = udrfs.Repo(pushed.url, cache_dir=tmp_path / "b")
    last = other.log(limit=1)[0]
    assert last.message == "night 1" and set(last.tables) >= {"weather", "planes"}
    assert other.open("weather").read() == weather.read_bytes()
    assert other.read_table("planes").equals(planes)
    pushed.repo.pull("origin")
    assert pushed.repo.fsck().ok


def test_two_machines_committing_through_their_mounts_one_wins_per_table(
    pushed: Pushed, tmp_path: Path, nyc_parquet_dir: Path
) -> None:
    planes = pq.read_table(nyc_parquet_dir / "planes.parquet")
    airlines = pq.read_table(nyc_parquet_dir / "airlines.parquet")
    with machine(pushed, tmp_path / "a") as a, machine(pushed, tmp_path / "b") as b:
        first, second = a.at("@main", ".tx", "first"), b.at("@main", ".tx", "second")
        first.mkdir()
        second.mkdir()
        pq.write_table(planes.slice(0, 10), first / "planes.parquet")
        pq.write_table(planes.slice(10, 10), second / "planes.parquet")
        pq.write_table(airlines.slice(0, 5), second / "airlines.parquet")
        won = echo("commit first", first)
        lost = echo("commit second", second)
        assert won.returncode == 0, status(first)
        assert lost.returncode != 0
        assert status(second).startswith("conflict: planes changed on main")
        assert echo("abort", second).returncode == 0
        # Without the contested table, the other machine's commit lands (rebased).
        third = b.at("@main", ".tx", "third")
        third.mkdir()
        pq.write_table(airlines.slice(0, 5), third / "airlines.parquet")
        again = echo("commit second again", third)
        assert again.returncode == 0, status(third)
    fresh = udrfs.Repo(pushed.url, cache_dir=tmp_path / "c")
    assert [c.message for c in fresh.log(limit=2)] == ["second again", "first"]
    assert fresh.read_table("planes").equals(planes.slice(0, 10))
    assert fresh.read_table("airlines").equals(airlines.slice(0, 5))


@pytest.mark.parametrize("point", ["after-flush", "after-commit-object"])
def test_a_daemon_killed_while_committing_leaves_the_remote_at_the_old_commit_and_the_tx(
    pushed: Pushed, tmp_path: Path, nyc_parquet_dir: Path, point: str
) -> None:
    """Killed before the ref moved: the remote's branch is where it was, and the named
    transaction, staged on this machine, commits after a remount."""
    before = udrfs.Repo(pushed.url, cache_dir=tmp_path / "x").head()
    weather = nyc_parquet_dir / "weather.parquet"
    with machine(pushed, tmp_path / "a", env={**os.environ, ENV: point}) as m:
        tx = m.at("@main", ".tx", "night")
        tx.mkdir()
        subprocess.run(["cp", str(weather), str(tx / "weather.parquet")], check=True)
        echo("commit night", tx)
        m.process.wait(60)
        assert m.process.returncode == -signal.SIGKILL
    assert udrfs.Repo(pushed.url, cache_dir=tmp_path / "y").head() == before
    with machine(pushed, tmp_path / "a") as m:
        tx = m.at("@main", ".tx", "night")
        assert "weather.parquet" in os.listdir(tx)
        done = echo("commit night", tx)
        assert done.returncode == 0, status(tx)
    after = udrfs.Repo(pushed.url, cache_dir=tmp_path / "z")
    assert after.head() != before
    assert after.open("weather").read() == weather.read_bytes()
    clone = udrfs.Repo.clone(pushed.url, tmp_path / "clone")
    assert clone.fsck().ok
