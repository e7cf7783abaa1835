"""Where a store's files live: one small interface, one module per backend.

`BlobStore` holds the immutable, content-addressed files of a store (packs, index fragments,
objects, `udr.toml`) under the same relative keys as the local layout (docs/format.md), so a
remote is laid out exactly like a local store. Refs go through `udrfs.store.refs.RefStore`.
`open_backend(url)` picks the implementation by URL scheme (a path or `file://` is a local
directory, `s3://bucket/prefix` an S3-compatible object store such as R2); nothing above the
store layer knows which one it talks to. The interface itself is in `base.py`.
docs/architecture.md, "Remotes", explains why.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from udrfs.errors import RemoteError
from udrfs.store.backends.base import Backend, BlobInfo, BlobStore


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


__all__ = ["Backend", "BlobInfo", "BlobStore", "canonical_url", "open_backend"]
