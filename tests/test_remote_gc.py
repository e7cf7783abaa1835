"""`udr gc` on a store that lives on S3 (real SeaweedFS on loopback): the local collector's
two phases and fail-closed rules over the remote's objects (docs/architecture.md, "Garbage
collection"). Grace periods here are a second or two."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from stores import GRACE, age, blobs, every_version_digest, listing, wait_reached
from stores import seeded_table as table

import udrfs
from udrfs import _native
from udrfs.catalog.crashpoints import ENV, PAUSE_ENV, PAUSE_FILE_ENV
from udrfs.catalog.gc import GcRefused
from udrfs.catalog.liveness import UnsafeToCollect
from udrfs.errors import GcInterruptedError
from udrfs.store.remote_store import CACHE_DIR_ENV

WRITER = Path(__file__).parent / "crashwriter.py"


def keys(url: str, prefix: str) -> set[str]:
    return {b.key for b in blobs(url).list(prefix)}


def remote(url: str, cache: Path) -> udrfs.Repo:
    return udrfs.Repo(url, cache_dir=cache)


@pytest.fixture
def url(repo: udrfs.Repo, s3_url: str) -> str:
    """A store on the remote with `t` v1 and v2 on main."""
    repo.write_table("t", table(1))
    repo.write_table("t", table(2))
    repo.add_remote("origin", s3_url)
    repo.push("origin")
    return s3_url


def orphan_a_branch(url: str, cache: Path) -> udrfs.Repo:
    """A branch written on the remote, then deleted there: its pack and objects are garbage."""
    store = remote(url, cache)
    store.create_branch("side")
    store.write_table("s", table(9), branch="side")
    store.delete_branch("side")
    return store


def run_gc(url: str, cache: Path, env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    """`udr gc` on the remote in another process (held or killed at a point by `env`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "udrfs.cli.main", "gc", url, "--grace", "1s", "--force", *options],
        env={**os.environ, CACHE_DIR_ENV: str(cache), **env},
        stdout=subprocess.PIPE,
        text=True,
    )


def orphan_and_condemn(url: str, cache: Path) -> str:
    """A branch written and deleted on the remote, its files condemned a grace period ago;
    returns its head commit."""
    store = remote(url, cache / "writer")
    store.create_branch("side")
    store.write_table("s", table(9), branch="side")
    head = store.head("side")
    store.delete_branch("side")
    age()
    condemned = {f.kind for f in remote(url, cache / "gc").gc(grace=GRACE, force=True).condemned}
    assert {"pack", "object"} <= condemned
    age()
    return head


def marked(url: str) -> set[str]:
    """The files the remote's record marks as being deleted by a run."""
    record = json.loads(blobs(url).get("gc/condemned.json"))
    return {k for k, v in record["files"].items() if "deleting" in v}


def run_writer(url: str, cache: Path, rounds: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), url, str(rounds)],
        env={**os.environ, CACHE_DIR_ENV: str(cache), **env},
        stdout=subprocess.PIPE,
        text=True,
    )


def assert_intact(url: str, cache: Path, expected: dict[tuple[str, str, int], str]) -> None:
    """Every version any ref reaches reads byte-exact from the remote, and a clone is clean."""
    fresh = remote(url, cache / "fresh")
    assert every_version_digest(fresh) == expected
    clone = udrfs.Repo.clone(url, cache / "clone")
    assert clone.fsck().ok


def test_two_runs_condemn_then_delete_what_a_deleted_branch_left(url: str, tmp_path: Path) -> None:
    store = orphan_a_branch(url, tmp_path / "writer")
    expected = every_version_digest(store)
    before = keys(url, "packs/")
    age()
    collector = remote(url, tmp_path / "gc")
    first = collector.gc(grace=GRACE, force=True)
    assert first.deleted == [] and first.condemned
    assert {f.kind for f in first.condemned} == {"pack", "object"}
    record = json.loads(blobs(url).get("gc/condemned.json"))
    assert set(record["files"]) == {f.key for f in first.condemned}
    assert all(v["etag"] for v in record["files"].values())
    assert keys(url, "packs/") == before  # nothing deleted yet
    age()
    second = collector.gc(grace=GRACE, force=True)
    assert {f.key for f in second.deleted} == {f.key for f in first.condemned}
    gone = {f.key for f in second.deleted if f.kind == "pack"}
    assert gone and keys(url, "packs/") == before - gone
    assert not keys(url, "locks/")  # the lock went with the run
    assert json.loads(blobs(url).get("gc/condemned.json"))["files"] == {}
    assert_intact(url, tmp_path, expected)
    # The writer's cache still held the deleted packs' fragments: it forgets them and its
    # next version reads back whole.
    store.write_table("t", table(9))
    assert every_version_digest(remote(url, tmp_path / "writer"))[("main", "t", 3)]
    assert_intact(url, tmp_path / "after", every_version_digest(store))


