"""`.tx` commits are atomic for readers and for a daemon killed at any moment, and open
transactions survive a restart."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import (
    Mount,
    SampleStore,
    make_store,
    mounted,
    write_version,
)
from mounting import requires_fuse as needs_fuse

import udrfs
from udrfs import _native
from udrfs.catalog.crashpoints import ENV

pytestmark = [pytest.mark.mount, pytest.mark.timeout(240), needs_fuse]

TABLES = ("nyc_master", "nyc_city_owned", "nyc_dob_permits")
# Three tables of ~4 MB each: enough chunks and packs for a commit with something to flush.
BIG_ROWS = 200_000


@pytest.fixture
def store(tmp_path: Path) -> SampleStore:
    return make_store(tmp_path, {t: 1 for t in TABLES}, rows=1000)


@contextlib.contextmanager
def daemon(store: Path, mountpoint: Path, crashpoint: str | None = None) -> Iterator[Mount]:
    """A foreground daemon, optionally set to SIGKILL itself at a step of every commit."""
    env = dict(os.environ)
    env.pop(ENV, None)
    if crashpoint:
        env[ENV] = crashpoint
    with mounted(store, mountpoint, env=env) as mount:
        yield mount


def sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)


def stage_big_tables(mount: Mount, work: Path, name: str, generation: int = 0) -> dict[str, str]:
    """mkdir .tx/NAME and cp a large new version of every table into it; their BLAKE3s.

    Each generation's files differ from every other's, so a landed commit is told apart."""
    tx = mount.at("@main", ".tx", name)
    tx.mkdir()
    hashes = {}
    for i, table in enumerate(TABLES):
        source = write_version(work / f"{table}.parquet", table, 50 + 10 * generation + i, BIG_ROWS)
        assert sh(f"cp {source} {tx / (table + '.parquet')}").returncode == 0
        hashes[table] = _native.blake3_file(str(source))
    return hashes


def assert_whole_commit(store: Path, before: str, hashes: dict[str, str]) -> bool:
    """The branch is at the commit before, or at one holding every staged table; fsck is
    clean. Returns whether the new commit landed."""
    repo = udrfs.Repo(store)
    report = repo.fsck()
    assert report.ok, report.problems
    landed = {t: repo.version(t).blake3 == h for t, h in hashes.items()}
    assert len(set(landed.values())) == 1, f"some tables new, some old: {landed}"
    if not any(landed.values()):
        assert repo.head() == before
    return all(landed.values())


@pytest.mark.parametrize("point", ["after-flush", "after-commit-object", "after-ref"])
def test_daemon_killed_during_a_commit_leaves_the_branch_whole(
    store: SampleStore, tmp_path: Path, point: str
) -> None:
    mountpoint = tmp_path / "mnt"
    before = store.catalog().head("main")
    with daemon(store.path, mountpoint, crashpoint=point) as mount:
        hashes = stage_big_tables(mount, tmp_path, "nightly")
        done = sh(f"echo 'commit nightly' > {mount.at('@main', '.tx', 'nightly', '.control')}")
        assert done.returncode != 0  # the daemon died answering it
        assert mount.process.wait(30) == -signal.SIGKILL
    landed = assert_whole_commit(store.path, before, hashes)
    assert landed == (point == "after-ref")

    with daemon(store.path, mountpoint) as mount:
        tx = mount.at("@main", ".tx", "nightly")
        status = (tx / ".control").read_text().splitlines()[0]
        if landed:
            # Killed after the commit point: the transaction shows as committed, once.
            assert status == f"committed {store.catalog().head('main')}"
        else:
            # Killed before it: the transaction is still open, its files exactly as written.
            assert status == "open"
            for table, digest in hashes.items():
                assert _native.blake3_file(str(tx / f"{table}.parquet")) == digest
            assert sh(f"echo 'commit again' > {tx / '.control'}").returncode == 0
            assert_whole_commit(store.path, before, hashes)
        assert sh(f"rm -r {tx}").returncode == 0


def test_daemon_killed_at_random_moments_of_commits(store: SampleStore, tmp_path: Path) -> None:
    """Kills land before the `commit` request, inside it or after its answer; the delay
    moves towards the commit until a kill lands inside one (the case this test is for)."""
    mountpoint = tmp_path / "mnt"
    rng = random.Random(4)
    low, high = 0.0, 0.2
    moments: list[str] = []
    for round_ in range(10):
        before = store.catalog().head("main")
        with daemon(store.path, mountpoint) as mount:
            for leftover in os.listdir(mount.at("@main", ".tx")):
                assert sh(f"rm -r {mount.at('@main', '.tx', leftover)}").returncode == 0
            hashes = stage_big_tables(mount, tmp_path / f"r{round_}", f"round{round_}", round_)
            control = mount.at("@main", ".tx", f"round{round_}", ".control")
            echo = subprocess.Popen(
                ["bash", "-c", f"echo commit > {control}"], stderr=subprocess.PIPE, text=True
            )
            delay = rng.uniform(low, high)
            time.sleep(delay)
            mount.process.kill()
            mount.process.wait()
            _, err = echo.communicate(timeout=30)
        landed = assert_whole_commit(store.path, before, hashes)
        if echo.returncode == 0:
            moments.append("after")  # answered: the commit had landed
            assert landed
            high = delay
        elif "echo: write error" in err:
            moments.append("inside")  # the request reached the daemon, no answer came
        else:
            moments.append("before")  # the control file could not even be opened
            assert not landed, err
            low = delay
        if "inside" in moments and len(moments) >= 3:
            break
    assert "inside" in moments, f"no kill landed inside a commit request: {moments}"


def test_open_transaction_survives_a_restart(store: SampleStore, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    with daemon(store.path, mountpoint) as mount:
        tx = mount.at("@main", ".tx", "overnight")
        tx.mkdir()
        source = write_version(tmp_path / "m.parquet", "nyc_master", 8, 5000)
        assert sh(f"cp {source} {tx / 'nyc_master.parquet'}").returncode == 0
        (tx / "nyc_city_owned.parquet").write_bytes(b"not parquet")
        assert sh(f"echo 'drop nyc_dob_permits' > {tx / '.control'}").returncode == 0
    with daemon(store.path, mountpoint) as mount:
        tx = mount.at("@main", ".tx", "overnight")
        assert sorted(os.listdir(tx)) == [
            ".control",
            "nyc_city_owned.parquet",
            "nyc_master.parquet",
        ]
        assert (tx / "nyc_master.parquet").read_bytes() == source.read_bytes()
        assert (tx / "nyc_city_owned.parquet").read_bytes() == b"not parquet"
        text = (tx / ".control").read_text()
        assert "drop nyc_dob_permits" in text and "invalid nyc_city_owned.parquet" in text
        assert sh(f"echo commit > {tx / '.control'}").returncode != 0  # still not Parquet
        os.unlink(tx / "nyc_city_owned.parquet")
        assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    tables = {t.name: t.version for t in udrfs.Repo(store.path).tables()}
    assert tables == {"nyc_master": 2, "nyc_city_owned": 1}


def test_a_file_being_written_when_the_daemon_dies_blocks_the_commit(
    store: SampleStore, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    source = write_version(tmp_path / "m.parquet", "nyc_master", 8, 50_000)
    with daemon(store.path, mountpoint) as mount:
        tx = mount.at("@main", ".tx", "cut")
        tx.mkdir()
        write_version(tx / "nyc_city_owned.parquet", "nyc_city_owned", 9, 1000)
        assert "staged nyc_city_owned" in (tx / ".control").read_text()  # durable from here
        with open(tx / "nyc_master.parquet", "wb") as half_written:
            half_written.write(source.read_bytes()[:100_000])
            half_written.flush()
            mount.process.kill()
            mount.process.wait()
            with contextlib.suppress(OSError):
                half_written.close()
    with daemon(store.path, mountpoint) as mount:
        tx = mount.at("@main", ".tx", "cut")
        assert sh(f"echo commit > {tx / '.control'}").returncode != 0
        status = (tx / ".control").read_text().splitlines()[0]
        assert "nyc_master.parquet is incomplete" in status
        assert sh(f"cp {source} {tx / 'nyc_master.parquet'}").returncode == 0
        done = sh(f"echo commit > {tx / '.control'}")
        assert done.returncode == 0, (tx / ".control").read_text()
    repo = udrfs.Repo(store.path)
    assert repo.version("nyc_master").blake3 == _native.blake3_file(str(source))
    assert repo.version("nyc_city_owned").version == 2


def test_daemon_killed_while_staging_a_file_keeps_the_others(
    store: SampleStore, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    first = write_version(tmp_path / "a.parquet", "nyc_city_owned", 9, 1000)
    with daemon(store.path, mountpoint) as mount:
        tx = mount.at("@main", ".tx", "staging")
        tx.mkdir()
        assert sh(f"cp {first} {tx / 'nyc_city_owned.parquet'}").returncode == 0
        (tx / ".control").read_text()  # waits until it is staged
    with daemon(store.path, mountpoint, crashpoint="after-manifests") as mount:
        tx = mount.at("@main", ".tx", "staging")
        second = write_version(tmp_path / "b.parquet", "nyc_master", 9, 1000)
        sh(f"cp {second} {tx / 'nyc_master.parquet'}")  # staged at release: the daemon dies
        assert mount.process.wait(30) == -signal.SIGKILL
    with daemon(store.path, mountpoint) as mount:
        tx = mount.at("@main", ".tx", "staging")
        text = (tx / ".control").read_text()
        assert "staged nyc_city_owned.parquet" in text
        assert "nyc_master.parquet is incomplete" in text
        os.unlink(tx / "nyc_master.parquet")
        assert sh(f"echo commit > {tx / '.control'}").returncode == 0
    assert udrfs.Repo(store.path).version("nyc_master").version == 1


def test_readers_never_see_one_table_new_and_the_other_old(
    store: SampleStore, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    reader_code = """
