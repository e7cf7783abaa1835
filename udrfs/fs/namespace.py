"""The mount's namespace: which names exist where, their attributes, and the inode table.

```
MOUNT/
  .stats                          live counters
  @<branch>/ @<tag>/              one directory per ref; @<commit id>/ and @<unique 8+ hex
                                  prefix of one>/ resolve (not listed; catalog/paths.py)
  @<first>/<rest>/                a ref named first/rest (refs may contain '/')
    .changes  .changes.txt        the ref's change log (JSON lines; one line for people)
    <table>/
      v1.parquet ... vN.parquet   every version of the table along the ref's history
      latest.parquet -> vN.parquet
      .changes  .changes.txt      the table's change log
    .tx/                          staging (branches only; not listed, like ZFS's .zfs)
      <name>/                     an open transaction (fs/tx_directories.py)
        <table>.parquet           a file written into it
        .control                  commands and status (fs/control.py)
```

What a name means and what a directory lists is the namespace model's (catalog/paths.py),
shared with udr://; this module reads what the model needs through the view and adds the
mount's own names (`.stats`, `.tx`), inodes and attributes. A node is what the kernel knows
by an inode number; nodes are interned by a key that says what they show, so the same thing
looked up twice is the same inode. A version's key is (manifest, commit that made it): the same
version seen through `@main`, a tag or a commit id is one inode with one page cache.

Inode lifetime follows the FUSE protocol: every successful lookup, and every entry a
readdirplus reply carries, adds one to the node's lookup count; `forget` takes it away; a
node whose count reaches zero leaves the table. Inode numbers are never reused.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Awaitable, Callable, Collection, Hashable
from datetime import UTC, datetime, timedelta

import pyfuse3
from pyfuse3 import FUSEError

from udrfs.catalog import Commit, VersionInfo
from udrfs.catalog.paths import (
    REF_MARK,
    ChangesEntry,
    ExpiredEntry,
    GroupEntry,
    LatestEntry,
    Ref,
    RefEntry,
    RefGroup,
    TableEntry,
    VersionEntry,
    latest_version,
    list_ref,
    list_refs,
    list_table,
    lookup_change_log,
    lookup_in_ref,
    lookup_in_table,
    lookup_ref,
    may_name_commit,
    pick,
    ref_children,
    version_file_name,
)
from udrfs.errors import CorruptObjectError, NotFoundError, UdrError
from udrfs.fs.catalog_view import CatalogView, RefSpec
from udrfs.fs.changes import ChangeLogs
from udrfs.fs.control import render_status
from udrfs.fs.nodes import (
    BLOCK_SIZE,
    CONTROL_NAME,
    IMMUTABLE_TIMEOUT,
    MUTABLE_TIMEOUT,
    STATS_NAME,
    TX_NAME,
    TX_NODES,
    VOLATILE_TIMEOUT,
    ChangesFile,
    ControlFile,
    LatestLink,
    Node,
    RefDir,
    RefGroupDir,
    RootDir,
    StagedFileNode,
    StatsFile,
    TableDir,
    TxDir,
    TxRootDir,
    VersionFile,
)
from udrfs.fs.tx_directories import Transactions


class Namespace:
    """Resolves names to nodes, lists directories and answers attributes."""

    def __init__(
        self,
        view: CatalogView,
        changelogs: ChangeLogs,
        render_stats: Callable[[], Awaitable[bytes]],
        transactions: Transactions,
    ) -> None:
        self.view = view
        self.changelogs = changelogs
        self.render_stats = render_stats
        self.transactions = transactions
        self._next_inode = pyfuse3.ROOT_INODE
        self._by_inode: dict[int, Node] = {}
        self._by_key: dict[Hashable, Node] = {}
        self.root = self._intern(RootDir(("root",), None, b""))
        self.root.lookups = 1  # the kernel holds the root for the life of the mount
        self._uid, self._gid = os.getuid(), os.getgid()
        self._started_ns = time.time_ns()

    # -- inode table -------------------------------------------------------------------

    def _intern(self, fresh: Node) -> Node:
        """The node already known under `fresh.key`, or `fresh` with a new inode number."""
        known = self._by_key.get(fresh.key)
        if known is not None:
            return known
        fresh.inode = self._next_inode
        self._next_inode += 1
        self._by_key[fresh.key] = fresh
        self._by_inode[fresh.inode] = fresh
        return fresh

    def intern(self, fresh: Node) -> Node:
        return self._intern(fresh)

    def node(self, inode: int) -> Node:
        try:
            return self._by_inode[inode]
        except KeyError:
            raise NotFoundError(f"inode {inode} is not known") from None

    def remember(self, node: Node, parent: Node, name: bytes) -> None:
        """The kernel now holds one more reference to `node`, as `name` in `parent` (a
        lookup or a readdir entry)."""
        node.lookups += 1
        # A node dropped while its lookup was in flight comes back under the same number.
        self._by_inode.setdefault(node.inode, node)
        self._by_key.setdefault(node.key, node)
        # Per directory: a version shared by several refs has one node but many entries.
        if isinstance(parent, TableDir) and isinstance(node, VersionFile):
            parent.handed_out.add(name)

    def forget(self, inode: int, count: int) -> None:
        node = self._by_inode.get(inode)
        if node is None:
            return
        node.lookups = max(0, node.lookups - count)
        self.discard_if_unused(node)

    def discard_if_unused(self, node: Node) -> None:
        if node.lookups > 0 or node is self.root:
            return
        if self._by_inode.get(node.inode) is node:
            del self._by_inode[node.inode]
        if self._by_key.get(node.key) is node:
            del self._by_key[node.key]

    def __len__(self) -> int:
        return len(self._by_inode)

    def table_dirs(self, ref: RefSpec) -> list[TableDir]:
        return [n for n in self._by_inode.values() if isinstance(n, TableDir) and n.ref == ref]

    # -- names -------------------------------------------------------------------------

    def _ref_children(self, prefix: str) -> dict[str, Ref | RefGroup]:
        # From the refs as last polled, not the store: the view decides when refs move.
        return ref_children(self.view.heads, self.view.tags, prefix)

    def _ref_child(
        self, parent: Node, name: bytes, target: Ref | RefGroup | RefEntry | GroupEntry
    ) -> Node:
        if isinstance(target, RefEntry):
            target = target.ref
        if isinstance(target, GroupEntry):
            return self._intern(RefGroupDir(parent, name, target.prefix))
        if isinstance(target, Ref):
            kind = target.kind
            if kind == "remote":  # the mount shows branches, tags and commits only
                raise NotFoundError(f"{target.name!r} is a remote-tracking ref")
            return self._intern(RefDir(parent, name, RefSpec(kind, target.name)))
        return self._intern(RefGroupDir(parent, name, target.prefix))

    async def lookup(self, parent: Node, name: bytes) -> Node:
        """The child `name` of `parent`; NotFoundError if there is none."""
        if name == b".":
            return parent
        if name == b"..":
            return parent.parent or self.root
        text = os.fsdecode(name)
        if isinstance(parent, RootDir):
            if name == STATS_NAME:
                return self._intern(StatsFile(("stats",), parent, name))
            if text.startswith(REF_MARK):
                # paths.pick decides; an ambiguous name is simply not there (ENOENT).
                ref = text[len(REF_MARK) :]
                ids = await self.view.commits_with_prefix(ref) if may_name_commit(ref) else []
                picked = pick(ref, self._ref_children("").get(ref), ids)
                if isinstance(picked, Ref) and picked.kind == "commit":
                    # `@<short id>` is its own directory, not an alias of `@<full id>`.
                    spelled = "" if ref == picked.commit_id else ref
                    spec = RefSpec("commit", picked.commit_id, spelled)
                    return self._intern(RefDir(parent, name, spec))
                return await self._readable_ref_child(parent, name, picked)
        elif isinstance(parent, RefGroupDir):
            target = lookup_ref(text, self.view.heads, self.view.tags, parent.prefix)
            if target is not None:
                return await self._readable_ref_child(parent, name, target)
        elif isinstance(parent, RefDir):
            if name == TX_NAME and parent.ref.kind == "branch":
                self._head(parent.ref)
                return self._intern(TxRootDir(parent, parent.ref.name))
            # The ref's change logs are there without reading its head.
            log = lookup_change_log(text, None)
            tables = () if log is not None else await self._tables(parent.ref)
            entry = log or lookup_in_ref(text, tables)
            if isinstance(entry, ChangesEntry):
                return self._intern(ChangesFile(parent, parent.ref, entry))
            if isinstance(entry, TableEntry):
                return self._intern(TableDir(parent, name, parent.ref, entry.table))
        elif isinstance(parent, TableDir):
            return await self._lookup_in_table(parent, name)
        elif isinstance(parent, TxRootDir):
            state = await self.transactions.get(parent.branch, text)
            if state is not None:
                return self._intern(TxDir(parent, state))
        elif isinstance(parent, TxDir):
            if name == CONTROL_NAME:
                return self._intern(ControlFile(parent))
            file = parent.state.files.get(text[: -len(".parquet")])
            if file is not None and file.name == name:
                return self._intern(StagedFileNode(parent, file))
        raise NotFoundError(f"{parent.path()}/{text} does not exist")

    async def _lookup_in_table(self, parent: TableDir, name: bytes) -> Node:
        versions, head = await self._versions(parent)
        released = await self.view.released()
        text = os.fsdecode(name)
        entry = lookup_in_table(parent.table, text, _manifests(versions), head, released)
        if isinstance(entry, ExpiredEntry):
            raise await self.view.refusal(entry.manifest_id, parent.table, entry.number)
        if isinstance(entry, ChangesEntry):
            return self._intern(ChangesFile(parent, parent.ref, entry))
        if isinstance(entry, LatestEntry) and versions:
            return self._intern(LatestLink(parent))
        if isinstance(entry, VersionEntry):
            return self._intern(VersionFile(parent, name, versions[entry.number]))
        raise NotFoundError(f"{parent.path()}/{os.fsdecode(name)} does not exist")

    async def entries(self, parent: Node) -> list[tuple[bytes, Node]]:
        """Every listed child of a directory, in a stable order."""
        if isinstance(parent, RootDir | RefGroupDir):
            prefix = parent.prefix if isinstance(parent, RefGroupDir) else ""
            out = []
            for child, target in list_refs(self.view.heads, self.view.tags, prefix):
                name = os.fsencode(child)
                try:
                    node = await self._readable_ref_child(parent, name, target)
                except FUSEError:
                    continue  # a damaged ref is left out (logged once), the others list
                out.append((name, node))
            if isinstance(parent, RootDir):
                out.append((STATS_NAME, self._intern(StatsFile(("stats",), parent, STATS_NAME))))
            return out
        if isinstance(parent, RefDir):
            out = []
            for child, ref_entry in list_ref(await self._tables(parent.ref)):
                name = os.fsencode(child)
                if isinstance(ref_entry, TableEntry):
                    node = self._intern(TableDir(parent, name, parent.ref, ref_entry.table))
                else:
                    node = self._intern(ChangesFile(parent, parent.ref, ref_entry))
                out.append((name, node))
            return out
        if isinstance(parent, TableDir):
            versions, head = await self._versions(parent)
            released = await self.view.released()
            out = []
            listing = list_table(parent.table, _manifests(versions), head, released)
            for child, table_entry in listing:
                name = os.fsencode(child)
                if isinstance(table_entry, VersionEntry):
                    node = self._intern(VersionFile(parent, name, versions[table_entry.number]))
                elif isinstance(table_entry, LatestEntry):
                    node = self._intern(LatestLink(parent))
                else:
                    node = self._intern(ChangesFile(parent, parent.ref, table_entry))
                out.append((name, node))
            return out
        if isinstance(parent, TxRootDir):
            out = []
            for tx_name in await self.transactions.names(parent.branch):
                state = await self.transactions.get(parent.branch, tx_name)
                if state is not None:
                    out.append((os.fsencode(tx_name), self._intern(TxDir(parent, state))))
            return out
        if isinstance(parent, TxDir):
            files = sorted(parent.state.files.values(), key=lambda f: f.name)
            out = [(f.name, self._intern(StagedFileNode(parent, f))) for f in files]
            out.append((CONTROL_NAME, self._intern(ControlFile(parent))))
            return out
        raise NotFoundError(f"{parent.path()} is not a directory")

    async def _readable_ref_child(
        self, parent: Node, name: bytes, target: Ref | RefGroup | RefEntry | GroupEntry
    ) -> Node:
        """The node of a ref (or group) listed in `parent`; EIO if the ref names no commit
        that can be read (logged once for the daemon's life, not once per request)."""
        node = self._ref_child(parent, name, target)
        if isinstance(node, RefDir):
            await self._ref_commit(node.ref)
        return node

    async def _ref_commit(self, ref: RefSpec) -> Commit:
        head = self._head(ref)
        try:
            return await self.view.commit(head)
        except UdrError as exc:
            self.view.report_damage(f"{ref.kind}:{ref.name}:{head}", f"{ref.kind} {ref.name}", exc)
            raise FUSEError(errno.EIO) from None

    def _head(self, ref: RefSpec) -> str:
        head = self.view.commit_of(ref)
        if head is None:
            raise NotFoundError(f"{ref.label()} no longer exists")
        return head

    async def _tables(self, ref: RefSpec) -> Collection[str]:
        return (await self.view.commit(self._head(ref))).tables.keys()

    async def _versions(self, table_dir: TableDir) -> tuple[dict[int, VersionInfo], str]:
        """The table's readable versions along the ref, and the manifest its head holds."""
        head = self._head(table_dir.ref)
        commit = await self.view.commit(head)
        manifest = commit.tables.get(table_dir.table)
        if manifest is None:  # dropped at the head: the model shows it no more
            raise NotFoundError(f"{table_dir.path()} no longer exists")
        return await self.view.versions(table_dir.table, head), manifest

    async def latest_target(self, link: LatestLink) -> bytes:
        """`vN.parquet` for the version the ref's head holds now (resolved at each open)."""
        head = self._head(link.ref)
        commit = await self.view.commit(head)
        manifest = commit.tables.get(link.table)
        versions = await self.view.versions(link.table, head)
        if manifest is None or not versions:
            raise NotFoundError(f"{link.path()} no longer exists")
        target = latest_version(link.table, _manifests(versions), manifest)
        if target is not None:
            return os.fsencode(version_file_name(target.number))
        # The head's own version is damaged (left out): never point at an older one.
        raise CorruptObjectError(f"{link.path()}: the version at {link.ref.label()} cannot be read")

    # -- attributes --------------------------------------------------------------------

    async def attributes(self, node: Node, listing: bool = False) -> pyfuse3.EntryAttributes:
        """The node's attributes. In a listing (readdirplus) a change log not rendered yet
        shows size 0 with a zero timeout, so the first `ls` of a ref with a long history
        does not wait for it: the stat that follows gets the real size."""
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.inode
        attr.st_uid, attr.st_gid = self._uid, self._gid
        attr.st_blksize = BLOCK_SIZE
        mtime_ns = self._started_ns
        long_lived = not node.mutable
        entry_timeout = IMMUTABLE_TIMEOUT if long_lived else MUTABLE_TIMEOUT
        attr_timeout = entry_timeout
        if isinstance(node, TX_NODES):
            mtime_ns = self._tx_attributes(node, attr)
            # Staging changes under the kernel's feet (commit, abort, rm by another process):
            # nothing under .tx is cached.
            entry_timeout = attr_timeout = VOLATILE_TIMEOUT
        elif node.is_dir:
            attr.st_mode = stat.S_IFDIR | 0o555
            attr.st_nlink = 2
            if isinstance(node, RefDir | TableDir):
                mtime_ns = _ns((await self.view.commit(self._head(node.ref))).time)
        elif isinstance(node, VersionFile):
            attr.st_mode = stat.S_IFREG | 0o444
            attr.st_size = node.info.size
            mtime_ns = _ns(node.info.time)
        elif isinstance(node, LatestLink):
            attr.st_mode = stat.S_IFLNK | 0o777
            attr.st_size = len(await self.latest_target(node))
            mtime_ns = _ns((await self.view.commit(self._head(node.ref))).time)
            attr_timeout = attr_timeout if long_lived else VOLATILE_TIMEOUT
        elif isinstance(node, ChangesFile):
            attr.st_mode = stat.S_IFREG | 0o444
            size = self.changelogs.current_size(node.ref, node.log)
            if size is None and listing:
                attr_timeout = VOLATILE_TIMEOUT
            elif size is None:
                size = len(await self.changelogs.content(node.ref, node.log))
            attr.st_size = size or 0
            head = self.view.commit_of(node.ref)
            if head is not None:
                mtime_ns = _ns((await self.view.commit(head)).time)
            if not long_lived:
                attr_timeout = VOLATILE_TIMEOUT
        elif isinstance(node, StatsFile):
            attr.st_mode = stat.S_IFREG | 0o444
            # Never cached (timeout 0): a listing need not render it.
            attr.st_size = 0 if listing else len(await self.render_stats())
            mtime_ns = time.time_ns()
            attr_timeout = VOLATILE_TIMEOUT
        attr.st_nlink = attr.st_nlink or 1
        attr.st_blocks = (attr.st_size + 511) // 512
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = mtime_ns
        attr.entry_timeout = entry_timeout
        attr.attr_timeout = attr_timeout
        return attr

    def _tx_attributes(self, node: Node, attr: pyfuse3.EntryAttributes) -> int:
        """Mode and size of a node under .tx; returns its mtime. Writable by the owner."""
        if isinstance(node, TxRootDir):
            attr.st_mode, attr.st_nlink = stat.S_IFDIR | 0o755, 2
            return self._started_ns
        if isinstance(node, TxDir):
            attr.st_mode, attr.st_nlink = stat.S_IFDIR | 0o755, 2
            return node.state.created_ns
        attr.st_mode = stat.S_IFREG | 0o644
        if isinstance(node, StagedFileNode):
            attr.st_size = node.file.size
            return node.file.mtime_ns
        assert isinstance(node, ControlFile)
        attr.st_size = len(render_status(node.state))
        return time.time_ns()


def _manifests(versions: dict[int, VersionInfo]) -> dict[int, str]:
    return {number: info.manifest_id for number, info in versions.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(moment: datetime) -> int:
    # Exact integer arithmetic: mtimes must equal the commit time to the microsecond.
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
