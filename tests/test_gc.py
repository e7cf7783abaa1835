"""`udr gc`: two phases a grace period apart, fail closed, safe beside writers and readers
(docs/architecture.md, "Garbage collection"). Grace periods here are a second or two."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from stores import GRACE, age, wait_reached

import udrfs
from udrfs.catalog.crashpoints import ENV, GC_POINTS, PAUSE_ENV, PAUSE_FILE_ENV
from udrfs.catalog.gc import GcRefused
from udrfs.catalog.liveness import UnsafeToCollect, find_live
from udrfs.catalog.specs import parse_duration
from udrfs.store.condemned import read_record

TESTS = Path(__file__).parent
WRITER = TESTS / "crashwriter.py"


# Imports a table of 400,000 random rows (a few MB) into the store named by argv[1].
IMPORT_BIG = """
import os, sys
import pyarrow as pa
import udrfs
rows = 400_000
udrfs.Repo(sys.argv[1]).write_table(
    "big2", pa.table({"k": range(rows), "r": os.urandom(rows * 8)[::8]})
)
"""


def ENV_OF(point: str) -> dict[str, str]:
    return {**os.environ, ENV: point}


def du(store: Path) -> int:
    """Bytes the store takes on disk, as `du` counts them."""
    out = subprocess.run(["du", "-sb", str(store)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def table(n: int, rows: int = 30_000) -> pa.Table:
    return pa.table({"k": range(rows), "v": [n * 1_000_003 + i for i in range(rows)]})


def run_writer(store: Path, rounds: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(store), str(rounds)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )


def assert_generation(repo: udrfs.Repo, n: int) -> None:
    """The crash writer's tables all read back whole at generation `n`; fsck is clean."""
    fresh = udrfs.Repo(repo.path)
    assert fresh.fsck().ok
    for name in ("a", "b", "c"):
        m = fresh.version(name)
        assert udrfs._native.blake3_hex(fresh.read(m, 0, m.size)) == m.blake3
        assert fresh.read_table(name, columns=["gen"]).column("gen")[0].as_py() == n


def files_under(root: Path, pattern: str) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.glob(pattern)}


def assert_every_version_reads(repo: udrfs.Repo, expected: dict[tuple[str, int], bytes]) -> None:
    fresh = udrfs.Repo(repo.path)
    for (name, version), digest in expected.items():
        m = fresh.version(name, version)
        data = fresh.read(m, 0, m.size)
        assert udrfs._native.blake3_hex(data) == m.blake3 == digest.decode()


def snapshot(repo: udrfs.Repo) -> dict[tuple[str, int], bytes]:
    out = {}
    for t in repo.tables():
        for v in repo.table_versions(t.name):
            out[(t.name, v.version)] = repo.version(t.name, v.version).blake3.encode()
    return out


def test_an_aborted_import_is_condemned_then_deleted_and_the_store_shrinks_back(
    repo: udrfs.Repo,
) -> None:
    rows = 400_000  # a few MB, so that the store's directories weigh little in `du`
    repo.write_table("big", pa.table({"k": range(rows), "r": os.urandom(rows * 8)[::8]}))
    assert run_writer(repo.path, 2, {}).wait(60) == 0
    expected = snapshot(repo)
    before = du(repo.path)
    # A writer killed mid-import, after its packs were made durable.
    crashed = subprocess.run(
        [sys.executable, "-c", IMPORT_BIG, str(repo.path)], env=ENV_OF("after-flush")
    )
    assert crashed.returncode == -signal.SIGKILL
    grown = du(repo.path)
    assert grown > before * 1.5
    age()
    first = repo.gc(grace=GRACE, force=True)
    assert first.deleted == [] and first.condemned, "the first run only condemns"
    assert "pack" in {f.kind for f in first.condemned}
    assert du(repo.path) >= grown  # nothing deleted yet
    age()
    second = repo.gc(grace=GRACE, force=True)
    assert {f.key for f in second.deleted} == {f.key for f in first.condemned}
    assert second.deleted_bytes > 0
    assert du(repo.path) <= before * 1.05
    assert repo.fsck().ok
    assert_every_version_reads(repo, expected)


