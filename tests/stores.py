"""Store fixtures shared by test modules (import the fixture names you use)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import udrfs
from udrfs import _native
from udrfs.store.backends import BlobStore, open_backend


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


# ---- stores on a remote (the S3 server fixture) -----------------------------------------

GRACE = 1.0


def age(seconds: float = GRACE) -> None:
    """Let the storage's clock (LastModified, whole seconds on some servers) pass a grace."""
    time.sleep(seconds + 0.2)


def seeded_table(seed: int, rows: int = 30_000) -> pa.Table:
    """Rows no other seed's table shares (keys offset by the seed)."""
    rng = np.random.default_rng(seed)
    return pa.table({"k": np.arange(rows) + seed * 10**6, "v": rng.random(rows)})


def blobs(url: str) -> BlobStore:
    return open_backend(url).blobs


def listing(url: str) -> dict[str, tuple[int, str | None]]:
    """Every object of the store with its size and ETag (what tells a change)."""
    return {b.key: (b.size, b.etag) for b in blobs(url).list("")}


def wait_reached(release: Path, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Until `process`, held at a pause point (udrfs/catalog/crashpoints.py) whose release
    file is `release`, has reached it; fails if it exits first or takes over `timeout`."""
    deadline = time.monotonic() + timeout
    while not Path(f"{release}.reached").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` ("8m") mounted at `where` for the block, small enough to fill
    (ENOSPC for real); the test is skipped unless it runs as root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
