"""The `.tx` directories: named transactions of the catalog, as the mount shows them.

`MOUNT/@main/.tx/nightly/` is the catalog's named transaction `nightly` on `main`
(catalog/staging.py): `mkdir` opens it on a snapshot of the branch's head, every
`NAME.parquet` written into it is staged as table NAME when it is closed, and its `.control`
file commits, aborts or drops (fs/control.py). The state that must survive the daemon lives
in the store, and what it means after a restart is the catalog's rule
(`NamedTransaction.recover` in catalog/staging.py: the staged manifests, the recorded
outcome, and notes on files that are not staged tables); this module keeps what the daemon
needs on top of it: which files are open for writing, each file's bytes while it is written
(fs/staged_writer.py), and the outcome of the last command.

Every change to one transaction happens under its `lock` (a trio lock held across the
worker-thread calls that write state), so its state file is never written from two places.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import trio

from udrfs.catalog import Catalog, Transaction
from udrfs.catalog.model import DEDUP
from udrfs.catalog.names import check_table_name
from udrfs.catalog.staging import PARQUET_SUFFIX, TxOutcome
from udrfs.catalog.tx_files import TxFileNote, remove_stale_spills
from udrfs.errors import AlreadyExistsError, InvalidKeyError, InvalidNameError, UdrError
from udrfs.fs.catalog_view import CatalogView
from udrfs.fs.staged_writer import (
    DEFAULT_MAX_FILE_SIZE,
    FileTooLargeError,
    FinishedFile,
    StagedContent,
    StagedWriter,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TxPhase = Literal["open", "failed", "committed", "aborted", "lost"]


class TxError(UdrError):
    """A `.tx` request that cannot be done: `errno` for the caller, the message for the log
    and for `.control`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


class TxEndedError(TxError):
    """The transaction was committed, aborted or failed: it takes no more changes."""


def _phase(text: str) -> TxPhase:
    if text not in ("open", "failed", "committed", "aborted"):
        raise ValueError(f"unknown transaction phase {text!r}")
    return text  # type: ignore[return-value]


def table_of(name: bytes) -> str:
    """The table a file name in a `.tx` directory stands for; InvalidNameError otherwise."""
    text = os.fsdecode(name)
    if not text.endswith(PARQUET_SUFFIX):
        raise InvalidNameError(f"{text!r}: only NAME.parquet files become tables")
    return check_table_name(text[: -len(PARQUET_SUFFIX)])


@dataclass(eq=False)
class StagedFile:
    """One `NAME.parquet` in a `.tx` directory."""

    table: str
    serial: int
    content: StagedContent | None = None
    rows: int | None = None
    # A staged manifest stands for the file (False: identical to the branch's, or a problem).
    staged: bool = False
    problem: str | None = None
    writer: StagedWriter | None = None
    # Open handles that may write; the file is finished when the last one is released.
    write_handles: int = 0
    # Set while the file is being finished (chunks sealed, Parquet checked, staged).
    finishing: trio.Event | None = None
    mtime_ns: int = field(default_factory=time.time_ns)

    @property
    def name(self) -> bytes:
        return os.fsencode(self.table + PARQUET_SUFFIX)

    @property
    def size(self) -> int:
        if self.writer is not None:
            return self.writer.size
        return self.content.size if self.content is not None else 0


@dataclass(eq=False)
class TxState:
    """One `.tx/<name>/` directory."""

    branch: str
    name: str
    serial: int
    tx: Transaction | None
    phase: TxPhase = "open"
    # The first line of `.control`: the outcome of the last command.
    status: str = "open"
    files: dict[str, StagedFile] = field(default_factory=dict)
    notes: dict[str, TxFileNote] = field(default_factory=dict)
    lock: trio.Lock = field(default_factory=trio.Lock)
    created_ns: int = field(default_factory=time.time_ns)

    @property
    def dropped(self) -> list[str]:
        if self.tx is None:
            return []
        return sorted(t for t, m in self.tx.staged.items() if m is None)

    def check_open(self) -> Transaction:
        if self.phase != "open" or self.tx is None:
            raise TxEndedError(
                errno.EROFS,
                f"transaction {self.name} on {self.branch} is {self.phase}; "
                "remove it (rm -r) and mkdir a new one",
            )
        return self.tx