def test_young_garbage_is_left_alone(repo: udrfs.Repo) -> None:
    repo.write_table("t", table(1))
    repo.store.chunks.ingest_bytes(os.urandom(200_000))
    repo.store.chunks.flush()
    result = repo.gc(grace=3600)
    assert result.condemned == [] and result.deleted == []
    assert result.reclaimable_bytes > 200_000


def test_dry_run_says_what_would_go_and_changes_nothing(repo: udrfs.Repo) -> None:
    repo.write_table("t", table(1))
    repo.store.chunks.ingest_bytes(os.urandom(200_000))
    (garbage,) = repo.store.chunks.flush()
    age()
    before = sorted(str(p) for p in repo.path.rglob("*"))
    dry = repo.gc(grace=GRACE, dry_run=True)
    assert [f.key for f in dry.condemned] == [f"packs/{garbage[:2]}/{garbage}.pack"]
    assert dry.condemned_bytes > 200_000
    assert sorted(str(p) for p in repo.path.rglob("*")) == before
    repo.gc(grace=GRACE, force=True)
    age()
    dry = repo.gc(grace=GRACE, dry_run=True, force=True)
    assert [f.key for f in dry.deleted] == [f"packs/{garbage[:2]}/{garbage}.pack"]
    assert (repo.path / dry.deleted[0].key).exists()


