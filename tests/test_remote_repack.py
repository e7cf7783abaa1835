"""`udr repack` on a store that lives on S3 (real SeaweedFS on loopback): the local rules over
the remote's refs, record and packs; live chunks are read back from the remote, checked, and
uploaded in new packs; nothing is deleted, and two `udr gc` runs then reclaim the old packs
(docs/architecture.md, "Repack")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stores import GRACE, age, blobs, listing
from stores import seeded_table as table

import udrfs
from udrfs import _native
from udrfs.store.keys import pack_key
from udrfs.store.remote_store import CACHE_DIR_ENV


def remote(url: str, cache: Path) -> udrfs.Repo:
    return udrfs.Repo(url, cache_dir=cache)


def kept_digests(repo: udrfs.Repo, released: frozenset[str]) -> dict[tuple[str, str, int], str]:
    """(branch, table, version) -> BLAKE3 of the bytes read back, for every version any
    branch reaches but those in `released` (the versions whose data `udr expire` released)."""
    out = {}
    for branch in repo.branches():
        for t in repo.tables(branch):
            for info in repo.versions(t.name, branch):
                if info.manifest_id in released:
                    continue
                with repo.open(t.name, info.version, branch) as f:
                    out[(branch, t.name, info.version)] = _native.blake3_hex(f.read())
    return out


def udr(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, CACHE_DIR_ENV: str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True, env=env
    )


@pytest.fixture
def partly_dead(repo: udrfs.Repo, s3_url: str) -> tuple[str, str]:
    """A remote whose first pack is partly dead: `a` v1 and `b` v1 written in one
    transaction (one pack), `a` v2 and v3 after, then `expire --keep-last 1` locally and a
    push (the records travel with it). Returns the URL and the first pack's id."""
    with repo.transaction(message="a and b") as tx:
        tx.write_table("a", table(1))
        tx.write_table("b", table(2))
    first = repo.store.chunks.pack_of(repo.version("b").chunks.ids()[0])
    assert first == repo.store.chunks.pack_of(repo.version("a").chunks.ids()[0])
    repo.write_table("a", table(3))
    repo.write_table("a", table(4))
    assert [r.version for r in repo.expire(keep_last=1).released] == [1, 2]
    repo.add_remote("origin", s3_url)
    repo.push("origin")
    assert pack_key(first) in listing(s3_url)
    age()  # packs written from now on are newer than the pushed ones
    return s3_url, first


def test_a_partly_dead_pack_is_rewritten_and_two_gc_runs_reclaim_it(
    repo: udrfs.Repo, partly_dead: tuple[str, str], tmp_path: Path
) -> None:
    url, first = partly_dead
    released = repo.retention.released()
    expected = kept_digests(repo, released)
    assert expected == kept_digests(remote(url, tmp_path / "before"), released)
    before = listing(url)
    result = remote(url, tmp_path / "repack").repack()
    assert first in result.rewritten and result.new_packs
    b_size = repo.version("b").size
    assert b_size <= result.copied_bytes < b_size + repo.version("a").size + 1
    after = listing(url)
    # Nothing deleted or changed; the new packs and their fragments were uploaded.
    assert all(after[k] == v for k, v in before.items())
    assert set(after) - set(before) == {
        *(pack_key(p) for p in result.new_packs),
        *(f"index/{p}.idx" for p in result.new_packs),
    }
    assert kept_digests(remote(url, tmp_path / "fresh"), released) == expected
    collector = remote(url, tmp_path / "gc")
    assert pack_key(first) in {f.key for f in collector.gc(grace=GRACE, force=True).condemned}
    age()
    deleted = {f.key for f in collector.gc(grace=GRACE, force=True).deleted}
    assert pack_key(first) in deleted
    assert pack_key(first) not in listing(url)
    assert not {pack_key(p) for p in result.new_packs} & deleted
    assert kept_digests(remote(url, tmp_path / "fresh-after"), released) == expected
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    assert kept_digests(clone, released) == expected
    assert clone.fsck().ok
    # A second repack finds nothing left to do.
    again = remote(url, tmp_path / "repack").repack()
    assert again.rewritten == [] and again.new_packs == []


# A reader in another process: one Repo on the URL, opened before the repack (its index knows
# the old packs), reading every kept version again and again with its chunk caches emptied
# each time (so every read is ranged GETs), until told to stop; prints a line per round.
READER = """
import json, shutil, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from test_remote_repack import kept_digests
import udrfs
url, cache, spec = sys.argv[1], Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
repo = udrfs.Repo(url, cache_dir=cache)
expected, released = spec["expected"], frozenset(spec["released"])
rounds = 0
print("ready", flush=True)
while rounds == 0 or not (cache / "stop").exists():
    got = {"/".join(map(str, k)): v for k, v in kept_digests(repo, released).items()}
    assert got == expected, (got, expected)
    rounds += 1
    print(f"round {rounds}", flush=True)
    repo.store.chunks.cache.drain()
    shutil.rmtree(cache / "segments", ignore_errors=True)
    repo.store.chunks.memory.clear()
"""