class Transactions:
    """The `.tx` directories of every branch, loaded from the store on first use."""

    def __init__(
        self,
        catalog: Catalog,
        view: CatalogView,
        nursery: trio.Nursery,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    ) -> None:
        self.catalog = catalog
        self.view = view
        # Where writers drain: the daemon's nursery, open as long as requests are answered.
        self.nursery = nursery
        self.max_file_size = max_file_size
        self._states: dict[tuple[str, str], TxState] = {}
        self._serials = itertools.count(1)
        # State files and commits: few at a time, they mostly wait for fsync.
        self._limiter = trio.CapacityLimiter(2)
        # Chunking of written files: one worker per core and some waiting on the disk.
        self.write_limiter = trio.CapacityLimiter(4)
        self._loading = trio.Lock()

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def next_serial(self) -> int:
        return next(self._serials)

    async def start(self) -> None:
        removed = await trio.to_thread.run_sync(remove_stale_spills, self.catalog.store)
        if removed:
            log.info("removed %d spill files of earlier daemons", removed)

    # -- which transactions exist ----------------------------------------------------------

    async def names(self, branch: str) -> list[str]:
        on_disk: list[str] = await trio.to_thread.run_sync(self.catalog.staging.names, branch)
        known = {name for (b, name) in self._states if b == branch}
        return sorted(known | set(on_disk))

    async def get(self, branch: str, name: str) -> TxState | None:
        """The open (or just ended) transaction `name` of `branch`, loading it from the store
        after a restart; None if there is none."""
        state = self._states.get((branch, name))
        if state is not None:
            return state
        async with self._loading:
            state = self._states.get((branch, name))
            if state is None:
                on_disk = await trio.to_thread.run_sync(self.catalog.staging.names, branch)
                if name not in on_disk:
                    return None
                state = await trio.to_thread.run_sync(self._load, branch, name)
                self._states[(branch, name)] = state
            return state

    def _load(self, branch: str, name: str) -> TxState:
        """Rebuild a `.tx` directory from the store (after a restart); the rules of what the
        store's records mean are the catalog's (`NamedTransaction.recover`)."""
        state = TxState(branch, name, self.next_serial(), None)
        found = self.catalog.staging.named(branch, name).recover()
        if found.phase == "lost":
            state.phase, state.status = "lost", f"lost: {found.status}; remove it (rm -r)"
            log.warning("transaction %s on %s is lost: %s", name, branch, found.status)
            return state
        state.phase, state.status = _phase(found.phase), found.status
        if found.landed is not None:
            # Killed after the commit point, before recording it: it committed.
            log.info("transaction %s on %s had committed as %s", name, branch, found.landed)
            if found.unrecorded is not None:
                log.warning(
                    "could not record that %s on %s committed: %s", name, branch, found.unrecorded
                )
            return state
        state.tx = found.tx
        for table, m in found.staged.items():
            state.files[table] = StagedFile(
                table,
                self.next_serial(),
                StagedContent(m.chunks, m.size, m.blake3),
                rows=m.rows,
                staged=True,
            )
        for file_name, note in found.blocked.items():
            table = file_name[: -len(PARQUET_SUFFIX)]
            content = (
                StagedContent(note.chunks, note.size, note.blake3 or "")
                if note.chunks is not None
                else None
            )
            state.files[table] = StagedFile(
                table, self.next_serial(), content, problem=note.problem
            )
            state.notes[file_name] = note
        return state

    # -- opening and removing --------------------------------------------------------------

    async def open(self, branch: str, name: str, author: str | None) -> TxState:
        async with self._loading:
            if (branch, name) in self._states:
                raise AlreadyExistsError(f"transaction {name!r} is already open on {branch!r}")
            tx: Transaction = await trio.to_thread.run_sync(
                self.catalog.staging.open, branch, name, author, limiter=self._limiter
            )
            state = TxState(branch, name, self.next_serial(), tx)
            self._states[(branch, name)] = state
        log.info("opened transaction %s on %s at %s", name, branch, tx.base)
        return state

    async def remove(self, state: TxState) -> None:
        """rmdir: the directory must be empty (rm -r empties it first); an open transaction
        is aborted, and the transaction (its outcome included) is forgotten."""
        async with state.lock:
            if state.files and state.phase in ("open", "failed"):
                raise TxError(
                    errno.ENOTEMPTY,
                    f"{len(state.files)} file(s) are staged; rm them (rm -r) or abort first",
                )
            self._drop_files(state)
            if state.phase == "open" and state.tx is not None:
                state.tx.abort()
            if state.phase in ("open", "failed"):
                state.phase = "aborted"
            await self.call(self._forget, state.branch, state.name)
        self._states.pop((state.branch, state.name), None)

    async def end(self, state: TxState, phase: TxPhase, status: str) -> None:
        """The transaction committed or was aborted: it takes no more changes, and `status`
        stays the first line of `.control` (across restarts too) until the directory is
        removed. The caller holds the lock."""
        self._drop_files(state)
        if state.phase == "open" and state.tx is not None and phase == "aborted":
            state.tx.abort()
        if state.phase in ("open", "failed"):
            state.phase = phase
        state.status = status
        if state.tx is not None:
            await self.call(self._record_end, state.tx, TxOutcome(state.phase, status))

    def _record_end(self, tx: Transaction, outcome: TxOutcome) -> None:
        assert tx.name is not None
        self.catalog.staging.named(tx.branch, tx.name).end(tx, outcome)

    async def record_status(self, state: TxState) -> None:
        """Keep the status of a failed command in the store, so that it reads the same after
        a restart. Best effort: the command's own error already reached its caller."""
        async with state.lock:
            if state.tx is None or state.phase not in ("open", "failed"):
                return
            outcome = TxOutcome(state.phase, state.status)
            try:
                await self.call(self.catalog.staging.save, state.tx, outcome)
            except Exception as exc:
                log.warning(
                    "could not record the status of %s on %s: %s", state.name, state.branch, exc
                )

    def _drop_files(self, state: TxState) -> None:
        for file in state.files.values():
            if file.writer is not None:
                file.writer.abort()
                file.writer = None
        state.files.clear()
        state.notes.clear()

    def _forget(self, branch: str, name: str) -> None:
        self.catalog.staging.named(branch, name).discard()

    # -- files -----------------------------------------------------------------------------

    async def writer_for(self, state: TxState, table: str) -> tuple[StagedFile, StagedWriter]:
        """The file `table` of `state`, made if new, with a writer (shared by every handle
        that writes it). The file is noted as being written before any byte is accepted."""
        while True:
            known = state.files.get(table)
            if known is not None and known.finishing is not None:
                await known.finishing.wait()  # its bytes so far are the new writer's start
                continue
            async with state.lock:
                known = state.files.get(table)
                if known is None or known.finishing is None:
                    return await self._writer_locked(state, table)

    async def _writer_locked(self, state: TxState, table: str) -> tuple[StagedFile, StagedWriter]:
        tx = state.check_open()
        file = state.files.get(table)
        if file is None:
            file = state.files[table] = StagedFile(table, self.next_serial())
        if file.writer is not None:
            return file, file.writer
        file_name = os.fsdecode(file.name)
        file.writer = StagedWriter(
            self.catalog,
            f"{state.name}/{file_name}",
            file.content,
            self.nursery,
            self.write_limiter,
            self.max_file_size,
            # A dedup table's file is rewritten when it is finished, not at the commit.
            functools.partial(tx.lay_out_file, table) if tx.policy(table).layout == DEDUP else None,
        )
        note = state.notes.get(file_name)
        if note is None or not note.writing:
            # Noted before any byte is accepted: a daemon killed while the file is written
            # then shows it as incomplete, instead of committing without it.
            state.notes[file_name] = TxFileNote(
                writing=True,
                replacing=tx.staged.get(table),
                problem=note.problem if note else None,
                chunks=note.chunks if note else None,
                size=note.size if note else 0,
                blake3=note.blake3 if note else None,
            )
            await self._save_notes(state)
        return file, file.writer

    async def finish(self, state: TxState, file: StagedFile) -> None:
        """Stage what was written into `file` (its last writer closed it): a table if it is
        Parquet, else a problem that blocks the commit. Raises what the writer failed with.

        `file.finishing` is set before the first await, so a request that arrives after the
        release that called this (a commit, a read) finds it and waits."""
        writer = file.writer
        if writer is None:
            return
        if file.finishing is not None:
            await file.finishing.wait()
            return
        file.finishing = done = trio.Event()
        try:
            await self._finish(state, file, writer)
        finally:
            file.finishing = None
            done.set()

    async def _finish(self, state: TxState, file: StagedFile, writer: StagedWriter) -> None:
        try:
            finished = await writer.finish()
        except Exception as exc:
            if file.writer is writer:
                file.writer = None
                file.problem = f"{os.fsdecode(file.name)} could not be stored: {exc}"
                file.content = None
            raise
        async with state.lock:
            if file.writer is not writer or state.files.get(file.table) is not file:
                return  # removed, rewritten or the transaction ended meanwhile
            file.writer = None
            if state.phase != "open" or state.tx is None:
                return
            await self._stage(state, file, finished)

    async def settle(self, state: TxState, grace: float = 0.0) -> list[str]:
        """Wait until no file of `state` is being finished; give handles still open for
        writing up to `grace` seconds to be released. Returns the files still open."""
        deadline = trio.current_time() + grace
        while True:
            finishing = [f.finishing for f in state.files.values() if f.finishing is not None]
            for event in finishing:
                await event.wait()
            open_files = [os.fsdecode(f.name) for f in state.files.values() if f.write_handles]
            if finishing or (open_files and trio.current_time() < deadline):
                # A close() returns before its release reaches the daemon: give it a moment.
                await trio.sleep(0.01 if not finishing else 0)
                continue
            return sorted(open_files)

    async def _stage(self, state: TxState, file: StagedFile, finished: FinishedFile) -> None:
        assert state.tx is not None
        file_name = os.fsdecode(file.name)
        file.content, file.mtime_ns = finished.content, time.time_ns()
        desc, problem, tx = finished.desc, finished.problem, state.tx
        manifest = None
        if desc is not None:
            content = finished.content
            try:
                manifest = await self.call(
                    tx.stage_chunks,
                    file.table,
                    content.chunks,
                    content.blake3,
                    desc,
                    None,
                    finished.laid_out,
                )
            except InvalidKeyError as exc:  # the table's key is not in the file
                desc, problem = None, f"{file_name}: {exc}"
        if desc is not None:
            file.staged = manifest is not None
            file.rows, file.problem = desc.rows, None
            state.notes.pop(file_name, None)
            await self.call(self.catalog.staging.save, tx)
            log.info("staged %s in %s on %s", file_name, state.name, state.branch)
        else:
            file.staged, file.rows, file.problem = False, None, problem
            tx.unstage(file.table)
            state.notes[file_name] = TxFileNote(
                problem=problem,
                chunks=finished.content.chunks,
                size=finished.content.size,
                blake3=finished.content.blake3,
            )
            await self.call(self.catalog.staging.save, state.tx)
            # An empty file is what some writers create before they write (polars): not news.
            level = logging.WARNING if finished.content.size else logging.DEBUG
            log.log(level, "%s in %s on %s: %s", file_name, state.name, state.branch, file.problem)
        await self._save_notes(state)

    async def truncate(self, state: TxState, file: StagedFile, size: int) -> None:
        """A truncate with no handle open for writing (`truncate -s`): write, then finish."""
        if size > self.max_file_size:  # refused before the file is opened for writing
            raise FileTooLargeError(os.fsdecode(file.name), size, self.max_file_size)
        _, writer = await self.writer_for(state, file.table)
        writer.truncate(size)
        await self.finish(state, file)

    async def unlink(self, state: TxState, table: str) -> None:
        """rm of a file: it is no longer part of the transaction (the branch's version stays)."""
        async with state.lock:
            await self.forget_file(state, table)
            if state.phase == "open" and state.tx is not None and table in state.tx.staged:
                state.tx.unstage(table)
                await self.call(self.catalog.staging.save, state.tx)

    async def rename(self, state: TxState, old: str, new: str) -> None:
        """Move a finished file to another name in the same transaction: it is staged as
        table `new` and no longer as `old`; a file already called `new` is replaced."""
        for table in (old, new):
            known = state.files.get(table)
            while known is not None and known.finishing is not None:
                await known.finishing.wait()  # closed just before the rename
        async with state.lock:
            tx = state.check_open()
            file = state.files.get(old)
            if file is None:
                raise TxError(errno.ENOENT, f"{old}{PARQUET_SUFFIX} does not exist")
            if file.writer is not None:
                raise TxError(errno.EBUSY, f"{old}{PARQUET_SUFFIX} is still open for writing")
            if old == new:
                return
            await self.forget_file(state, new)
            del state.files[old]
            note = state.notes.pop(old + PARQUET_SUFFIX, None)
            tx.unstage(new)
            tx.unstage(old)
            if file.content is not None and file.problem is None:
                content = file.content
                desc = await self.call(self.catalog.describe_chunks, content.chunks, new)
                try:  # a dedup table rewrites it here (it was streamed under the old name)
                    manifest = await self.call(
                        tx.stage_chunks, new, content.chunks, content.blake3, desc
                    )
                    file.staged = manifest is not None
                except InvalidKeyError as exc:  # blocks the commit, naming the file
                    file.staged, file.problem = False, f"{new}{PARQUET_SUFFIX}: {exc}"
                    state.notes[new + PARQUET_SUFFIX] = TxFileNote(
                        problem=file.problem,
                        chunks=content.chunks,
                        size=content.size,
                        blake3=content.blake3,
                    )
            elif note is not None:
                state.notes[new + PARQUET_SUFFIX] = note
            file.table = new
            state.files[new], state.tx = file, tx
            await self.call(self.catalog.staging.save, tx)
            await self._save_notes(state)

    async def forget_file(self, state: TxState, table: str) -> None:
        """Take `table`'s file out of the directory (not out of the staged tables); the
        caller holds the lock."""
        file = state.files.pop(table, None)
        if file is None:
            return
        if file.writer is not None:
            file.writer.abort()
            file.writer = None
        if state.notes.pop(os.fsdecode(file.name), None) is not None:
            await self._save_notes(state)

    async def _save_notes(self, state: TxState) -> None:
        notes = dict(state.notes)
        await self.call(self.catalog.staging.named(state.branch, state.name).save_notes, notes)
