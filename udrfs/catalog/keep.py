"""Before a ref is set to a commit that already exists (a branch or tag created at it, a
reset to it): whatever that commit reaches which the collector condemned is written again,
so that the ref never names a file a collector run is about to delete (docs/architecture.md,
"Garbage collection").

A commit this process writes is covered by the transaction's own check
(`Transaction._keep_from_collector`); a ref set to an existing commit needs this one, since
such a commit may be one no ref reached for longer than the grace period (a deleted branch's
head, recreated by id). The walk is skipped when the collector condemned nothing, and when
the commit is some ref's head already (callers that were given a ref's name skip the call):
what a ref reaches is live, and a run that walked before that ref moved there saw the
commit's files kept by the move that put it there, by this same rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from udrfs.catalog.ancestry import reachable

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.catalog.retention import Retention
    from udrfs.store import Store


def keep_reached(store: Store, history: History, retention: Retention, commit_id: str) -> None:
    """Write again what `commit_id` reaches (commits, manifests, chunks) that the collector
    condemned, and make it durable (on a remote: uploaded), before a ref names it."""
    store.condemned.refresh()
    if store.condemned.empty():
        return
    refs = store.refs
    if any(commit_id in refs.list(kind).values() for kind in ("heads", "tags", "remotes")):
        return
    released = retention.released()
    commits = reachable(history, [commit_id])
    for commit in commits.values():
        for manifest_id in commit.tables.values():
            if manifest_id not in released:
                store.chunks.keep(history.manifest(manifest_id).chunks)
    store.chunks.flush()
    # Objects after the chunks they name, commits after their manifests.
    for commit in commits.values():
        for manifest_id in commit.tables.values():
            store.objects.keep(manifest_id)
    for cid in commits:
        store.objects.keep(cid)
