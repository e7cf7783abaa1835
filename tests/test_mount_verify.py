"""A long-running daemon verifies every read from disk: a pack damaged after the version was
read once gives EIO (never wrong bytes) and one log line naming the pack.

The daemon runs with a 1 MiB verified-bytes cache (`UDR_READ_CACHE_MIB`, docs/mount.md
"Reads") and the version is several times larger, so the damaged chunk has left the cache
when it is read again; the kernel's page cache is bypassed with O_DIRECT or dropped.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mounting import Mount, is_root, mounted, requires_fuse, wait_for
from test_verify_reads import flip_chunk_bytes, large_chunks, random_table, truncate_pack

from udrfs.catalog import Catalog

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]

MIB = 1 << 20


def read_whole(path: Path, direct: bool) -> int:
    """Reads the file in 1 MiB requests into a page-aligned buffer; returns its size."""
    buf = mmap.mmap(-1, MIB)
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
    try:
        total = 0
        while n := os.preadv(fd, [buf], total):
            total += n
        return total
    finally:
        os.close(fd)
        buf.close()


def drop_page_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


@pytest.fixture
def big_version_mount(tmp_path: Path) -> Iterator[tuple[Mount, Path]]:
    """A mount of a store whose only table is ~6.4 MB; yields the mount and the pack."""
    source = tmp_path / "t.parquet"
    pq.write_table(random_table(200_000), source, compression="none")
    store = tmp_path / "store"
    Catalog.init(store).import_file("t", source)
    (pack,) = store.glob("packs/??/*.pack")
    env = {**os.environ, "UDR_READ_CACHE_MIB": "1"}
    with mounted(store, tmp_path / "mnt", env=env) as mount:
        version = mount.at("@main", "t", "v1.parquet")
        assert read_whole(version, direct=False) == source.stat().st_size
        assert read_whole(version, direct=True) == source.stat().st_size
        yield mount, pack


def assert_eio(path: Path, direct: bool) -> None:
    with pytest.raises(OSError) as failure:
        read_whole(path, direct)
    assert failure.value.errno == errno.EIO


def lines_naming(mount: Mount, pack: Path) -> list[str]:
    return [line for line in mount.log_text().splitlines() if pack.stem in line]


@pytest.mark.skipif(not is_root(), reason="drops the page cache (root)")
@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_pack_damaged_under_a_running_daemon_gives_eio(
    big_version_mount: tuple[Mount, Path], damage: str
) -> None:
    mount, pack = big_version_mount
    if damage == "flipped":
        flip_chunk_bytes(pack, large_chunks(pack)[0])
    else:
        truncate_pack(pack)
    version = mount.at("@main", "t", "v1.parquet")
    assert_eio(version, direct=True)
    drop_page_cache()
    assert_eio(version, direct=False)
    wait_for(lambda: lines_naming(mount, pack), 2.0)
    (line,) = lines_naming(mount, pack)
    assert "udr fsck" in line  # the message names the command that repairs it
    assert json.loads(mount.at(".stats").read_text())["errors"] >= 2
