"""Named transactions that outlive the process that opened them.

The mount's `.tx/<name>/` directories are transactions a user opens with `mkdir`, fills over
minutes or hours with any program, and commits through a control file. Their state (base
commit, staged manifests) is kept in `staging/tx/<branch>/<name>.json` after every staged
table, once that table's chunks are durable, so a daemon restart resumes them instead of
losing them. Staged data is already in packs; the state file only names it. Once the
transaction ends, the file keeps its outcome (`committed <id>`) until it is discarded, so
whoever asked for the commit can read whether it landed, whatever happened to the daemon.
One process at a time serves the named transactions (`claim`).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from udrfs.catalog.names import check_table_name
from udrfs.catalog.transaction import Transaction
from udrfs.errors import AlreadyExistsError, CorruptObjectError, NotFoundError
from udrfs.store.atomic import write_atomic
from udrfs.store.refnames import check_ref_name

if TYPE_CHECKING:
    from udrfs.catalog.catalog import Catalog

STATE_FORMAT = 1
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


class StagingArea:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self.directory = catalog.store.staging_dir / "tx"

    def _path(self, branch: str, name: str) -> Path:
        return self.directory / check_ref_name(branch) / f"{check_table_name(name)}.json"

    def claim(self, holder: dict[str, Any]) -> int | None:
        """Make this process the one that serves the store's named transactions, for as long
        as it lives: an exclusive flock on `staging/owner.lock`, which the kernel releases
        when the process ends (even by SIGKILL), recording `holder` in it. Returns the lock's
        descriptor (close it to let go), or None if another process holds it (`owner()`
        says which)."""
        path = self._catalog.store.staging_dir / OWNER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # Rewritten in place: a rename would put a new file beside the one that is locked.
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
        return fd

    def owner(self) -> dict[str, Any]:
        """What the process holding `staging/owner.lock` recorded ({} if unreadable)."""
        try:
            doc = json.loads((self._catalog.store.staging_dir / OWNER_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def names(self, branch: str) -> list[str]:
        folder = self.directory / check_ref_name(branch)
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def open(self, branch: str, name: str, author: str | None = None) -> Transaction:
        """Begin transaction `name` on a snapshot of `branch`'s head."""
        check_table_name(name)
        if self._path(branch, name).exists():
            raise AlreadyExistsError(f"transaction {name!r} is already open on {branch!r}")
        tx = self._catalog.transaction(branch, author=author)
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
            self._catalog,
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
        self._catalog.store.chunks.flush()
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
