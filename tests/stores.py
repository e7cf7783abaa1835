"""Store fixtures shared by test modules (import the fixture names you use)."""

from __future__ import annotations

from pathlib import Path

import pytest

import udrfs


@pytest.fixture
def repo(tmp_path: Path) -> udrfs.Repo:
    """A fresh, empty store."""
    return udrfs.Repo.init(tmp_path / "store")


def pack_bytes(repo: udrfs.Repo) -> int:
    """Bytes of pack files on disk: what a re-import must not grow."""
    return sum(p.stat().st_size for p in repo.path.glob("packs/??/*.pack"))