def test_a_reader_in_another_process_keeps_reading_during_the_repack_and_after_gc(
    repo: udrfs.Repo, partly_dead: tuple[str, str], tmp_path: Path
) -> None:
    url, first = partly_dead
    released = repo.retention.released()
    expected = kept_digests(repo, released)
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "expected": {"/".join(map(str, k)): v for k, v in expected.items()},
                "released": sorted(released),
            }
        )
    )
    cache = tmp_path / "reader"
    here = str(Path(__file__).parent)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, url, str(cache), str(spec), here],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "ready\n"
        result = remote(url, tmp_path / "repack").repack()
        assert first in result.rewritten
        collector = remote(url, tmp_path / "gc")
        collector.gc(grace=GRACE, force=True)
        age()
        assert pack_key(first) in {f.key for f in collector.gc(grace=GRACE, force=True).deleted}
        # The second round to end from now began after the old pack was gone.
        assert reader.stdout.readline().startswith("round ")
        assert reader.stdout.readline().startswith("round ")
    finally:
        (cache / "stop").touch()
        _out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err


def test_a_reader_forgets_a_pack_that_is_gone_while_its_listing_still_names_it(
    repo: udrfs.Repo, partly_dead: tuple[str, str], tmp_path: Path
) -> None:
    """After a repack, the kept chunks are in two packs. A reader that listed the remote
    before the collector deleted one of them (here the pack is gone, its fragment still
    listed) reads them from the other pack, however many times its listing names the
    deleted one."""
    url, first = partly_dead
    released = repo.retention.released()
    expected = kept_digests(repo, released)
    result = remote(url, tmp_path / "repack").repack()
    assert first in result.rewritten
    reader = remote(url, tmp_path / "reader")
    chunk = repo.version("b").chunks.ids()[0]
    found = reader.store.chunks.pack_of(chunk)
    holders = {first, *result.new_packs}
    assert found in holders
    blobs(url).delete(pack_key(found))
    assert kept_digests(reader, released) == expected
    assert reader.store.chunks.pack_of(chunk) in holders - {found}


def test_small_packs_merge_on_the_remote(repo: udrfs.Repo, s3_url: str, tmp_path: Path) -> None:
    for seed, name in enumerate(("x", "y", "z")):
        repo.write_table(name, table(seed, rows=5000))
    repo.add_remote("origin", s3_url)
    repo.push("origin")
    released = frozenset[str]()
    expected = kept_digests(repo, released)
    age()
    result = remote(s3_url, tmp_path / "repack").repack()
    assert result.live_packs_before == 3 and len(result.rewritten) == 3
    assert len(result.new_packs) == 1 and result.live_packs_after == 1
    assert kept_digests(remote(s3_url, tmp_path / "fresh"), released) == expected


def test_a_dry_run_changes_nothing_on_the_remote(
    partly_dead: tuple[str, str], tmp_path: Path
) -> None:
    url, first = partly_dead
    before = listing(url)
    result = remote(url, tmp_path / "dry").repack(dry_run=True)
    assert result.dry_run and first in result.rewritten and not result.new_packs
    assert result.copied_bytes > 0
    assert listing(url) == before


def test_a_damaged_chunk_on_the_remote_stops_the_repack_before_any_upload(
    repo: udrfs.Repo, partly_dead: tuple[str, str], tmp_path: Path
) -> None:
    url, first = partly_dead
    chunk_id = repo.version("b").chunks.ids()[1]  # not the 4-byte magic: a run of rows
    data = bytearray(blobs(url).get(pack_key(first)))
    at = data.index(bytes.fromhex(chunk_id)) + 44 + 5  # inside the chunk's stored bytes
    data[at] ^= 0xFF
    blobs(url).put(pack_key(first), bytes(data))
    before = listing(url)
    with pytest.raises(udrfs.CorruptObjectError, match="does not match its hash"):
        remote(url, tmp_path / "repack").repack()
    assert listing(url) == before
    out = udr("repack", url, cache=tmp_path / "cli")
    assert out.returncode == 5 and "does not match its hash" in out.stderr
    assert listing(url) == before


def test_the_cli_prints_the_same_summary_as_for_a_local_store(
    repo: udrfs.Repo, partly_dead: tuple[str, str], tmp_path: Path
) -> None:
    url, _first = partly_dead
    local = udr("repack", str(repo.path), "--dry-run", cache=tmp_path / "cli")
    planned = udr("repack", url, "--dry-run", cache=tmp_path / "cli")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.startswith("would rewrite 2 pack(s) into 1 ")
    assert planned.stdout == local.stdout
    done = udr("repack", url, "--max-unused", "5%", cache=tmp_path / "cli")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rewrote 2 pack(s) into 1 ")
    assert "reclaimable by `udr gc`" in done.stdout
    assert udr("repack", url, "--max-unused", "150%", cache=tmp_path / "cli").returncode == 2