def test_a_dry_run_says_what_would_go_and_changes_nothing(url: str, tmp_path: Path) -> None:
    orphan_a_branch(url, tmp_path / "writer")
    age()
    before = listing(url)
    result = remote(url, tmp_path / "gc").gc(grace=GRACE, dry_run=True)
    assert result.dry_run and result.condemned and result.reclaimable_bytes > 0
    assert listing(url) == before


def test_a_writer_held_between_uploading_and_moving_the_ref_across_a_run_commits_intact_data(
    url: str, tmp_path: Path
) -> None:
    assert run_writer(url, tmp_path / "w", 1, {}).wait(60) == 0
    release = tmp_path / "go"
    writer = run_writer(
        url, tmp_path / "w", 1, {PAUSE_ENV: "after-flush", PAUSE_FILE_ENV: str(release)}
    )
    wait_reached(release, writer)
    time.sleep(1.2)
    held = remote(url, tmp_path / "gc").gc(grace=4.0, force=True)  # the new packs are young
    assert held.condemned == [] and held.deleted == []
    release.touch()
    assert writer.wait(60) == 0
    fresh = remote(url, tmp_path / "fresh")
    assert fresh.read_table("a", columns=["gen"]).column("gen")[0].as_py() == 2
    assert_intact(url, tmp_path, every_version_digest(fresh))


def test_a_commit_whose_chunks_sit_in_a_condemned_pack_uploads_them_again(
    url: str, tmp_path: Path
) -> None:
    """A transaction deduplicates against an orphaned pack, which the collector condemns
    before the commit: the commit uploads those chunks again, and the deleting run that
    follows removes the condemned pack without losing a byte."""
    orphan_a_branch(url, tmp_path / "writer")  # its pack holds table(9)'s chunks
    orphans = keys(url, "packs/")
    age()
    writer = remote(url, tmp_path / "w")
    tx = writer.transaction(message="reuses an orphaned pack")
    tx.write_table("u", table(9))
    uploaded_before = keys(url, "packs/")
    collector = remote(url, tmp_path / "gc")
    condemned = {f.key for f in collector.gc(grace=GRACE, force=True).condemned}
    condemned_packs = {k for k in condemned if k.startswith("packs/")}
    assert condemned_packs and condemned_packs <= orphans
    tx.commit()
    assert keys(url, "packs/") - uploaded_before  # the chunks went up again, in a new pack
    age()
    deleted = {f.key for f in collector.gc(grace=GRACE, force=True).deleted}
    assert {k for k in deleted if k.startswith("packs/")} == condemned_packs
    fresh = remote(url, tmp_path / "fresh")
    assert fresh.read_table("u").equals(table(9))
    assert_intact(url, tmp_path, every_version_digest(fresh))


def test_a_second_gc_at_once_is_refused_naming_the_lock(url: str, tmp_path: Path) -> None:
    lock = json.dumps({"host": "cron-1", "pid": 4242, "time": time.time()}).encode()
    assert blobs(url).put_if_absent("locks/gc.lock", lock)
    collector = remote(url, tmp_path / "gc")
    with pytest.raises(GcRefused, match=r"locks/gc\.lock exists \(taken by pid 4242 on cron-1"):
        collector.gc(grace=GRACE)
    collector.gc(grace=GRACE, dry_run=True)  # a dry run takes no lock
    out = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", "gc", url, "--grace", "1s"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "a later run takes it over once it was not renewed for 900 s" in out.stderr
    assert blobs(url).get("locks/gc.lock") == lock  # the other run's lock is left alone
    blobs(url).delete("locks/gc.lock")
    collector.gc(grace=GRACE)


