"""The mount's request handlers, called in process: no kernel, no mountpoint.

Each test builds `UdrOperations` over a temporary store the way the daemon does
(fs/assembly.py), inside trio, and calls the handlers the kernel would call, with a request
context of this process. Each ends with a check of the whole store. The real-mount tests
(test_mount_*.py) keep what only the kernel shows: the page cache, readahead, the shell's
view of errors, permissions, `allow_other`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pyfuse3
import pytest
import trio
from mounting import SampleStore, make_store, write_version
from pyfuse3 import FUSEError

from udrfs.catalog import Catalog
from udrfs.fs.assembly import start_operations
from udrfs.fs.operations import UdrOperations

pytestmark = pytest.mark.timeout(120)


# The context pyfuse3 builds when no kernel request is behind it: uid, gid and pid 0.
CTX = pyfuse3.RequestContext()


class Client:
    """Path-level calls made of the handlers' requests, as the kernel would send them."""

    def __init__(self, ops: UdrOperations) -> None:
        self.ops = ops

    async def lookup(self, path: str) -> pyfuse3.EntryAttributes:
        inode = pyfuse3.ROOT_INODE
        attr = await self.ops.getattr(inode, CTX)
        for part in path.strip("/").split("/"):
            attr = await self.ops.lookup(inode, os.fsencode(part), CTX)
            inode = attr.st_ino
        return attr

    async def inode(self, path: str) -> int:
        return int((await self.lookup(path)).st_ino)

    async def listdir(self, path: str) -> list[str]:
        inode = await self.inode(path) if path.strip("/") else pyfuse3.ROOT_INODE
        fh = await self.ops.opendir(inode, CTX)
        try:
            return [os.fsdecode(name) for name in await _readdir(self.ops, fh)]
        finally:
            await self.ops.releasedir(fh)

    async def read_file(self, path: str, chunk: int = 1 << 20) -> bytes:
        info = await self.ops.open(await self.inode(path), os.O_RDONLY, CTX)
        try:
            data = bytearray()
            while True:
                # A view of a pooled buffer: copied before the next request, as pyfuse3 does.
                piece = bytes(await self.ops.read(info.fh, len(data), chunk))
                if not piece:
                    return bytes(data)
                data += piece
        finally:
            await self.ops.release(info.fh)

    async def mkdir(self, path: str) -> pyfuse3.EntryAttributes:
        parent, name = path.rstrip("/").rsplit("/", 1)
        inode = await self.inode(parent)
        return await self.ops.mkdir(inode, os.fsencode(name), 0o755, CTX)

    async def create(self, path: str) -> int:
        parent, name = path.rsplit("/", 1)
        inode = await self.inode(parent)
        info, _ = await self.ops.create(
            inode,
            os.fsencode(name),
            0o644,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
            CTX,
        )
        return int(info.fh)

    async def write_file(self, path: str, data: bytes, block: int = 128 << 10) -> None:
        """`cp`: create, write in order, close."""
        fh = await self.create(path)
        for offset in range(0, len(data), block):
            assert await self.ops.write(fh, offset, data[offset : offset + block]) == len(
                data[offset : offset + block]
            )
        await self.ops.flush(fh)
        await self.ops.release(fh)

    async def control(self, tx: str, command: str) -> None:
        """`echo COMMAND > .control`; FUSEError if the command fails."""
        info = await self.ops.open(await self.inode(f"{tx}/.control"), os.O_WRONLY, CTX)
        try:
            line = f"{command}\n".encode()
            assert await self.ops.write(info.fh, 0, line) == len(line)
        finally:
            await self.ops.flush(info.fh)
            await self.ops.release(info.fh)

    async def status(self, tx: str) -> str:
        return (await self.read_file(f"{tx}/.control")).decode().splitlines()[0]


async def _readdir(ops: UdrOperations, fh: int) -> list[bytes]:
    """The names a readdir hands out, gathered where the kernel's reply buffer would be."""
    names: list[bytes] = []

    def reply(token: object, name: bytes, attr: object, next_id: int) -> bool:
        names.append(name)
        return True

    real, pyfuse3.readdir_reply = pyfuse3.readdir_reply, reply
    try:
        await ops.readdir(fh, 0, pyfuse3.ReaddirToken())
    finally:
        pyfuse3.readdir_reply = real
    return names


