"""A store read straight from a remote (`s3://BUCKET/PREFIX`): the parts of `Store` over a
backend, with a local cache directory (docs/architecture.md, "Reading from a remote").

- `udr.toml`, objects (commits, manifests) and index fragments are immutable: each is fetched
  once, checked against its hash, and kept under `CACHE_DIR/stores/<store>/` for good.
- Refs are read from the remote whenever a caller asks (a conditional GET: 304 when the ref
  has not moved); the last value read is noted under the same directory, so that while the
  remote cannot be reached the store still shows the versions it last saw.
- Chunks come through `RemoteChunkStore` and the size-bounded `ChunkCache` in
  `CACHE_DIR/chunks/`, shared by every store read from any remote on this machine (a chunk id
  names the same bytes everywhere).
- Writes (transactions) chunk into local packs under the same directory, deduplicated
  against the remote's chunks; a commit uploads its packs, then its objects, and moves the
  branch by a conditional PUT (docs/architecture.md, "Writing to a remote").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import zstandard

from udrfs import _native
from udrfs.errors import CorruptObjectError, NotFoundError, NotLocalError, RemoteError
from udrfs.sizes import parse_size
from udrfs.store.atomic import write_atomic
from udrfs.store.backends.base import BlobStore
from udrfs.store.chunk_cache import DEFAULT_CACHE_BYTES, DEFAULT_RESERVE_BYTES, ChunkCache
from udrfs.store.condemned import CondemnedView, RemoteCondemnedView
from udrfs.store.counts import CountRecords, counts_key, decode_record
from udrfs.store.format import MANIFEST_NAME, StoreFormat, fetch_format, parse_format
from udrfs.store.keys import object_key
from udrfs.store.objects import ObjectStore, is_object_id
from udrfs.store.refnames import is_valid_ref_name
from udrfs.store.refs import LocalRefStore, RefKind, RefStore
from udrfs.store.store import Store

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "UDR_CACHE_DIR"
_REF_READERS = 16


def is_store_url(location: str | os.PathLike[str]) -> bool:
    """Whether `location` names a store on an object store (s3://, r2://), not a directory."""
    return isinstance(location, str) and urlparse(location).scheme in ("s3", "r2")


def default_cache_dir() -> Path:
    """`$UDR_CACHE_DIR`, else `$XDG_CACHE_HOME/udrfs`, else `~/.cache/udrfs`."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "udrfs"


class RemoteObjectStore(ObjectStore):
    """Objects fetched from the remote on first use, checked, and kept in the cache; a new
    object is written to the cache and uploaded before `put` returns (so it is on the remote
    before any ref can name it)."""

    def __init__(
        self, directory: Path, blobs: BlobStore, condemned: CondemnedView | None = None
    ) -> None:
        super().__init__(directory, condemned)
        self.blobs = blobs

    def put(self, doc: dict[str, Any]) -> str:
        object_id = super().put(doc)
        key, data = object_key(object_id), self.path(object_id).read_bytes()
        if self._condemned(object_id):
            # Written again, so that the collector sees it changed and keeps it.
            self.condemned.rewrite(key, lambda: self.blobs.put(key, data))
        else:
            self.blobs.put_if_absent(key, data)
        return object_id

    def keep(self, object_id: str) -> None:
        """Also uploaded again if the remote lost it: a named transaction lives on one
        machine, so the collector (run from another) does not count what it staged; a
        manifest it uploaded long ago may have been collected."""
        if self.condemned.has_object(object_id) or not self.blobs.exists(object_key(object_id)):
            self.put(self.get(object_id, cache=False))

    def _condemned(self, object_id: str) -> bool:
        # The record as last read: a commit reads it again before it names what it wrote
        # (catalog/transaction.py, `_keep_from_collector`); one HEAD per object is not needed.
        return self.condemned.has_object(object_id)

    def get(self, object_id: str, cache: bool = True) -> dict[str, Any]:
        doc = self.cache.get(object_id)
        if doc is not None:
            return doc
        if is_object_id(object_id):
            try:
                if self.path(object_id).exists():
                    return super().get(object_id, cache)
            except (CorruptObjectError, NotFoundError):
                # The cached file is damaged or went away: the remote has it.
                with contextlib.suppress(OSError):
                    self.path(object_id).unlink()
            doc = self._fetch(object_id)
            if cache:
                self.cache.put(object_id, doc)
            return doc
        return super().get(object_id, cache)

    def _fetch(self, object_id: str) -> dict[str, Any]:
        key = object_key(object_id)
        try:
            stored = self.blobs.get(key)
        except NotFoundError:
            raise NotFoundError(f"object {object_id} is missing from {self.blobs.url}") from None
        try:
            raw = zstandard.decompress(stored)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(
                f"object {key} on {self.blobs.url} is damaged ({exc})"
            ) from None
        if _native.blake3_hex(raw) != object_id:
            raise CorruptObjectError(f"object {key} on {self.blobs.url} does not match its hash")
        with contextlib.suppress(OSError, RemoteError):
            write_atomic(self.path(object_id), stored, durable=False)
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def exists(self, object_id: str) -> bool:
        return self.path(object_id).exists() or self.blobs.exists(object_key(object_id))

    def ids_with_prefix(self, prefix: str) -> list[str]:
        """Ids beginning with `prefix`: one listing of the remote's fan-out directory (an
        object store lists by directory-like prefix, not by part of a name)."""
        if len(prefix) < 2 or not is_object_id(prefix.ljust(64, "0")):
            return []
        listed = self.blobs.list(f"objects/{prefix[:2]}/")
        names = (b.key.rsplit("/", 1)[-1] for b in listed)
        return sorted(n for n in names if n.startswith(prefix) and is_object_id(n))

    def ids(self) -> list[str]:
        names = (b.key.rsplit("/", 1)[-1] for b in self.blobs.list("objects/"))
        return sorted(n for n in names if is_object_id(n))


class RemoteCountRecords(CountRecords):
    """Row-count records (store/counts.py) on the remote, kept in the cache once read; a
    record written here is uploaded create-once (every writer computes the same bytes)."""

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        super().__init__(root)
        self.blobs = blobs

    def get_bytes(self, commit_id: str) -> bytes | None:
        stored = super().get_bytes(commit_id)
        if stored is not None or not is_object_id(commit_id):
            return stored
        try:
            stored = self.blobs.get(counts_key(commit_id))
        except NotFoundError:
            return None
        with contextlib.suppress(OSError):
            write_atomic(self.path(commit_id), stored, durable=False)
        return stored

    def get(self, commit_id: str) -> dict[str, Any] | None:
        stored = self.get_bytes(commit_id) if is_object_id(commit_id) else None
        if stored is None:
            return None
        try:
            return decode_record(commit_id, stored, f"{self.blobs.url}/{counts_key(commit_id)}")
        except CorruptObjectError:
            with contextlib.suppress(OSError):
                self.path(commit_id).unlink()  # the next read fetches it again
            raise

    def install(self, commit_id: str, stored: bytes) -> None:
        super().install(commit_id, stored)
        self.blobs.put_if_absent(counts_key(commit_id), stored)


class RemoteRefStore(RefStore):
    """A remote's refs, each read again on every `read` by a conditional GET (ETag; a 304
    costs no body). The last value seen is noted locally (`seen`): while the remote cannot
    be reached, reads answer with it (and log that they do) instead of failing."""

    def __init__(self, remote: RefStore, blobs: BlobStore, seen_dir: Path) -> None:
        self.remote = remote
        self.blobs = blobs
        self.seen = LocalRefStore(seen_dir / "refs", seen_dir / "locks")
        self._known: dict[tuple[RefKind, str], tuple[str | None, object | None]] = {}

    def _note(self, kind: RefKind, name: str, value: str | None) -> None:
        with contextlib.suppress(OSError):
            if value is None:
                self.seen.path(kind, name).unlink(missing_ok=True)
            elif self.seen.get(kind, name) != value:
                write_atomic(self.seen.path(kind, name), f"{value}\n".encode(), durable=False)

    def read(self, kind: RefKind, name: str) -> tuple[str | None, object | None]:
        key = (kind, name)
        known = self._known.get(key)
        try:
            if known is None or known[1] is None:
                result = self.remote.read(kind, name)
            else:
                changed = self.remote.read_if_changed(kind, name, known[1])
                result = known if changed is None else changed
        except RemoteError as exc:
            value = self.seen.get(kind, name)
            log.warning("%s; showing refs/%s/%s as last read (%s)", exc, kind, name, value)
            return value, None
        self._known[key] = result
        self._note(kind, name, result[0])
        return result

    def read_if_changed(
        self, kind: RefKind, name: str, token: object | None
    ) -> tuple[str | None, object | None] | None:
        return self.remote.read_if_changed(kind, name, token)

    def compare_and_swap(self, kind: RefKind, name: str, token: object | None, new: str) -> bool:
        self._known.pop((kind, name), None)
        return self.remote.compare_and_swap(kind, name, token, new)

    def delete(self, kind: RefKind, name: str) -> None:
        self._known.pop((kind, name), None)
        self.remote.delete(kind, name)

    def delete_if_unchanged(self, kind: RefKind, name: str, token: object | None) -> bool:
        self._known.pop((kind, name), None)
        return self.remote.delete_if_unchanged(kind, name, token)

    def check_cas(self) -> None:
        self.remote.check_cas()

    def list(self, kind: RefKind) -> dict[str, str]:
        prefix = f"refs/{kind}/"
        try:
            keys = [b.key for b in self.blobs.list(prefix)]
        except RemoteError as exc:
            log.warning("%s; showing the %s last read", exc, prefix)
            return self.seen.list(kind)
        names = [k[len(prefix) :] for k in keys if is_valid_ref_name(k[len(prefix) :])]
        with ThreadPoolExecutor(_REF_READERS) as pool:
            values = list(pool.map(lambda n: self.read(kind, n)[0], names))
        for gone in self.seen.list(kind).keys() - set(names):
            self._note(kind, gone, None)
        return {n: v for n, v in sorted(zip(names, values, strict=True)) if v}


def _slug(url: str, endpoint: str | None) -> str:
    """The cache directory's name for one remote store: readable, and unique per endpoint."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")[:80]
    digest = hashlib.sha256(f"{url}\n{endpoint or ''}".encode()).hexdigest()[:12]
    return f"{readable}-{digest}"


