"""Store fixtures shared by test modules (import the fixture names you use)."""

from __future__ import annotations

from pathlib import Path

import pytest

import udrfs
from udrfs import _native


@pytest.fixture
def repo(tmp_path: Path) -> udrfs.Repo:
    """A fresh, empty store."""
    return udrfs.Repo.init(tmp_path / "store")


def pack_bytes(repo: udrfs.Repo) -> int:
    """Bytes of pack files on disk: what a re-import must not grow."""
    return sum(p.stat().st_size for p in repo.path.glob("packs/??/*.pack"))


def every_version_digest(repo: udrfs.Repo) -> dict[tuple[str, str, int], str]:
    """(branch, table, version) -> BLAKE3 of the bytes read back."""
    out = {}
    for branch in repo.branches():
        for table in repo.tables(branch):
            for info in repo.versions(table.name, branch):
                with repo.open(table.name, info.version, branch) as f:
                    out[(branch, table.name, info.version)] = _native.blake3_hex(f.read())
    return out
