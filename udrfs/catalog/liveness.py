"""What a store still needs: the one walk from the roots that the collector and repack share.

Roots (docs/format.md, "What is live"): every branch, tag and remote-tracking ref, and every
named transaction in `staging/` (its base commit, its staged manifests, the chunk lists of its
notes in `staging/tx-files/`). Every commit reachable from a root through all parents is live,
and so is every manifest such a commit names: history is never dropped. A manifest's *chunks*
are live unless an `expired/` record releases the version (catalog/retention.py) -- except that
a manifest named by the head commit of a ref or by a staged transaction always keeps its
chunks (a branch or tag made at an old commit keeps what it shows).

The walk fails closed: any object, ref or staging file it cannot read raises, so a caller that
deletes (gc) never acts on a partial picture.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from udrfs.catalog.ancestry import reachable
from udrfs.catalog.model import Commit
from udrfs.errors import CorruptObjectError
from udrfs.store.chunks import chunk_list
from udrfs.store.objects import is_object_id

if TYPE_CHECKING:
    from udrfs.catalog.catalog import Catalog


@dataclass
class Roots:
    """Where liveness starts: ref heads by label ("branch main", "tag v1", "remote
    origin/main"), and what named transactions hold."""

    refs: dict[str, str] = field(default_factory=dict)
    staged_bases: set[str] = field(default_factory=set)  # base commits of transactions
    staged_manifests: set[str] = field(default_factory=set)
    staged_chunk_lists: list[bytes] = field(default_factory=list)  # notes' chunk lists, raw


@dataclass
class LiveSet:
    """The result of one walk (`walk`)."""

    roots: Roots
    commits: dict[str, Commit]  # every commit reachable from a root
    manifests: set[str]  # every manifest a live commit or transaction names (objects live)
    held: set[str]  # manifests whose chunks are live whatever expired/ says
    released: set[str]  # manifests an expired/ record releases (and nothing holds)
    # Chunk id -> raw length, of every manifest not released and of staged files, in the
    # order first reached (heads first, so a copy in this order keeps a version together).
    chunks: dict[str, int]

    def is_live_chunk(self, chunk_id: str) -> bool:
        return chunk_id in self.chunks


def read_roots(catalog: Catalog) -> Roots:
    """Every root of the store, read now. A ref or staging file that cannot be read raises."""
    store = catalog.store
    roots = Roots()
    for kind, label in (("heads", "branch"), ("tags", "tag"), ("remotes", "remote")):
        for name, commit_id in store.refs.list(kind).items():  # type: ignore[arg-type]
            if not is_object_id(commit_id):
                raise CorruptObjectError(
                    f"ref {kind}/{name} holds {commit_id[:40]!r}, not a commit id; "
                    f"`udr fsck --repair {store.root}` restores it"
                )
            roots.refs[f"{label} {name}"] = commit_id
    staging = store.staging_dir
    for path in sorted(staging.glob("tx/**/*.json")):
        doc = _staging_doc(path)
        try:
            base = doc["base"]
            staged = [m for m in doc["staged"].values() if m]
        except (KeyError, TypeError, AttributeError) as exc:
            raise _bad_staging(path, exc) from None
        for object_id in (base, *staged):
            if not isinstance(object_id, str) or not is_object_id(object_id):
                raise _bad_staging(path, f"names {object_id!r}, not an object id")
        roots.staged_bases.add(base)
        roots.staged_manifests.update(staged)
    for path in sorted(staging.glob("tx-files/**/*.json")):
        doc = _staging_doc(path)
        try:
            notes = doc["files"].values()
            lists = [chunk_list(n["chunks"]).to_bytes() for n in notes if n.get("chunks")]
        except (KeyError, TypeError, AttributeError, CorruptObjectError) as exc:
            raise _bad_staging(path, exc) from None
        roots.staged_chunk_lists.extend(lists)
    return roots


def held_manifests(catalog: Catalog, roots: Roots | None = None) -> set[str]:
    """Manifests whose chunks stay live whatever `expired/` says: those in the tables of a
    ref's head commit, of a transaction's base, or staged by a transaction."""
    roots = roots if roots is not None else read_roots(catalog)
    held = set(roots.staged_manifests)
    for commit_id in {*roots.refs.values(), *roots.staged_bases}:
        held.update(catalog.commit(commit_id).tables.values())
    return held


def walk(catalog: Catalog, expired: Iterable[str] | None = None) -> LiveSet:
    """Everything the roots reach, and the live chunks (liveness by docs/format.md).

    `expired` are the manifest ids with `expired/` records (read from the store if None).
    """
    roots = read_roots(catalog)
    starts = [*roots.refs.values(), *sorted(roots.staged_bases)]
    commits = reachable(catalog, starts)
    held = held_manifests(catalog, roots)
    # Heads first, then newer commits before older ones: the order chunks are first reached.
    ordered: list[str] = []
    seen: set[str] = set()
    for manifest_id in [
        *sorted(held),
        *(
            m
            for c in sorted(commits.values(), key=lambda c: c.time, reverse=True)
            for m in c.tables.values()
        ),
    ]:
        if manifest_id not in seen:
            seen.add(manifest_id)
            ordered.append(manifest_id)
    records = set(catalog.retention.ids() if expired is None else expired)
    released = (records & seen) - held
    chunks: dict[str, int] = {}
    for manifest_id in ordered:
        if manifest_id in released:
            continue
        _add_chunks(chunks, catalog.manifest(manifest_id).chunks.to_bytes())
    for raw in roots.staged_chunk_lists:
        _add_chunks(chunks, raw)
    return LiveSet(roots, commits, seen, held, released, chunks)


def _add_chunks(chunks: dict[str, int], raw: bytes) -> None:
    for i in range(0, len(raw), 36):
        chunks.setdefault(raw[i : i + 32].hex(), int.from_bytes(raw[i + 32 : i + 36], "little"))


def _staging_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad_staging(path, exc) from None
    if not isinstance(doc, dict):
        raise _bad_staging(path, "not a JSON object")
    return doc


def _bad_staging(path: Path, why: object) -> CorruptObjectError:
    return CorruptObjectError(
        f"transaction state {path} cannot be read ({why}); nothing was changed: "
        f"`udr fsck` names it and `udr fsck --repair` moves it to lost+found/"
    )