class RemoteStore(Store):
    """A store read and written straight on a remote, with its cache (the module docstring)."""

    is_remote = True

    def __init__(
        self,
        url: str,
        endpoint: str | None = None,
        profile: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_size: str | int | None = None,
        cache_reserve: str | int | None = None,
    ) -> None:
        from udrfs.store.backends import open_backend
        from udrfs.store.remote_chunks import RemoteChunkStore  # numpy: only for remote stores

        # Bad sizes are usage errors, found before any request.
        max_bytes = DEFAULT_CACHE_BYTES if cache_size is None else parse_size(cache_size)
        reserve = DEFAULT_RESERVE_BYTES if cache_reserve is None else parse_size(cache_reserve)
        backend = open_backend(url, endpoint, True, profile)
        self.url = backend.url
        self.endpoint = endpoint
        self.blobs = backend.blobs
        cache_root = Path(cache_dir or default_cache_dir()).expanduser().absolute()
        self.root = cache_root / "stores" / _slug(url, endpoint)
        self.format = self._read_format()  # not a store: nothing is left in the cache
        self.root.mkdir(parents=True, exist_ok=True)
        # The remote's collector record (`gc/condemned.json` there): when it changes, packs
        # the collector deleted are forgotten (catalog/gc.py runs on a remote too).
        self.condemned = RemoteCondemnedView(
            self.root, backend.blobs, on_change=lambda: self.chunks.reload_index()
        )
        self.objects = RemoteObjectStore(self.root / "objects", backend.blobs, self.condemned)
        self.counts: CountRecords = RemoteCountRecords(self.root, backend.blobs)
        self.refs: RemoteRefStore = RemoteRefStore(backend.refs, backend.blobs, self.root)
        self.cache = ChunkCache(cache_root, max_bytes, reserve)
        self.chunks = RemoteChunkStore(
            self.root, backend.blobs, self.cache, self.format, self.condemned
        )
        self.staging_dir = self.root / "staging"
        self.staging_dir.mkdir(exist_ok=True)

    def _read_format(self) -> StoreFormat:
        path = self.root / MANIFEST_NAME
        with contextlib.suppress(OSError):
            return parse_format(path.read_bytes(), self.url, path)
        try:
            fmt, data = fetch_format(self.blobs)
        except NotFoundError:
            raise NotFoundError(
                f"{self.url} is not a UDR store (no {MANIFEST_NAME} there); push a store to it "
                "first (`udr remote add`, `udr push`)"
            ) from None
        write_atomic(path, data, durable=False)
        return fmt

    @property
    def location(self) -> str:
        return self.url

    def default_branch(self) -> str | None:
        return None  # a remote's HEAD is never read (format.md, "HEAD")

    def set_default_branch(self, name: str) -> None:
        raise NotLocalError(self.url, "`udr checkout`")


def open_store(
    location: str | os.PathLike[str],
    endpoint: str | None = None,
    profile: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_size: str | int | None = None,
) -> Store:
    """The store at a directory, or read straight from a remote (`s3://BUCKET/PREFIX`)."""
    if is_store_url(location):
        return RemoteStore(str(location), endpoint, profile, cache_dir, cache_size)
    return Store(location)
