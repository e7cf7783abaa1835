"""Named transactions that outlive the process that opened them.

The mount's `.tx/<name>/` directories are transactions a user opens with `mkdir`, fills over
minutes or hours with any program, and commits through a control file. Their state (base
commit, staged manifests) is kept in `staging/tx/<branch>/<name>.json` after every staged
table, once that table's chunks are durable, so a daemon restart resumes them instead of
losing them. Staged data is already in packs; the state file only names it. Once the
transaction ends, the file keeps its outcome (`committed <id>`) until it is discarded, so
whoever asked for the commit can read whether it landed, whatever happened to the daemon.
One process at a time serves the named transactions (`claim`).

`NamedTransaction` is one named transaction as the store keeps it: its state file, the notes
on its files that are not staged tables (catalog/tx_files.py), and the rules for reading
both back after a restart (`recover`). The mount's `.tx` directories (fs/tx_directories.py)
are an adapter over it.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from udrfs.catalog.authors import default_author
from udrfs.catalog.model import TableVersion
from udrfs.catalog.names import check_table_name
from udrfs.catalog.transaction import Transaction
from udrfs.catalog.tx_files import TxFileNote, TxFiles, landed_commit
from udrfs.errors import AlreadyExistsError, CorruptObjectError, NotFoundError
from udrfs.store.atomic import write_atomic
from udrfs.store.refnames import check_ref_name

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.catalog.retention import Retention
    from udrfs.store import Store

STATE_FORMAT = 1
PARQUET_SUFFIX = ".parquet"
# Held (flock) by the one process that serves the named transactions: a mount daemon.
OWNER_FILE = "owner.lock"


@dataclass(frozen=True)
class TxOutcome:
    """How the last command of a named transaction ended, kept until the transaction is
    discarded: a caller whose `commit` was cut off (its process killed after the commit
    point) reads here whether it landed, instead of committing twice."""

    # "committed", "aborted" (ended: nothing staged is kept), "failed" (a conflict: it takes
    # no more changes) or "open" (the command failed, the transaction goes on).
    phase: str
    # One line for the user: `committed <commit id>`, `conflict: ...`, `error: ...`.
    status: str

    @property
    def ended(self) -> bool:
        return self.phase in ("committed", "aborted")


@dataclass
class RecoveredTx:
    """A named transaction as a process starting anew finds it (`NamedTransaction.recover`)."""

    # "open", "failed", "committed", "aborted", or "lost": its state cannot be read.
    phase: str
    # The outcome line of its last command ("open" if none); for "lost", what is wrong.
    status: str
    # The transaction, if it still takes changes (not ended, not lost).
    tx: Transaction | None = None
    # Table -> its staged version (tables staged to be dropped are not here).
    staged: dict[str, TableVersion] = field(default_factory=dict)
    # File name -> the note of a file that blocks the commit (not Parquet, incomplete).
    blocked: dict[str, TxFileNote] = field(default_factory=dict)
    # The commit found to have applied it: its process was killed before recording that.
    landed: str | None = None
    # Why recording that it landed failed (it is found again next time).
    unrecorded: str | None = None


class NamedTransaction:
    """Named transaction `name` on `branch` as the store keeps it: its state file
    (`staging/tx/`) and the notes on its files that are not staged tables
    (`staging/tx-files/`)."""

    def __init__(
        self, area: StagingArea, history: History, notes: TxFiles, branch: str, name: str
    ) -> None:
        self._area = area
        self._history = history
        self._notes = notes
        self.branch, self.name = branch, name

    def recover(self) -> RecoveredTx:
        """Read the transaction back, as after a restart. The rules:

        * an ended one (committed, aborted) keeps its recorded outcome and takes nothing more;
        * one whose staged tables all landed in a commit on the branch since its base was
          committed by a process killed before it recorded that: it is recorded now;
        * a file noted as being written whose table's staged version changed since was
          finished and staged: the note is stale; one whose table did not change is
          incomplete and blocks the commit, as does a file that is not Parquet;
        * state or notes that cannot be read make it lost.
        """
        staging = self._area
        try:
            outcome = staging.outcome(self.branch, self.name)
            if outcome is not None and outcome.ended:
                return RecoveredTx(outcome.phase, outcome.status)
            tx = staging.get(self.branch, self.name)
            notes = self._notes.load(self.branch, self.name)
            landed = landed_commit(self._history, tx)
        except Exception as exc:
            return RecoveredTx("lost", str(exc))
        if landed is not None:
            found = RecoveredTx("committed", f"committed {landed}", landed=landed)
            try:
                self.end(tx, TxOutcome(found.phase, found.status))
            except Exception as exc:  # found again next time: the commit is there
                found.unrecorded = str(exc)
            return found
        found = RecoveredTx(
            outcome.phase if outcome else "open", outcome.status if outcome else "open", tx
        )
        for table, manifest_id in tx.staged.items():
            if manifest_id is not None:
                found.staged[table] = self._history.manifest(manifest_id)
        for file_name, note in notes.items():
            table = file_name[: -len(PARQUET_SUFFIX)]
            if note.writing and tx.staged.get(table) != note.replacing:
                continue  # the write finished and was staged; the note is stale
            if note.writing:
                note = TxFileNote(
                    problem=f"{file_name} is incomplete: the daemon stopped while it was "
                    "being written; write it again or rm it",
                    chunks=note.chunks,
                    size=note.size,
                    blake3=note.blake3,
                )
            if note.problem is not None:
                found.blocked[file_name] = note
        return found

    def save_notes(self, notes: dict[str, TxFileNote]) -> None:
        """Record the notes on its files (none: the notes file goes)."""
        self._notes.save(self.branch, self.name, notes)

    def end(self, tx: Transaction, outcome: TxOutcome) -> None:
        """It committed or was aborted: record how, and forget its files' notes."""
        self._area.end(tx, outcome)
        self._notes.discard(self.branch, self.name)

    def discard(self) -> None:
        """Forget it: its state, outcome and notes. Its chunks become garbage."""
        self._area.discard(self.branch, self.name)
        self._notes.discard(self.branch, self.name)


