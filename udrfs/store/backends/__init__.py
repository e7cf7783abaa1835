"""Where a store's files live: one small interface, one module per backend.

`BlobStore` holds the immutable, content-addressed files of a store (packs, index fragments,
objects, `udr.toml`) under the same relative keys as the local layout (docs/format.md), so a
remote is laid out exactly like a local store. Refs go through `udrfs.store.refs.RefStore`.
`open_backend(url)` picks the implementation by URL scheme (a path or `file://` is a local
directory, `s3://bucket/prefix` an S3-compatible object store such as R2); nothing above the
store layer knows which one it talks to. docs/architecture.md, "Remotes", explains why.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from urllib.parse import urlparse

from udrfs.errors import RemoteError
from udrfs.store.refs import RefStore


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch


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
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes [start, start + length) of the file."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write the file unless it exists: True if written, False if it was already there."""

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


def canonical_url(url: str) -> str:
    """The URL to record for a remote: a relative directory becomes absolute."""
    if urlparse(url).scheme == "":
        return os.path.abspath(url)
    return url


def open_backend(
    url: str, endpoint: str | None = None, cas: bool = True, profile: str | None = None
) -> Backend:
    """The backend for a store URL: a path or file:// URL, or s3://BUCKET[/PREFIX] (with
    the keys of AWS profile `profile`, if given)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        from udrfs.store.backends.local import open_local

        return open_local(parsed.path if parsed.scheme == "file" else url)
    if parsed.scheme in ("s3", "r2"):
        from udrfs.store.backends.s3 import open_s3

        if not parsed.netloc:
            raise RemoteError(f"{url!r} names no bucket: write s3://BUCKET/PREFIX")
        return open_s3(parsed.netloc, parsed.path.strip("/"), url, endpoint, cas, profile)
    raise RemoteError(
        f"{url!r} is not a store URL this udrfs can reach: give a directory, "
        "file:///path or s3://BUCKET/PREFIX (with --endpoint for R2 and other S3 services)"
    )
