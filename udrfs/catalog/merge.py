"""Merging one ref into a branch, table by table: the merge base and the plan.

`plan_merge` compares each table at the merge base (the newest common ancestor), on the target
(ours) and on the source (theirs), by content (bytes and key), and decides:

- the same on both sides, or unchanged on the source: keep the target's;
- changed on the source only: take the source's (a new manifest numbered on the target's
  history, same chunks: docs/architecture.md, "the version number lives in the manifest");
- dropped on the source only: drop it;
- changed differently on both sides: merge rows by key (done by `udrfs.query.merge`, which
  needs DuckDB), or, if either side dropped it, a conflict.

A merge that needs no table work is one of two kinds: *up to date* (the source is already in
the target's history) or a *fast-forward* (the target's head is on the source's first-parent
history, so the branch can simply move to the source's head without rewriting its change log).
Anything else is a merge commit with two parents, [target head, source head], written by a
`Transaction` so it lands through the same compare-and-swap as every commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from udrfs.catalog.ancestry import merge_base, on_first_parent_chain
from udrfs.catalog.model import TableVersion

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.catalog.retention import Retention

MergeKind = Literal["up-to-date", "fast-forward", "merge"]
TableAction = Literal["take", "drop", "rows", "conflict"]


@dataclass(frozen=True)
class TableMerge:
    """What the merge does to one table."""

    table: str
    action: TableAction
    base: TableVersion | None
    ours: TableVersion | None
    theirs: TableVersion | None
    reason: str = ""


@dataclass(frozen=True)
class MergePlan:
    source: str
    target: str
    source_head: str
    target_head: str
    base: str | None
    kind: MergeKind
    tables: tuple[TableMerge, ...] = field(default=())

    def conflicts(self) -> list[dict[str, object]]:
        return [{"table": t.table, "kind": t.reason} for t in self.tables if t.action == "conflict"]


def same_content(a: TableVersion | None, b: TableVersion | None) -> bool:
    """Both absent, or the same bytes and key (version numbers may differ)."""
    if a is None or b is None:
        return a is None and b is None
    return a.id == b.id or (a.blake3 == b.blake3 and a.key == b.key)


def plan_merge(
    history: History, retention: Retention, source: str, target: str, target_head: str
) -> MergePlan:
    """How to merge ref `source` into branch `target`, whose head is `target_head`."""
    source_head = history.resolve(source)
    base = merge_base(history, target_head, source_head)

    def planned(kind: MergeKind, tables: tuple[TableMerge, ...] = ()) -> MergePlan:
        return MergePlan(source, target, source_head, target_head, base, kind, tables)

    if base == source_head:
        return planned("up-to-date")
    if base == target_head and on_first_parent_chain(history, target_head, source_head):
        return planned("fast-forward")
    ours = history.commit(target_head).tables
    theirs = history.commit(source_head).tables
    at_base = history.commit(base).tables if base else {}
    tables = []
    for table in sorted(set(ours) | set(theirs) | set(at_base)):
        b, o, t = (_manifest(history, side.get(table)) for side in (at_base, ours, theirs))
        if same_content(o, t) or same_content(t, b):
            continue
        if same_content(o, b):
            tables.append(TableMerge(table, "take" if t else "drop", b, o, t))
        elif o is None or t is None:
            side = "target" if o is None else "source"
            reason = f"dropped on the {side}, changed on the other side"
            tables.append(TableMerge(table, "conflict", b, o, t, reason))
        else:
            tables.append(TableMerge(table, "rows", b, o, t))
    # A merge reads the versions it takes or combines; a released one cannot be (its data
    # may be gone), which says so rather than failing on a missing chunk later.
    for merge in tables:
        needed = (merge.theirs, merge.base) if merge.action == "rows" else (merge.theirs,)
        for version in needed:
            if version is not None and merge.action != "conflict":
                retention.check_readable(version)
    return planned("merge", tuple(tables))


def _manifest(history: History, manifest_id: str | None) -> TableVersion | None:
    return history.manifest(manifest_id) if manifest_id else None
