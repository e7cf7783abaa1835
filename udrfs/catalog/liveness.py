"""What a store still needs: the one walk from the roots that the collector (catalog/gc.py),
repack (catalog/repack.py) and retention (catalog/retention.py) share (docs/architecture.md,
"Garbage collection").

Roots: every branch, tag and remote-tracking ref; every named transaction in
`staging/tx/` (its base commit and staged manifests) and the chunk lists its notes in
`staging/tx-files/` name. Live: the commits they reach (all parents), the manifests those
commits name (and the manifests' parents), and the chunks of those manifests, except the
chunks of versions released by `udr expire` (`expired/`, format.md, "Expired versions"),
which stay only while a ref's head commit or a staged transaction holds the manifest.

Every read here fails closed: a directory that cannot be listed, a ref, transaction or
expiry record that cannot be parsed, an object that is missing or damaged raises, so that
the collector deletes nothing it could not prove dead.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from udrfs.catalog.ancestry import reachable
from udrfs.catalog.model import Commit, TableVersion
from udrfs.errors import CorruptObjectError, NotFoundError, UdrError
from udrfs.store.chunks import chunk_list
from udrfs.store.expired import EXPIRED_DIR, ExpiredRecord, is_record_name
from udrfs.store.objects import is_object_id
from udrfs.store.refnames import is_valid_ref_name

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.store import Store

REF_KINDS = ("heads", "tags", "remotes")
CHUNK_RECORD = 36  # bytes per chunk in an encoded chunk list (format.md, "Chunks")


class UnsafeToCollect(CorruptObjectError):
    """The collector could not prove what is live: it stops before deleting anything."""


def walk_files(directory: Path) -> Iterator[Path]:
    """Every file under `directory` (none if it does not exist); any listing error raises."""
    if not directory.exists():
        return

    def fail(exc: OSError) -> None:
        raise UnsafeToCollect(
            f"cannot list {exc.filename}: {exc.strerror or exc}; nothing was deleted "
            "(fix the permissions or the disk, then run gc again)"
        )

    for dirpath, _dirs, files in os.walk(directory, onerror=fail):
        for name in files:
            yield Path(dirpath) / name


def read_json(path: Path, what: str) -> dict[str, Any] | None:
    """The JSON object in `path`; None if the file went away since it was listed (its
    transaction ended: see `find_live` for why that is safe)."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafeToCollect(
            f"cannot read {what} {path}: {exc.strerror or exc}; nothing was deleted"
        ) from None
    except ValueError as exc:
        raise UnsafeToCollect(
            f"{what} {path} is damaged ({exc}); nothing was deleted: `udr fsck` says how to "
            "repair it"
        ) from None
    if not isinstance(doc, dict):
        raise UnsafeToCollect(f"{what} {path} is damaged (not an object); nothing was deleted")
    return doc


def read_expired(root: Path) -> set[str]:
    """Ids of the manifests an `expired/` record releases, each record checked (none if there
    is no `expired/`)."""
    out: set[str] = set()
    for path in walk_files(root / EXPIRED_DIR):
        if not is_record_name(path.name):
            continue  # a temporary file of a writer
        try:
            record = ExpiredRecord.from_json(path.read_bytes(), path)
        except OSError as exc:
            raise UnsafeToCollect(
                f"cannot read {path}: {exc.strerror or exc}; nothing was deleted"
            ) from None
        except CorruptObjectError as exc:
            raise UnsafeToCollect(f"{exc}; nothing was deleted") from None
        out.add(record.manifest)
    return out


@dataclass
class Live:
    """What the roots reach."""

    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> commit id
    commits: dict[str, Commit] = field(default_factory=dict)
    manifests: set[str] = field(default_factory=set)
    # Manifests a ref's head commit or a staged transaction names: their chunks stay live
    # even if an expired/ record names them (fail safe).
    pinned: set[str] = field(default_factory=set)
    # Expired manifests whose chunks no longer count.
    released: set[str] = field(default_factory=set)
    # Chunk id (hex) -> raw length, in the order first reached: held manifests first, then
    # newer commits before older ones (a copy in this order keeps a version together).
    chunks: dict[str, int] = field(default_factory=dict)
    # Manifest id -> the table it is a version of (for per-table accounting).
    tables: dict[str, str] = field(default_factory=dict)

    @property
    def objects(self) -> set[str]:
        return set(self.commits) | self.manifests


def read_refs_of(root: Path) -> dict[str, str]:
    """Every branch, tag and remote-tracking ref: "heads/main" -> commit id. Strict."""
    refs: dict[str, str] = {}
    for kind in REF_KINDS:
        base = root / "refs" / kind
        for path in walk_files(base):
            name = path.relative_to(base).as_posix()
            if not is_valid_ref_name(name):
                continue  # a temporary file, or a name no ref may have (format.md, "Refs")
            try:
                value = path.read_bytes().decode("ascii", "replace").strip()
            except FileNotFoundError:
                continue  # deleted since it was listed
            except OSError as exc:
                raise UnsafeToCollect(
                    f"cannot read ref {path}: {exc.strerror or exc}; nothing was deleted"
                ) from None
            if not is_object_id(value):
                raise UnsafeToCollect(
                    f"ref {kind}/{name} holds {value[:80]!r}, not a commit id; nothing was "
                    f"deleted: `udr fsck {root}` says how to repair it"
                )
            refs[f"{kind}/{name}"] = value
    return refs


@dataclass
class Staged:
    """What the named transactions in `staging/` hold."""

    bases: set[str] = field(default_factory=set)  # the commits they started from
    manifests: set[str] = field(default_factory=set)  # the versions they staged
    chunk_lists: list[bytes] = field(default_factory=list)  # their notes' files, encoded


