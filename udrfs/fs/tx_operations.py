"""The write side of the mount: FUSE requests under `@branch/.tx/`, answered here.

`fs/operations.py` hands every request whose node (or parent) is a `.tx` node to `TxRequests`;
everything else stays read-only. The rules (docs/mount.md, "Writing through .tx"):

* `mkdir .tx/NAME` opens transaction NAME on a snapshot of the branch's head; `rmdir` of an
  empty one (`rm -r` empties it first) aborts and forgets it.
* Only `TABLE.parquet` can be created (EINVAL and one log line otherwise). Bytes are chunked
  into the store as they are written (fs/staged_writer.py); the file is staged as table TABLE
  when its last writer closes it (`flush` after writes, or `release`).
* A staged file reads back exactly as written. While it is open for writing, opening it for
  reading elsewhere fails with EBUSY (the bytes so far are in the chunker, not readable).
* `rm TABLE.parquet` takes the file out of the transaction (the branch keeps its version);
  deleting a table from the branch is the command `drop TABLE`.
* `.control` runs commands (fs/control.py); unlinking it succeeds and does nothing, so that
  `rm -r` of the directory works.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field

import pyfuse3
import trio
from pyfuse3 import FUSEError

from udrfs.catalog import Catalog
from udrfs.catalog.authors import user_at_host
from udrfs.errors import AlreadyExistsError, InvalidNameError, errno_for
from udrfs.fs.control import (
    MAX_COMMAND_LINE,
    check_command,
    could_begin_command,
    render_status,
    run_command,
    shorten,
)
from udrfs.fs.namespace import Namespace
from udrfs.fs.nodes import (
    CONTROL_NAME,
    TX_NODES,
    ControlFile,
    Node,
    StagedFileNode,
    TxDir,
    TxRootDir,
)
from udrfs.fs.staged_writer import FileTooLargeError, WriterClosedError
from udrfs.fs.stats import MountStats
from udrfs.fs.tx_directories import StagedFile, Transactions, TxError, TxState, table_of

log = logging.getLogger(__name__)

_WRITE_ACCESS = os.O_WRONLY | os.O_RDWR


@dataclass(eq=False)
class StagedHandle:
    """A `.tx` file opened by a client."""

    state: TxState
    file: StagedFile
    writing: bool


@dataclass(eq=False)
class ControlHandle:
    """`.control` opened by a client: its status as of the open, and a partial command."""

    state: TxState
    snapshot: bytes
    pending: bytearray = field(default_factory=bytearray)
    # A line longer than MAX_COMMAND_LINE was refused: the rest of it is refused too.
    refused: bool = False
    # A commit ran through this descriptor: later lines that are not commands are the rest of
    # its message (taken, not recorded).
    after_commit: bool = False


TxHandle = StagedHandle | ControlHandle


def is_tx_node(node: Node) -> bool:
    return isinstance(node, TX_NODES)


class TxRequests:
    """Answers the requests `fs/operations.py` routes to `.tx` nodes."""

    def __init__(self, ns: Namespace, catalog: Catalog, stats: MountStats) -> None:
        self.ns = ns
        self.registry: Transactions = ns.transactions
        self.catalog = catalog
        self.stats = stats

    def refuse(self, request: str, where: str, code: int, why: object) -> FUSEError:
        self.stats.refusals += 1
        log.warning("refused %s %s: %s (%s)", request, where, why, errno.errorcode[code])
        return FUSEError(code)

    # -- directories -----------------------------------------------------------------------

    async def mkdir(self, parent: Node, name: bytes, ctx: pyfuse3.RequestContext) -> Node:
        where = f"{parent.path()}/{os.fsdecode(name)}"
        if not isinstance(parent, TxRootDir):
            raise self.refuse("mkdir", where, errno.EINVAL, "a transaction holds only files")
        try:
            state = await self.registry.open(parent.branch, os.fsdecode(name), _author(ctx))
        except InvalidNameError as exc:
            raise self.refuse("mkdir", where, errno.EINVAL, exc) from None
        except AlreadyExistsError as exc:
            raise FUSEError(errno.EEXIST) from exc
        return self.ns.intern(TxDir(parent, state))

    async def rmdir(self, parent: Node, name: bytes) -> None:
        where = f"{parent.path()}/{os.fsdecode(name)}"
        if not isinstance(parent, TxRootDir):
            raise self.refuse("rmdir", where, errno.ENOTDIR, "not a transaction")
        state = await self.registry.get(parent.branch, os.fsdecode(name))
        if state is None:
            raise FUSEError(errno.ENOENT)
        try:
            await self.registry.remove(state)
        except TxError as exc:
            raise self.refuse("rmdir", where, exc.errno, exc) from None
        log.info("removed transaction %s on %s (%s)", state.name, state.branch, state.phase)

    # -- files -----------------------------------------------------------------------------

    async def create(self, parent: Node, name: bytes) -> tuple[TxHandle, Node]:
        where = f"{parent.path()}/{os.fsdecode(name)}"
        if not isinstance(parent, TxDir):
            raise self.refuse("create", where, errno.EINVAL, "files go into .tx/NAME/")
        if name == CONTROL_NAME:
            raise FUSEError(errno.EEXIST)
        try:
            table = table_of(name)
        except InvalidNameError as exc:
            raise self.refuse("create", where, errno.EINVAL, exc) from None
        handle = await self._open_for_writing(parent.state, table, where)
        return handle, self.ns.intern(StagedFileNode(parent, handle.file))

    async def open(self, node: Node, flags: int) -> TxHandle:
        """A handle for `node` (`.control` or a staged file)."""
        writing = bool(flags & _WRITE_ACCESS)
        if isinstance(node, ControlFile):
            await self.registry.settle(node.state)  # so `cp ...; cat .control` shows it staged
            return ControlHandle(node.state, render_status(node.state))
        if not isinstance(node, StagedFileNode):
            raise FUSEError(errno.EISDIR if node.is_dir else errno.EINVAL)
        state, file = node.state, node.file
        if state.files.get(file.table) is not file:
            raise FUSEError(errno.ENOENT)  # removed meanwhile
        if writing:
            handle = await self._open_for_writing(state, file.table, node.path())
            if flags & os.O_TRUNC and handle.file.writer is not None:
                handle.file.writer.truncate(0)
            return handle
        if file.finishing is not None:
            await file.finishing.wait()  # closed just now: staged in a moment
        if file.writer is not None:
            raise self.refuse("open", node.path(), errno.EBUSY, "it is being written")
        return StagedHandle(state, file, writing=False)

    async def _open_for_writing(self, state: TxState, table: str, where: str) -> StagedHandle:
        try:
            file, _ = await self.registry.writer_for(state, table)
        except TxError as exc:
            raise self.refuse("open for writing", where, exc.errno, exc) from None
        file.write_handles += 1
        return StagedHandle(state, file, writing=True)

    async def write(self, handle: TxHandle, offset: int, data: bytes) -> int:
        if isinstance(handle, ControlHandle):
            return await self._control(handle, data)
        if not handle.writing:
            raise FUSEError(errno.EBADF)
        state, file = handle.state, handle.file
        if state.files.get(file.table) is not file:
            raise FUSEError(errno.ESTALE)  # removed, or its transaction ended
        writer = file.writer
        if writer is None or file.finishing is not None:
            # Written after its last finish (a truncate without a handle finished it).
            _, writer = await self.registry.writer_for(state, file.table)
        try:
            await writer.write(offset, data)
        except FileTooLargeError as exc:
            where = f"/@{state.branch}/.tx/{state.name}/{os.fsdecode(file.name)}"
            raise self.refuse("write", where, errno.EFBIG, exc) from None
        except Exception as exc:
            raise _fuse_error(exc, f"writing {file.table}") from None
        self.stats.writes += 1
        self.stats.bytes_written += len(data)
        return len(data)

    async def read(self, handle: TxHandle, offset: int, size: int) -> bytes:
        if isinstance(handle, ControlHandle):
            return handle.snapshot[offset : offset + size]
        file = handle.file
        if handle.writing and file.writer is not None:
            return await file.writer.read(offset, size)
        content = file.content
        if content is None or offset >= content.size:
            return b""
        return await trio.to_thread.run_sync(self._read_content, file, offset, size)

    def _read_content(self, file: StagedFile, offset: int, size: int) -> bytes:
        assert file.content is not None
        with self.catalog.open_chunks(file.content.chunks, file.table) as f:
            f.seek(offset)
            return f.read(size) or b""

    async def flush(self, handle: TxHandle) -> None:
        """close() of a descriptor: a command without a newline runs now; a file's queued
        writes are applied, so their errors reach the closing process. The file is finished
        at release (the last close): a flush also comes from every process that inherited the
        descriptor and exits or execs, while the writer goes on writing."""
        if isinstance(handle, ControlHandle):
            if handle.pending.strip():
                await self._control(handle, b"\n")
            return
        await self.fsync(handle)

    async def fsync(self, handle: TxHandle) -> None:
        if isinstance(handle, StagedHandle) and handle.file.writer is not None:
            try:
                await handle.file.writer.settle()
            except Exception as exc:
                raise _fuse_error(exc, f"writing {handle.file.table}") from None

    async def release(self, handle: TxHandle) -> None:
        """The last descriptor of a handle is closed: a file no handle writes any more is
        finished and staged. Its errors show in `.control` (release has no caller)."""
        if not isinstance(handle, StagedHandle) or not handle.writing:
            return
        state, file = handle.state, handle.file
        file.write_handles -= 1
        if file.write_handles > 0 or file.writer is None:
            return
        if not file.writer.changed and file.content is not None:
            file.writer.abort()  # opened for writing, nothing written: the file stays as it was
            file.writer = None
            return
        try:
            await self.registry.finish(state, file)
        except WriterClosedError:
            pass  # removed (rm, abort) right after it was closed: nothing to stage
        except Exception as exc:
            log.error("%s/%s could not be staged: %s", state.name, file.table, exc)

    async def setattr(self, node: Node, size: int | None, handle: TxHandle | None) -> None:
        """Only a staged file's size changes (truncate, O_TRUNC); modes and times are
        accepted and ignored, so that `cp -p` and `touch` work."""
        if size is None or not isinstance(node, StagedFileNode):
            return
        state, file = node.state, node.file
        if state.files.get(file.table) is not file:
            raise FUSEError(errno.ENOENT)
        try:
            if file.writer is not None:
                file.writer.truncate(size)
            else:
                await self.registry.truncate(state, file, size)
        except TxError as exc:
            raise self.refuse("truncate", node.path(), exc.errno, exc) from None
        except FileTooLargeError as exc:
            raise self.refuse("truncate", node.path(), errno.EFBIG, exc) from None
        except Exception as exc:
            raise _fuse_error(exc, f"truncating {file.table}") from None

    async def unlink(self, parent: Node, name: bytes) -> None:
        where = f"{parent.path()}/{os.fsdecode(name)}"
        if not isinstance(parent, TxDir):
            raise self.refuse("unlink", where, errno.EISDIR, "a transaction is removed by rmdir")
        if name == CONTROL_NAME:
            return  # stays; succeeding lets `rm -r` go on to the rmdir
        try:
            table = table_of(name)
        except InvalidNameError:
            raise FUSEError(errno.ENOENT) from None
        if table not in parent.state.files:
            raise FUSEError(errno.ENOENT)
        await self.registry.unlink(parent.state, table)

    async def rename(
        self, old_parent: Node, old: bytes, new_parent: Node, new: bytes, flags: int, where: str
    ) -> None:
        """Within one transaction only (DuckDB writes `tmp_T.parquet`, then renames it onto
        an existing `T.parquet`); between transactions EXDEV makes `mv` copy instead."""
        if not isinstance(old_parent, TxDir) or not isinstance(new_parent, TxDir):
            raise self.refuse("rename", where, errno.EINVAL, "only files in a transaction move")
        if old_parent.state is not new_parent.state:
            raise FUSEError(errno.EXDEV)
        if flags & pyfuse3.RENAME_EXCHANGE or CONTROL_NAME in (old, new):
            raise self.refuse("rename", where, errno.EINVAL, "not supported here")
        try:
            old_table, new_table = table_of(old), table_of(new)
        except InvalidNameError as exc:
            raise self.refuse("rename", where, errno.EINVAL, exc) from None
        state = old_parent.state
        if flags & pyfuse3.RENAME_NOREPLACE and new_table in state.files:
            raise FUSEError(errno.EEXIST)
        try:
            await self.registry.rename(state, old_table, new_table)
        except TxError as exc:
            raise self.refuse("rename", where, exc.errno, exc) from None

    # -- .control --------------------------------------------------------------------------

    async def _control(self, handle: ControlHandle, data: bytes) -> int:
        state = handle.state
        where = f"/@{state.branch}/.tx/{state.name}/.control"
        if handle.refused:
            raise FUSEError(errno.EINVAL)  # the rest of a line refused already (logged)
        *lines, tail = (bytes(handle.pending) + data).split(b"\n")
        if len(tail) > MAX_COMMAND_LINE or any(len(line) > MAX_COMMAND_LINE for line in lines):
            handle.pending.clear()
            handle.refused = True
            why = f"a command line is at most {MAX_COMMAND_LINE} bytes; reopen .control"
            raise self.refuse("write", where, errno.EINVAL, why)
        commands = [c for c in (line.decode(errors="replace").strip() for line in lines) if c]
        partial = tail.decode(errors="replace")
        try:
            # The whole write, checked before any command in it runs.
            after_commit = handle.after_commit
            for command in commands:
                after_commit = _check_line(command, after_commit)
            if partial.strip() and commands and not (after_commit or could_begin_command(partial)):
                check_command(partial)
        except TxError as exc:
            handle.pending.clear()
            if state.phase in ("open", "failed"):  # an ended one keeps its outcome
                state.status = str(exc)
                await self.registry.record_status(state)
            raise self.refuse("write", where, exc.errno, exc) from None
        handle.pending = bytearray(tail)
        for command in commands:
            if handle.after_commit and not _is_command(command):
                # The shell writes a multi-line message a line at a time: the commit ran
                # with its first line; the rest is taken (not recorded), never an error.
                log.info("%s: a commit message is one line; ignored %r", where, shorten(command))
                continue
            is_commit = command.split(" ", 1)[0] == "commit"
            handle.after_commit |= is_commit  # its outcome, failed or not, is on line 1
            try:
                await run_command(self.registry, state, command)
            except TxError as exc:
                handle.pending.clear()
                log.warning("command %r in %s failed: %s", shorten(command), where, exc)
                raise FUSEError(exc.errno) from None
            if is_commit:
                self.stats.commits += 1
            log.info("%s in %s on %s: %s", shorten(command), state.name, state.branch, state.status)
        return len(data)


def _is_command(line: str) -> bool:
    try:
        check_command(line)
    except TxError:
        return False
    return True


def _check_line(line: str, after_commit: bool) -> bool:
    """Check one line of a write (TxError if it is refused); whether a commit precedes the
    next line."""
    if not after_commit:
        check_command(line)
    return after_commit or line.split(" ", 1)[0] == "commit"


def _author(ctx: pyfuse3.RequestContext) -> str:
    """`user@host` of the process that opened the transaction."""
    return user_at_host(ctx.uid)


def _fuse_error(exc: BaseException, doing: str) -> FUSEError:
    if isinstance(exc, FUSEError):
        return exc
    code = errno_for(exc)
    if code == errno.EIO:
        log.error("%s failed: %r", doing, exc)
    return FUSEError(code)
