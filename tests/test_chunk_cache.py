"""The disk cache of a store read from a remote (store/chunk_cache.py), on its own: segments
shared by processes, bounds, and the files older versions left. Each `ChunkCache` object keeps
its own index, as a process does, so two objects on one directory are two processes."""

from __future__ import annotations

import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from udrfs import _native
from udrfs.store import chunk_cache
from udrfs.store.chunk_cache import ChunkCache


def chunks(count: int, size: int = 64 << 10) -> list[tuple[bytes, bytes]]:
    out = []
    for _ in range(count):
        data = os.urandom(size)
        out.append((bytes.fromhex(_native.blake3_hex(data)), data))
    return out


@pytest.fixture(autouse=True)
def quick_rescan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunk_cache, "_RESCAN_SECONDS", 0.05)


def test_chunks_one_process_kept_are_found_by_another_that_started_before(
    tmp_path: Path,
) -> None:
    mine, theirs = ChunkCache(tmp_path), ChunkCache(tmp_path)
    kept = chunks(8)
    assert theirs.get(kept[0][0]) is None  # its first listing: an empty cache
    mine.put(kept)
    assert len(list((tmp_path / "segments").iterdir())) == 1  # one range, one file
    time.sleep(0.1)
    assert [theirs.get(c) for c, _d in kept] == [d for _c, d in kept]
    assert theirs.damaged == 0


def test_a_segment_another_process_evicted_is_a_miss(tmp_path: Path) -> None:
    mine, theirs = ChunkCache(tmp_path), ChunkCache(tmp_path)
    kept = chunks(4)
    mine.put(kept)
    assert theirs.get(kept[0][0]) == kept[0][1]
    for segment in (tmp_path / "segments").iterdir():
        segment.unlink()
    assert theirs.get(kept[1][0]) is None
    assert mine.get(kept[2][0]) is None
    assert mine.damaged == theirs.damaged == 0
    mine.put(kept)  # kept again after the miss
    assert mine.get(kept[2][0]) == kept[2][1]


def chunk_list(kept: list[tuple[bytes, bytes]]) -> _native.ChunkList:
    """The chunk list of a file made of `kept`, in order (docs/format.md, "Chunk lists")."""
    return _native.ChunkList(b"".join(c + struct.pack("<I", len(d)) for c, d in kept))


def test_segments_are_read_natively_up_to_the_first_chunk_not_kept(tmp_path: Path) -> None:
    mine, theirs = ChunkCache(tmp_path), ChunkCache(tmp_path)
    kept = chunks(6)
    mine.put(kept[:4])
    file = b"".join(d for _c, d in kept)
    view = memoryview(bytearray(len(file)))
    # The other process finds the segment at its listing, and reads it natively.
    cached = sum(len(d) for _c, d in kept[:4])
    assert theirs.read_into(chunk_list(kept), 100, view) == cached - 100
    assert view[: cached - 100] == file[100:cached]
    assert theirs.hits == 0  # no chunk read in Python
    # Evicted by the first: a miss for the other too, though it has the file open (the
    # first chunk, read in part, stays verified in memory: read from there).
    for segment in (tmp_path / "segments").iterdir():
        segment.unlink()
    assert theirs.read_into(chunk_list(kept), len(kept[0][1]), view) == 0
    assert theirs.read_into(chunk_list(kept), 0, view) == len(kept[0][1])
    assert theirs.damaged == 0


def test_a_small_cache_keeps_its_newest_chunks_within_its_bound(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, max_bytes=1 << 20, reserve_bytes=0)
    assert cache.segment_max == 64 << 10
    first, last = chunks(16), chunks(16)
    cache.put(first)
    time.sleep(0.05)  # older by more than the file system's timestamp granularity
    cache.put(last)
    assert 0 < cache.size() <= 1 << 20
    assert cache.evicted > 0
    assert all(cache.get(c) is None for c, _d in first)
    assert any(cache.get(c) == d for c, d in last)


def test_the_files_of_a_cache_kept_one_file_per_chunk_are_removed(tmp_path: Path) -> None:
    old = tmp_path / "chunks" / "ab"
    old.mkdir(parents=True)
    (old / ("ab" * 32)).write_bytes(b"x" * 100)
    cache = ChunkCache(tmp_path)
    kept = chunks(1)
    cache.put(kept)  # the first write lists the cache
    assert not (tmp_path / "chunks").exists()
    assert cache.get(kept[0][0]) == kept[0][1]


def test_threads_that_look_up_chunks_during_the_first_listing_wait_for_it(
    tmp_path: Path,
) -> None:
    writer = ChunkCache(tmp_path)
    kept = chunks(400, size=1024)
    for k in range(0, len(kept), 2):
        writer.put(kept[k : k + 2])  # 200 segments: a listing that takes a while
    reader = ChunkCache(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda c: reader.get(c[0]), kept))
    assert found == [d for _c, d in kept]
    assert reader.misses == 0
