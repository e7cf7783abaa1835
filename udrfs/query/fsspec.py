"""`udr://` URLs: any version of any table, readable by pandas, polars, pyarrow and DuckDB.

The namespace is the mount's (docs/mount.md), under the store's path:

```
udr:///abs/path/to/store/@main/nyc_master/v3.parquet      version 3 of nyc_master on main
udr:///abs/path/to/store/@main/nyc_master/latest.parquet  the newest version on main
udr:///abs/path/to/store/@v2024-06/nyc_master/v3.parquet  through a tag
udr:///abs/path/to/store/@<commit id>/nyc_master/v3.parquet
udr:///abs/path/to/store/@main/.changes                   the branch's change log (JSON lines)
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

import io
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fsspec.spec import AbstractFileSystem

from udrfs.catalog import Catalog, Commit, TableVersion
from udrfs.catalog.catalog import weigh_manifest
from udrfs.catalog.files import VersionFile
from udrfs.catalog.paths import (
    CHANGES,
    LATEST,
    REF_MARK,
    Ref,
    may_name_commit,
    parse_version_file,
    pick,
    ref_children,
    version_file_name,
)
from udrfs.errors import NotFoundError
from udrfs.lru import LruCache, MiB

if TYPE_CHECKING:
    # Named in annotations only: the bytes are read through the catalog's store.
    from udrfs.store.chunks import ChunkStore

# Resolved paths through commit ids kept per filesystem (docs/architecture.md, "Caches").
FIXED_NODES = 4096
FIXED_NODES_BYTES = 16 * MiB

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


class UdrFileSystem(AbstractFileSystem):
    """Read-only fsspec filesystem over one or more UDR stores."""

    protocol = "udr"
    root_marker = ""

    def __init__(
        self, store: str | None = None, catalog: Catalog | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._catalogs: dict[Path, Catalog] = {}
        self.read_counter = ReadCounter()
        self.store: Path | None = None
        if catalog is not None:
            self.store = catalog.path.resolve()
            self._catalogs[self.store] = catalog
        elif store is not None:
            self.store = Path(store).expanduser().resolve()
        # Paths through a commit id never change meaning, so their nodes are kept.
        self._fixed: LruCache[str, Node] = LruCache(FIXED_NODES, FIXED_NODES_BYTES, _weigh_node)

    # ---- names ------------------------------------------------------------------------

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
            return Path(head).expanduser().resolve(), head + "/", rest.split("/")
        if path in ("", "/") and self.store is not None:
            return self.store, path, None
        return Path(path).expanduser().resolve(), path.rstrip("/") + "/", None

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
            child = ref_children(branches, tags, group).get(part)
            if i == 0:
                commit_ids = catalog.commits_with_prefix(part) if may_name_commit(part) else []
                try:
                    child = pick(part, child, commit_ids)  # a commit is Ref("commit", id, id)
                except NotFoundError:
                    raise missing from None
            if isinstance(child, Ref):
                commit = _load_commit(catalog, child.commit_id)
                if commit is None:
                    raise missing
                return _below_ref(catalog, prefix, child.name, commit, parts[i + 1 :], missing)
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
            return {
                "name": node.path,
                "type": "file",
                "size": v.size,
                "version": v.version,
                "manifest": v.id,
                "blake3": v.blake3,
                "rows": v.rows,
                "created": v.created,
            }
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
    if rest == [CHANGES]:
        return Node("changes", catalog, prefix, ref=ref, commit=commit, name=CHANGES)
    table = rest[0]
    versions = catalog.table_versions(table, commit.id)
    if not versions or len(rest) > 2:
        raise missing
    if len(rest) == 1:
        return Node("table", catalog, prefix, ref=ref, commit=commit, table=table)
    name = rest[1]
    if name == CHANGES:
        return Node("changes", catalog, prefix, ref=ref, commit=commit, table=table, name=name)
    if name == LATEST:
        manifest_id = commit.tables.get(table)
        if manifest_id is None:
            raise missing  # dropped at this commit: only its old versions remain
        version = catalog.manifest(manifest_id)
    else:
        wanted = parse_version_file(name)
        info = next((v for v in versions if v.version == wanted), None)
        if info is None:
            raise missing
        version = catalog.manifest(info.manifest_id)
    return Node(
        "version", catalog, prefix, ref=ref, commit=commit, table=table, name=name, version=version
    )


def _children(node: Node) -> list[Node]:
    catalog, prefix = node.catalog, node.prefix
    if node.kind in ("root", "group"):
        start = "" if node.kind == "root" else f"{node.ref}/"
        out: list[Node] = []
        for child, target in ref_children(catalog.branches(), catalog.tags(), start).items():
            # A ref whose commit cannot be read shows as a plain directory rather than
            # failing the whole listing.
            commit = _load_commit(catalog, target.commit_id) if isinstance(target, Ref) else None
            if commit is not None:
                out.append(Node("ref", catalog, prefix, ref=start + child, commit=commit))
            else:
                out.append(Node("group", catalog, prefix, ref=start + child))
        return out
    assert node.commit is not None and node.ref is not None
    if node.kind == "ref":
        tables = [
            Node("table", catalog, prefix, ref=node.ref, commit=node.commit, table=t)
            for t in sorted(node.commit.tables)
        ]
        changes = Node("changes", catalog, prefix, ref=node.ref, commit=node.commit, name=CHANGES)
        return [changes, *tables]
    assert node.table is not None

    def version_node(name: str, version: TableVersion) -> Node:
        return Node(
            "version",
            catalog,
            prefix,
            ref=node.ref,
            commit=node.commit,
            table=node.table,
            name=name,
            version=version,
        )

    out_files = [
        version_node(version_file_name(info.version), catalog.manifest(info.manifest_id))
        for info in catalog.table_versions(node.table, node.commit.id)
    ]
    if node.table in node.commit.tables:
        out_files.append(version_node(LATEST, catalog.manifest(node.commit.tables[node.table])))
    changes = Node(
        "changes", catalog, prefix, ref=node.ref, commit=node.commit, table=node.table, name=CHANGES
    )
    return [changes, *out_files]


def _changes_bytes(node: Node) -> bytes:
    # The same lines as the mount's .changes files.
    assert node.commit is not None
    entries = node.catalog.changes(node.commit.id, 0, node.table)
    return b"".join(e.to_json_line().encode() + b"\n" for e in entries)
