"""Where a FUSE request is answered: the pyfuse3 Operations of the mount, kept thin.

Names and attributes come from the namespace, bytes from the version reader and the change
logs. Every handler runs on the one trio thread; anything that may block is awaited in a
worker thread further down. Requests on the `.tx` staging directories go to
`fs/tx_operations.py`; every other write-side request is refused with EROFS and logged in
one line.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import pyfuse3
import trio
from pyfuse3 import FUSEError

from udrfs.catalog.paths import ChangesEntry
from udrfs.errors import NotFoundError, UdrError, VersionExpiredError, errno_for
from udrfs.fs.catalog_view import RefSpec
from udrfs.fs.namespace import Namespace
from udrfs.fs.nodes import (
    ChangesFile,
    LatestLink,
    Node,
    StatsFile,
    VersionFile,
)
from udrfs.fs.reader import OpenVersion, VersionReader
from udrfs.fs.stats import MountStats
from udrfs.fs.tx_operations import (
    ControlHandle,
    StagedHandle,
    TxHandle,
    TxRequests,
    is_tx_node,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


@dataclass
class _OpenChanges:
    ref: RefSpec
    log: ChangesEntry


@dataclass
class _OpenSnapshot:
    """A file whose content is fixed at open (`.stats`), like a /proc file."""

    data: bytes


_OpenFile = OpenVersion | _OpenChanges | _OpenSnapshot | TxHandle
_TX_HANDLES = (StagedHandle, ControlHandle)


def _handler(
    fn: Callable[Concatenate[UdrOperations, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[UdrOperations, P], Coroutine[Any, Any, R]]:
    """Counts the request and turns every failure into an errno (never into a crash)."""

    @functools.wraps(fn)
    async def wrapper(self: UdrOperations, *args: P.args, **kwargs: P.kwargs) -> R:
        self.stats.requests += 1
        try:
            return await fn(self, *args, **kwargs)
        except FUSEError:
            raise
        except Exception as exc:
            # An exception escaping a handler would end the whole mount.
            code = errno_for(exc)
            if isinstance(exc, VersionExpiredError):
                log.warning("%s refused: %s", fn.__name__, exc)
            if code == errno.EIO:
                self.stats.errors += 1
                if isinstance(exc, UdrError):
                    log.error("%s failed: %s", fn.__name__, exc)
                else:
                    log.exception("%s failed", fn.__name__)
            raise FUSEError(code) from None

    return wrapper


class UdrOperations(pyfuse3.Operations):
    """The mount's request handlers."""

    # The kernel asks a filesystem without this flag to handle lookups of "." and "..".
    supports_dot_lookup = True

    def __init__(
        self,
        namespace: Namespace,
        reader: VersionReader,
        stats: MountStats,
        direct_io: bool = False,
    ) -> None:
        super().__init__()
        self.ns = namespace
        self.reader = reader
        self.stats = stats
        self.tx = TxRequests(namespace, namespace.view.catalog, stats)
        # direct_io on versions bypasses the kernel page cache (for measuring the daemon).
        self.direct_io = direct_io
        self._files: dict[int, _OpenFile] = {}
        self._dirs: dict[int, tuple[Node, list[tuple[bytes, Node]]]] = {}
        self._next_handle = 1
        # Set once the kernel's INIT handshake is answered: the mount is usable from then on.
        self.initialized = trio.Event()

    def init(self) -> None:
        self.initialized.set()

    def _new_handle(self) -> int:
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def _refuse(self, request: str, where: str, code: int = errno.EROFS) -> FUSEError:
        return self.tx.refuse(request, where, code, "the mount is read-only")

    def _child_path(self, parent_inode: int, name: bytes) -> str:
        try:
            base = self.ns.node(parent_inode).path().rstrip("/")
        except NotFoundError:
            base = f"<inode {parent_inode}>"
        return f"{base}/{os.fsdecode(name)}"

    def _path(self, inode: int) -> str:
        try:
            return self.ns.node(inode).path()
        except NotFoundError:
            return f"<inode {inode}>"

    # -- names and attributes ------------------------------------------------------------

    @_handler
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self.stats.lookups += 1
        parent = self.ns.node(parent_inode)
        node = await self.ns.lookup(parent, name)
        try:
            attr = await self.ns.attributes(node)
        except BaseException:
            self.ns.discard_if_unused(node)
            raise
        self.ns.remember(node, parent, name)
        return attr

    @_handler
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            self.ns.forget(inode, count)

    @_handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return await self.ns.attributes(self.ns.node(inode))

    @_handler
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.ns.node(inode)
        if not isinstance(node, LatestLink):
            raise FUSEError(errno.EINVAL)
        return await self.ns.latest_target(node)

    @_handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self.ns.node(inode)
        if not node.is_dir:
            raise FUSEError(errno.ENOTDIR)
        handle = self._new_handle()
        # A snapshot, so entries added while listing cannot shift offsets already handed out.
        self._dirs[handle] = (node, await self.ns.entries(node))
        return handle

    @_handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        parent, entries = self._dirs[fh]
        for index in range(start_id, len(entries)):
            name, node = entries[index]
            attr = await self.ns.attributes(node, listing=True)
            if not pyfuse3.readdir_reply(token, name, attr, index + 1):
                break
            # readdirplus: every entry the kernel accepted is a lookup.
            self.ns.remember(node, parent, name)

    @_handler
    async def releasedir(self, fh: int) -> None:
        _, entries = self._dirs.pop(fh, (None, []))
        for _, node in entries:
            self.ns.discard_if_unused(node)

    @_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_files = len(self.ns)
        data.f_namemax = 255
        return data

    # -- files ---------------------------------------------------------------------------

    @_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.ns.node(inode)
        if is_tx_node(node):
            opened = await self.tx.open(node, flags)
            handle = self._new_handle()
            self._files[handle] = opened
            self.stats.open_files += 1
            # direct_io: writes arrive as written (no page-cache copy in the kernel), and reads
            # see the file as it is now.
            return pyfuse3.FileInfo(fh=handle, keep_cache=False, direct_io=True)
        if flags & _WRITE_FLAGS:
            raise self._refuse("open for writing", node.path())
        handle = self._new_handle()
        # Counted first, so that `.stats` opened now counts itself.
        self.stats.open_files += 1
        try:
            return await self._open(node, handle)
        except BaseException:
            self.stats.open_files -= 1
            self._files.pop(handle, None)
            raise

    async def _open(self, node: Node, handle: int) -> pyfuse3.FileInfo:
        if isinstance(node, VersionFile):
            manifest = await self.ns.view.manifest(node.info.manifest_id)
            # Released by `udr expire` after the kernel cached this file's entry?
            await self.ns.view.check_readable(manifest)
            self._files[handle] = OpenVersion(manifest)
            return pyfuse3.FileInfo(fh=handle, keep_cache=True, direct_io=self.direct_io)
        if isinstance(node, ChangesFile):
            self._files[handle] = _OpenChanges(node.ref, node.log)
            # direct_io: every read sees the log as it is now, not a cached page.
            return pyfuse3.FileInfo(fh=handle, keep_cache=False, direct_io=True)
        if isinstance(node, StatsFile):
            self._files[handle] = _OpenSnapshot(await self.ns.render_stats())
            return pyfuse3.FileInfo(fh=handle, keep_cache=False, direct_io=True)
        raise FUSEError(errno.EISDIR if node.is_dir else errno.EINVAL)

    @_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        opened = self._files[fh]
        self.stats.reads += 1
        if isinstance(opened, OpenVersion):
            self.stats.engine_reads += 1
            try:
                data: bytes | memoryview = await self.reader.read(opened, off, size)
            except FUSEError:
                self.stats.errors += 1  # damaged bytes: EIO, logged by the reader once per pack
                raise
        elif isinstance(opened, _OpenChanges):
            data = (await self.ns.changelogs.content(opened.ref, opened.log))[off : off + size]
        elif isinstance(opened, _OpenSnapshot):
            data = opened.data[off : off + size]
        else:
            data = await self.tx.read(opened, off, size)
        self.stats.bytes_served += len(data)
        # pyfuse3 accepts any contiguous buffer; a view avoids copying the version's bytes.
        return data  # type: ignore[return-value]

    @_handler
    async def flush(self, fh: int) -> None:
        opened = self._files.get(fh)
        if isinstance(opened, _TX_HANDLES):
            await self.tx.flush(opened)

    @_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        opened = self._files.get(fh)
        if isinstance(opened, _TX_HANDLES):
            await self.tx.fsync(opened)

    @_handler
    async def release(self, fh: int) -> None:
        opened = self._files.pop(fh, None)
        if opened is not None:
            self.stats.open_files -= 1
        if isinstance(opened, _TX_HANDLES):
            await self.tx.release(opened)

    # No extended attributes. ENOSYS (not ENOATTR) makes the kernel stop asking: `ls -l`
    # would otherwise send two xattr requests per entry (ACLs, security labels).
    @_handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        raise FUSEError(errno.ENOSYS)

    @_handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        raise FUSEError(errno.ENOSYS)

    # -- the write side: `.tx` nodes to fs/tx_operations.py, everything else refused --------

    def _tx_parent(self, parent_inode: int) -> Node | None:
        try:
            parent = self.ns.node(parent_inode)
        except NotFoundError:
            return None
        return parent if is_tx_node(parent) else None

    @_handler
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self.ns.node(inode)
        if not is_tx_node(node):
            raise self._refuse("setattr", self._path(inode))
        opened = self._files.get(fh) if fh is not None else None
        handle = opened if isinstance(opened, _TX_HANDLES) else None
        await self.tx.setattr(node, attr.st_size if fields.update_size else None, handle)
        return await self.ns.attributes(node)

    @_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        opened = self._files.get(fh)
        if isinstance(opened, _TX_HANDLES):
            return await self.tx.write(opened, off, buf)
        raise self._refuse("write", f"<handle {fh}>")

    @_handler
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self._tx_parent(parent_inode)
        if parent is None:
            raise self._refuse("create", self._child_path(parent_inode, name))
        opened, node = await self.tx.create(parent, name)
        handle = self._new_handle()
        self._files[handle] = opened
        self.stats.open_files += 1
        attr = await self.ns.attributes(node)
        self.ns.remember(node, parent, name)
        return pyfuse3.FileInfo(fh=handle, keep_cache=False, direct_io=True), attr

    @_handler
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise self._refuse("mknod", self._child_path(parent_inode, name))

    @_handler
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._tx_parent(parent_inode)
        if parent is None:
            raise self._refuse("mkdir", self._child_path(parent_inode, name))
        node = await self.tx.mkdir(parent, name, ctx)
        attr = await self.ns.attributes(node)
        self.ns.remember(node, parent, name)
        return attr

    @_handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._tx_parent(parent_inode)
        if parent is None:
            raise self._refuse("unlink", self._child_path(parent_inode, name))
        await self.tx.unlink(parent, name)

    @_handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._tx_parent(parent_inode)
        if parent is None:
            raise self._refuse("rmdir", self._child_path(parent_inode, name))
        await self.tx.rmdir(parent, name)

    @_handler
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise self._refuse("symlink", self._child_path(parent_inode, name))

    @_handler
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise self._refuse("link", self._child_path(new_parent_inode, new_name))

    @_handler
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        where = (
            f"{self._child_path(parent_inode_old, name_old)} -> "
            f"{self._child_path(parent_inode_new, name_new)}"
        )
        old_parent = self._tx_parent(parent_inode_old)
        new_parent = self._tx_parent(parent_inode_new)
        if old_parent is None or new_parent is None:
            raise self._refuse("rename", where)
        await self.tx.rename(old_parent, name_old, new_parent, name_new, flags, where)

    @_handler
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        raise self._refuse("setxattr", self._path(inode))

    @_handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise self._refuse("removexattr", self._path(inode))