import os, sys, time
a, b, stop = sys.argv[1:4]
seen, polls, bad = set(), 0, []
def version(path):
    return int(os.readlink(path)[1:-len(".parquet")])
while not os.path.exists(stop):
    first_a = version(a); then_b = version(b)
    first_b = version(b); then_a = version(a)
    if then_b < first_a or then_a < first_b:
        bad.append((first_a, then_b, first_b, then_a))
    seen.add(then_b); polls += 1
print(polls, len(seen), bad)
"""
    with daemon(store.path, mountpoint) as mount:
        latest = [mount.at("@main", t, "latest.parquet") for t in TABLES[:2]]
        stop_file = tmp_path / "stop"
        reader = subprocess.Popen(
            [sys.executable, "-c", reader_code, str(latest[0]), str(latest[1]), str(stop_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            for n in range(2, 32):  # both tables at version n after each commit
                tx = mount.at("@main", ".tx", f"gen{n}")
                tx.mkdir()
                for table in TABLES[:2]:
                    write_version(tx / f"{table}.parquet", table, n, 300)
                assert sh(f"echo commit > {tx / '.control'}").returncode == 0
                assert sh(f"rm -r {tx}").returncode == 0
        finally:
            stop_file.touch()
            out, _ = reader.communicate(timeout=30)
        polls, versions, bad = out.split(" ", 2)
        assert bad.strip() == "[]", bad
        assert int(polls) > 30 and int(versions) > 5  # the reader really saw commits land


def test_two_writers_in_threads_commit_disjoint_tables(store: SampleStore, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    errors: list[str] = []

    def writer(table: str) -> None:
        for n in range(5):
            tx = mountpoint / "@main" / ".tx" / f"{table}-{n}"
            tx.mkdir()
            write_version(tx / f"{table}.parquet", table, 100 + n, 200)
            result = sh(f"echo commit > {tx / '.control'}")
            if result.returncode != 0:
                errors.append((tx / ".control").read_text())
            sh(f"rm -r {tx}")

    with daemon(store.path, mountpoint):
        threads = [threading.Thread(target=writer, args=(t,)) for t in TABLES[:2]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    versions = {t.name: t.version for t in udrfs.Repo(store.path).tables()}
    assert versions == {"nyc_master": 6, "nyc_city_owned": 6, "nyc_dob_permits": 1}


def _first_line(control: Path) -> str:
    return control.read_text().splitlines()[0]


def test_commit_cut_off_after_the_ref_moved_reads_as_committed_across_restarts(
    store: SampleStore, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    before = store.catalog().head("main")
    with daemon(store.path, mountpoint, crashpoint="after-ref") as mount:
        tx = mount.at("@main", ".tx", "nightly")
        tx.mkdir()
        write_version(tx / "nyc_master.parquet", "nyc_master", 9, 1000)
        assert sh(f"echo 'commit nightly' > {tx / '.control'}").returncode != 0
        assert mount.process.wait(30) == -signal.SIGKILL
    landed = store.catalog().head("main")
    assert landed != before
    for _ in range(2):  # the outcome outlives every later daemon, killed or not
        with daemon(store.path, mountpoint) as mount:
            tx = mount.at("@main", ".tx", "nightly")
            assert _first_line(tx / ".control") == f"committed {landed}"
            # A script retrying the commit it never heard back from commits nothing again.
            assert sh(f"echo 'commit nightly' > {tx / '.control'}").returncode == 0
            assert store.catalog().head("main") == landed
            assert _first_line(tx / ".control") == f"committed {landed}"
            mount.process.kill()
            mount.process.wait()
    with daemon(store.path, mountpoint) as mount:
        tx = mount.at("@main", ".tx", "nightly")
        assert sh(f"rm -r {tx}").returncode == 0
        assert os.listdir(mount.at("@main", ".tx")) == []
    assert store.catalog().staging.names("main") == []
    assert [c.id for c in store.catalog().first_parent_history("main")][:2] == [landed, before]


def test_outcome_of_a_command_stays_readable_after_the_daemon_dies(
    store: SampleStore, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    with daemon(store.path, mountpoint) as mount:
        done = mount.at("@main", ".tx", "done")
        done.mkdir()
        write_version(done / "nyc_master.parquet", "nyc_master", 9, 1000)
        assert sh(f"echo commit > {done / '.control'}").returncode == 0
        committed = _first_line(done / ".control")
        lost = mount.at("@main", ".tx", "lost")
        lost.mkdir()
        write_version(lost / "nyc_city_owned.parquet", "nyc_city_owned", 9, 1000)
        assert sh(f"echo bogus > {lost / '.control'}").returncode != 0
        refused = _first_line(lost / ".control")
        mount.process.kill()
        mount.process.wait()
    assert committed == f"committed {store.catalog().head('main')}"
    assert refused.startswith("error: unknown command")
    with daemon(store.path, mountpoint) as mount:
        assert sorted(os.listdir(mount.at("@main", ".tx"))) == ["done", "lost"]
        assert _first_line(mount.at("@main", ".tx", "done", ".control")) == committed
        assert _first_line(mount.at("@main", ".tx", "lost", ".control")) == refused