def run(store: SampleStore, body: Callable[[Client], Awaitable[None]]) -> None:
    """Run `body` against the handlers of a mount of `store`, then check the store."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ops = await start_operations(Catalog(store.path), nursery, mountpoint="/in-process")
            await body(Client(ops))
            nursery.cancel_scope.cancel()

    trio.run(main)
    report = Catalog(store.path).fsck()
    assert report.ok, report


def errno_of(excinfo: pytest.ExceptionInfo[FUSEError]) -> int:
    return int(excinfo.value.errno)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SampleStore]:
    yield make_store(tmp_path, {"nyc_master": 2}, rows=3000)


def head(store: SampleStore) -> str:
    return store.catalog().head("main")


def test_a_version_reads_back_byte_for_byte(store: SampleStore) -> None:
    async def body(fs: Client) -> None:
        listed = await fs.listdir("@main/nyc_master")
        assert sorted(listed) == [
            ".changes",
            ".changes.txt",
            "latest.parquet",
            "v1.parquet",
            "v2.parquet",
        ]
        for version in (1, 2):
            source = store.sources[("main", "nyc_master", version)].read_bytes()
            attr = await fs.lookup(f"@main/nyc_master/v{version}.parquet")
            assert attr.st_size == len(source)
            assert await fs.read_file(f"@main/nyc_master/v{version}.parquet", 100_000) == source

    run(store, body)


def test_a_file_written_into_tx_commits_as_a_new_version(
    store: SampleStore, tmp_path: Path
) -> None:
    before = head(store)
    new = write_version(tmp_path / "new.parquet", "nyc_master", 9, 5000).read_bytes()

    async def body(fs: Client) -> None:
        await fs.mkdir("@main/.tx/nightly")
        await fs.write_file("@main/.tx/nightly/nyc_master.parquet", new)
        assert await fs.read_file("@main/.tx/nightly/nyc_master.parquet") == new
        await fs.control("@main/.tx/nightly", "commit nightly refresh")
        status = await fs.status("@main/.tx/nightly")
        assert status.startswith("committed ")
        # Shown at once under the branch, without waiting for the refs poll.
        assert await fs.read_file("@main/nyc_master/v3.parquet") == new

    run(store, body)
    catalog = store.catalog()
    commit = catalog.commit(head(store))
    assert list(commit.parents) == [before] and commit.message == "nightly refresh"
    assert len(catalog.table_versions("nyc_master", "main")) == 3


def test_abort_applies_nothing_and_the_directory_can_be_removed(
    store: SampleStore, tmp_path: Path
) -> None:
    before = head(store)
    new = write_version(tmp_path / "new.parquet", "nyc_master", 9, 500).read_bytes()

    async def body(fs: Client) -> None:
        await fs.mkdir("@main/.tx/t")
        await fs.write_file("@main/.tx/t/nyc_master.parquet", new)
        await fs.control("@main/.tx/t", "abort")
        assert await fs.status("@main/.tx/t") == "aborted: nothing was applied"
        tx_root = await fs.inode("@main/.tx")
        await fs.ops.rmdir(tx_root, b"t", CTX)
        assert "t" not in await fs.listdir("@main/.tx")

    run(store, body)
    assert head(store) == before
    assert store.catalog().staging.names("main") == []


def test_writes_outside_tx_are_refused_read_only(store: SampleStore) -> None:
    async def body(fs: Client) -> None:
        table = await fs.inode("@main/nyc_master")
        with pytest.raises(FUSEError) as refused:
            await fs.ops.create(table, b"x.parquet", 0o644, os.O_WRONLY | os.O_CREAT, CTX)
        assert errno_of(refused) == errno.EROFS
        version = await fs.inode("@main/nyc_master/v1.parquet")
        with pytest.raises(FUSEError) as refused:
            await fs.ops.open(version, os.O_WRONLY, CTX)
        assert errno_of(refused) == errno.EROFS
        with pytest.raises(FUSEError) as refused:
            await fs.ops.unlink(table, b"v1.parquet", CTX)
        assert errno_of(refused) == errno.EROFS
        with pytest.raises(FUSEError) as refused:
            await fs.ops.mkdir(pyfuse3.ROOT_INODE, b"new", 0o755, CTX)
        assert errno_of(refused) == errno.EROFS
        with pytest.raises(FUSEError) as refused:
            await fs.ops.rename(table, b"v1.parquet", table, b"v9.parquet", 0, CTX)
        assert errno_of(refused) == errno.EROFS

    run(store, body)


def test_a_name_that_is_not_parquet_is_refused_invalid(store: SampleStore) -> None:
    async def body(fs: Client) -> None:
        await fs.mkdir("@main/.tx/t")
        with pytest.raises(FUSEError) as refused:
            await fs.create("@main/.tx/t/notes.txt")
        assert errno_of(refused) == errno.EINVAL
        assert sorted(await fs.listdir("@main/.tx/t")) == [".control"]

    run(store, body)


def test_a_file_that_is_not_parquet_fails_the_commit_and_applies_nothing(
    store: SampleStore,
) -> None:
    before = head(store)

    async def body(fs: Client) -> None:
        await fs.mkdir("@main/.tx/t")
        await fs.write_file("@main/.tx/t/nyc_master.parquet", b"not a parquet file\n" * 100)
        with pytest.raises(FUSEError) as failed:
            await fs.control("@main/.tx/t", "commit broken")
        assert errno_of(failed) == errno.EINVAL
        assert (await fs.status("@main/.tx/t")).startswith("invalid: ")
        await fs.control("@main/.tx/t", "abort")

    run(store, body)
    assert head(store) == before


def test_out_of_order_writes_spill_and_commit_the_exact_bytes(
    store: SampleStore, tmp_path: Path
) -> None:
    new = write_version(tmp_path / "new.parquet", "nyc_master", 9, 20000).read_bytes()
    half = len(new) // 2

    async def body(fs: Client) -> None:
        await fs.mkdir("@main/.tx/t")
        fh = await fs.create("@main/.tx/t/nyc_master.parquet")
        # The second half first (a writer that seeks, as DuckDB may): not a stream.
        assert await fs.ops.write(fh, half, new[half:]) == len(new) - half
        assert await fs.ops.write(fh, 0, new[:half]) == half
        await fs.ops.release(fh)
        assert await fs.read_file("@main/.tx/t/nyc_master.parquet") == new
        await fs.control("@main/.tx/t", "commit out of order")
        assert await fs.read_file("@main/nyc_master/v3.parquet") == new

    run(store, body)


def test_a_table_changed_on_the_branch_meanwhile_is_a_conflict(
    store: SampleStore, tmp_path: Path
) -> None:
    new = write_version(tmp_path / "new.parquet", "nyc_master", 9, 500).read_bytes()

    async def body(fs: Client) -> None:
        await fs.mkdir("@main/.tx/t")
        await fs.write_file("@main/.tx/t/nyc_master.parquet", new)
        # Another writer commits the same table after the transaction opened.
        await trio.to_thread.run_sync(store.commit_version, "nyc_master")
        moved = head(store)
        with pytest.raises(FUSEError) as failed:
            await fs.control("@main/.tx/t", "commit late")
        assert errno_of(failed) == errno.EBUSY
        assert (await fs.status("@main/.tx/t")).startswith("conflict")
        assert head(store) == moved
        await fs.control("@main/.tx/t", "abort")

    run(store, body)
    assert len(store.catalog().table_versions("nyc_master", "main")) == 3


def test_rename_onto_a_table_and_unlink_decide_what_commits(
    store: SampleStore, tmp_path: Path
) -> None:
    new = write_version(tmp_path / "new.parquet", "nyc_master", 9, 800).read_bytes()
    other = write_version(tmp_path / "other.parquet", "scratch", 1, 300).read_bytes()
    before = head(store)

    async def body(fs: Client) -> None:
        await fs.mkdir("@main/.tx/t")
        # DuckDB's overwrite: write a temporary name, then rename it onto the table.
        await fs.write_file("@main/.tx/t/tmp_nyc_master.parquet", new)
        await fs.write_file("@main/.tx/t/scratch.parquet", other)
        tx = await fs.inode("@main/.tx/t")
        await fs.ops.rename(tx, b"tmp_nyc_master.parquet", tx, b"nyc_master.parquet", 0, CTX)
        await fs.ops.unlink(tx, b"scratch.parquet", CTX)
        listed = sorted(await fs.listdir("@main/.tx/t"))
        assert listed == [".control", "nyc_master.parquet"]
        await fs.control("@main/.tx/t", "commit renamed")
        assert await fs.read_file("@main/nyc_master/v3.parquet") == new

    run(store, body)
    commit = store.catalog().commit(head(store))
    assert list(commit.parents) == [before]
    assert [c.table for c in commit.changes] == ["nyc_master"]
