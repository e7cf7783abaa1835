"""A full disk during a write: a clear StoreFullError, and the store stays consistent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stores import tmpfs

import udrfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: small enough to fill, real enough to say ENOSPC."""
    with tmpfs(tmp_path / "small", "24m") as disk:
        yield disk


def test_disk_full_during_import_raises_store_full_and_loses_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    repo = udrfs.Repo.init(small_disk / "store")
    repo.write_table("small", pa.table({"k": list(range(1000))}))
    head = repo.head()

    big = tmp_path / "big.parquet"  # incompressible: 40 MB of random bytes
    rng = np.random.default_rng(1)
    pq.write_table(
        pa.table({"blob": [rng.bytes(1 << 20) for _ in range(40)]}), big, compression="none"
    )
    with pytest.raises(udrfs.StoreFullError, match="disk full"):
        repo.import_file("big", big)

    fresh = udrfs.Repo(repo.path)
    assert fresh.head() == head
    assert fresh.read_table("small").num_rows == 1000
    assert fresh.fsck().ok
    assert not list(repo.path.glob("packs/??/*.pack.tmp*"))
