"""The native chunk engine (`udrfs._native`) as the Python layer sees it.

Format: docs/format.md ("Chunks", "Packs", "Index fragments").
"""

from __future__ import annotations

import errno
import gc
import mmap
import pickle
import random
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stores import tmpfs

from udrfs import _native
from udrfs.store.format import FORMAT_VERSION

MIN, AVG, MAX = 1024, 4096, 16384
PACK_TARGET = 256 * 1024


def open_engine(root: Path, pack_target: int = PACK_TARGET) -> _native.ChunkEngine:
    return _native.ChunkEngine(str(root), MIN, AVG, MAX, pack_target, FORMAT_VERSION)


def noise(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def chunk_ends(chunks: _native.ChunkList) -> list[int]:
    blob = chunks.to_bytes()
    ends, end = [], 0
    for _, length in struct.iter_unpack("<32sI", blob):
        end += length
        ends.append(end)
    return ends


def only_pack(root: Path) -> Path:
    (pack,) = (root / "packs").glob("*/*.pack")
    return pack


@pytest.fixture
def engine(tmp_store_dir: Path) -> _native.ChunkEngine:
    return open_engine(tmp_store_dir)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[_native.ChunkEngine, bytes, object]:
    """An engine holding 2 MB of flushed random bytes, with their chunk list."""
    root = tmp_path_factory.mktemp("native-store")
    data = noise(2_000_000, 1)
    writer = open_engine(root)
    chunks = writer.ingest_bytes(data)
    writer.flush()
    return open_engine(root), data, chunks


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, 2_100_000), length=st.integers(0, 300_000))
def test_read_returns_the_bytes_at_any_offset(stored, offset: int, length: int) -> None:
    engine, data, chunks = stored
    assert engine.read(chunks, offset, length) == data[offset : offset + length]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, 2_000_000), size=st.integers(1, 200_000))
def test_read_into_fills_a_buffer_and_returns_its_count(stored, offset: int, size: int) -> None:
    engine, data, chunks = stored
    buf = bytearray(size)
    n = engine.read_into(chunks, offset, buf)
    assert n == len(data[offset : offset + size])
    assert buf[:n] == data[offset : offset + n]


def test_read_into_accepts_numpy_and_mmap_buffers(stored) -> None:
    engine, data, chunks = stored
    arr = np.zeros(100_000, dtype=np.uint8)
    assert engine.read_into(chunks, 5, arr) == 100_000
    assert arr.tobytes() == data[5:100_005]
    page_aligned = mmap.mmap(-1, 1 << 20)
    assert engine.read_into(chunks, 1_500_000, page_aligned) == 500_000
    assert page_aligned[:500_000] == data[1_500_000:]


def test_reads_past_the_end_are_empty(stored) -> None:
    engine, data, chunks = stored
    assert engine.read(chunks, len(data), 10) == b""
    assert engine.read(chunks, len(data) + 5, 10) == b""
    assert engine.read_into(chunks, len(data), bytearray(10)) == 0


def test_unflushed_chunks_are_readable(engine) -> None:
    data = noise(300_000, 2)
    chunks = engine.ingest_bytes(data)
    assert engine.read(chunks, 0, len(data)) == data
    assert engine.stats()["pending_chunks"] == chunks.count


def test_flush_names_packs_by_their_hash_and_writes_their_index(engine, tmp_store_dir) -> None:
    engine.ingest_bytes(noise(100_000, 3))
    (pack_id,) = engine.flush()
    pack = only_pack(tmp_store_dir)
    assert pack == tmp_store_dir / "packs" / pack_id[:2] / f"{pack_id}.pack"
    # A version 2 pack is named by its magic and chunk headers (docs/format.md, "Packs").
    data = pack.read_bytes()
    named, pos = bytearray(data[:8]), 8
    assert named == b"UDRPACK2"
    while pos < len(data):
        (stored,) = struct.unpack_from("<I", data, pos + 36)
        named += data[pos : pos + 44]
        pos += 44 + stored
    assert _native.blake3_hex(bytes(named)) == pack_id
    assert _native.check_pack(data, pack_id, "here") == 2
    assert (tmp_store_dir / "index" / f"{pack_id}.idx").exists()
    assert not list(tmp_store_dir.rglob(".tmp-*"))
    assert engine.flush() == []


