"""Walks over the commit graph: the one place that follows parents.

A commit's first parent is the previous commit on its branch (the change log follows these);
a merge commit's second parent is the head it merged (docs/format.md, "Commit").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from udrfs.catalog.model import Commit
from udrfs.catalog.roles import Commits


def reachable(
    commits: Commits,
    starts: Iterable[str],
    stop: Callable[[Commit], bool] = lambda commit: False,
    present: Callable[[str], bool] = lambda commit_id: True,
) -> dict[str, Commit]:
    """Every commit reachable from `starts` through all parents, by id.

    The parents of a commit for which `stop` is true are not followed (the commit itself is
    included). A commit for which `present` is false is left out with its parents (a store
    that does not hold it: a pull or push compares what each side holds).
    """
    seen: dict[str, Commit] = {}
    todo = list(starts)
    while todo:
        commit_id = todo.pop()
        if commit_id in seen or not present(commit_id):
            continue
        commit = commits.commit(commit_id)
        seen[commit_id] = commit
        if not stop(commit):
            todo.extend(commit.parents)
    return seen


def on_first_parent_chain(commits: Commits, ancestor: str, descendant: str) -> bool:
    """`ancestor` is on `descendant`'s first-parent history (what a change log follows), or
    is `descendant` itself. `seq` grows by one along that history, so the walk stops as soon
    as it passes `ancestor`'s."""
    target = commits.commit(ancestor)
    commit: Commit | None = commits.commit(descendant)
    while commit is not None and commit.seq >= target.seq:
        if commit.id == ancestor:
            return True
        commit = commits.commit(commit.parents[0]) if commit.parents else None
    return False


def merge_base(commits: Commits, a: str, b: str) -> str | None:
    """The newest common ancestor of commits `a` and `b` (following every parent)."""
    ancestors_of_a = reachable(commits, [a])
    # An ancestor of a common ancestor cannot be newer than it: the walk from `b` stops there.
    from_b = reachable(commits, [b], stop=lambda commit: commit.id in ancestors_of_a)
    common = [commit for commit_id, commit in from_b.items() if commit_id in ancestors_of_a]
    if not common:
        return None
    return max(common, key=lambda c: (c.time, c.seq)).id
