"""Undoing commits: `revert` adds a commit that undoes one; `reset` moves a branch back.

A revert is an ordinary commit (change log, row counts, seq), so it is what a shared branch
should use; a reset rewrites where a branch points and is refused when it would leave commits
that no other ref reaches (docs/usage.md, "Undoing a commit").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from udrfs.catalog.authors import default_author
from udrfs.catalog.keep import keep_reached
from udrfs.catalog.model import Commit
from udrfs.catalog.transaction import Transaction
from udrfs.errors import NonFastForwardError, NotFoundError, RevertConflictError, UsageError
from udrfs.parquet.inspect import ParquetDescription
from udrfs.store.refs import update_ref

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.catalog.retention import Retention
    from udrfs.store import Store


@dataclass(frozen=True)
class ResetResult:
    branch: str
    old: str
    new: str
    lost: tuple[str, ...]  # commits no ref reaches any more (only with force)


def revert(
    store: Store,
    history: History,
    retention: Retention,
    commit: str,
    branch: str,
    force: bool = False,
    message: str | None = None,
    author: str | None = None,
) -> Commit | None:
    """Commit on `branch` the undoing of `commit` (which must be in its history).

    Each table `commit` changed goes back to its version before it (compared with the first
    parent, so a merge commit's revert undoes what the merge brought in): a new version with
    the old chunk list, no data copied; a table it added is dropped, one it dropped comes
    back. RevertConflictError if later commits changed one of those tables again, unless
    `force`. None when `commit` changed no table.
    """
    target = history.commit(history.resolve(commit))
    if not target.parents:
        raise UsageError(f"commit {target.id[:12]} created the store; there is nothing to revert")
    if not _reaches(history, history.head(branch), target.id):
        raise UsageError(
            f"commit {target.id[:12]} is not in the history of {branch!r}; revert it on the "
            "branch that has it (-b BRANCH, branch=...)"
        )
    before = history.commit(target.parents[0]).tables
    after = target.tables
    changed = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    if not changed:
        return None
    text = message or f"revert {target.id[:12]}: {target.message}"
    tx = Transaction(store, history, retention, branch, text, author or default_author())
    with tx:
        head = history.commit(tx.base)
        later = [t for t in changed if head.tables.get(t) != after.get(t)]
        if later and not force:
            raise RevertConflictError(target.id, branch, later)
        for table in changed:
            old_id = before.get(table)
            if old_id is None:
                if table in head.tables:
                    tx.drop_table(table)
            elif head.tables.get(table) != old_id:
                old = retention.check_readable(history.manifest(old_id))
                desc = ParquetDescription(old.rows, list(old.schema), list(old.columns), [])
                tx.stage_chunks(table, old.chunks, old.blake3, desc, old.key, laid_out=True)
    return tx.result


def reset(
    store: Store,
    history: History,
    retention: Retention,
    branch: str,
    to: str,
    force: bool = False,
) -> ResetResult:
    """Move `branch` to the commit `to` names, by compare-and-swap of the ref.

    NonFastForwardError if commits now on `branch` would be reached by no branch, tag or
    remote-tracking ref afterwards, unless `force` (they then stay in the store, reachable
    by id until collected).
    """
    source = history.resolve_ref(to)
    target = source.commit_id
    # A commit, not some other object, whose versions were not released by `udr expire`.
    retention.check_commit(history.commit(target))
    if source.kind == "commit":  # a ref's head needs nothing kept
        keep_reached(store, history, retention, target)
    old: list[str] = []
    lost: list[str] = []

    def prepare(current: str | None) -> str | None:
        if current is None:
            raise NotFoundError(
                f"no branch named {branch!r} (branches: {', '.join(history.branches())})"
            )
        old[:] = [current]
        lost[:] = _unreached(
            history, current, _reachable(history, [target, *_other_refs(store, branch)])
        )
        if lost and not force:
            raise NonFastForwardError(
                f"resetting {branch} to {target[:12]} would lose {len(lost)} commit(s) no other "
                f"ref reaches (newest {lost[0][:12]}: {history.commit(lost[0]).message!r}); tag "
                f"them first (`udr tag {store.root} NAME {lost[0][:12]}`), or pass --force"
            )
        return target

    update_ref(store.refs, "heads", branch, prepare)
    return ResetResult(branch, old[0], target, tuple(lost))


def _other_refs(store: Store, branch: str) -> list[str]:
    refs = store.refs
    heads = [c for name, c in refs.list("heads").items() if name != branch]
    return [*heads, *refs.list("tags").values(), *refs.list("remotes").values()]


def _reachable(history: History, starts: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        commit_id = todo.pop()
        if commit_id in seen:
            continue
        seen.add(commit_id)
        try:
            todo.extend(history.commit(commit_id).parents)
        except NotFoundError:
            continue  # a ref naming a missing commit: fsck reports it
    return seen


def _unreached(history: History, start: str, kept: set[str]) -> list[str]:
    """Commits reachable from `start` but not in `kept`, newest (walk order) first."""
    out: list[str] = []
    seen: set[str] = set()
    todo = deque([start])
    while todo:
        commit_id = todo.popleft()
        if commit_id in kept or commit_id in seen:
            continue
        seen.add(commit_id)
        out.append(commit_id)
        todo.extend(history.commit(commit_id).parents)
    return out


def _reaches(history: History, start: str, wanted: str) -> bool:
    """Whether `wanted` is `start` or one of its ancestors (any parent); stops when found."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        commit_id = todo.pop()
        if commit_id == wanted:
            return True
        if commit_id not in seen:
            seen.add(commit_id)
            todo.extend(history.commit(commit_id).parents)
    return False