def test_cli_gc_prints_json_and_a_summary(repo: udrfs.Repo) -> None:
    repo.write_table("t", table(1))
    repo.store.chunks.ingest_bytes(os.urandom(100_000))
    repo.store.chunks.flush()
    age()
    udr = [sys.executable, "-m", "udrfs.cli.main"]
    out = subprocess.run(
        [*udr, "gc", str(repo.path), "--grace", "1s", "--dry-run"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "would condemn 1 file(s)" in out.stdout
    out = subprocess.run(
        [*udr, "gc", str(repo.path), "--grace", "1s", "--json", "--force"],
        capture_output=True,
        text=True,
    )
    doc = json.loads(out.stdout)
    assert len(doc["condemned"]) == 1 and doc["deleted"] == []
    age()
    out = subprocess.run(
        [*udr, "gc", str(repo.path), "--grace", "1s"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "--force" in out.stderr  # more than half of this store
    assert read_record(repo.path)  # still condemned, nothing deleted
    out = subprocess.run(
        [*udr, "gc", str(repo.path), "--grace", "1s", "--force"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "deleted 1 file(s)" in out.stdout
    assert repo.fsck().ok


def test_a_writer_never_deduplicates_against_a_condemned_pack(repo: udrfs.Repo) -> None:
    repo.write_table("base", table(0))
    data = table(7)
    # An import that never committed leaves the chunks of `data` in an unreferenced pack.
    with repo.transaction() as tx:
        tx.write_table("t", data)
        tx.abort()
    repo.flush_chunks()
    age()
    first = repo.gc(grace=GRACE, force=True)
    condemned = {f.key for f in first.condemned if f.kind == "pack"}
    assert condemned
    # The same data written now: its chunks go to a new pack, not the condemned one.
    writer = udrfs.Repo(repo.path)
    writer.write_table("t", data)
    age()
    second = repo.gc(grace=GRACE, force=True)
    assert {f.key for f in second.deleted if f.kind == "pack"} == condemned
    fresh = udrfs.Repo(repo.path)
    assert fresh.read_table("t").equals(data)
    assert fresh.fsck().ok


def test_a_pack_reused_before_it_was_condemned_is_uncondemned_once_referenced(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    """A writer that deduplicated against an old unreferenced pack, then was held between
    its flush and its ref for longer than one gc run (less than the grace period), commits
    intact data, and the next run un-condemns the pack instead of deleting it."""
    assert run_writer(repo.path, 1, {}).wait(60) == 0
    crashed = run_writer(repo.path, 1, {ENV: "after-flush"})  # generation 2's chunks, orphaned
    assert crashed.wait(60) == -signal.SIGKILL
    orphans = files_under(repo.path, "packs/??/*.pack") - set()
    grace = 3.0
    age(grace)
    release = tmp_path / "go"
    paused = run_writer(
        repo.path, 1, {PAUSE_ENV: "after-flush", PAUSE_FILE_ENV: str(release)}
    )  # generation 2 again: the same chunks, found in the orphaned pack
    wait_reached(release, paused)
    during = repo.gc(grace=grace, force=True)  # condemns the pack the writer reuses
    reused = {f.key for f in during.condemned if f.kind == "pack"}
    assert reused and reused <= orphans
    release.touch()
    assert paused.wait(60) == 0
    age(grace)
    after = repo.gc(grace=grace, force=True)
    assert reused <= set(after.uncondemned)
    assert not reused & {f.key for f in after.deleted}
    assert all((repo.path / k).exists() for k in reused)
    assert_generation(repo, 2)


def test_a_writer_held_between_flush_and_ref_across_a_run_commits_intact_data(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    assert run_writer(repo.path, 1, {}).wait(60) == 0
    release = tmp_path / "go"
    writer = run_writer(repo.path, 1, {PAUSE_ENV: "after-flush", PAUSE_FILE_ENV: str(release)})
    wait_reached(release, writer)
    time.sleep(1.0)
    held = repo.gc(grace=4.0, force=True)  # the writer's new packs are younger than the grace
    assert held.condemned == [] and held.deleted == []
    release.touch()
    assert writer.wait(60) == 0
    assert_generation(repo, 2)


def test_a_condemned_object_written_again_is_kept(repo: udrfs.Repo) -> None:
    doc = {"kind": "note", "format": 1, "text": "written by an aborted writer"}
    object_id = repo.store.objects.put(doc)
    age()
    first = repo.gc(grace=GRACE, force=True)
    assert f"objects/{object_id[:2]}/{object_id}" in {f.key for f in first.condemned}
    before = repo.store.objects.path(object_id).stat().st_ino
    udrfs.Repo(repo.path).store.objects.put(doc)  # a writer needs the same object again
    assert repo.store.objects.path(object_id).stat().st_ino != before
    age()
    second = repo.gc(grace=GRACE, force=True)
    assert f"objects/{object_id[:2]}/{object_id}" in second.uncondemned
    assert repo.store.objects.exists(object_id)


def test_a_branch_recreated_at_a_condemned_commit_during_a_deleting_run_reads_intact(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    """A deleted branch's head, condemned with everything only it reached, is named again by
    a new branch while a run that is about to delete those files holds: what the commit
    reaches is written again first, so the run deletes only the old copies."""
    repo.write_table("t", table(1))
    repo.create_branch("side")
    repo.write_table("s", table(2), branch="side")
    head = repo.head("side")
    repo.delete_branch("side")
    age()
    condemned = {f.kind for f in repo.gc(grace=GRACE, force=True).condemned}
    assert {"pack", "object"} <= condemned
    age()
    release = tmp_path / "go"
    run = subprocess.Popen(
        [sys.executable, "-m", "udrfs.cli.main", "gc", str(repo.path), "--grace", "1s", "--force"],
        env={**os.environ, PAUSE_ENV: "gc-after-record", PAUSE_FILE_ENV: str(release)},
    )
    wait_reached(release, run)  # its record is written: it deletes next
    repo.create_branch("side", from_=head)
    release.touch()
    assert run.wait(60) == 0
    fresh = udrfs.Repo(repo.path)
    assert fresh.read_table("s", branch="side").equals(table(2))
    assert fresh.fsck().ok


def test_a_fetch_of_a_branch_whose_files_a_run_is_deleting_here_keeps_them(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    """A pushed branch is deleted here and its files condemned; fetching it back finds every
    object already here (nothing downloaded), so the fetch writes again what is condemned
    before the tracking ref names it, while a run that is about to delete it holds."""
    repo.write_table("t", table(1))
    repo.create_branch("side")
    repo.write_table("s", table(2), branch="side")
    repo.add_remote("origin", str(tmp_path / "remote"))
    repo.push("origin", ["main", "side"])
    repo.store.refs.delete("remotes", "origin/side")
    repo.delete_branch("side")
    age()
    assert {"pack", "object"} <= {f.kind for f in repo.gc(grace=GRACE, force=True).condemned}
    age()
    release = tmp_path / "go"
    run = subprocess.Popen(
        [sys.executable, "-m", "udrfs.cli.main", "gc", str(repo.path), "--grace", "1s", "--force"],
        env={**os.environ, PAUSE_ENV: "gc-after-record", PAUSE_FILE_ENV: str(release)},
    )
    wait_reached(release, run)
    repo.fetch("origin")
    release.touch()
    assert run.wait(60) == 0
    fresh = udrfs.Repo(repo.path)
    assert fresh.read_table("s", branch="origin/side").equals(table(2))
    assert fresh.fsck().ok


@pytest.mark.parametrize("point", GC_POINTS)
def test_gc_killed_at_each_step_leaves_a_consistent_store(repo: udrfs.Repo, point: str) -> None:
    assert run_writer(repo.path, 3, {}).wait(60) == 0
    repo.create_branch("side")
    repo.write_table("t", table(3), branch="side")
    for crash in ("after-flush", "after-manifests", "after-commit-object"):
        assert run_writer(repo.path, 1, {ENV: crash}).wait(60) == -signal.SIGKILL
    repo.write_table("t", table(4), branch="side")
    repo.delete_branch("side")  # its commits become garbage too
    expected = snapshot(repo)
    age()
    repo.gc(grace=GRACE, force=True)
    age()
    gc = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", "gc", str(repo.path), "--grace", "1s", "--force"],
        env={**os.environ, ENV: point},
    )
    assert gc.returncode == -signal.SIGKILL
    fresh = udrfs.Repo(repo.path)
    report = fresh.fsck()
    assert report.ok, report.problems
    assert_every_version_reads(fresh, expected)
    # The next run finishes the job.
    fresh.gc(grace=GRACE, force=True)
    after = udrfs.Repo(repo.path)
    assert after.fsck().ok
    assert not list(repo.path.rglob(".tmp-gc-*"))
    assert_every_version_reads(after, expected)


def test_a_second_gc_at_once_is_refused(repo: udrfs.Repo) -> None:
    import fcntl

    lock = repo.path / "locks" / "gc.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(GcRefused, match="another `udr gc` is running"):
            repo.gc(grace=GRACE)
        repo.gc(grace=GRACE, dry_run=True)  # a dry run takes no lock
    finally:
        os.close(fd)


def test_a_clock_skewed_against_the_storage_is_refused(
    repo: udrfs.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import udrfs.catalog.gc as gc

    real = time.time
    monkeypatch.setattr(gc.time, "time", lambda: real() + 3600)
    with pytest.raises(GcRefused, match="clock differs from the storage's by -36"):
        repo.gc(grace=GRACE)
    monkeypatch.setattr(gc.time, "time", real)
    assert not (repo.path / "gc").exists()


def _garbage_and_age(repo: udrfs.Repo) -> None:
    repo.write_table("t", table(1))
    repo.store.chunks.ingest_bytes(os.urandom(100_000))
    repo.store.chunks.flush()
    age()
    repo.gc(grace=GRACE, force=True)
    age()


def _unchanged(repo: udrfs.Repo, before: set[str]) -> None:
    assert {p.relative_to(repo.path).as_posix() for p in repo.path.rglob("*")} == before


def test_a_damaged_live_object_aborts_with_nothing_deleted(repo: udrfs.Repo) -> None:
    _garbage_and_age(repo)
    head = repo.head()
    path = repo.store.objects.path(head)
    path.write_bytes(b"not zstd")
    before = {p.relative_to(repo.path).as_posix() for p in repo.path.rglob("*")}
    with pytest.raises(UnsafeToCollect, match=f"commit {head}.*nothing was deleted"):
        udrfs.Repo(repo.path).gc(grace=GRACE, force=True)
    _unchanged(repo, before)
    out = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", "gc", str(repo.path), "--grace", "1s"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 5
    assert out.stderr.startswith("udr: error: commit") and "nothing was deleted" in out.stderr
    _unchanged(repo, before)


def test_a_damaged_fragment_or_transaction_aborts_with_nothing_deleted(repo: udrfs.Repo) -> None:
    _garbage_and_age(repo)
    tx = repo.store.staging_dir / "tx" / "main" / "nightly.json"
    tx.parent.mkdir(parents=True)
    tx.write_text("{ torn")
    before = {p.relative_to(repo.path).as_posix() for p in repo.path.rglob("*")}
    with pytest.raises(UnsafeToCollect, match=r"nightly\.json is damaged"):
        repo.gc(grace=GRACE, force=True)
    _unchanged(repo, before)
    tx.unlink()
    live_pack = repo.version("t").chunks.ids()[0]
    fragment = repo.path / "index" / f"{repo.store.chunks.pack_of(live_pack)}.idx"
    data = bytearray(fragment.read_bytes())
    data[60] ^= 1
    fragment.write_bytes(bytes(data))
    before = {p.relative_to(repo.path).as_posix() for p in repo.path.rglob("*")}
    with pytest.raises(UnsafeToCollect, match="checksum mismatch"):
        repo.gc(grace=GRACE, force=True)
    _unchanged(repo, before)


def test_a_live_chunk_in_no_pack_aborts(repo: udrfs.Repo) -> None:
    _garbage_and_age(repo)
    pack = repo.store.chunks.pack_of(repo.version("t").chunks.ids()[0])
    (repo.path / "index" / f"{pack}.idx").unlink()
    with pytest.raises(UnsafeToCollect, match=r"live chunk.* in no pack"):
        repo.gc(grace=GRACE, force=True)
    assert (repo.path / "packs" / pack[:2] / f"{pack}.pack").exists()


def test_expired_versions_release_their_chunks_but_heads_are_kept(repo: udrfs.Repo) -> None:
    def distinct(n: int) -> pa.Table:  # versions that share no chunk
        return pa.table({"k": range(n * 10**6, n * 10**6 + 30_000), "v": [n] * 30_000})

    repo.write_table("other", distinct(9))  # holds what every file shares (b"PAR1", ...)
    for n in range(1, 4):
        repo.write_table("t", distinct(n))
    versions = {v.version: repo.version("t", v.version).id for v in repo.table_versions("t")}
    v1_chunks = set(repo.version("t", 1).chunks.ids()) - set(repo.version("t", 3).chunks.ids())
    v1_chunks -= set(repo.version("t", 2).chunks.ids())
    # Each version's chunks in their own pack (one write each), so v1's pack is reclaimable.
    v1_pack = repo.store.chunks.pack_of(sorted(v1_chunks)[0])
    expired = repo.path / "expired"
    expired.mkdir()
    for number in (1, 3):  # v3 is the head: it is kept whatever the record says
        record = {
            "manifest": versions[number],
            "table": "t",
            "version": number,
            "branch": "main",
            "expired": "2026-12-01T00:00:00Z",
            "policy": "udr expire --keep-last 1",
        }
        (expired / f"{versions[number]}.json").write_text(json.dumps(record))
    live = find_live(repo.store, repo.catalog.history)
    assert versions[1] in live.released and versions[3] not in live.released
    assert not v1_chunks & set(live.chunks)
    age()
    repo.gc(grace=GRACE, force=True)
    age()
    result = repo.gc(grace=GRACE, force=True)
    assert f"packs/{v1_pack[:2]}/{v1_pack}.pack" in {f.key for f in result.deleted}
    fresh = udrfs.Repo(repo.path)
    assert fresh.fsck().ok, fresh.fsck().problems
    assert [v.version for v in fresh.table_versions("t")] == [1, 2, 3]  # history stays
    assert fresh.read_table("t").equals(distinct(3))
    assert fresh.read_table("t", version=2).equals(distinct(2))


def test_stats_show_reclaimable_bytes(repo: udrfs.Repo) -> None:
    repo.write_table("t", table(1))
    assert repo.stats().reclaimable_bytes == 0
    repo.store.chunks.ingest_bytes(os.urandom(100_000))
    repo.store.chunks.flush()
    assert repo.stats().reclaimable_bytes > 100_000


def test_durations_parse() -> None:
    assert parse_duration("24h").total_seconds() == 86400
    assert parse_duration("90m").total_seconds() == 5400
    assert parse_duration("2.5").total_seconds() == 2.5
    with pytest.raises(udrfs.errors.UsageError, match="not a duration"):
        parse_duration("soon")


def test_a_writer_held_while_the_pack_it_reused_is_condemned_writes_the_chunks_again(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    """Held between its ingest of every table and its commit while the collector condemns
    the orphaned pack it deduplicated against: the commit writes those chunks again (of each
    table: their keys differ), and the delete phase that follows removes the condemned pack
    without losing a byte."""
    assert run_writer(repo.path, 1, {}).wait(60) == 0
    assert run_writer(repo.path, 1, {ENV: "after-flush"}).wait(60) == -signal.SIGKILL
    orphans = files_under(repo.path, "packs/??/*.pack")
    age()
    release = tmp_path / "go"
    writer = run_writer(repo.path, 1, {PAUSE_ENV: "before-commit", PAUSE_FILE_ENV: str(release)})
    wait_reached(release, writer)
    condemned = {f.key for f in repo.gc(grace=GRACE, force=True).condemned if f.kind == "pack"}
    assert condemned and condemned <= orphans
    release.touch()
    assert writer.wait(60) == 0
    age()
    deleted = {f.key for f in repo.gc(grace=GRACE, force=True).deleted if f.kind == "pack"}
    assert deleted == condemned
    assert_generation(repo, 2)


def test_a_pack_a_live_writer_is_still_writing_is_never_collected(repo: udrfs.Repo) -> None:
    repo.write_table("t", table(1))
    writer = udrfs.Repo(repo.path)
    writer.store.chunks.ingest_bytes(os.urandom(300_000))  # open pack, not flushed
    (open_pack,) = files_under(repo.path, "packs/.tmp-*")
    age()
    first = repo.gc(grace=GRACE, force=True)
    assert open_pack not in {f.key for f in first.condemned}
    age()
    repo.gc(grace=GRACE, force=True)
    assert (repo.path / open_pack).exists()
    assert writer.store.chunks.flush()  # the writer can still make it durable
    assert repo.fsck().ok


def test_a_directory_that_cannot_be_listed_aborts_with_nothing_deleted(repo: udrfs.Repo) -> None:
    _garbage_and_age(repo)
    tags = repo.path / "refs" / "tags"
    tags.rmdir()
    tags.write_text("not a directory")  # listing it fails, as an unreadable directory does
    before = {p.relative_to(repo.path).as_posix() for p in repo.path.rglob("*")}
    with pytest.raises(UnsafeToCollect, match=r"cannot list .*refs/tags.*nothing was deleted"):
        repo.gc(grace=GRACE, force=True)
    _unchanged(repo, before)