def test_a_damaged_fragment_on_the_remote_aborts_with_nothing_deleted(
    url: str, tmp_path: Path
) -> None:
    orphan_a_branch(url, tmp_path / "writer")
    age()
    collector = remote(url, tmp_path / "gc")
    assert collector.gc(grace=GRACE, force=True).condemned
    age()  # the next run would delete
    live = collector.store.chunks.pack_of(collector.version("t").chunks.ids()[0])
    fragment = f"index/{live}.idx"
    data = bytearray(blobs(url).get(fragment))
    data[60] ^= 1
    blobs(url).put(fragment, bytes(data))
    before = listing(url)
    with pytest.raises(UnsafeToCollect, match=r"checksum mismatch.*nothing was deleted"):
        collector.gc(grace=GRACE, force=True)
    out = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", "gc", url, "--grace", "1s", "--force"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 5 and "nothing was deleted" in out.stderr
    assert listing(url) == before


def test_the_cli_prints_the_same_summary_as_for_a_local_store(url: str, tmp_path: Path) -> None:
    orphan_a_branch(url, tmp_path / "writer")
    age()
    env = {**os.environ, CACHE_DIR_ENV: str(tmp_path / "cli")}
    cmd = [sys.executable, "-m", "udrfs.cli.main", "gc", url, "--grace", "1s", "--force"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "deleted 0 file(s), 0 B"
    assert lines[1].startswith("condemned 3 file(s), ")
    assert lines[-1].startswith("store ") and ", unreferenced " in lines[-1]
    age()
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert len(doc["deleted"]) == 3 and doc["deleted_bytes"] > 0


@pytest.mark.slow
def test_gc_in_a_loop_beside_writers_and_a_reader_loses_nothing(url: str, tmp_path: Path) -> None:
    """Two writers commit through the API (versions that share chunks with older ones and with
    branches they delete), a reader reads every version, and the collector and repack run in
    a loop with a short grace, for a bounded time; then every version any ref reaches reads
    byte-exact and a clone of the remote is clean."""
    grace = 2.0
    deadline = time.monotonic() + 25
    errors: list[BaseException] = []
    deleted: list[int] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                while time.monotonic() < deadline and not errors:
                    fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    def writer(n: int) -> Callable[[], None]:
        store = remote(url, tmp_path / f"w{n}")
        rng = random.Random(n)
        rounds = iter(range(10**6))

        def step() -> None:
            i = next(rounds)
            if i % 3 == 2:  # garbage: a branch written, then deleted
                store.create_branch(f"tmp{n}-{i}")
                store.write_table(f"w{n}", table(rng.randrange(8)), branch=f"tmp{n}-{i}")
                store.delete_branch(f"tmp{n}-{i}")
            else:  # seeds repeat: chunks shared with older and with deleted versions
                store.write_table(f"w{n}", table(rng.randrange(8)))

        return step

    reader_store = remote(url, tmp_path / "reader")

    def read_every_version() -> None:
        for t in reader_store.tables():
            for info in reader_store.versions(t.name):
                with reader_store.open(t.name, info.version) as f:
                    digest = _native.blake3_hex(f.read())
                assert digest == reader_store.version(t.name, info.version).blake3

    collector = remote(url, tmp_path / "gc")

    def collect() -> None:
        deleted.append(len(collector.gc(grace=grace, force=True).deleted))
        time.sleep(0.3)

    repacker = remote(url, tmp_path / "repack")
    repacked: list[int] = []

    def repack() -> None:
        repacked.append(len(repacker.repack(max_unused=0.05).rewritten))
        time.sleep(0.5)

    threads = [
        threading.Thread(target=guarded(fn))
        for fn in (writer(0), writer(1), read_every_version, collect, repack)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(deleted) > 0, "the collector deleted nothing: the test proved nothing"
    assert sum(repacked) > 0, "repack rewrote nothing: the test proved nothing"
    fresh = remote(url, tmp_path / "fresh")
    digests = every_version_digest(fresh)
    for (branch, name, version), digest in digests.items():
        assert digest == fresh.version(name, version, branch).blake3
    assert len(digests) > 6
    assert_intact(url, tmp_path, digests)


def test_a_push_after_the_remote_collected_a_branch_sends_what_it_lost(
    repo: udrfs.Repo, url: str, tmp_path: Path
) -> None:
    """A store pushes a branch; the branch is deleted on the remote and collected there. The
    store still remembers having sent its commits and packs: a push of a branch that reaches
    them sends them again, so the remote reads it whole."""
    repo.create_branch("side")
    repo.write_table("s", table(7), branch="side")
    repo.push("origin", ["side"])
    remote(url, tmp_path / "other").delete_branch("side")
    collector = remote(url, tmp_path / "gc")
    age()
    assert collector.gc(grace=GRACE, force=True).condemned
    age()
    assert collector.gc(grace=GRACE, force=True).deleted
    repo.create_branch("again", from_="side")
    repo.push("origin", ["again"])
    fresh = remote(url, tmp_path / "fresh")
    assert fresh.read_table("s", branch="again").equals(table(7))
    assert_intact(url, tmp_path, every_version_digest(fresh))


def test_a_branch_recreated_at_a_condemned_commit_waits_for_the_run_deleting_it(
    url: str, tmp_path: Path
) -> None:
    """A run has checked a condemned file and is about to DELETE it (an object store has no
    rename) when a new branch names the commit that file belongs to: the branch's files are
    written again only once that run is over, so its DELETE cannot remove the new copy."""
    head = orphan_and_condemn(url, tmp_path)
    release = tmp_path / "go"
    run = run_gc(url, tmp_path / "gc2", {PAUSE_ENV: "gc-checked", PAUSE_FILE_ENV: str(release)})
    wait_reached(release, run)
    assert marked(url)  # the record says what the run is deleting
    failures: list[BaseException] = []

    def recreate() -> None:
        try:
            remote(url, tmp_path / "w").create_branch("side", from_=head)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    writer = threading.Thread(target=recreate)
    writer.start()
    writer.join(2.0)
    assert writer.is_alive()  # waiting for the run, not writing into its window
    release.touch()
    assert run.wait(60) == 0
    writer.join(60)
    assert not writer.is_alive() and not failures, failures
    assert not marked(url)
    fresh = remote(url, tmp_path / "fresh")
    assert fresh.read_table("s", branch="side").equals(table(9))
    assert_intact(url, tmp_path, every_version_digest(fresh))


def test_a_killed_runs_lock_is_taken_over_once_stale_and_its_deletion_finished(
    url: str, tmp_path: Path
) -> None:
    head = orphan_and_condemn(url, tmp_path)
    expected = every_version_digest(remote(url, tmp_path / "before"))
    killed = run_gc(url, tmp_path / "gc2", {ENV: "gc-checked"}, "--stale-lock", "2s")
    assert killed.wait(60) == -signal.SIGKILL
    assert keys(url, "locks/") == {"locks/gc.lock"} and marked(url)
    collector = remote(url, tmp_path / "gc3")
    with pytest.raises(GcRefused, match=r"renewed \d+ s ago"):
        collector.gc(grace=GRACE, force=True)  # not stale yet
    # A writer that needs a file the killed run marked waits, then says what to do.
    with pytest.raises(GcInterruptedError, match=r"stopped renewing the lock .* run `udr gc"):
        remote(url, tmp_path / "w").create_branch("side", from_=head)
    assert "heads/side" not in remote(url, tmp_path / "w2").branches()
    time.sleep(2.2)
    result = collector.gc(grace=GRACE, force=True)
    assert result.notes and "took over the lock" in result.notes[0]
    assert result.deleted and not marked(url)
    assert keys(url, "locks/") == set()
    assert_intact(url, tmp_path, expected)


def test_a_running_collector_renews_its_lock(url: str, tmp_path: Path) -> None:
    orphan_and_condemn(url, tmp_path)
    release = tmp_path / "go"
    held = run_gc(
        url,
        tmp_path / "gc2",
        {PAUSE_ENV: "gc-after-record", PAUSE_FILE_ENV: str(release)},
        "--stale-lock",
        "2s",
    )
    wait_reached(release, held)
    time.sleep(3.0)  # longer than its stale age: only renewal keeps it
    with pytest.raises(GcRefused, match="another `udr gc` is running"):
        remote(url, tmp_path / "gc3").gc(grace=GRACE, force=True)
    release.touch()
    assert held.wait(60) == 0
    assert keys(url, "locks/") == set()