def test_the_same_bytes_twice_add_no_pack_bytes(engine) -> None:
    data = noise(500_000, 4)
    first = engine.ingest_bytes(data)
    engine.flush()
    before = engine.stats()
    second = engine.ingest_bytes(data)
    assert engine.flush() == []
    assert engine.stats() == before
    assert second == first
    assert before["raw_bytes"] == len(data)


def test_chunks_end_at_cut_points(engine) -> None:
    data = noise(200_000, 5)
    cuts = [0, 10, 5_000, 5_001, 150_000, 200_000, 300_000]
    ends = chunk_ends(engine.ingest_bytes(data, cuts))
    assert {10, 5_000, 5_001, 150_000} <= set(ends)
    assert ends[-1] == len(data)


def test_unsorted_cut_points_are_a_value_error(engine) -> None:
    with pytest.raises(ValueError, match="sorted"):
        engine.ingest_bytes(noise(10_000, 6), [500, 100])


def test_ingest_file_chunks_concatenate_to_the_file(engine, tmp_path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(noise(12_000_000, 7))  # large enough for the two-thread pipeline
    chunks = engine.ingest_file(str(path), [4_000_000])
    assert chunks.size == path.stat().st_size
    assert _native.blake3_hex(engine.read(chunks, 0, chunks.size)) == _native.blake3_file(str(path))
    assert 4_000_000 in chunk_ends(chunks)
    assert engine.ingest_bytes(path.read_bytes(), [4_000_000]) == chunks


def test_an_empty_file_has_an_empty_chunk_list(engine, tmp_path) -> None:
    path = tmp_path / "empty"
    path.touch()
    chunks = engine.ingest_file(str(path))
    assert (chunks.count, chunks.size, chunks.to_bytes()) == (0, 0, b"")
    assert engine.read(chunks, 0, 10) == b""


def test_a_missing_file_is_an_os_error_with_its_errno(engine, tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        engine.ingest_file(str(tmp_path / "nope"))
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(tmp_path / "nope")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, to fill up for real."""
    with tmpfs(tmp_path / "small", "16m") as disk:
        yield disk


def test_a_full_disk_is_enospc_and_keeps_what_was_written(small_disk) -> None:
    engine = open_engine(small_disk, pack_target=4 << 20)
    early = noise(1_000_000, 20)
    early_chunks = engine.ingest_bytes(early)
    with pytest.raises(OSError) as info:
        engine.ingest_bytes(noise(40_000_000, 21))
    assert info.value.errno == errno.ENOSPC
    assert engine.read(early_chunks, 0, len(early)) == early
    del engine
    gc.collect()
    assert not [p for p in (small_disk / "packs").rglob("*") if p.is_file()]
    assert open_engine(small_disk).stats()["packs"] == 0


def test_a_full_disk_ends_a_large_stream_with_enospc(small_disk) -> None:
    engine = open_engine(small_disk, pack_target=4 << 20)
    stream = engine.stream()
    data = noise(40_000_000, 22)
    with pytest.raises(OSError) as info:
        for pos in range(0, len(data), 1 << 20):
            stream.write(data[pos : pos + (1 << 20)])
        stream.finish()
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(ValueError):
        stream.write(b"more")


def test_a_stream_chunks_like_ingest_bytes(engine) -> None:
    data = noise(1_000_000, 8)
    stream = engine.stream()
    rng = random.Random(8)
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 100, 4096, 65_536, 300_000])
        stream.write(memoryview(data)[pos : pos + step])
        pos += step
    streamed = stream.finish()
    assert streamed == engine.ingest_bytes(data)
    assert engine.read(streamed, 0, len(data)) == data
    assert stream.blake3_hex() == _native.blake3_hex(data)


def test_a_stream_has_no_file_hash_before_it_finishes(engine) -> None:
    stream = engine.stream()
    stream.write(b"partial")
    with pytest.raises(ValueError, match="not finished"):
        stream.blake3_hex()


def test_a_finished_or_aborted_stream_refuses_writes(engine) -> None:
    finished = engine.stream()
    finished.write(b"abc")
    assert finished.finish().size == 3
    with pytest.raises(ValueError):
        finished.write(b"more")
    aborted = engine.stream()
    aborted.write(b"abc")
    aborted.abort()
    with pytest.raises(ValueError):
        aborted.finish()


def test_compressed_chunks_round_trip_in_fewer_bytes(engine, tmp_store_dir) -> None:
    text = "".join(f"{i},{i % 97},{i * 7 % 13}\n" for i in range(100_000)).encode()
    chunks = engine.ingest_bytes(text, compress=True)
    engine.flush()
    stats = engine.stats()
    assert stats["stored_bytes"] * 2 < stats["raw_bytes"]
    fresh = open_engine(tmp_store_dir)
    assert fresh.read(chunks, 0, len(text)) == text
    assert fresh.read(chunks, 12_345, 100) == text[12_345:12_445]


def test_a_corrupt_pack_byte_raises_corrupt_chunk_error(tmp_store_dir) -> None:
    data = noise(100_000, 9)
    writer = open_engine(tmp_store_dir)
    chunks = writer.ingest_bytes(data)
    (pack_id,) = writer.flush()
    pack = only_pack(tmp_store_dir)
    damaged = bytearray(pack.read_bytes())
    damaged[50_000] ^= 0x01
    pack.write_bytes(damaged)

    reader = open_engine(tmp_store_dir)
    with pytest.raises(_native.CorruptChunkError, match=pack_id):
        reader.read(chunks, 0, len(data))
    with pytest.raises(_native.CorruptChunkError):
        reader.read_into(chunks, 49_000, bytearray(2_000))
    with pytest.raises(_native.CorruptChunkError):
        reader.verify_pack(pack_id)


def test_a_truncated_pack_raises_corrupt_chunk_error(tmp_store_dir) -> None:
    writer = open_engine(tmp_store_dir)
    chunks = writer.ingest_bytes(noise(100_000, 10))
    (pack_id,) = writer.flush()
    pack = only_pack(tmp_store_dir)
    pack.write_bytes(pack.read_bytes()[:60_000])
    reader = open_engine(tmp_store_dir)
    with pytest.raises(_native.CorruptChunkError, match="truncated"):
        reader.read(chunks, 0, chunks.size)
    with pytest.raises(_native.CorruptChunkError, match="truncated"):
        reader.verify_pack(pack_id)


def test_a_bad_index_fragment_is_named_and_skipped_when_the_engine_opens(tmp_store_dir) -> None:
    writer = open_engine(tmp_store_dir)
    chunks = writer.ingest_bytes(noise(10_000, 11))
    (pack_id,) = writer.flush()
    fragment = tmp_store_dir / "index" / f"{pack_id}.idx"
    fragment.write_bytes(b"NOTANIDX" + fragment.read_bytes()[8:])
    engine = open_engine(tmp_store_dir)  # opens: the rest of the store stays readable
    ((damaged, why),) = engine.damaged_fragments()
    assert damaged == pack_id and f"{pack_id}.idx" in why and "udr fsck --repair" in why
    with pytest.raises(_native.ChunkNotFoundError):
        engine.read(chunks, 0, 10)


def test_an_index_fragment_is_rebuilt_from_its_pack(tmp_store_dir) -> None:
    writer = open_engine(tmp_store_dir)
    data = noise(100_000, 12)
    chunks = writer.ingest_bytes(data)
    (pack_id,) = writer.flush()
    fragment = tmp_store_dir / "index" / f"{pack_id}.idx"
    original = fragment.read_bytes()
    fragment.unlink()

    reader = open_engine(tmp_store_dir)
    with pytest.raises(_native.ChunkNotFoundError):
        reader.read(chunks, 0, 10)
    reader.rebuild_index(pack_id)
    assert fragment.read_bytes() == original
    assert reader.read(chunks, 0, len(data)) == data
    assert reader.verify_pack(pack_id) == chunks.count


def test_an_unknown_chunk_raises_chunk_not_found_error(engine) -> None:
    unknown = _native.ChunkList(bytes(32) + struct.pack("<I", 10))
    with pytest.raises(_native.ChunkNotFoundError):
        engine.read(unknown, 0, 10)
    assert not engine.contains("00" * 32)


def test_packs_flushed_by_another_engine_are_found_by_a_rescan(tmp_store_dir) -> None:
    reader = open_engine(tmp_store_dir)
    writer = open_engine(tmp_store_dir)
    data = noise(50_000, 13)
    chunks = writer.ingest_bytes(data)
    writer.flush()
    assert not reader.contains(chunks.ids()[0])
    assert reader.read(chunks, 0, len(data)) == data  # rescans index/ once
    assert reader.contains(chunks.ids()[0])
    assert reader.reload_index() == 0


def test_concurrent_read_into_from_threads(tmp_store_dir) -> None:
    engine = open_engine(tmp_store_dir)
    data = noise(4_000_000, 14)
    chunks = engine.ingest_bytes(data)
    engine.flush()
    reader = open_engine(tmp_store_dir)
    failures: list[str] = []

    def read_randomly(seed: int) -> None:
        rng = random.Random(seed)
        buf = bytearray(131_072)
        for _ in range(200):
            offset = rng.randrange(len(data))
            n = reader.read_into(chunks, offset, buf)
            if buf[:n] != data[offset : offset + n]:
                failures.append(f"wrong bytes at {offset}")

    threads = [threading.Thread(target=read_randomly, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_chunk_list_round_trips_through_bytes_and_pickle(stored) -> None:
    _, data, chunks = stored
    again = _native.ChunkList(chunks.to_bytes())
    assert again == chunks
    assert (again.size, again.count) == (len(data), len(chunks.ids()))
    assert pickle.loads(pickle.dumps(chunks)) == chunks
    assert chunks.ids() and all(len(i) == 64 for i in chunks.ids())


def test_chunk_list_rejects_a_partial_entry() -> None:
    with pytest.raises(ValueError):
        _native.ChunkList(b"x" * 35)


def test_chunk_boundaries_match_ingest(engine) -> None:
    data = noise(400_000, 15)
    assert (
        _native.chunk_boundaries(data, MIN, AVG, MAX, [1234])
        == engine.ingest_bytes(data, [1234]).to_bytes()
    )


def test_blake3_hex_matches_the_reference_vector() -> None:
    assert (
        _native.blake3_hex(b"abc")
        == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    )


def test_hash_binary_is_pinned_and_per_value() -> None:
    values = [b"", b"udr-fs", b"a", b"\x00" * 100]
    offsets = np.cumsum([0] + [len(v) for v in values]).astype("<i8")
    hashes = np.frombuffer(_native.hash_binary(offsets, b"".join(values)), dtype="<u8")
    # Part of the format: row-group boundaries depend on these values.
    assert int(hashes[0]) == 0xF52A15E9A9B5E89B
    assert int(hashes[1]) == 0x8939A31BFDF12543
    for value, h in zip(values, hashes, strict=True):
        single = np.frombuffer(
            _native.hash_binary(np.array([0, len(value)], dtype="<i8"), value), dtype="<u8"
        )
        assert single[0] == h


def test_hash_binary_rejects_offsets_past_the_data() -> None:
    with pytest.raises(ValueError):
        _native.hash_binary(np.array([0, 10], dtype="<i8"), b"short")


def test_ingest_file_hashed_returns_the_whole_file_hash(engine, tmp_path) -> None:
    for size in (100, 20 << 20):  # below and above the two-thread pipeline's threshold
        path = tmp_path / f"f{size}"
        path.write_bytes(np.random.default_rng(size).bytes(size))
        chunks, digest = engine.ingest_file_hashed(str(path))
        assert digest == _native.blake3_file(str(path))
        assert chunks == engine.ingest_file(str(path))