def read_staging(store: Store) -> Staged:
    staged = Staged()
    staging = store.staging_dir
    for path in walk_files(staging / "tx"):
        if path.name.startswith(".") or path.suffix != ".json":
            continue
        doc = read_json(path, "transaction")
        if doc is None:
            continue
        try:
            base = doc["base"]
            staged.manifests.update(m for m in doc["staged"].values() if m)
        except (KeyError, TypeError, AttributeError) as exc:
            raise UnsafeToCollect(
                f"transaction {path} is damaged ({exc}); nothing was deleted"
            ) from None
        if isinstance(base, str):
            staged.bases.add(base)
    for path in walk_files(staging / "tx-files"):
        if path.name.startswith(".") or path.suffix != ".json":
            continue
        doc = read_json(path, "transaction notes")
        if doc is None:
            continue
        try:
            for note in doc["files"].values():
                if note.get("chunks"):
                    staged.chunk_lists.append(chunk_list(note["chunks"]).to_bytes())
        except (KeyError, TypeError, AttributeError, UdrError) as exc:
            raise UnsafeToCollect(
                f"transaction notes {path} are damaged ({exc}); nothing was deleted"
            ) from None
    return staged


def held_manifests(
    store: Store,
    history: History,
    refs: dict[str, str] | None = None,
    staged: Staged | None = None,
) -> set[str]:
    """Manifests whose chunks stay live whatever `expired/` says: those in the tables of a
    ref's head commit or of a transaction's base, and those a transaction staged."""
    refs = read_refs_of(store.root) if refs is None else refs
    staged = read_staging(store) if staged is None else staged
    held = set(staged.manifests)
    for commit_id in {*refs.values(), *staged.bases}:
        held.update(history.commit(commit_id).tables.values())
    return held


class LiveVisitor(Protocol):
    """Told what `find_live` finds as it goes, so that a caller can account for it in the
    same walk (catalog/footprint.py: bytes per table and per ref)."""

    def commits_found(self, live: Live, staged: Staged) -> None:
        """Every live commit, ref and pinned manifest is known; no manifest was read yet."""

    def manifest_found(self, manifest_id: str, manifest: TableVersion, counted: bool) -> None:
        """A live manifest, read once; `counted`: its chunks count as live (not released)."""

    def chunks_noted(self, encoded: bytes) -> None:
        """A chunk list a named transaction's notes hold (an encoded chunk list)."""


def find_live(
    store: Store,
    history: History,
    expired: Iterable[str] | None = None,
    visitor: LiveVisitor | None = None,
    read_refs: Callable[[], dict[str, str]] | None = None,
) -> Live:
    """Everything the roots reach. `expired`: the manifest ids with `expired/` records (read
    from the store, each checked, if None). `visitor` is told what is found as it is.
    `read_refs`: how the refs are read (the store's `refs/` directory if None; a store on a
    remote: the remote's refs, catalog/gc_storage.py)."""
    root = store.root
    # Staging before the refs: a transaction that commits and removes its staging files
    # meanwhile is then found through the ref it moved (read after), never missed by both.
    staged = read_staging(store)
    live = Live(refs=read_refs() if read_refs is not None else read_refs_of(root))
    live.commits = reachable(_StrictCommits(history), [*live.refs.values(), *sorted(staged.bases)])
    live.pinned = held_manifests(store, history, live.refs, staged)
    records = read_expired(root) if expired is None else set(expired)
    if visitor is not None:
        visitor.commits_found(live, staged)
    newest_first = sorted(live.commits.values(), key=lambda c: c.time, reverse=True)
    todo = deque([*sorted(live.pinned), *(m for c in newest_first for m in c.tables.values())])
    named = {m for c in live.commits.values() for m in c.tables.values()}
    while todo:
        manifest_id = todo.popleft()
        if manifest_id in live.manifests:
            continue
        try:
            m = history.manifest(manifest_id)
        except NotFoundError:
            if manifest_id in live.pinned or manifest_id in named:
                raise UnsafeToCollect(
                    f"manifest {manifest_id}, which a live commit or transaction names, is "
                    f"missing; nothing was deleted: `udr fsck {root}` says what it affects"
                ) from None
            continue  # a parent no commit names: nothing of it is needed
        except UdrError as exc:
            raise UnsafeToCollect(
                f"manifest {manifest_id} cannot be read ({exc}); nothing was deleted"
            ) from None
        live.manifests.add(manifest_id)
        live.tables[manifest_id] = m.table
        if m.parent:
            todo.append(m.parent)
        released = manifest_id in records and manifest_id not in live.pinned
        if visitor is not None:
            visitor.manifest_found(manifest_id, m, not released)
        if released:
            live.released.add(manifest_id)
            continue
        _add_chunks(live.chunks, m.chunks.to_bytes())
    for encoded in staged.chunk_lists:
        _add_chunks(live.chunks, encoded)
        if visitor is not None:
            visitor.chunks_noted(encoded)
    return live


class _StrictCommits:
    """The store's commits for `ancestry.reachable`, a commit that cannot be read stopping
    the walk."""

    def __init__(self, history: History) -> None:
        self.history = history

    def commit(self, commit_id: str) -> Commit:
        try:
            return self.history.commit(commit_id)
        except UdrError as exc:
            raise UnsafeToCollect(
                f"commit {commit_id}, which a ref or transaction reaches, cannot be read "
                f"({exc}); nothing was deleted"
            ) from None


def _add_chunks(out: dict[str, int], encoded: bytes) -> None:
    for i in range(0, len(encoded), CHUNK_RECORD):
        out.setdefault(
            encoded[i : i + 32].hex(),
            int.from_bytes(encoded[i + 32 : i + CHUNK_RECORD], "little"),
        )
