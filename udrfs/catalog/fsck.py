"""Consistency checks of a store, one function per invariant (`udr fsck`).

Each check returns a list of problems in words; an empty list means the invariant holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from udrfs.catalog.clock import clock_jumps
from udrfs.catalog.model import now_utc
from udrfs.errors import UdrError

if TYPE_CHECKING:
    from udrfs.catalog.catalog import Catalog


@dataclass
class FsckReport:
    commits: int = 0
    manifests: int = 0
    packs: int = 0
    problems: list[str] = field(default_factory=list)
    # Not damage, but worth knowing (clock jumps); they do not make the store "not ok".
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_refs_and_history(catalog: Catalog, report: FsckReport) -> set[str]:
    """Every ref names a readable commit; every commit's parents and manifests are readable."""
    manifests: set[str] = set()
    todo = [
        *((f"branch {n}", c) for n, c in catalog.branches().items()),
        *((f"tag {n}", c) for n, c in catalog.tags().items()),
    ]
    seen: set[str] = set()
    while todo:
        where, commit_id = todo.pop()
        if commit_id in seen:
            continue
        seen.add(commit_id)
        try:
            commit = catalog.commit(commit_id)
        except UdrError as exc:
            report.problems.append(f"{where}: commit {commit_id}: {exc}")
            continue
        manifests.update(commit.tables.values())
        todo.extend((f"parent of {commit_id[:12]}", p) for p in commit.parents)
    report.commits = len(seen)
    return manifests


def check_manifests(catalog: Catalog, manifest_ids: set[str], report: FsckReport) -> None:
    """Every manifest is readable and every chunk it lists is in some pack's index."""
    chunks = catalog.store.chunks
    chunks.reload_index()
    for manifest_id in sorted(manifest_ids):
        try:
            m = catalog.manifest(manifest_id)
        except UdrError as exc:
            report.problems.append(f"manifest {manifest_id}: {exc}")
            continue
        if m.chunks.size != m.size:
            report.problems.append(
                f"manifest {manifest_id} ({m.table} v{m.version}): chunks add up to "
                f"{m.chunks.size} bytes, not {m.size}"
            )
        missing = [c for c in m.chunks.ids() if not chunks.contains(c)]
        if missing:
            report.problems.append(
                f"{m.table} v{m.version}: {len(missing)} chunk(s) missing, e.g. {missing[0]}"
            )
    report.manifests = len(manifest_ids)


def check_packs(catalog: Catalog, report: FsckReport) -> None:
    """Every pack's bytes match its name and every chunk in it matches its id."""
    for pack in sorted(catalog.store.root.glob("packs/??/*.pack")):
        try:
            catalog.store.chunks.verify_pack(pack.stem)
        except UdrError as exc:
            report.problems.append(f"pack {pack.stem}: {exc}")
        report.packs += 1


def check_commit_times(catalog: Catalog, report: FsckReport) -> None:
    """No commit is dated in the future or after the commit that follows it (catalog/clock.py)."""
    try:
        commits = catalog.reachable_commits()
    except UdrError:
        return  # an unreadable commit is reported by check_refs_and_history
    report.warnings.extend(clock_jumps(commits.values(), commits, now_utc()))


def fsck(catalog: Catalog, verify_packs: bool = True) -> FsckReport:
    report = FsckReport()
    manifests = check_refs_and_history(catalog, report)
    check_commit_times(catalog, report)
    check_manifests(catalog, manifests, report)
    if verify_packs:
        check_packs(catalog, report)
    return report
