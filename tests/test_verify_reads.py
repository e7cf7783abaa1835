"""Every read from disk is verified, in a long-lived process too: a pack damaged after a
chunk was read once is noticed on the next read (CorruptObjectError, never wrong bytes).

Only bytes held in the engine's verified-bytes cache (`UDR_READ_CACHE_MIB`, docs/mount.md
"Reads") may be served without reading the pack again; they were verified when read.
"""

# Fixtures imported from stores.py are redefined as test parameters, as pytest intends.
# ruff: noqa: F811

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from stores import repo  # noqa: F401 - fixture

import udrfs

PACK_MAGIC = b"UDRPACK2"  # a new store writes version 2 packs
CHUNK_HEADER = struct.Struct("<32sIIB3x")


def chunk_data_spans(pack: Path) -> list[tuple[int, int]]:
    """(offset, length) of each chunk's stored bytes in a pack (docs/format.md, "Packs")."""
    data = pack.read_bytes()
    assert data[:8] == PACK_MAGIC
    spans, pos = [], 8
    while pos < len(data):
        _, _, stored, _ = CHUNK_HEADER.unpack_from(data, pos)
        pos += CHUNK_HEADER.size
        spans.append((pos, stored))
        pos += stored
    return spans


def large_chunks(pack: Path) -> list[int]:
    """Indices of the pack's chunks of 4 KiB or more (not the 4-byte Parquet magic)."""
    return [i for i, (_, length) in enumerate(chunk_data_spans(pack)) if length >= 4096]


def file_offset(pack: Path, which: int) -> int:
    """Where chunk `which` starts in the file, for a store holding one file of new chunks
    (its pack holds them in file order, stored raw)."""
    return sum(length for _, length in chunk_data_spans(pack)[:which])


def flip_chunk_bytes(pack: Path, which: int) -> None:
    """Inverts 16 bytes in the middle of chunk `which`'s data, in place (same inode)."""
    offset, length = chunk_data_spans(pack)[which]
    assert length >= 64
    middle = offset + length // 2
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.seek(middle)
        good = f.read(16)
        f.seek(middle)
        f.write(bytes(b ^ 0xFF for b in good))


def truncate_pack(pack: Path, keep_size: bool = False) -> None:
    """Cuts the pack to a third; with `keep_size`, extends it back, so the tail reads as zeros
    (as a lost extent or a punched hole would) instead of ending early."""
    size = pack.stat().st_size
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.truncate(size // 3)
        if keep_size:
            f.truncate(size)


def random_table(rows: int, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({f"c{i}": rng.integers(0, 2**62, rows) for i in range(4)})


@pytest.fixture
def no_read_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDR_READ_CACHE_MIB", "0")


def store_with_table(repo: udrfs.Repo, rows: int = 100_000) -> Path:
    """Writes table `t` (one pack, several chunks); returns the pack."""
    repo.write_table("t", random_table(rows))
    (pack,) = repo.path.glob("packs/??/*.pack")
    assert len(large_chunks(pack)) > 4
    return pack


def read_all(repo: udrfs.Repo) -> bytes:
    with repo.open("t") as f:
        return f.read()


@pytest.mark.usefixtures("no_read_cache")
def test_a_pack_damaged_after_a_read_is_detected_by_the_same_repo(repo: udrfs.Repo) -> None:
    pack = store_with_table(repo)
    reader = udrfs.Repo(repo.path)  # one process, one engine, for the whole test
    assert reader.read_table("t").num_rows == 100_000
    read_all(reader)
    chunks = large_chunks(pack)
    flip_chunk_bytes(pack, chunks[len(chunks) // 2])
    with pytest.raises(udrfs.CorruptObjectError, match=pack.stem):
        read_all(reader)
    with pytest.raises(udrfs.CorruptObjectError, match=pack.stem):
        reader.read_table("t")


@pytest.mark.usefixtures("no_read_cache")
def test_a_pack_truncated_after_a_read_is_detected_by_the_same_repo(repo: udrfs.Repo) -> None:
    pack = store_with_table(repo)
    reader = udrfs.Repo(repo.path)
    read_all(reader)
    truncate_pack(pack)
    with pytest.raises(udrfs.CorruptObjectError, match="truncated"):
        read_all(reader)


@pytest.mark.usefixtures("no_read_cache")
def test_a_pack_zeroed_after_a_read_is_detected_by_the_same_repo(repo: udrfs.Repo) -> None:
    pack = store_with_table(repo)
    reader = udrfs.Repo(repo.path)
    read_all(reader)
    truncate_pack(pack, keep_size=True)
    with pytest.raises(udrfs.CorruptObjectError, match=pack.stem):
        read_all(reader)


def test_reads_beyond_the_verified_cache_read_the_pack_again(
    repo: udrfs.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UDR_READ_CACHE_MIB", "1")
    pack = store_with_table(repo, rows=200_000)  # ~6.4 MB: six times the cache
    reader = udrfs.Repo(repo.path)
    with reader.open("t") as f:
        # Small reads: every chunk is decoded whole and goes through the cache.
        while f.read(4096):
            pass
    first = large_chunks(pack)[0]
    flip_chunk_bytes(pack, first)  # it left the cache long ago
    with pytest.raises(udrfs.CorruptObjectError, match=pack.stem), reader.open("t") as f:
        f.seek(file_offset(pack, first))
        f.read(4096)


def test_bytes_in_the_verified_cache_are_served_after_the_pack_is_damaged(
    repo: udrfs.Repo,
) -> None:
    pack = store_with_table(repo)
    which = large_chunks(pack)[1]
    start = file_offset(pack, which)
    reader = udrfs.Repo(repo.path)
    with reader.open("t") as f:
        f.seek(start)
        good = f.read(4096)  # part of a chunk: the whole chunk is verified and cached
    flip_chunk_bytes(pack, which)
    with reader.open("t") as f:
        f.seek(start)
        assert f.read(4096) == good
    fresh = udrfs.Repo(repo.path)
    with pytest.raises(udrfs.CorruptObjectError), fresh.open("t") as f:
        f.seek(start)
        f.read(4096)


def test_a_bad_read_cache_setting_names_the_variable(
    repo: udrfs.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UDR_READ_CACHE_MIB", "lots")
    with pytest.raises(udrfs.UdrError, match="UDR_READ_CACHE_MIB"):
        udrfs.Repo(repo.path)
