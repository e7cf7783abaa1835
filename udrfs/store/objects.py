"""Immutable objects: zstd-compressed canonical JSON named by its BLAKE3 (format.md, "Objects")."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import zstandard

from udrfs import _native
from udrfs.errors import CorruptObjectError, NotFoundError
from udrfs.lru import LruCache, MiB
from udrfs.store.atomic import write_atomic
from udrfs.store.condemned import CondemnedView
from udrfs.store.keys import hashed_path

OBJECT_FORMAT = 1
_OBJECT_ID = re.compile(r"[0-9a-f]{64}")
# Decoded documents kept (docs/architecture.md, "Caches").
CACHE_ENTRIES = 4096
CACHE_BYTES = 32 * MiB


def canonical_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def is_object_id(text: str) -> bool:
    """64 lowercase hex digits: the id of an object (a commit, a manifest)."""
    return _OBJECT_ID.fullmatch(text) is not None


def weigh_document(doc: dict[str, Any]) -> int:
    """Roughly the memory a decoded document holds: a manifest's chunk list (base64 text)
    dominates; a commit grows with its tables and changes."""
    chunks = doc.get("chunks")
    entries = sum(len(doc.get(k) or ()) for k in ("tables", "changes", "schema", "columns"))
    return 1024 + (len(chunks) if isinstance(chunks, str) else 0) + 256 * entries


class ObjectStore:
    """Put and get immutable JSON documents. Decoded documents are cached: they never change."""

    def __init__(self, directory: Path, condemned: CondemnedView | None = None) -> None:
        self.directory = directory
        # Objects the collector condemned are written again rather than reused.
        self.condemned = condemned if condemned is not None else CondemnedView(directory.parent)
        self.cache: LruCache[str, dict[str, Any]] = LruCache(
            CACHE_ENTRIES, CACHE_BYTES, weigh_document
        )

    def path(self, object_id: str) -> Path:
        return hashed_path(self.directory, object_id)

    def put(self, doc: dict[str, Any]) -> str:
        raw = canonical_json(doc)
        object_id = _native.blake3_hex(raw)
        path = self.path(object_id)
        if not path.exists() or self._condemned(object_id):
            # A condemned object is written again (a new file, so the collector sees that it
            # changed and keeps it); docs/architecture.md, "Garbage collection".
            write_atomic(path, zstandard.compress(raw, 3))
        self.cache.put(object_id, doc)
        return object_id

    def keep(self, object_id: str) -> None:
        """Before a commit names this object: written again if the collector condemned it
        (docs/architecture.md, "Garbage collection")."""
        if self.condemned.has_object(object_id):
            self.put(self.get(object_id, cache=False))

    def _condemned(self, object_id: str) -> bool:
        self.condemned.refresh()
        return self.condemned.has_object(object_id)

    def get(self, object_id: str, cache: bool = True) -> dict[str, Any]:
        """The document; with `cache=False` it is not kept (for a caller that keeps what it
        decodes from it, so the two caches do not hold the same record twice)."""
        doc = self.cache.get(object_id)
        if doc is not None:
            return doc
        if not is_object_id(object_id):
            raise NotFoundError(f"{object_id!r} is not an object id (64 hex digits)")
        path = self.path(object_id)
        try:
            stored = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"object {object_id} is missing from the store ({path}); the store is "
                f"incomplete: `udr fsck {self.directory.parent}` lists the versions this affects"
            ) from None
        try:
            raw = zstandard.decompress(stored)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(
                f"object {path} is damaged ({exc}); `udr fsck {self.directory.parent}` lists the "
                "versions this affects and `udr fsck --repair` quarantines it"
            ) from None
        if _native.blake3_hex(raw) != object_id:
            raise CorruptObjectError(
                f"object {path} does not match its hash; `udr fsck {self.directory.parent}` lists "
                "the versions this affects and `udr fsck --repair` quarantines it"
            )
        doc = json.loads(raw)
        if cache:
            self.cache.put(object_id, doc)
        return doc

    def exists(self, object_id: str) -> bool:
        return self.path(object_id).exists()

    def ids_with_prefix(self, prefix: str) -> list[str]:
        """Ids beginning with `prefix` (2+ lowercase hex digits), from one fan-out directory."""
        if len(prefix) < 2 or not is_object_id(prefix.ljust(64, "0")):
            return []
        try:
            names = os.listdir(self.directory / prefix[:2])
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if n.startswith(prefix) and is_object_id(n))

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("??/*") if is_object_id(p.name))
