"""Damaged stores: a wrong byte anywhere gives CorruptObjectError, never wrong data."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import udrfs


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def _one_table(repo: udrfs.Repo) -> None:
    table = pa.table({"k": list(range(50_000)), "v": [f"value {i}" for i in range(50_000)]})
    repo.write_table("t", table, key="k")


def test_flipped_byte_in_a_pack_is_detected_on_read(repo: udrfs.Repo) -> None:
    _one_table(repo)
    (pack,) = repo.path.glob("packs/??/*.pack")
    _flip_byte(pack, pack.stat().st_size // 2)
    fresh = udrfs.Repo(repo.path)  # no chunk verified in this process yet
    with pytest.raises(udrfs.CorruptObjectError, match="udr fsck"), fresh.open("t") as f:
        f.read()
    report = fresh.fsck()
    assert not report.ok
    assert any(pack.stem in p for p in report.problems)


def test_truncated_pack_is_detected(repo: udrfs.Repo) -> None:
    _one_table(repo)
    (pack,) = repo.path.glob("packs/??/*.pack")
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.truncate(pack.stat().st_size // 3)
    fresh = udrfs.Repo(repo.path)
    with pytest.raises(udrfs.CorruptObjectError), fresh.open("t") as f:
        f.read()


def test_damaged_object_is_detected(repo: udrfs.Repo) -> None:
    _one_table(repo)
    manifest_id = repo.commit(repo.head()).tables["t"]
    path = repo.store.objects.path(manifest_id)
    _flip_byte(path, path.stat().st_size - 3)
    fresh = udrfs.Repo(repo.path)
    with pytest.raises(udrfs.CorruptObjectError, match=manifest_id):
        fresh.read_table("t")


def test_missing_index_fragment_is_reported_and_rebuildable(repo: udrfs.Repo) -> None:
    _one_table(repo)
    (fragment,) = repo.path.glob("index/*.idx")
    fragment.unlink()
    fresh = udrfs.Repo(repo.path)
    with pytest.raises(udrfs.NotFoundError, match="udr fsck --repair"):
        fresh.read_table("t")
    fresh.store.chunks.rebuild_index(fragment.stem)
    assert udrfs.Repo(repo.path).read_table("t").num_rows == 50_000
