"""`udr repack`: live chunks of wasteful and small packs move to new packs; nothing is deleted,
every live version keeps its exact bytes, and the old packs become reclaimable."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mounting import SampleStore, make_store

import udrfs
from udrfs import _native
from udrfs.catalog.liveness import find_live
from udrfs.catalog.repack import keepers
from udrfs.errors import EXIT_USAGE
from udrfs.store.packs import local_packs


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


@pytest.fixture
def churned(tmp_path: Path) -> SampleStore:
    """Three tables with 6, 5 and 3 versions, one pack per commit; the older versions of `a`
    and `b` expired, so their packs are mostly unused."""
    store = make_store(tmp_path, {"a": 6, "b": 5, "c": 3}, rows=4000)
    udrfs.Repo(store.path).expire(keep_last=2)
    return store


def store_files(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and "locks" not in p.parts
    }


def live_packs(repo: udrfs.Repo) -> int:
    return len(
        set(
            keepers(
                local_packs(repo.path), find_live(repo.store, repo.catalog.history).chunks
            ).values()
        )
    )


def collect(repo: udrfs.Repo, packs: list[str]) -> None:
    """What the collector does to the packs a repack rewrote."""
    for pack in packs:
        (repo.path / "packs" / pack[:2] / f"{pack}.pack").unlink()
        (repo.path / "index" / f"{pack}.idx").unlink()


def assert_every_kept_version_reads_exactly(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    released = repo.retention.released()
    checked = 0
    for (branch, table, version), source in store.sources.items():
        info = repo.versions(table, branch)[version - 1]
        if info.manifest_id in released:
            continue
        with repo.open(table, version, branch) as f:
            data = f.read()
        assert _native.blake3_hex(data) == _native.blake3_file(str(source)), (table, version)
        checked += 1
    assert checked


def test_repack_keeps_every_live_version_byte_exact_and_reduces_live_packs(
    churned: SampleStore,
) -> None:
    repo = udrfs.Repo(churned.path)
    before = live_packs(repo)
    result = repo.repack()
    assert result.live_packs_before == before
    assert result.rewritten and result.new_packs and result.copied_bytes > 0
    assert live_packs(udrfs.Repo(churned.path)) == result.live_packs_after < before
    collect(repo, result.rewritten)
    fresh = udrfs.Repo(churned.path)
    report = fresh.fsck()
    assert report.ok, report.problems
    assert_every_kept_version_reads_exactly(churned)


def test_repack_deletes_nothing(churned: SampleStore) -> None:
    before = store_files(churned.path)
    result = udrfs.Repo(churned.path).repack()
    after = store_files(churned.path)
    assert set(before) <= set(after)
    assert all(after[name] == size for name, size in before.items())
    assert {f"packs/{p[:2]}/{p}.pack" for p in result.new_packs} <= set(after) - set(before)


def test_dry_run_changes_nothing(churned: SampleStore) -> None:
    before = store_files(churned.path)
    result = udrfs.Repo(churned.path).repack(dry_run=True)
    assert result.rewritten and not result.new_packs
    assert store_files(churned.path) == before


def test_a_second_repack_finds_nothing_to_do(churned: SampleStore) -> None:
    repo = udrfs.Repo(churned.path)
    first = repo.repack()
    collect(repo, first.rewritten)
    again = udrfs.Repo(churned.path).repack()
    assert again.rewritten == [] and again.new_packs == []


def test_max_bytes_caps_a_run(churned: SampleStore) -> None:
    repo = udrfs.Repo(churned.path)
    everything = repo.repack(dry_run=True)
    capped = repo.repack(max_bytes=everything.copied_bytes // 3)
    assert 0 < capped.copied_bytes <= everything.copied_bytes // 3
    assert capped.left_for_later > 0
    assert len(capped.rewritten) < len(everything.rewritten)


def test_a_damaged_live_chunk_stops_repack_before_anything_is_written(
    churned: SampleStore,
) -> None:
    repo = udrfs.Repo(churned.path)
    plan = repo.repack(dry_run=True)
    live = find_live(repo.store, repo.catalog.history).chunks
    keeper = keepers(local_packs(churned.path), live)
    chunk_id, pack = next((c, p) for c, p in keeper.items() if p in plan.rewritten and live[c] > 64)
    path = churned.path / "packs" / pack[:2] / f"{pack}.pack"
    data = bytearray(path.read_bytes())
    at = data.index(bytes.fromhex(chunk_id)) + 44 + 5  # inside the chunk's stored bytes
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    before = store_files(churned.path)
    with pytest.raises(udrfs.CorruptObjectError):
        udrfs.Repo(churned.path).repack()
    assert store_files(churned.path) == before


def test_readers_keep_reading_while_repack_runs(churned: SampleStore) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_forever() -> None:
        try:
            while not stop.is_set():
                assert_every_kept_version_reads_exactly(churned)
        except BaseException as exc:  # reported below
            errors.append(exc)

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        result = udrfs.Repo(churned.path).repack()
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    assert result.new_packs


def test_cli_repack(churned: SampleStore) -> None:
    done = udr("repack", str(churned.path), "--dry-run", "--json")
    assert done.returncode == 0
    planned = json.loads(done.stdout)
    assert planned["dry_run"] and planned["rewritten"]
    done = udr("repack", str(churned.path), "--max-unused", "5%")
    assert done.returncode == 0 and done.stdout.startswith("rewrote ")
    assert "reclaimable by `udr gc`" in done.stdout
    done = udr("repack", str(churned.path), "--max-unused", "150%")
    assert done.returncode == EXIT_USAGE and "not a share" in done.stderr
    done = udr("repack", str(churned.path), "--max-bytes", "lots")
    assert done.returncode == EXIT_USAGE and "not a size" in done.stderr
    assert udr("fsck", str(churned.path)).returncode == 0
