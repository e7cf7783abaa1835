"""`udr://` URLs: any version of any table, readable by pandas, polars, pyarrow and DuckDB.

The namespace is the mount's (docs/mount.md), under the store's path; what a directory lists
and what a name resolves to is decided by the namespace model in catalog/paths.py, which
the mount uses too:

```
udr:///abs/path/to/store/@main/nyc_master/v3.parquet      version 3 of nyc_master on main
udr:///abs/path/to/store/@main/nyc_master/latest.parquet  the newest version on main
udr:///abs/path/to/store/@v2024-06/nyc_master/v3.parquet  through a tag
udr:///abs/path/to/store/@<commit id>/nyc_master/v3.parquet
udr:///abs/path/to/store/@main/.changes                   the branch's change log (JSON lines)
udr:///abs/path/to/store/@main/.changes.txt               the same, one line a commit for people
udr:///abs/path/to/store/@main/nyc_master/.changes        one table's change log
```

The store is the part of the path before the first `/@`; or it is given as the storage option
`store=` and the URL starts at the ref: `udr://@main/nyc_master/v3.parquet`. A branch whose
name has a `/` (experiment/scoring) is `@experiment/scoring/...`. Everything is read-only:
tables change only by commits.

fsspec finds this class through the `fsspec.specs` entry point `udr`, so
`pd.read_parquet("udr:///...")` works once udrfs is installed.
"""

from __future__ import annotations

import atexit
import gc
import io
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fsspec.spec import AbstractFileSystem

from udrfs.catalog import Catalog, Commit, TableVersion
from udrfs.catalog.catalog import is_store_url
from udrfs.catalog.files import VersionFile, lend_until_exit
from udrfs.catalog.history import weigh_manifest
from udrfs.catalog.paths import (
    REF_MARK,
    ChangesEntry,
    ExpiredEntry,
    GroupEntry,
    LatestEntry,
    Ref,
    RefEntry,
    TableEntry,
    VersionEntry,
    list_ref,
    list_refs,
    list_table,
    lookup_in_ref,
    lookup_in_table,
    lookup_ref,
    may_name_commit,
    pick,
    ref_children,
    version_file_name,
)
from udrfs.catalog.store_options import OPTIONS
from udrfs.errors import NotFoundError, UdrError
from udrfs.lru import LruCache, MiB

if TYPE_CHECKING:
    # Named in annotations only: the bytes are read through the catalog's store.
    from udrfs.store.chunks import ChunkStore

# Resolved paths through commit ids kept per filesystem (docs/architecture.md, "Caches").
FIXED_NODES = 4096
FIXED_NODES_BYTES = 16 * MiB
# Spellings of store paths resolved per filesystem (`~`, symlinks and `..` looked up once).
STORE_SPELLINGS = 64

NodeKind = Literal["root", "group", "ref", "table", "version", "changes"]


@dataclass(frozen=True)
class Node:
    """What one path names. `prefix` is how the caller spelled the store (kept in listings)."""

    kind: NodeKind
    catalog: Catalog
    prefix: str
    ref: str | None = None
    commit: Commit | None = None
    table: str | None = None
    name: str | None = None
    version: TableVersion | None = None
    # For latest.parquet: the `vN.parquet` it stands for (the mount's symlink target).
    target: str | None = None
    # For a change log: which one (catalog/paths.py renders its lines).
    log: ChangesEntry | None = None

    @property
    def path(self) -> str:
        parts = [f"{REF_MARK}{self.ref}"] if self.ref is not None else []
        parts += [p for p in (self.table, self.name) if p]
        return self.prefix + "/".join(parts) if parts else self.prefix.rstrip("/") or "/"


def _weigh_node(node: Node) -> int:
    manifest = weigh_manifest(node.version) if node.version is not None else 0
    return 512 + manifest + (128 * len(node.commit.tables) if node.commit is not None else 0)


