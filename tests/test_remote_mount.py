"""`udr mount s3://BUCKET/PREFIX MNT`: the namespace of a local mount over a store read
straight from a real S3 server (SeaweedFS on loopback), read by real clients."""

from __future__ import annotations

import errno
import json
import mmap
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mounting import Mount, mounted, requires_fuse
from s3server import S3Server
from tcpproxy import SwitchableProxy
from test_remote_read import Pushed, push_history

import udrfs

pytestmark = [pytest.mark.mount, requires_fuse, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def pushed(
    s3_server: S3Server, nyc_parquet_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Pushed:
    return push_history(s3_server, nyc_parquet_dir, tmp_path_factory.mktemp("remote-mount"))


@pytest.fixture(scope="module")
def mount(pushed: Pushed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    root = tmp_path_factory.mktemp("mnt")
    with mounted(
        pushed.url, root / "mnt", "--cache-dir", str(root / "cache"), "--cache-size", "64M"
    ) as m:
        yield m


def test_the_remote_mount_shows_the_local_namespace(mount: Mount, pushed: Pushed) -> None:
    assert sorted(os.listdir(mount.at())) == [".stats", "@experiment", "@main"]
    assert os.listdir(mount.at("@main")) == [
        "airlines",
        "flights",
        "planes",
        "weather",
        ".changes",
        ".changes.txt",
    ]
    assert sorted(os.listdir(mount.at("@main", "weather"))) == [
        ".changes",
        ".changes.txt",
        "latest.parquet",
        "v1.parquet",
        "v2.parquet",
    ]
    assert os.readlink(mount.at("@main", "weather", "latest.parquet")) == "v2.parquet"
    assert os.path.isdir(mount.at("@main", ".tx"))  # not listed, as on a local mount
    with pytest.raises(OSError) as refused:
        os.mkdir(mount.at("@main", "weather", "v3.parquet"))
    assert refused.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def test_every_version_reads_byte_exact_with_cp_pyarrow_pandas_polars_and_duckdb(
    mount: Mount, pushed: Pushed, tmp_path: Path
) -> None:
    local = pushed.repo
    for branch in local.branches():
        for table in local.tables(branch):
            for info in local.versions(table.name, branch):
                path = mount.at(f"@{branch}", table.name, f"v{info.version}.parquet")
                copy = tmp_path / f"{branch}-{table.name}-{info.version}.parquet"
                subprocess.run(["cp", str(path), str(copy)], check=True)
                assert copy.read_bytes() == local.open(table.name, info.version, branch).read()
    flights = mount.at("@main", "flights", "v1.parquet")
    want = local.read_table("flights")
    assert pq.read_table(flights).equals(want)
    assert pd.read_parquet(flights).equals(want.to_pandas())
    assert pl.read_parquet(flights).equals(pl.from_arrow(want))
    with duckdb.connect() as con:
        count = con.execute(f"select count(*) from read_parquet('{flights}')").fetchone()
    assert count == (want.num_rows,)


def test_changes_show_a_commit_pushed_by_another_store(
    repo: udrfs.Repo, s3_url: str, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    repo.import_file("planes", nyc_parquet_dir / "planes.parquet")
    repo.add_remote("origin", s3_url)
    repo.push("origin")
    args = ("--cache-dir", str(tmp_path / "cache"), "--poll-interval", "0.5")
    with mounted(s3_url, tmp_path / "mnt", *args) as m:
        changes = m.at("@main", ".changes")
        before = changes.read_bytes().count(b"\n")
        tail = subprocess.Popen(
            ["tail", "-n", "+1", "-F", str(changes)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert tail.stdout is not None
            for _ in range(before):
                tail.stdout.readline()
            repo.import_file("airlines", nyc_parquet_dir / "airlines.parquet")
            repo.push("origin")
            ready, _, _ = select.select([tail.stdout], [], [], 15.0)
            assert ready, "tail -F printed nothing within 15 s of the push"
            line = json.loads(tail.stdout.readline())
            assert line["commit"] == repo.head()
            assert line["tables"][0]["table"] == "airlines"
        finally:
            tail.kill()
            tail.wait()
        data = m.at("@main", "airlines", "v1.parquet").read_bytes()
        assert data == (nyc_parquet_dir / "airlines.parquet").read_bytes()


def test_a_stopped_server_is_eio_cached_versions_stay_readable_and_reads_recover(
    pushed: Pushed, s3_server: S3Server, tmp_path: Path
) -> None:
    proxy = SwitchableProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    cache = tmp_path / "cache"
    where = ("--endpoint", proxy.endpoint, "--cache-dir", str(cache))
    # A job on this machine read planes earlier: the mount shares its cache.
    warm = udrfs.Repo(pushed.url, endpoint=proxy.endpoint, cache_dir=cache)
    planes = warm.open("planes").read()
    assert warm.store.cache.drain(timeout=30)
    env = {**os.environ, "UDR_REMOTE_TIMEOUT": "5"}
    try:
        with mounted(pushed.url, tmp_path / "mnt", *where, env=env) as m:
            os.listdir(m.at("@main", "flights"))  # its manifest is read while the server is up
            with open(m.at("@main", "weather", "v1.parquet"), "rb") as f:
                f.read()  # and the index (not flights: its read-ahead could fetch it all)
            proxy.down()
            assert m.at("@main", "planes", "v1.parquet").read_bytes() == planes
            start = time.monotonic()
            with pytest.raises(OSError) as failed:
                m.at("@main", "flights", "v1.parquet").read_bytes()
            assert failed.value.errno == errno.EIO
            assert time.monotonic() - start < 120  # bounded retries, never a hang
            proxy.up()
            data = m.at("@main", "flights", "v1.parquet").read_bytes()
            assert data == pushed.repo.open("flights").read()
            assert "read failed: cannot read packs/" in m.log_text()
    finally:
        proxy.down()
    assert shutil.which("fusermount3")


def test_a_read_waiting_for_the_network_holds_up_no_read_of_cached_bytes(
    pushed: Pushed, s3_server: S3Server, tmp_path: Path
) -> None:
    """Reads of what the disk cache holds may be answered on the mount's event loop, but a
    read that must fetch goes on in a worker thread: with the network hanging, a reader
    stuck in the uncached half of a file holds up no other reader."""
    proxy = SwitchableProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    cache = tmp_path / "cache"
    warm = udrfs.Repo(pushed.url, endpoint=proxy.endpoint, cache_dir=cache)
    planes = warm.open("planes").read()
    flights = pushed.repo.open("flights").read()
    assert warm.open("flights").read(len(flights) // 2) == flights[: len(flights) // 2]
    assert warm.store.cache.drain(timeout=30)
    env = {**os.environ, "UDR_REMOTE_TIMEOUT": "20"}
    where = ("--endpoint", proxy.endpoint, "--cache-dir", str(cache))
    try:
        with mounted(pushed.url, tmp_path / "mnt", *where, env=env) as m:
            os.listdir(m.at("@main", "flights"))  # manifests and index read while up
            proxy.stall()
            got: list[bytes] = []
            # One request at a time (O_DIRECT): the cached half is read, hot, on the loop.
            reader = threading.Thread(
                target=lambda: got.append(read_direct(m.at("@main", "flights", "v1.parquet")))
            )
            reader.start()
            time.sleep(2)
            assert reader.is_alive()  # waiting for the uncached half
            assert m.at("@main", "planes", "v1.parquet").read_bytes() == planes
            assert "flights" in os.listdir(m.at("@main"))
            assert reader.is_alive()  # the reads above did not wait for it
            proxy.up()
            reader.join(timeout=120)
            assert got == [flights]
    finally:
        proxy.down()


def read_direct(path: Path, size: int = 1 << 20) -> bytes:
    """A file read by O_DIRECT requests of `size` bytes, one at a time."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, size)
    out = bytearray()
    try:
        while n := os.preadv(fd, [buf], len(out)):
            out += buf[:n]
    finally:
        os.close(fd)
        buf.close()
    return bytes(out)


def test_a_reader_of_a_few_ranges_fetches_little_more_than_it_reads(
    repo: udrfs.Repo, s3_url: str, tmp_path: Path
) -> None:
    """A query engine reads a few column chunks of a file, each a short run of in-order
    reads: the daemon's own read-ahead (for long sequential readers) stays out of it, so
    what is fetched from the remote is what was read plus the kernel's readahead."""
    rows = [os.urandom(1 << 20) for _ in range(24)]
    source = tmp_path / "big.parquet"
    pq.write_table(pa.table({"b": pa.array(rows, pa.binary())}), source, compression="none")
    repo.import_file("big", source)
    repo.add_remote("origin", s3_url)
    repo.push("origin")
    with mounted(s3_url, tmp_path / "mnt", "--cache-dir", str(tmp_path / "cache")) as m:
        path = m.at("@main", "big", "v1.parquet")
        read = 0
        with open(path, "rb") as f:
            for start in (0, 12 << 20):
                for offset in range(start, start + (2 << 20), 256 << 10):
                    read += len(os.pread(f.fileno(), 256 << 10, offset))
        fetched = json.loads(m.at(".stats").read_text())["engine"]["remote_bytes"]
    assert read == 4 << 20
    assert fetched < read + (6 << 20), fetched  # the kernel reads ahead up to 1 MiB a run
