"""Remotes: push a store's branches and tags to another location, fetch and pull them back.

A remote is a store laid out exactly like a local one (docs/format.md, "Remotes"), reached
through the storage interfaces (`udrfs.store.backends`): this module decides *what* to move
from the commit graph and never knows which backend it talks to. The protocol
(docs/architecture.md, "Remotes"):

- push: every pack, index fragment and object the ref needs goes up first; then the remote
  ref moves by compare-and-swap (`update_ref`) from the value read when the push began. A
  ref that moved to something this store does not descend from is a `NonFastForwardError`;
- fetch: commits, then manifests, then the packs holding chunks this store lacks are
  downloaded and checked; they are installed packs first, commits last (parents before
  children), so a commit present locally always has all it needs; the remote-tracking ref
  `refs/remotes/NAME/BRANCH` moves last;
- what the remote already holds is known from what its refs reach and from a local record
  of the packs pushed to or fetched from it, never by listing on a no-op.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from udrfs.catalog.ancestry import reachable
from udrfs.catalog.keep import keep_reached
from udrfs.catalog.model import TableVersion
from udrfs.catalog.remote_config import RemoteConfig, Remotes, check_remote_name
from udrfs.errors import (
    AlreadyExistsError,
    CorruptObjectError,
    NonFastForwardError,
    NotFoundError,
    RemoteError,
)
from udrfs.store import Store
from udrfs.store.atomic import write_atomic
from udrfs.store.backends import Backend, canonical_url, open_backend
from udrfs.store.condemned import RemoteCondemnedView, condemned_packs, read_remote_record
from udrfs.store.expired import ExpiredRecord, expired_key, is_record_name
from udrfs.store.format import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    StoreFormat,
    fetch_format,
    parse_format,
    upgraded,
)
from udrfs.store.objects import is_object_id
from udrfs.store.refnames import check_ref_name
from udrfs.store.refs import update_ref
from udrfs.store.transfer import Progress, Transfer, TransferStats

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.catalog.retention import Retention


@dataclass
class SyncResult:
    """What a push, fetch or pull did, ref by ref."""

    remote: str
    updated: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # ref: (old, new)
    up_to_date: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    stats: TransferStats = field(default_factory=TransferStats)
    note: str = ""
    requests: int = 0  # requests made to the remote (refs, listings, files)
    listings: int = 0  # of which listings

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "updated": {r: {"old": o, "new": n} for r, (o, n) in self.updated.items()},
            "up_to_date": self.up_to_date,
            "deleted": self.deleted,
            **self.stats.to_dict(),
            "requests": self.requests,
            "listings": self.listings,
            "seconds": round(self.stats.seconds, 3),
            **({"note": self.note} if self.note else {}),
        }


# ---- the commit graph ---------------------------------------------------------------------


def ancestors(store: Store, history: History, tips: Iterable[str | None]) -> set[str]:
    """Every commit reachable from `tips` (all parents) that this store holds."""
    return set(reachable(history, [t for t in tips if t], present=store.objects.exists))


def _manifests_of(history: History, commits: Iterable[str]) -> set[str]:
    return {m for c in commits for m in history.commit(c).tables.values()}


def _recorded_packs(
    commits: Iterable[tuple[bytes, dict[str, Any]]], remote: str
) -> set[str] | None:
    """The packs the commits record holding their new table versions; None when one that
    holds tables predates the `packs` field (then the remote's `index/` is listed)."""
    packs: set[str] = set()
    for _stored, doc in commits:
        if "packs" not in doc:
            if doc["tables"]:
                return None
            continue
        for pack_id in doc["packs"]:
            if not is_object_id(pack_id):  # ids from the remote become keys and local paths
                raise CorruptObjectError(f"a commit on {remote} names pack {pack_id[:80]!r}")
            packs.add(pack_id)
    return packs


# ---- checking the remote ------------------------------------------------------------------


def remote_format(backend: Backend) -> StoreFormat | None:
    """The remote store's format (checked), or None when the location is empty."""
    try:
        return fetch_format(backend.blobs)[0]
    except NotFoundError:
        if backend.blobs.list(""):
            raise RemoteError(
                f"{backend.url} is not a UDR store: it holds files but no {MANIFEST_NAME}; "
                "give an empty location or one a store was pushed to"
            ) from None
        return None


def upgrade_store(
    url: str, endpoint: str | None = None, profile: str | None = None
) -> tuple[int, int]:
    """Raise the store at `url` (a directory or a remote) to the newest format version
    (`udr upgrade`); returns the versions before and after. Only udr.toml changes: packs written
    before keep their version, which this udrfs reads, and new ones are written at the new
    version. Processes with the store open keep writing packs of the version they opened."""
    backend = open_backend(url, endpoint, profile=profile)
    fmt = remote_format(backend)
    if fmt is None:
        raise NotFoundError(f"{url} is not a UDR store (no {MANIFEST_NAME})")
    if fmt.format_version < FORMAT_VERSION:
        backend.blobs.put(MANIFEST_NAME, upgraded(fmt).to_toml().encode())
    return fmt.format_version, FORMAT_VERSION


def _check_can_receive(local: StoreFormat, remote: StoreFormat, url: str) -> None:
    """A remote of an older format version must not receive this store's packs: the udrfs
    releases that read it could not read them."""
    if remote.format_version < local.format_version:
        raise RemoteError(
            f"{url} is a store of format version {remote.format_version} and this store is "
            f"version {local.format_version}: its readers could not read the packs this store "
            f"writes. Upgrade it first (`udr upgrade {url}`; every machine using it then needs "
            "a udrfs that reads the new version), or push to a new location"
        )


def _check_same_chunking(local: StoreFormat, remote: StoreFormat, url: str) -> None:
    ours = (local.chunk_min, local.chunk_avg, local.chunk_max)
    theirs = (remote.chunk_min, remote.chunk_avg, remote.chunk_max)
    if ours != theirs:
        raise RemoteError(
            f"{url} chunks with min/avg/max {theirs} bytes, this store with {ours}: "
            "stores with different chunking cannot share data; work in a clone of it "
            f"(`udr clone {url} DIR`), or push to a new location"
        )


class RemoteSync:
    """One push, fetch or pull between a store and one of its remotes."""

    def __init__(
        self,
        store: Store,
        history: History,
        retention: Retention,
        name: str,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.history = history
        self.retention = retention
        self.remotes = Remotes(self.store)
        self.config = self.remotes.get(name)
        self.name = name
        self.backend = self.config.open()
        self.transfer = Transfer(self.store, self.backend, progress)
        self.result = SyncResult(name, stats=self.transfer.stats)
        self._started = time.monotonic()

    def finish(self) -> SyncResult:
        self.result.requests = self.backend.blobs.requests
        self.result.listings = self.backend.blobs.listings
        self.result.stats.seconds = time.monotonic() - self._started
        return self.result

    def tracking(self) -> dict[str, str]:
        """This remote's branches as last seen: branch -> commit id."""
        prefix = f"{self.name}/"
        return {
            ref[len(prefix) :]: value
            for ref, value in self.store.refs.list("remotes").items()
            if ref.startswith(prefix)
        }

    def _set_tracking(self, branch: str, value: str | None) -> None:
        ref = f"{self.name}/{branch}"
        if value is None:
            if self.store.refs.get("remotes", ref) is not None:
                self.store.refs.delete("remotes", ref)
            return
        update_ref(self.store.refs, "remotes", ref, lambda _current: value)

    # ---- push -------------------------------------------------------------------------

    def ensure_store(self) -> None:
        """Make the remote a store (its udr.toml) or check that it is a compatible one.

        Checked once: the remote's udr.toml is remembered in `remotes/NAME.toml`, so a push
        with nothing to send makes no request but its ref reads. It is read again if this
        store was upgraded since (`udr upgrade`) to a version newer than the one remembered.
        """
        seen = self.remotes.directory / f"{self.name}.toml"
        if seen.exists():
            remembered = parse_format(seen.read_bytes(), self.backend.url, seen)
            if remembered.format_version >= self.store.format.format_version:
                return
        fmt = remote_format(self.backend)
        if fmt is None:
            manifest = (self.store.root / MANIFEST_NAME).read_bytes()
            self.backend.blobs.put_if_absent(MANIFEST_NAME, manifest)
            fmt = remote_format(self.backend)
            assert fmt is not None
        _check_same_chunking(self.store.format, fmt, self.backend.url)
        _check_can_receive(self.store.format, fmt, self.backend.url)
        write_atomic(seen, self.backend.blobs.get(MANIFEST_NAME))

    def upload_for(self, tip: str, remote_tips: Iterable[str | None]) -> None:
        """Send everything `tip` reaches that the remote (reaching `remote_tips`) lacks.

        On a remote where a collector runs (it has `gc/condemned.json`), what this store
        remembers sending may be gone: only what the remote's refs reach now and the packs it
        lists now count as there, and a condemned pack or object is sent again (a writer
        never relies on a condemned file: docs/architecture.md, "Garbage collection")."""
        record = read_remote_record(self.backend.blobs)
        # Files the remote's collector condemned are written again through its record.
        condemned = RemoteCondemnedView(self.store.root, self.backend.blobs)
        if record is None:
            tips = [*remote_tips, *self.tracking().values()]
            known = self.remotes.known_packs(self.name)
        else:
            refs = self.backend.refs
            tips = [*remote_tips, *refs.list("heads").values(), *refs.list("tags").values()]
            known = self.transfer.remote_fragments() - condemned_packs(record)
        have = ancestors(self.store, self.history, tips)
        new_commits = ancestors(self.store, self.history, [tip]) - have
        if not new_commits:
            return
        new_manifests = _manifests_of(self.history, new_commits) - _manifests_of(self.history, have)
        needed: set[str] = set()
        released = self.retention.released()  # their chunks need not (may not) go
        for manifest_id in new_manifests - released:
            needed.update(self.history.manifest(manifest_id).chunks.ids())
        candidates = self.transfer.local_packs() - known
        again = condemned_packs(record or {})
        if needed and candidates:
            chunks_by_pack = self.transfer.local_pack_chunks(candidates)
            packs = sorted(p for p, chunks in chunks_by_pack.items() if chunks & needed)
            sent = self.transfer.upload_packs(packs, again, condemned)
            self.remotes.record_packs(self.name, sent)
        objects_again = {k.rsplit("/", 1)[-1] for k in record or {} if k.startswith("objects/")}
        # Manifests before the commits that name them (only the ref makes them visible, but
        # a reader that finds a commit should find what it names).
        self.transfer.upload_objects(sorted(new_manifests), objects_again, condemned)
        # Row counts computed after a commit travel with it (computed now if still pending),
        # so a reader of the remote's log need not count them again.
        late = sorted(c for c in new_commits if self.history.commit(c).pending_counts)
        for commit_id in late:
            self.history.counted(commit_id)
        self.transfer.upload_counts(late)
        self.transfer.upload_objects(sorted(new_commits), objects_again, condemned)

    def push_expired(self) -> None:
        """Send the `expired/` records the remote may lack (before any ref moves), so the
        remote learns what this store released. Nothing to send: no request at all."""
        retention = self.retention
        unsent = sorted(retention.ids() - self.remotes.known_expired(self.name))
        if not unsent:
            return

        def one(manifest_id: str) -> str:
            data = retention.path(manifest_id).read_bytes()
            ExpiredRecord.from_json(data, retention.path(manifest_id))  # never send damage
            sent = self.backend.blobs.put_if_absent(expired_key(manifest_id), data)
            self.transfer.stats.add(len(data), sent)
            return manifest_id

        self.remotes.record_expired(self.name, self.transfer.parallel(one, unsent))

    def push_branch(self, branch: str, force: bool = False) -> None:
        local = self.history.head(branch)
        remote_ref = f"{self.name}/{branch}"
        seen: list[str | None] = []

        def prepare(current: str | None) -> str | None:
            seen.append(current)
            if current == local:
                return None
            if (
                current is not None
                and not force
                and current not in ancestors(self.store, self.history, [local])
            ):
                raise NonFastForwardError(
                    f"{remote_ref} moved since you fetched; pull, then push again "
                    f"(`udr pull {self.store.root} {self.name} {branch}`)"
                )
            self.upload_for(local, [current])
            return local

        if update_ref(self.backend.refs, "heads", branch, prepare) is None:
            self.result.up_to_date.append(branch)
        else:
            self.result.updated[branch] = (seen[-1], local)
        self._set_tracking(branch, local)

    def push_tag(self, tag: str, commit_id: str) -> None:
        current = self.backend.refs.get("tags", tag)
        if current == commit_id:
            self.result.up_to_date.append(f"tags/{tag}")
            return
        if current is not None:
            raise AlreadyExistsError(
                f"tag {tag!r} exists on {self.name} at {current[:12]}; tags are never moved: "
                "delete it there or tag under a new name"
            )
        self.upload_for(commit_id, [])
        if not self.backend.refs.compare_and_swap("tags", tag, None, commit_id):
            raise AlreadyExistsError(f"tag {tag!r} was just created on {self.name} by another push")
        self.result.updated[f"tags/{tag}"] = (None, commit_id)

    def delete_branch(self, branch: str) -> None:
        """Delete the remote branch only as it was read: a push landing meanwhile is kept."""
        refs = self.backend.refs
        value, token = refs.read("heads", branch)
        if value is None:
            try:
                refs.delete("heads", branch)  # finishes a delete that was interrupted
            except NotFoundError:
                raise NotFoundError(f"no branch {branch!r} on remote {self.name}") from None
        elif not refs.delete_if_unchanged("heads", branch, token):
            raise NonFastForwardError(
                f"{self.name}/{branch} moved while it was being deleted (a push landed) and "
                f"was kept; fetch it (`udr fetch {self.store.root} {self.name}`), then "
                "delete it again if you still mean to"
            )
        self._set_tracking(branch, None)
        self.result.deleted.append(branch)

    # ---- fetch ------------------------------------------------------------------------

    def download(self, tips: Iterable[str]) -> None:
        """Bring every commit `tips` reach, with its manifests and chunks, into this store."""
        tips = list(tips)
        objects = self.store.objects
        fetched: dict[str, tuple[bytes, dict[str, Any]]] = {}
        frontier = {t for t in tips if not objects.exists(t)}
        while frontier:
            docs = self.transfer.fetch_objects(sorted(frontier))
            fetched.update(docs)
            frontier = set()
            for commit_id, (_stored, doc) in docs.items():
                if doc.get("kind") != "commit":
                    raise CorruptObjectError(f"object {commit_id} on {self.name} is not a commit")
                for parent in doc["parents"]:
                    if parent not in fetched and not objects.exists(parent):
                        frontier.add(parent)
        commits = dict(fetched)
        manifest_ids = {m for _s, doc in commits.values() for m in doc["tables"].values()} - set(
            fetched
        )
        manifests = self.transfer.fetch_objects(
            sorted(m for m in manifest_ids if not objects.exists(m))
        )
        chunks_of: dict[str, set[str]] = {}
        for manifest_id, (_stored, doc) in manifests.items():
            if doc.get("kind") != "table_version":
                raise CorruptObjectError(f"object {manifest_id} on {self.name} is not a manifest")
            version = TableVersion.from_document(manifest_id, doc)
            chunks_of[manifest_id] = {
                c for c in version.chunks.ids() if not self.store.chunks.contains(c)
            }
        if any(chunks_of.values()):
            # Versions the remote released come with their records, not their chunks.
            held = {m for c in tips for m in self._tables_of(c, commits).values()}
            for manifest_id in self._fetch_expired(set(chunks_of) - held):
                del chunks_of[manifest_id]
        needed = set().union(*chunks_of.values())
        if needed:
            self._download_chunks(needed, _recorded_packs(commits.values(), self.name))
        for manifest_id, (stored, _doc) in manifests.items():
            self.transfer.install_object(manifest_id, stored)
        # Late row counts the remote holds (a commit without one is counted here when read).
        self.transfer.fetch_counts(
            sorted(c for c, (_s, doc) in commits.items() if doc.get("pending_counts"))
        )
        # Commits parents first: a commit present locally has everything it reaches.
        pending = dict(commits)
        while pending:
            ready = [
                c
                for c, (_s, doc) in pending.items()
                if all(p not in pending for p in doc["parents"])
            ]
            for commit_id in ready:
                self.transfer.install_object(commit_id, pending.pop(commit_id)[0])

    def _tables_of(
        self, commit_id: str, fetched: dict[str, tuple[bytes, dict[str, Any]]]
    ) -> dict[str, str]:
        if commit_id in fetched:
            return dict(fetched[commit_id][1]["tables"])
        return dict(self.history.commit(commit_id).tables)

    def _fetch_expired(self, manifest_ids: set[str]) -> list[str]:
        """Install the remote's `expired/` records for these manifests (one listing of
        `expired/`); returns the manifests they release."""
        if not manifest_ids:
            return []
        on_remote = set()
        for info in self.backend.blobs.list("expired/"):
            name = info.key.rsplit("/", 1)[-1]
            if is_record_name(name):
                on_remote.add(name[:-5])
        wanted = sorted(on_remote & manifest_ids)
        retention = self.retention

        def one(manifest_id: str) -> str:
            data = self.backend.blobs.get(expired_key(manifest_id))
            path = retention.path(manifest_id)
            ExpiredRecord.from_json(data, path)  # checked before it is installed
            if not path.exists():
                write_atomic(path, data)
            self.transfer.stats.add(len(data))
            return manifest_id

        installed = self.transfer.parallel(one, wanted)
        self.remotes.record_expired(self.name, installed)
        return installed

    def _download_chunks(self, needed: set[str], recorded: set[str] | None) -> None:
        """Download the packs holding `needed`: those the new commits record (`packs`), and
        only when they do not cover it (commits written before the field) one listing of
        `index/` (docs/architecture.md, "Remotes")."""
        known = self.remotes.known_packs(self.name)
        local = self.transfer.local_packs()
        wanted: dict[str, bytes] = {}
        missing = set(needed)
        looked: set[str] = set()

        def look_in(candidates: set[str]) -> None:
            fresh = candidates - local - looked
            looked.update(fresh)
            fragments = self.transfer.fetch_fragments(sorted(fresh))
            for pack_id, (data, chunks) in sorted(fragments.items()):
                if chunks & missing:
                    wanted[pack_id] = data
                    missing.difference_update(chunks)

        if recorded is not None:
            try:
                look_in(recorded)
            except NotFoundError:  # a recorded pack that is not there: look everywhere
                looked.clear()
        if missing:
            look_in(self.transfer.remote_fragments())
        if missing:
            raise NotFoundError(
                f"remote {self.name} is incomplete: {len(missing)} chunk(s) named by its "
                f"commits are in no pack there, e.g. {next(iter(missing))}"
            )
        self.transfer.download_packs(wanted)
        self.remotes.record_packs(self.name, sorted(set(wanted) - known))

    def fetch(self, branches: Sequence[str] | None = None, tags: bool = True) -> None:
        if branches:
            heads = {}
            for branch in branches:
                value = self.backend.refs.get("heads", branch)
                if value is None:
                    raise NotFoundError(f"no branch {branch!r} on remote {self.name}")
                heads[branch] = value
        else:
            heads = self.backend.refs.list("heads")
        remote_tags = self.backend.refs.list("tags") if tags else {}
        for name, value in [*heads.items(), *remote_tags.items()]:
            # Names and ids from the remote become local paths: check them like our own.
            check_ref_name(name)
            if not is_object_id(value):
                raise CorruptObjectError(f"ref {name!r} on {self.name} holds {value[:80]!r}")
        self.download([*heads.values(), *remote_tags.values()])
        for value in sorted({*heads.values(), *remote_tags.values()}):
            # Objects this store already had were not downloaded: this store's collector may
            # have condemned them (a branch deleted here, fetched again).
            keep_reached(self.store, self.history, self.retention, value)
        before = self.tracking()
        for branch, value in heads.items():
            if before.get(branch) == value:
                self.result.up_to_date.append(f"{self.name}/{branch}")
            else:
                self._set_tracking(branch, value)
                self.result.updated[f"{self.name}/{branch}"] = (before.get(branch), value)
        if not branches:
            for branch in set(before) - set(heads):  # deleted on the remote
                self._set_tracking(branch, None)
                self.result.deleted.append(f"{self.name}/{branch}")
        local_tags = self.history.tags()
        for tag, value in remote_tags.items():
            if tag not in local_tags:
                self.store.refs.create("tags", tag, value)
                self.result.updated[f"tags/{tag}"] = (None, value)

    def pull(self, branch: str) -> None:
        self.fetch([branch], tags=False)
        theirs = self.tracking()[branch]
        remote_ref = f"{self.name}/{branch}"

        def prepare(ours: str | None) -> str | None:
            if ours is None or ours == theirs:
                return theirs
            if ours in ancestors(self.store, self.history, [theirs]):
                return theirs  # fast-forward
            if theirs in ancestors(self.store, self.history, [ours]):
                self.result.note = f"{branch} is ahead of {remote_ref}: push it"
                return None
            raise NonFastForwardError(
                f"{branch} and {remote_ref} have diverged; merge them with "
                f"`udr merge {self.store.root} {remote_ref} --into {branch}`, then "
                f"`udr push {self.store.root} {self.name} {branch}`"
            )

        old = self.store.refs.get("heads", branch)
        new = update_ref(self.store.refs, "heads", branch, prepare)
        if new is None:
            self.result.up_to_date.append(branch)
        else:
            self.result.updated[branch] = (old, new)


# ---- entry points (Repo and the CLI call these) ---------------------------------------------


def add_remote(
    store: Store,
    name: str,
    url: str,
    endpoint: str | None = None,
    cas: bool = True,
    profile: str | None = None,
) -> RemoteConfig:
    """Record a remote after checking that it can be used (and that its refs can be swapped)."""
    remotes = Remotes(store)
    check_remote_name(name)
    if name in {c.name for c in remotes.list()}:
        raise AlreadyExistsError(
            f"remote {name!r} already exists; remove it with "
            f"`udr remote remove {store.root} {name}` first"
        )
    config = RemoteConfig(name, canonical_url(url), endpoint, cas, profile)
    backend = config.open()
    fmt = remote_format(backend)
    if fmt is not None:
        _check_same_chunking(store.format, fmt, url)
    backend.refs.check_cas()
    remotes.save(config)
    return config


def push(
    store: Store,
    history: History,
    retention: Retention,
    remote: str,
    branches: Sequence[str] = (),
    tags: bool = False,
    all_refs: bool = False,
    delete: Sequence[str] = (),
    force: bool = False,
    progress: Progress | None = None,
) -> SyncResult:
    sync = RemoteSync(store, history, retention, remote, progress)
    names = list(branches) or (list(history.branches()) if all_refs else [])
    if not names and not delete and not (tags or all_refs):
        names = ["main"]
    if names or tags or all_refs:
        sync.ensure_store()
        sync.push_expired()
    for branch in names:
        sync.push_branch(branch, force)
    if tags or all_refs:
        for tag, commit_id in history.tags().items():
            sync.push_tag(tag, commit_id)
    for branch in delete:
        sync.delete_branch(branch)
    return sync.finish()


def fetch(
    store: Store,
    history: History,
    retention: Retention,
    remote: str,
    branches: Sequence[str] = (),
    progress: Progress | None = None,
) -> SyncResult:
    sync = RemoteSync(store, history, retention, remote, progress)
    sync.fetch(list(branches) or None)
    return sync.finish()


def pull(
    store: Store,
    history: History,
    retention: Retention,
    remote: str,
    branch: str = "main",
    progress: Progress | None = None,
) -> SyncResult:
    sync = RemoteSync(store, history, retention, remote, progress)
    sync.pull(branch)
    return sync.finish()


def clone_format(url: str, endpoint: str | None) -> StoreFormat:
    """The format of the store at `url`, checked before anything is created locally."""
    fmt = remote_format(open_backend(url, endpoint))
    if fmt is None:
        raise RemoteError(f"{url} holds no store (no {MANIFEST_NAME}); push a store there first")
    return fmt


def clone_into(
    store: Store,
    history: History,
    retention: Retention,
    url: str,
    endpoint: str | None = None,
    branch: str | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Fill a new, empty store from `url` (recorded as remote `origin`)."""
    Remotes(store).save(RemoteConfig("origin", canonical_url(url), endpoint, True))
    sync = RemoteSync(store, history, retention, "origin", progress)
    sync.fetch([branch] if branch else None)
    if not sync.tracking():
        # udr.toml is written by the first push before any ref: a store with no branch yet.
        raise RemoteError(
            f"{url} holds no branch yet (a first push to it has not finished); "
            "push a branch there, then clone again"
        )
    for name, commit_id in sync.tracking().items():
        store.refs.create("heads", name, commit_id)
    return sync.finish()


class Opened(Protocol):
    """A store opened with its parts (a `Catalog`, a `Repo`): what a clone fills."""

    @property
    def store(self) -> Store: ...

    @property
    def history(self) -> History: ...

    @property
    def retention(self) -> Retention: ...


C = TypeVar("C", bound=Opened)


def clone(
    open_catalog: Callable[[Path], C],
    url: str,
    path: str | os.PathLike[str],
    endpoint: str | None = None,
    branch: str | None = None,
    progress: Progress | None = None,
) -> C:
    """A new store at `path` cloned from `url` (`clone_into`), opened with `open_catalog`.
    Nothing is left at `path` if the clone fails."""
    fmt = clone_format(url, endpoint)
    target = Path(path).absolute()
    existed = target.exists()
    Store.init(target, fmt)
    try:
        catalog = open_catalog(target)
        clone_into(
            catalog.store, catalog.history, catalog.retention, url, endpoint, branch, progress
        )
    except BaseException:
        if existed:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return catalog