class ReadCounter:
    """Bytes read through a filesystem's files, for callers that watch what a query reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n


class UdrFile(VersionFile):
    """A version's bytes, with one file position per thread.

    DuckDB reads a file from several threads through one handle, each read a `seek` then a
    `read`; with a shared position another thread's seek could land in between. A position
    per thread makes each thread's seek-then-read act like `pread`.
    """

    def __init__(
        self, chunks: ChunkStore, version: TableVersion, counter: ReadCounter | None = None
    ) -> None:
        self._positions = threading.local()
        self._counter = counter or ReadCounter()
        super().__init__(chunks, version)

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        self._counter.add(n)
        return n

    def readall(self) -> bytes:
        data = super().readall()
        self._counter.add(len(data))
        return data

    @property
    def _pos(self) -> int:
        return int(getattr(self._positions, "pos", 0))

    @_pos.setter
    def _pos(self, value: int) -> None:
        self._positions.pos = value

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return super().read(size) or b""


@atexit.register
def _wait_for_pyarrow_adapters() -> None:
    """pyarrow reads a udr:// path through its own adapter (pyarrow.fs.FSSpecHandler), and
    one of its threads may drop the last reference to it after the read returned; the exit
    waits for those as for lent buffers (docs/architecture.md#reading-through-pyarrow).
    Registered after udrfs.catalog.files' hook, so it runs before that hook waits."""
    adapter = getattr(sys.modules.get("pyarrow.fs"), "FSSpecHandler", None)
    if adapter is None:
        return
    for obj in gc.get_objects():
        if isinstance(obj, adapter) and isinstance(getattr(obj, "fs", None), UdrFileSystem):
            lend_until_exit(obj)


class UdrFileSystem(AbstractFileSystem):
    """Read-only fsspec filesystem over one or more UDR stores."""

    protocol = "udr"
    root_marker = ""

    def __init__(
        self, store: str | None = None, catalog: Catalog | None = None, **kwargs: Any
    ) -> None:
        remote = {k: kwargs.pop(k) for k in OPTIONS if k in kwargs}
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._catalogs: dict[Path, Catalog] = {}
        self.read_counter = ReadCounter()
        self.store: Path | None = None
        if catalog is None and store is not None and is_store_url(store):
            # A store read from S3/R2: storage options endpoint=, profile=, cache_dir=, ...
            catalog = Catalog(store, **remote)
        if catalog is not None:
            self.store = catalog.path.resolve()
            self._catalogs[self.store] = catalog
        elif store is not None:
            self.store = Path(store).expanduser().resolve()
        # Paths through a commit id never change meaning, so their nodes are kept.
        self._fixed: LruCache[str, Node] = LruCache(FIXED_NODES, FIXED_NODES_BYTES, _weigh_node)
        # Each spelling of a store is resolved (`~`, symlinks, `..`) once, not on every call.
        self._stores: LruCache[str, Path] = LruCache(STORE_SPELLINGS)

    # ---- names ------------------------------------------------------------------------

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        """`udr:///abs/store/@ref/...` opens a filesystem with `store=` set to the store."""
        head, sep, _ = UdrFileSystem._strip_protocol(path).partition("/" + REF_MARK)
        return {"store": head} if sep and head else {}

    def _catalog(self, store: Path) -> Catalog:
        with self._lock:
            catalog = self._catalogs.get(store)
        if catalog is None:
            try:
                catalog = Catalog(store)
            except NotFoundError as exc:
                raise FileNotFoundError(str(exc)) from None
            with self._lock:
                catalog = self._catalogs.setdefault(store, catalog)
        return catalog

    def _split(self, path: str) -> tuple[Path, str, list[str] | None]:
        """(store, prefix as spelled, the parts after `@` or None for the store itself)."""
        if path.startswith(REF_MARK) or path.startswith("/" + REF_MARK):
            if self.store is None:
                raise FileNotFoundError(
                    f"{path!r} names no store: write udr:///abs/path/to/store/@ref/... or "
                    "pass the storage option store='/abs/path/to/store'"
                )
            rest = path.lstrip("/")[1:]
            return self.store, "/" if path.startswith("/") else "", rest.split("/")
        head, sep, rest = path.partition("/" + REF_MARK)
        if sep:
            return self._store_path(head), head + "/", rest.split("/")
        if path in ("", "/") and self.store is not None:
            return self.store, path, None
        return self._store_path(path), path.rstrip("/") + "/", None

    def _store_path(self, spelled: str) -> Path:
        return self._stores.get_or_load(spelled, lambda: Path(spelled).expanduser().resolve())

    def _node(self, path: str) -> Node:
        path = self._strip_protocol(path)
        fixed = self._fixed.get(path)
        if fixed is not None:
            return fixed
        store, prefix, parts = self._split(path)
        catalog = self._catalog(store)
        if parts is None:
            return Node("root", catalog, prefix)
        node = self._resolve(catalog, prefix, [p for p in parts if p])
        # Only a full id names the same commit forever (a short one may become ambiguous).
        if node.commit is not None and node.ref == node.commit.id and node.ref in path:
            self._fixed.put(path, node)
        return node

    def _resolve(self, catalog: Catalog, prefix: str, parts: list[str]) -> Node:
        missing = FileNotFoundError(f"{prefix}{REF_MARK}{'/'.join(parts)} does not exist")
        if not parts:
            raise missing
        # One level at a time, as the mount does: a ref wins over a group of the same name.
        # The first level may also be a commit id or a short one (paths.pick decides).
        branches, tags = catalog.branches(), catalog.tags()
        group = ""
        for i, part in enumerate(parts):
            child: RefEntry | GroupEntry | None
            if i == 0:
                commit_ids = catalog.commits_with_prefix(part) if may_name_commit(part) else []
                try:
                    picked = pick(part, ref_children(branches, tags).get(part), commit_ids)
                except NotFoundError:
                    raise missing from None
                child = RefEntry(picked) if isinstance(picked, Ref) else GroupEntry(picked.prefix)
            else:
                child = lookup_ref(part, branches, tags, group)
            if isinstance(child, RefEntry):
                commit = _load_commit(catalog, child.ref.commit_id)
                if commit is None:
                    raise missing
                name = child.ref.name
                return _below_ref(catalog, prefix, name, commit, parts[i + 1 :], missing)
            if child is None:
                raise missing
            group = child.prefix
        return Node("group", catalog, prefix, ref=group.rstrip("/"))

    # ---- fsspec interface -------------------------------------------------------------

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._info(self._node(path))

    def _info(self, node: Node) -> dict[str, Any]:
        if node.kind == "version":
            assert node.version is not None
            v = node.version
            info = {
                "name": node.path,
                "type": "file",
                "size": v.size,
                "version": v.version,
                "manifest": v.id,
                "blake3": v.blake3,
                "rows": v.rows,
                "created": v.created,
            }
            if node.target is not None:
                info["destination"] = node.target  # the mount's latest.parquet symlink target
            return info
        if node.kind == "changes":
            return {"name": node.path, "type": "file", "size": len(_changes_bytes(node))}
        return {"name": node.path, "type": "directory", "size": 0}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        node = self._node(path)
        if node.kind in ("version", "changes"):
            entries = [self._info(node)]
        else:
            entries = [self._info(child) for child in _children(node)]
        return entries if detail else [e["name"] for e in entries]

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> io.IOBase:
        if mode != "rb":
            raise PermissionError(
                f"udr:// is read-only (asked for mode {mode!r}): tables change only by commits, "
                "e.g. repo.write_table(...) or the mount's .tx/ staging directory"
            )
        node = self._node(path)
        if node.kind == "version":
            assert node.version is not None
            try:  # released by `udr expire` since it was resolved?
                node.catalog.retention.check_readable(node.version)
            except NotFoundError as exc:
                raise FileNotFoundError(str(exc)) from exc
            f = UdrFile(node.catalog.store.chunks, node.version, self.read_counter)
            f.name = node.path
            return f
        if node.kind == "changes":
            return io.BytesIO(_changes_bytes(node))
        raise IsADirectoryError(f"{node.path} is a directory")

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        node = self._node(path)
        if node.kind != "version":
            return super().cat_file(path, start, end, **kwargs)
        assert node.version is not None
        size = node.version.size
        lo = _clamp(start, size, 0)
        hi = _clamp(end, size, size)
        data = node.catalog.read(node.version, lo, max(hi - lo, 0))
        self.read_counter.add(len(data))
        return data

    def size(self, path: str) -> int:
        node = self._node(path)
        if node.kind == "version":
            assert node.version is not None
            return node.version.size
        return int(self._info(node)["size"])

    def modified(self, path: str) -> datetime:
        node = self._node(path)
        if node.version is not None:
            return node.version.created
        if node.commit is not None:
            return node.commit.time
        raise IsADirectoryError(f"{node.path} has no modification time")

    def created(self, path: str) -> datetime:
        return self.modified(path)

    def names_fixed_bytes(self, path: str) -> bool:
        """The path goes through a commit id, so what it names can never change."""
        node = self._node(path)
        return node.commit is not None and node.ref == node.commit.id

    def ukey(self, path: str) -> str:
        node = self._node(path)
        if node.version is not None:
            return node.version.id
        return super().ukey(path)


def _clamp(value: int | None, size: int, default: int) -> int:
    if value is None:
        return default
    return max(0, min(size, value + size if value < 0 else value))


def _load_commit(catalog: Catalog, commit_id: str) -> Commit | None:
    try:
        return catalog.commit(commit_id)
    except NotFoundError:
        return None


def _below_ref(
    catalog: Catalog, prefix: str, ref: str, commit: Commit, rest: list[str], missing: Exception
) -> Node:
    node = Node("ref", catalog, prefix, ref=ref, commit=commit)
    if not rest:
        return node
    if len(rest) > 2:
        raise missing
    entry = lookup_in_ref(rest[0], commit.tables)
    if isinstance(entry, ChangesEntry) and len(rest) == 1:
        return Node("changes", catalog, prefix, ref=ref, commit=commit, name=entry.name, log=entry)
    if not isinstance(entry, TableEntry):
        raise missing
    table = entry.table
    if len(rest) == 1:
        return Node("table", catalog, prefix, ref=ref, commit=commit, table=table)
    found = lookup_in_table(table, rest[1], *_table_state(catalog, commit, table))
    if found is None:
        raise missing
    if isinstance(found, ExpiredEntry):
        refusal = catalog.retention.refusal(found.manifest_id, table, found.number)
        raise FileNotFoundError(str(refusal)) from refusal
    return _table_child(node, table, rest[1], found)


def _table_state(
    catalog: Catalog, commit: Commit, table: str
) -> tuple[dict[int, str], str, frozenset[str]]:
    """What the model needs of a table the commit holds: its versions, its head manifest,
    the manifests `udr expire` released."""
    versions = catalog.table_versions(table, commit.id)
    released = catalog.retention.released()
    return {v.version: v.manifest_id for v in versions}, commit.tables[table], released


def _table_child(
    ref_node: Node, table: str, name: str, entry: VersionEntry | LatestEntry | ChangesEntry
) -> Node:
    catalog, prefix, ref, commit = ref_node.catalog, ref_node.prefix, ref_node.ref, ref_node.commit
    if isinstance(entry, ChangesEntry):
        return Node(
            "changes", catalog, prefix, ref=ref, commit=commit, table=table, name=name, log=entry
        )
    target = None
    if isinstance(entry, LatestEntry) and entry.target is not None:
        target = version_file_name(entry.target.number)
    return Node(
        "version",
        catalog,
        prefix,
        ref=ref,
        commit=commit,
        table=table,
        name=name,
        version=catalog.manifest(entry.manifest_id),
        target=target,
    )


def _children(node: Node) -> list[Node]:
    catalog, prefix = node.catalog, node.prefix
    if node.kind in ("root", "group"):
        start = "" if node.kind == "root" else f"{node.ref}/"
        out: list[Node] = []
        for _, entry in list_refs(catalog.branches(), catalog.tags(), start):
            if isinstance(entry, GroupEntry):
                out.append(Node("group", catalog, prefix, ref=entry.prefix.rstrip("/")))
                continue
            try:
                commit = catalog.commit(entry.ref.commit_id)
            except UdrError:
                continue  # a ref whose commit cannot be read is left out, as in the mount
            out.append(Node("ref", catalog, prefix, ref=entry.ref.name, commit=commit))
        return out
    assert node.commit is not None and node.ref is not None
    if node.kind == "ref":
        return [
            _below_ref(catalog, prefix, node.ref, node.commit, [name], FileNotFoundError())
            for name, _ in list_ref(node.commit.tables)
        ]
    assert node.table is not None
    ref_node = Node("ref", catalog, prefix, ref=node.ref, commit=node.commit)
    state = _table_state(catalog, node.commit, node.table)
    return [
        _table_child(ref_node, node.table, name, e) for name, e in list_table(node.table, *state)
    ]


def _changes_bytes(node: Node) -> bytes:
    # The same lines as the mount's change-log files: the model renders them.
    assert node.commit is not None and node.log is not None
    entries = node.catalog.changes(node.commit.id, 0, node.table)
    return b"".join(node.log.render(e) for e in entries)
