"""The interface every backend implements (the package docstring says why)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from udrfs.store.refs import RefStore


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch
    # What tells a rewritten file from the one listed before, with `mtime` and `size` (the
    # S3 ETag; None for a local directory, whose collector reads inodes: catalog/gc_storage.py).
    etag: str | None = None


class BlobStore(ABC):
    """Immutable files by relative key (`packs/ab/<id>.pack`, `objects/ab/<id>`, ...)."""

    url: str

    @property
    def requests(self) -> int:
        """Network requests made so far (0 for a local directory)."""
        return 0

    @property
    def listings(self) -> int:
        """Of those requests, the listings (a pull or push that knows what to move makes none)."""
        return 0

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole file (NotFoundError if absent)."""

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        """Bytes [start, start + length) of the file."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write the file unless it exists: True if written, False if it was already there."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write the file whole, replacing any file of that name (the collector's record; a
        file the collector condemned, written again so that it is kept)."""

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        """Write the file whole if it is still the one with ETag `etag` (a conditional PUT,
        If-Match): its new ETag, or None if it changed or is gone. Only object stores have
        ETags; the collector's lock object is renewed this way (catalog/gc_storage.py)."""
        raise NotImplementedError(f"{self.url} has no conditional replace")

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file; nothing happens if it does not exist."""

    @abstractmethod
    def stat(self, key: str) -> BlobInfo | None:
        """Size and modification time, or None if the file does not exist."""

    @abstractmethod
    def list(self, prefix: str) -> list[BlobInfo]:
        """Every file whose key starts with `prefix` (a directory-like prefix: `index/`)."""

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None


@dataclass
class Backend:
    """A store's files and refs at one location."""

    url: str
    blobs: BlobStore
    refs: RefStore
