"""A failing disk reaches a mount's client as the errno it is (errno_for), not as EIO."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import make_store, mounted, requires_fuse
from stores import tmpfs

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs to hold the store: small enough to fill, and remountable read-only."""
    with tmpfs(tmp_path / "disk", "8m") as disk:
        yield disk


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_mkdir_of_a_transaction_on_a_full_disk_is_enospc(small_disk: Path, tmp_path: Path) -> None:
    store = make_store(small_disk, {"t": 1}, rows=200)
    with mounted(store.path, tmp_path / "mnt") as mount:
        _fill(small_disk)
        with pytest.raises(OSError) as caught:
            mount.at("@main", ".tx", "nightly").mkdir()
        assert caught.value.errno == errno.ENOSPC
        os.unlink(small_disk / "filler")


def test_mkdir_of_a_transaction_on_a_read_only_store_is_erofs(
    small_disk: Path, tmp_path: Path
) -> None:
    store = make_store(small_disk, {"t": 1}, rows=200)
    with mounted(store.path, tmp_path / "mnt") as mount:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        with pytest.raises(OSError) as caught:
            mount.at("@main", ".tx", "nightly").mkdir()
        assert caught.value.errno == errno.EROFS


def test_a_damaged_index_fragment_still_mounts_and_reads_of_its_chunks_are_eio(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path, {"t": 1}, rows=200)
    (fragment,) = store.path.glob("index/*.idx")
    fragment.write_bytes(b"UDRIDX01" + b"\0" * 100)
    with mounted(store.path, tmp_path / "mnt") as mount:
        assert "t" in os.listdir(mount.at("@main"))
        with pytest.raises(OSError) as caught:
            mount.at("@main", "t", "v1.parquet").read_bytes()
        assert caught.value.errno == errno.EIO
        assert "udr fsck --repair" in mount.log_text()
