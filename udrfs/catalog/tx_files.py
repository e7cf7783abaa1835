"""What the mount keeps beside a named transaction: notes on files that are not staged tables,
spill files, and how to tell that a transaction already landed.

A `.tx` directory may hold files that are not staged tables: one still being written, or one
that is not valid Parquet. A transaction's own state (staging.py) names only staged
manifests, so these files are noted in `staging/tx-files/<branch>/<name>.json`. After a
restart, a file that was being written is reported incomplete (the commit refuses until it is
written again or removed), and a non-Parquet file still reads back and still blocks the
commit: a transaction is never committed with part of what was written into it.

Spill files (`staging/spill/<pid>.<random>`) hold a file written out of order until it is
closed and chunked; they are never synced and are deleted once their process is gone.

A garbage collector must treat the manifests named by `staging/tx/` and the chunk lists
named here as live.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from udrfs import _native
from udrfs.errors import CorruptObjectError
from udrfs.store.atomic import write_atomic
from udrfs.store.chunks import ChunkList

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.catalog.model import Commit
    from udrfs.catalog.transaction import Transaction
    from udrfs.store import Store

NOTES_FORMAT = 1


@dataclass(frozen=True)
class TxFileNote:
    """One file of a `.tx` directory that is not (or not only) a staged table."""

    # Opened for writing and not finished when this was recorded.
    writing: bool = False
    # The table's staged manifest when the write began: a different one now means it finished.
    replacing: str | None = None
    # Why the file cannot be committed (not Parquet, incomplete).
    problem: str | None = None
    # The file's bytes, once finished.
    chunks: ChunkList | None = None
    size: int = 0
    blake3: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        chunks = doc.pop("chunks")
        doc["chunks"] = base64.b64encode(chunks.to_bytes()).decode() if chunks else None
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TxFileNote:
        chunks = doc.get("chunks")
        return cls(
            writing=bool(doc.get("writing")),
            replacing=doc.get("replacing"),
            problem=doc.get("problem"),
            chunks=_native.ChunkList(base64.b64decode(chunks)) if chunks else None,
            size=int(doc.get("size", 0)),
            blake3=doc.get("blake3"),
        )


class TxFiles:
    """The notes of every named transaction of one store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.directory = store.staging_dir / "tx-files"

    def _path(self, branch: str, name: str) -> Path:
        return self.directory / branch / f"{name}.json"

    def load(self, branch: str, name: str) -> dict[str, TxFileNote]:
        path = self._path(branch, name)
        try:
            doc = json.loads(path.read_text("utf-8"))
            return {f: TxFileNote.from_json(note) for f, note in doc["files"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObjectError(f"transaction notes {path} are damaged: {exc}") from None

    def save(self, branch: str, name: str, notes: dict[str, TxFileNote]) -> None:
        """Record `notes`, after making the chunks they name durable."""
        if not notes:
            self.discard(branch, name)
            return
        self._store.chunks.flush()
        doc = {"format": NOTES_FORMAT, "files": {f: n.to_json() for f, n in notes.items()}}
        write_atomic(self._path(branch, name), json.dumps(doc, indent=1).encode())

    def discard(self, branch: str, name: str) -> None:
        self._path(branch, name).unlink(missing_ok=True)


def spill_file(store: Store) -> Path:
    """A new path for a file written out of order, until it is closed and chunked."""
    folder = store.staging_dir / "spill"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{os.getpid()}.{secrets.token_hex(8)}"


def remove_stale_spills(store: Store) -> int:
    """Delete the spill files of processes that no longer run; returns how many."""
    removed = 0
    for path in (store.staging_dir / "spill").glob("*.*"):
        pid = path.name.split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie has exited: only its entry is left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as proc:
        return proc.read().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def landed_commit(history: History, tx: Transaction) -> str | None:
    """The commit on `tx.branch` since its base that applied `tx`'s staged tables, if one did
    (its process was killed after moving the ref, before forgetting the transaction).

    Staged manifests are new objects (they carry their creation time), so finding all of them
    in a commit means this transaction made it. A transaction that only drops tables stages
    no object: its commit is one by its author whose changes are exactly those drops (had
    another commit dropped them since the base, this one could only have failed: the tables
    changed since its base).
    """
    wanted = {t: m for t, m in tx.staged.items() if m is not None}
    dropped = {t for t, m in tx.staged.items() if m is None}
    if not tx.staged:
        return None

    def applied(commit: Commit) -> bool:
        if wanted:
            return all(commit.tables.get(t) == m for t, m in wanted.items())
        return (
            commit.author == tx.author
            and {c.table for c in commit.changes} == dropped
            and all(c.new_version is None for c in commit.changes)
        )

    base_seq = history.commit(tx.base).seq
    found = None
    for commit in history.first_parent_history(tx.branch):
        if commit.seq <= base_seq:
            break
        if applied(commit):
            found = commit.id  # keep walking: the oldest such commit is the one that applied it
    return found