class StagingArea:
    """The named transactions of one store: their state files, notes and owner lock."""

    def __init__(self, store: Store, history: History, retention: Retention) -> None:
        self._store = store
        self._history = history
        self._retention = retention
        self.directory = store.staging_dir / "tx"

    def _path(self, branch: str, name: str) -> Path:
        return self.directory / check_ref_name(branch) / f"{check_table_name(name)}.json"

    def claim(self, holder: dict[str, Any]) -> int | None:
        """Make this process the one that serves the store's named transactions, for as long
        as it lives: an exclusive flock on `staging/owner.lock`, which the kernel releases
        when the process ends (even by SIGKILL), recording `holder` in it. Returns the lock's
        descriptor (close it to let go), or None if another process holds it (`owner()`
        says which)."""
        path = self._store.staging_dir / OWNER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        # The lock is held through a read-only descriptor, so a store on a filesystem that is
        # remounted read-only under a running daemon is not kept busy by it.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # Rewritten in place: a rename would put a new file beside the one that is locked.
        writer = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(writer, json.dumps(holder).encode() + b"\n")
        finally:
            os.close(writer)
        return fd

    def owner(self) -> dict[str, Any]:
        """What the process holding `staging/owner.lock` recorded ({} if unreadable)."""
        try:
            doc = json.loads((self._store.staging_dir / OWNER_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def named(self, branch: str, name: str) -> NamedTransaction:
        """Transaction `name` on `branch` with its notes (whether or not it exists)."""
        return NamedTransaction(self, self._history, TxFiles(self._store), branch, name)

    def names(self, branch: str) -> list[str]:
        folder = self.directory / check_ref_name(branch)
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def open(self, branch: str, name: str, author: str | None = None) -> Transaction:
        """Begin transaction `name` on a snapshot of `branch`'s head."""
        check_table_name(name)
        if self._path(branch, name).exists():
            raise AlreadyExistsError(f"transaction {name!r} is already open on {branch!r}")
        tx = Transaction(
            self._store, self._history, self._retention, branch, "", author or default_author()
        )
        tx.name = name
        self.save(tx)
        return tx

    def get(self, branch: str, name: str) -> Transaction:
        path = self._path(branch, name)
        try:
            state: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise NotFoundError(f"no open transaction {name!r} on {branch!r}") from None
        except json.JSONDecodeError as exc:
            raise CorruptObjectError(f"transaction state {path} is damaged: {exc}") from None
        tx = Transaction.resume(
            self._store,
            self._history,
            self._retention,
            branch=branch,
            base=state["base"],
            staged=state["staged"],
            message=state.get("message", ""),
            author=state["author"],
        )
        tx.name = name
        return tx

    def save(self, tx: Transaction, outcome: TxOutcome | None = None) -> None:
        """Record what `tx` has staged, after making its chunks durable, and the outcome of
        its last command if one failed."""
        assert tx.name is not None, "only named transactions are saved"
        self._store.chunks.flush()
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "branch": tx.branch,
            "base": tx.base,
            "author": tx.author,
            "message": tx.message,
            "staged": tx.staged,
        }
        if outcome is not None:
            state["outcome"] = asdict(outcome)
        write_atomic(self._path(tx.branch, tx.name), json.dumps(state, indent=1).encode())

    def end(self, tx: Transaction, outcome: TxOutcome) -> None:
        """Record that `tx` ended (committed or aborted) and how; it stays listed, with
        nothing staged, until `discard`. Written after the commit point: a process killed
        before this finds the commit with `landed_commit`."""
        assert tx.name is not None and outcome.ended
        state = {
            "format": STATE_FORMAT,
            "branch": tx.branch,
            "base": tx.base,
            "author": tx.author,
            "message": tx.message,
            "staged": {},
            "outcome": asdict(outcome),
        }
        write_atomic(self._path(tx.branch, tx.name), json.dumps(state, indent=1).encode())

    def outcome(self, branch: str, name: str) -> TxOutcome | None:
        """The recorded outcome of transaction `name`'s last command; None if there is none."""
        path = self._path(branch, name)
        try:
            state = json.loads(path.read_text("utf-8"))
            doc = state.get("outcome")
            return None if doc is None else TxOutcome(str(doc["phase"]), str(doc["status"]))
        except FileNotFoundError:
            raise NotFoundError(f"no open transaction {name!r} on {branch!r}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptObjectError(f"transaction state {path} is damaged: {exc}") from None

    def discard(self, branch: str, name: str) -> None:
        """Forget a transaction (after it committed or aborted). Its chunks become garbage."""
        self._path(branch, name).unlink(missing_ok=True)
