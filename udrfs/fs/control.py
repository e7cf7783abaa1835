"""`.tx/<name>/.control`: write a command, read the transaction's status.

Commands, one per line (`echo CMD > .control`) of at most `MAX_COMMAND_LINE` bytes:

    commit [MESSAGE]   commit every staged table as one commit with MESSAGE (one line)
    abort              discard the transaction (`rm -r` of the directory does the same)
    drop TABLE         delete TABLE from the branch in this commit

Every line of a write is checked before any of them runs: a write holding a line that is not
a command fails whole with EINVAL, and nothing runs. Lines that follow a `commit` through the
same descriptor and are not commands are the rest of its message: the shell writes a
multi-line message a line at a time, so the commit ran with the first line; they are taken
and ignored, never an error after the commit landed (fs/tx_operations.py). A line longer
than `MAX_COMMAND_LINE` fails with EINVAL as soon as it is seen, and the descriptor takes no
more commands.

A command runs when its line is written, and the `write` fails if the command fails, so the
shell's `echo` exits non-zero; the errno says what kind of failure (EBUSY: a conflict, or a
file still open for writing; EINVAL: a file that is not Parquet, or an unknown command;
ENOENT: no such table; ENOSPC: the disk is full). Reading `.control` shows the outcome of the
last command on its first line (`committed <commit-id>`, `conflict: ...`), then the
transaction and its files.
"""

from __future__ import annotations

import errno
import logging
import os

from udrfs.catalog.names import check_table_name
from udrfs.errors import ConflictError, NotFoundError, UdrError, errno_for
from udrfs.fs.tx_directories import (
    PARQUET_SUFFIX,
    Transactions,
    TxEndedError,
    TxError,
    TxState,
)

log = logging.getLogger(__name__)

COMMANDS = "commit [MESSAGE] | abort | drop TABLE"
# The longest command line (a commit message is one line): a longer one fails at once.
MAX_COMMAND_LINE = 4096
# How long a commit waits for files still open for writing to be closed before it fails.
BUSY_GRACE_SECONDS = 1.0


def check_command(line: str) -> None:
    """TxError (EINVAL) unless `line` is a command: checked for every line of a write before
    any of them runs, so that a write is refused whole, never after part of it ran."""
    word, _, rest = line.strip().partition(" ")
    arguments = rest.strip()
    if word == "commit" or (word == "abort" and not arguments) or (word == "drop" and arguments):
        return
    raise TxError(
        errno.EINVAL,
        f"error: unknown command {shorten(line.strip())!r}; use {COMMANDS} (one per line)",
    )


def could_begin_command(text: str) -> bool:
    """Whether `text`, the start of a line not yet ended, may still become a command."""
    word, space, _ = text.lstrip().partition(" ")
    words = ("commit", "abort", "drop")
    return word in words if space else any(w.startswith(word) for w in words)


def shorten(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters for a log line or a status line."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def run_command(registry: Transactions, state: TxState, line: str) -> None:
    """Run one command line; TxError (with an errno) if it fails. The outcome becomes the
    first line of `.control`."""
    word, _, rest = line.strip().partition(" ")
    try:
        check_command(line)
        if word == "commit":
            await _commit(registry, state, rest.strip())
        elif word == "abort":
            await _abort(registry, state)
        else:
            await _drop(registry, state, rest.strip())
    except TxEndedError:
        raise  # the outcome that ended it stays on the first line
    except TxError as exc:
        state.status = str(exc)
        await registry.record_status(state)
        raise


async def _commit(registry: Transactions, state: TxState, message: str) -> None:
    if state.phase == "committed":
        # A retry of a commit whose caller never heard back (the daemon was killed after the
        # commit point): it landed once; it succeeds, and commits nothing again.
        log.info("%s on %s is already %s", state.name, state.branch, state.status)
        return
    while True:
        # Files closed just now are still being staged (their release runs after the close).
        busy = await registry.settle(state, BUSY_GRACE_SECONDS)
        async with state.lock:
            if not busy and any(f.writer for f in state.files.values()):
                continue  # one was closed while the lock was taken: wait for it too
            await _commit_locked(registry, state, message, busy)
            break
    # Before the writer's echo returns: the new versions must show under @branch/ at once.
    await registry.view.refresh()


async def _commit_locked(
    registry: Transactions, state: TxState, message: str, busy: list[str]
) -> None:
    tx = state.check_open()
    if busy:
        raise TxError(
            errno.EBUSY,
            f"busy: {', '.join(busy)} still open for writing; close it and commit again "
            "(nothing was applied)",
        )
    problems = sorted(f.problem for f in state.files.values() if f.problem)
    if problems:
        raise TxError(
            errno.EINVAL,
            f"invalid: {'; '.join(problems)}; nothing was applied (rm the file or write it "
            "again, then commit)",
        )
    tx.message = message or f"transaction {state.name}"
    try:
        commit = await registry.call(tx.commit)
    except ConflictError as exc:
        state.phase = "failed"
        raise TxError(errno.EBUSY, f"{exc}; nothing was applied (abort and start again)") from None
    except UdrError as exc:
        if isinstance(exc, NotFoundError):
            state.phase = "failed"
        raise TxError(errno_for(exc), f"error: {exc}") from None
    await registry.end(
        state,
        "committed",
        f"committed {commit.id}"
        if commit is not None
        else f"committed nothing: every file equals {state.branch}'s version",
    )


async def _abort(registry: Transactions, state: TxState) -> None:
    async with state.lock:
        if state.phase not in ("open", "failed"):
            raise TxEndedError(errno.EINVAL, f"the transaction is already {state.phase}")
        await registry.end(state, "aborted", "aborted: nothing was applied")


async def _drop(registry: Transactions, state: TxState, name: str) -> None:
    table = name[: -len(PARQUET_SUFFIX)] if name.endswith(PARQUET_SUFFIX) else name
    try:
        check_table_name(table)
    except UdrError as exc:
        raise TxError(errno.EINVAL, f"error: {exc}") from None
    async with state.lock:
        tx = state.check_open()
        had_file = table in state.files
        await registry.forget_file(state, table)
        try:
            tx.drop_table(table)  # staged only here: unstaged; on the branch: deleted
        except NotFoundError:
            if not had_file:
                raise TxError(
                    errno.ENOENT, f"error: no table named {table!r} on {state.branch}"
                ) from None
        await registry.call(registry.catalog.staging.save, tx)
        state.status = f"dropping {table}"


def render_status(state: TxState) -> bytes:
    """The text of `.control`."""
    base = f", base {state.tx.base}" if state.tx is not None else ""
    lines = [state.status, f"transaction {state.name} on {state.branch}: {state.phase}{base}"]
    for table in sorted(state.files):
        file = state.files[table]
        name = os.fsdecode(file.name)
        if file.writer is not None:
            lines.append(f"writing {name}: {file.size} bytes so far")
        elif file.problem:
            lines.append(f"invalid {name}: {file.problem}")
        elif file.staged:
            lines.append(f"staged {name}: {file.rows} rows, {file.size} bytes")
        else:
            lines.append(f"unchanged {name}: the same bytes as on {state.branch}")
    lines += [f"drop {table}" for table in state.dropped]
    if state.phase == "open":
        lines.append(f"commands: {COMMANDS}")
    return ("\n".join(lines) + "\n").encode()
