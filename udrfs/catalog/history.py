"""The read model of a store: refs, commits, table-version manifests and version lists.

Reading a version: ref -> commit -> manifest -> chunk list -> packs. `History` answers the
first three steps and everything built from them alone (first-parent history, the log, the
change log, the versions of a table, the tables of a ref), with the store's two bounded
caches of decoded records (docs/architecture.md, "Caches"). It writes nothing but the
row-count records a reader of the change log completes (catalog/late_counts.py).

The parts that write (transaction.py, staging.py) and those that check or collect (fsck.py,
liveness.py and what is built on it) take a `History` beside the store; `Catalog` builds one
per store and answers its own read methods through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from udrfs.catalog.ancestry import reachable
from udrfs.catalog.late_counts import counted, worker
from udrfs.catalog.model import ChangeEntry, Commit, TableInfo, TableVersion, VersionInfo
from udrfs.catalog.paths import Ref, is_commit_id, may_name_commit, pick
from udrfs.errors import CorruptObjectError, NotFoundError
from udrfs.lru import LruCache, MiB
from udrfs.store import Store
from udrfs.store.objects import is_object_id
from udrfs.store.refnames import check_ref_name
from udrfs.store.refs import RefKind

MAIN = "main"

# Bounds of the read model's caches (docs/architecture.md, "Caches").
MANIFEST_CACHE_ENTRIES = 1024
MANIFEST_CACHE_BYTES = 32 * MiB
VERSIONS_CACHE_ENTRIES = 4096
VERSIONS_CACHE_BYTES = 16 * MiB


def weigh_manifest(manifest: TableVersion) -> int:
    """Roughly the memory a decoded manifest holds: 36 bytes per chunk, plus its schema."""
    return 1024 + 36 * manifest.chunks.count + 256 * (len(manifest.schema) + len(manifest.columns))


def weigh_commit(commit: Commit) -> int:
    """Roughly the memory a decoded commit holds: it grows with its tables and changes."""
    return 512 + 160 * (len(commit.tables) + len(commit.changes))


def weigh_versions(versions: Sequence[VersionInfo]) -> int:
    """A version list: a pointer per version plus its newest record (the older records are
    shared with the lists cached for earlier commits)."""
    return 512 + 8 * len(versions)


class History:
    """What the refs and objects of one store say, read through bounded caches."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.manifest_cache: LruCache[str, TableVersion] = LruCache(
            MANIFEST_CACHE_ENTRIES, MANIFEST_CACHE_BYTES, weigh_manifest
        )
        # (commit id, table) -> every version of the table on that commit's history.
        self.versions_cache: LruCache[tuple[str, str], tuple[VersionInfo, ...]] = LruCache(
            VERSIONS_CACHE_ENTRIES, VERSIONS_CACHE_BYTES, weigh_versions
        )

    # ---- refs -------------------------------------------------------------------------

    def branches(self) -> dict[str, str]:
        return self._store.refs.list("heads")

    def tags(self) -> dict[str, str]:
        return self._store.refs.list("tags")

    def ref(self, kind: RefKind, name: str) -> str | None:
        """A ref's commit id (None if absent); CorruptObjectError if its file holds no id."""
        value = self._store.refs.get(kind, name)
        if value is not None and not is_object_id(value):
            raise CorruptObjectError(
                f"ref file refs/{kind}/{name} holds {value[:40]!r}, not a commit id; "
                f"`udr fsck --repair {self._store.root}` restores it"
            )
        return value

    def head(self, branch: str = MAIN) -> str:
        commit_id = self.ref("heads", branch)
        if commit_id is None:
            known = ", ".join(self.branches()) or "none"
            raise NotFoundError(f"no branch named {branch!r} (branches: {known})")
        return commit_id

    def resolve(self, ref: str) -> str:
        """A branch, a tag, a remote-tracking ref (`r2/main`), a commit id or a unique prefix
        of one (8+ hex) -> commit id."""
        return self.resolve_ref(ref).commit_id

    def resolve_ref(self, name: str) -> Ref:
        """What `name` means where a commit is expected: the one precedence rule of
        catalog/paths.py (`pick`); AmbiguousRefError when it could mean several things."""
        named: Ref | None = None
        if not is_commit_id(name):
            check_ref_name(name, "branch or tag")
            # One or two small reads instead of listing every ref; a branch wins over a tag.
            if (head := self.ref("heads", name)) is not None:
                named = Ref("branch", name, head)
            elif (tagged := self.ref("tags", name)) is not None:
                named = Ref("tag", name, tagged)
            elif (tracked := self.ref("remotes", name)) is not None:
                named = Ref("remote", name, tracked)
        ids = self.commits_with_prefix(name) if may_name_commit(name) else []
        return pick(name, named, ids)

    def commits_with_prefix(self, prefix: str) -> list[str]:
        """Ids of the commits that begin with `prefix` (a full id, or 8+ lowercase hex digits).

        One fan-out directory of `objects/` is listed; only the few objects whose ids match
        are read, to keep the commits among them.
        """
        if not may_name_commit(prefix):
            return []
        if is_commit_id(prefix):  # no listing: the object's path is known
            try:
                self.commit(prefix)
            except NotFoundError:
                return []
            return [prefix]
        found = []
        for object_id in self._store.objects.ids_with_prefix(prefix):
            try:
                self.commit(object_id)
            except NotFoundError:
                continue  # gone meanwhile, or a table-version manifest
            found.append(object_id)
        return found

    # ---- objects ----------------------------------------------------------------------

    def commit(self, commit_id: str) -> Commit:
        """The commit with this id, or with the one id that begins so (8+ hex digits)."""
        if len(commit_id) < 64 and may_name_commit(commit_id):
            commit_id = pick(commit_id, None, self.commits_with_prefix(commit_id)).commit_id
        doc = self._store.objects.get(commit_id)
        if doc.get("kind") != "commit":
            raise NotFoundError(f"object {commit_id} is not a commit")
        return Commit.from_document(commit_id, doc)

    def counted(self, commit_id: str, wait: bool = True) -> Commit:
        """The commit with the row counts computed after it filled in: computed here if they
        are not yet, or with `wait=False` left pending (docs/architecture.md, "Row counts")."""
        return counted(self._store, self, self.commit(commit_id), wait)

    def count_later(self, commit_id: str) -> None:
        """Have this process's background worker complete the commit's pending row counts."""
        worker.submit(self._store, self, commit_id)

    def manifest(self, manifest_id: str) -> TableVersion:
        cached = self.manifest_cache.get(manifest_id)
        if cached is not None:
            return cached
        doc = self._store.objects.get(manifest_id, cache=False)  # kept decoded, below
        if doc.get("kind") != "table_version":
            raise CorruptObjectError(f"object {manifest_id} is not a table-version manifest")
        version = TableVersion.from_document(manifest_id, doc)
        self.manifest_cache.put(manifest_id, version)
        return version

    def reachable_commits(self) -> dict[str, Commit]:
        """Every commit reachable from any branch or tag (all parents)."""
        return reachable(self, [*self.branches().values(), *self.tags().values()])

    # ---- history ----------------------------------------------------------------------

    def first_parent_history(self, branch: str = MAIN) -> Iterator[Commit]:
        """Commits along the first-parent chain of a branch, tag or commit, newest first."""
        commit_id: str | None = self.resolve(branch)
        while commit_id is not None:
            commit = self.commit(commit_id)
            yield commit
            commit_id = commit.parents[0] if commit.parents else None

    def log(
        self, branch: str = MAIN, table: str | None = None, limit: int | None = None
    ) -> list[Commit]:
        """Commits, newest first; with `table`, only those that changed it."""
        out: list[Commit] = []
        for commit in self.first_parent_history(branch):
            if table is None or any(c.table == table for c in commit.changes):
                out.append(commit)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def changes(
        self, branch: str = MAIN, since: int = 0, table: str | None = None, wait: bool = True
    ) -> list[ChangeEntry]:
        """Change-log entries after sequence number `since`, oldest first.

        Row counts computed after a commit are filled in; those not computed yet are computed
        here first, or with `wait=False` left pending (`TableChange.counts_pending`)."""
        entries = []
        for commit in self.first_parent_history(branch):
            if commit.seq <= since:
                break
            entry = counted(self._store, self, commit, wait).change_entry(table)
            if entry.tables:
                entries.append(entry)
        entries.reverse()
        return entries

    def commit_at(self, branch: str, as_of: datetime) -> Commit:
        """The newest commit on `branch`'s history made at or before `as_of`."""
        if as_of.tzinfo is None:
            as_of = as_of.astimezone()
        for commit in self.first_parent_history(branch):
            if commit.time <= as_of:
                return commit
        raise NotFoundError(f"{branch!r} has no commit at or before {as_of.isoformat()}")

    # ---- tables and their versions ----------------------------------------------------

    def table_versions(self, table: str, branch: str = MAIN) -> list[VersionInfo]:
        """Every version of `table` along `branch`'s first-parent history, oldest first.

        `branch` may also be a tag or a commit id, as everywhere in this API.
        """
        return list(self.versions_at(table, self.resolve(branch)))

    def versions_at(self, table: str, commit_id: str) -> tuple[VersionInfo, ...]:
        """Every version of `table` along the first-parent history of commit `commit_id`."""
        # Walk back to the nearest commit whose answer is cached, then build forward. Answers
        # are kept for the commits that changed the table and the one asked about, not for
        # every commit between: a walk from anywhere stops at the table's previous change.
        chain: list[Commit] = []
        cursor: str | None = commit_id
        known: tuple[VersionInfo, ...] = ()
        while cursor is not None:
            cached = self.versions_cache.get((cursor, table))
            if cached is not None:
                known = cached
                break
            commit = self.commit(cursor)
            chain.append(commit)
            cursor = commit.parents[0] if commit.parents else None
        for commit in reversed(chain):
            manifest_id = commit.tables.get(table)
            if manifest_id is not None and (not known or known[-1].manifest_id != manifest_id):
                known = (
                    *known,
                    VersionInfo.of(table, manifest_id, self.manifest(manifest_id), commit),
                )
            elif commit.id != commit_id:
                continue
            self.versions_cache.put((commit.id, table), known)
        return known

    def tables(self, branch: str = MAIN) -> list[TableInfo]:
        """The tables of a branch's head: name, latest version, rows, size."""
        commit = self.commit(self.resolve(branch))
        out = []
        for name, manifest_id in sorted(commit.tables.items()):
            m = self.manifest(manifest_id)
            out.append(TableInfo(name, m.version, m.rows, m.size, manifest_id))
        return out

    def find_version(
        self,
        table: str,
        version: int | None = None,
        branch: str = MAIN,
        as_of: datetime | None = None,
    ) -> TableVersion:
        """`table` at `version` (or as of a time, or the newest) on `branch`, as history
        records it. Whether its data may still be read is retention's to say: readers go
        through `Catalog.version` (or check with `Retention.check_readable`)."""
        commit = self.commit_at(branch, as_of) if as_of else self.commit(self.resolve(branch))
        if version is None:
            manifest_id = commit.tables.get(table)
            if manifest_id is None:
                raise NotFoundError(self._no_table(table, branch, commit))
            return self.manifest(manifest_id)
        versions = self.versions_at(table, commit.id)
        for info in versions:
            if info.version == version:
                return self.manifest(info.manifest_id)
        if not versions:
            raise NotFoundError(self._no_table(table, branch, commit))
        last = versions[-1].version
        raise NotFoundError(f"table {table!r} on {branch!r} has versions 1..{last}, not {version}")

    def _no_table(self, table: str, branch: str, commit: Commit) -> str:
        names = ", ".join(sorted(commit.tables)[:20]) or "none"
        return f"no table named {table!r} on {branch!r} (tables: {names})"
