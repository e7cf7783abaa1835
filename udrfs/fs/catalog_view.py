"""The daemon's view of the catalog: refs polled into memory, immutable records cached.

Every catalog call that may touch the disk runs in a worker thread (`trio.to_thread`), so a
request handler awaiting one never stalls the trio loop that serves every other request.
Commits, manifests and the version list of a table at a given commit are immutable, so they
are cached by id; only the branch and tag heads move, and `refresh` re-reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import trio

from udrfs.catalog import Catalog, ChangeEntry, Commit, TableVersion, VersionInfo
from udrfs.catalog.ancestry import on_first_parent_chain
from udrfs.catalog.history import weigh_commit, weigh_manifest
from udrfs.catalog.paths import ChangesEntry
from udrfs.errors import NotFoundError, UdrError
from udrfs.lru import LruCache, MiB

log = logging.getLogger(__name__)

T = TypeVar("T")

RefKind = Literal["branch", "tag", "commit"]


@dataclass(frozen=True)
class RefSpec:
    """What a `@...` directory shows: a branch or tag (which move) or a fixed commit."""

    kind: RefKind
    name: str
    # How a commit was spelled (`@<short id>`); a different spelling is a different directory.
    spelled: str = ""

    @property
    def mutable(self) -> bool:
        # Tags are never moved by convention, but they can be deleted and re-created.
        return self.kind != "commit"

    def label(self) -> str:
        return f"@{self.spelled or self.name}"


class CacheCounters:
    """Hits and misses of the daemon's catalog caches, for `.stats`."""

    def __init__(self, *caches: LruCache[Any, Any]) -> None:
        self._caches = caches

    @property
    def hits(self) -> int:
        return sum(cache.hits for cache in self._caches)

    @property
    def misses(self) -> int:
        return sum(cache.misses for cache in self._caches)


@dataclass(frozen=True)
class RefsChange:
    """Which refs moved, appeared or vanished in one refresh."""

    branches: frozenset[str]
    tags: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.branches or self.tags)


