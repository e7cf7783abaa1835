"""What `udr status` reports about a store: where it is, its format, its branches, the mount
serving it, the named transactions still open and the remotes it knows.

Everything here is read without a lock and without changing anything: a status taken while a
daemon serves the store or a commit lands is a consistent enough picture for a person.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

from udrfs.catalog.history import MAIN
from udrfs.catalog.remote_config import Remotes
from udrfs.catalog.tx_files import process_alive
from udrfs.errors import UdrError

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.catalog.staging import StagingArea
    from udrfs.store import Store


@dataclass(frozen=True)
class BranchHead:
    name: str
    commit: str
    seq: int
    time: str  # ISO 8601, UTC
    message: str


@dataclass(frozen=True)
class MountInfo:
    """The daemon that holds the store's `staging/owner.lock` (one daemon per store)."""

    pid: int | None
    mountpoint: str | None
    # False once the daemon is gone and the lock file only names where it was.
    running: bool


@dataclass(frozen=True)
class PendingTransaction:
    branch: str
    name: str
    base: str
    tables: tuple[str, ...]
    status: str  # the outcome of its last command, or "open"


@dataclass(frozen=True)
class RemoteStatus:
    name: str
    url: str
    # branch -> commit id as last seen on the remote (refs/remotes/NAME/BRANCH)
    tracking: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreStatus:
    path: str
    format_version: int
    default_branch: str
    branches: tuple[BranchHead, ...]
    tags: int
    mount: MountInfo | None
    transactions: tuple[PendingTransaction, ...]
    remotes: tuple[RemoteStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_status(store: Store, history: History, staging: StagingArea) -> StoreStatus:
    """The store's status, read from its refs, `staging/` and `remotes/`."""
    branches = []
    for name, commit_id in sorted(history.branches().items()):
        commit = history.commit(commit_id)
        when = commit.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        branches.append(BranchHead(name, commit_id, commit.seq, when, commit.message))
    return StoreStatus(
        path=store.location,
        format_version=store.format.format_version,
        default_branch=MAIN,
        branches=tuple(branches),
        tags=len(history.tags()),
        mount=_mount(staging),
        transactions=tuple(_pending(staging, [b.name for b in branches])),
        remotes=tuple(_remotes(store)),
    )


def _mount(staging: StagingArea) -> MountInfo | None:
    owner = staging.owner()
    if not owner:
        return None
    pid = owner.get("pid")
    pid = pid if isinstance(pid, int) else None
    mountpoint = owner.get("mountpoint")
    mountpoint = mountpoint if isinstance(mountpoint, str) else None
    running = pid is not None and process_alive(pid)
    if running and mountpoint is not None:
        running = os.path.ismount(mountpoint)
    return MountInfo(pid, mountpoint, running)


def _pending(staging: StagingArea, branches: list[str]) -> list[PendingTransaction]:
    out = []
    for branch in branches:
        for name in staging.names(branch):
            try:
                tx = staging.get(branch, name)
                outcome = staging.outcome(branch, name)
            except UdrError as exc:  # a damaged state file: shown, not fatal to status
                out.append(PendingTransaction(branch, name, "", (), f"unreadable: {exc}"))
                continue
            if outcome is not None and outcome.ended:
                continue  # committed or aborted, kept only for its caller to read
            status = outcome.status if outcome is not None else "open"
            out.append(PendingTransaction(branch, name, tx.base, tuple(sorted(tx.staged)), status))
    return out


def _remotes(store: Store) -> list[RemoteStatus]:
    tracking = store.refs.list("remotes")
    out = []
    for config in Remotes(store).list():
        prefix = f"{config.name}/"
        mine = {r[len(prefix) :]: c for r, c in sorted(tracking.items()) if r.startswith(prefix)}
        out.append(RemoteStatus(config.name, config.url, mine))
    return out