class CatalogView:
    """Cached, non-blocking access to one store's catalog for the FUSE daemon."""

    def __init__(self, catalog: Catalog, metadata_threads: int = 4) -> None:
        self.catalog = catalog
        self.heads: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        # Bounds the threads doing metadata work so a burst of lookups cannot starve reads.
        self._limiter = trio.CapacityLimiter(metadata_threads)
        # Bounds: docs/architecture.md, "Caches".
        self._commits: LruCache[str, Commit] = LruCache(8192, 32 * MiB, weigh_commit)
        self._versions: LruCache[tuple[str, str], dict[int, VersionInfo]] = LruCache(
            2048, 16 * MiB, lambda versions: 512 + 128 * len(versions)
        )
        # Manifests carry whole chunk lists (36 bytes per 64 KiB chunk): keep few.
        self._manifests: LruCache[str, TableVersion] = LruCache(64, 32 * MiB, weigh_manifest)
        self.cache = CacheCounters(self._commits, self._versions, self._manifests)
        # Refreshes may overlap (the poll, a commit through .control): a read that started
        # before the one last applied is dropped, so the heads never move backwards.
        self._reads_started = 0
        self._read_applied = 0
        # Damaged objects and refs already logged: one log line each, not one per request.
        self._damage_logged: set[str] = set()

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def refresh(self) -> RefsChange:
        """Re-read the refs (one small file each) and report what moved."""
        self._reads_started += 1
        ticket = self._reads_started
        heads, tags = await self._call(self._read_refs)
        if ticket < self._read_applied:
            return RefsChange(frozenset(), frozenset())
        self._read_applied = ticket
        moved = frozenset(
            name
            for name in heads.keys() | self.heads.keys()
            if heads.get(name) != self.heads.get(name)
        )
        moved_tags = frozenset(
            name for name in tags.keys() | self.tags.keys() if tags.get(name) != self.tags.get(name)
        )
        self.heads, self.tags = heads, tags
        return RefsChange(moved, moved_tags)

    def _read_refs(self) -> tuple[dict[str, str], dict[str, str]]:
        return dict(self.catalog.branches()), dict(self.catalog.tags())

    def commit_of(self, ref: RefSpec) -> str | None:
        """The commit a ref shows now (from the last refresh); None if it is gone."""
        if ref.kind == "branch":
            return self.heads.get(ref.name)
        if ref.kind == "tag":
            return self.tags.get(ref.name)
        return ref.name

    async def commit(self, commit_id: str) -> Commit:
        cached = self._commits.get(commit_id)
        if cached is None:
            cached = await self._call(self.catalog.commit, commit_id)
            self._commits.put(commit_id, cached)
        return cached

    async def commit_exists(self, commit_id: str) -> bool:
        try:
            await self.commit(commit_id)
        except NotFoundError:
            return False
        return True

    async def commits_with_prefix(self, prefix: str) -> list[str]:
        """The commits whose ids begin with `prefix` (Catalog.commits_with_prefix)."""
        if len(prefix) == 64:
            return [prefix] if await self.commit_exists(prefix) else []
        return await self._call(self.catalog.commits_with_prefix, prefix)

    async def versions(self, table: str, commit_id: str) -> dict[int, VersionInfo]:
        """Every version of `table` in the history of `commit_id`, by version number."""
        key = (table, commit_id)
        cached = self._versions.get(key)
        if cached is None:
            try:
                infos = await self._call(self.catalog.table_versions, table, commit_id)
            except UdrError:
                # Damage in the history must not hide the versions after it (not cached:
                # a repaired store shows them all again).
                return await self._call(self._readable_versions, table, commit_id)
            cached = {info.version: info for info in infos}
            self._versions.put(key, cached)
        return cached

    def _readable_versions(self, table: str, commit_id: str) -> dict[int, VersionInfo]:
        """The versions of `table` that can be read along the first-parent history of
        `commit_id`, walking back until a commit cannot be read; each damaged object is
        logged once. A version that was made beyond the damage shows with the time of the
        oldest commit that can be read. Raises what the head's own commit raises."""
        chain = [self.catalog.commit(commit_id)]
        while chain[-1].parents:
            parent = chain[-1].parents[0]
            try:
                chain.append(self.catalog.commit(parent))
            except UdrError as exc:
                self.report_damage(parent, f"commit {parent} before {chain[-1].id}", exc)
                break
        out: dict[int, VersionInfo] = {}
        previous = None
        for commit in reversed(chain):
            manifest_id = commit.tables.get(table)
            if manifest_id is not None and manifest_id != previous:
                try:
                    m = self.catalog.manifest(manifest_id)
                except UdrError as exc:
                    self.report_damage(manifest_id, f"a version of {table}", exc)
                else:
                    out[m.version] = VersionInfo.of(table, manifest_id, m, commit)
            previous = manifest_id
        return out

    def report_damage(self, key: str, what: str, exc: BaseException) -> None:
        """One log line per damaged object or ref, however often it is asked for."""
        if key not in self._damage_logged:
            self._damage_logged.add(key)
            log.error("%s cannot be read, left out or EIO: %s", what, exc)

    async def released(self) -> frozenset[str]:
        """Manifests `udr expire` released (not listed; reading them is refused). One stat
        on the event loop when nothing was ever expired, else read in a worker thread."""
        if not self.catalog.retention.may_have_records():
            return frozenset()
        return await self._call(self.catalog.retention.released)

    async def check_readable(self, manifest: TableVersion) -> TableVersion:
        """`manifest`, or VersionExpiredError if it was released since it was looked up."""
        if not self.catalog.retention.may_have_records():
            return manifest
        return await self._call(self.catalog.retention.check_readable, manifest)

    async def refusal(self, manifest_id: str, table: str, number: int) -> NotFoundError:
        """The error for a lookup of a released version (VersionExpiredError)."""
        return await self._call(self.catalog.retention.refusal, manifest_id, table, number)

    async def manifest(self, manifest_id: str) -> TableVersion:
        cached = self._manifests.get(manifest_id)
        if cached is None:
            cached = await self._call(self.catalog.manifest, manifest_id)
            self._manifests.put(manifest_id, cached)
        return cached

    async def change_lines(
        self, commit_id: str, since: int, log: ChangesEntry
    ) -> tuple[list[tuple[int, str, bytes]], bool]:
        """(seq, commit, line with its newline) of each change of `log` after `since`, oldest
        first, up to the first whose row counts are still being computed (left out with every
        later one: a line is shown once, complete; then the flag is true). Its counts are
        handed to the background worker. Rendered in a worker thread too: a long log takes a
        while to format."""
        return await self._call(self._change_lines, commit_id, since, log)

    def _change_lines(
        self, commit_id: str, since: int, log: ChangesEntry
    ) -> tuple[list[tuple[int, str, bytes]], bool]:
        entries: list[ChangeEntry] = self.catalog.changes(
            commit_id, since=since, table=log.table, wait=False
        )
        lines: list[tuple[int, str, bytes]] = []
        for e in entries:
            if any(c.counts_pending for c in e.tables):
                self.catalog.history.count_later(e.commit)
                return lines, True
            lines.append((e.seq, e.commit, log.render(e)))
        return lines, False

    async def is_descendant(self, new: str, old: str) -> bool:
        """Whether `old` is on the first-parent history of `new` (a fast-forward)."""
        return await self._call(on_first_parent_chain, self.catalog, old, new)

    async def engine_stats(self) -> dict[str, object]:
        """The chunk engine's live counters (reads, cache hits, ...).

        Catalog.stats() walks every reachable commit: far too slow for a file read on each
        open, so the mount asks the engine directly for its counters.
        """
        return dict(await self._call(self.catalog.engine_stats))
