"""A store's files and refs in an S3-compatible object store (AWS S3, Cloudflare R2, ...).

Talks S3 through obstore (the Python binding of the Rust `object_store` crate): the GIL is
released during requests, ranged and concurrent gets, multipart uploads and conditional
puts (`If-None-Match: *` to create, `If-Match: <etag>` to swap) come with it.
Credentials come from the standard AWS_* environment variables or a named profile in
~/.aws/credentials and ~/.aws/config (aws_profile.py); the store records none.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import obstore
from obstore import exceptions as obx
from obstore.store import S3Store

from udrfs.errors import NotFoundError, RemoteError
from udrfs.store.backends.aws_profile import chosen_profile, profile_settings
from udrfs.store.backends.base import Backend, BlobInfo, BlobStore
from udrfs.store.refs import RefKind, RefStore

T = TypeVar("T")
# Conditional creates for small files; larger ones (packs) are looked up first, then sent in
# one PUT: for ~32 MiB packs a single PUT measured faster than parts (architecture.md).
_CREATE_UP_TO = 8 * 1024 * 1024
_MULTIPART_ABOVE = 128 * 1024 * 1024
_REF_READERS = 16
# Longest a single request may take before it is abandoned (and retried, for at most
# _RETRY_FOR): a stalled connection ends in a RemoteError instead of a hang.
TIMEOUT_ENV = "UDR_REMOTE_TIMEOUT"
DEFAULT_TIMEOUT_S = 120
_RETRY_FOR_S = 20


def request_timeout() -> float:
    """`UDR_REMOTE_TIMEOUT` seconds (default 120): long enough to send a pack on a slow link."""
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise RemoteError(
            f"{TIMEOUT_ENV} must be a number of seconds above 0, not {text!r}; set it to a "
            f"number such as {DEFAULT_TIMEOUT_S}, or unset it"
        )
    return seconds


# What a ref object holds between the two steps of a safe delete (`delete_if_unchanged`):
# not a commit id, read as "absent" (docs/format.md, "Remotes").
TOMBSTONE = "deleted"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # obstore messages carry the server's XML answer after the status line.
    for marker in ("<?xml", "\n"):
        if marker in text:
            text = text.split(marker, 1)[0]
    return text.strip().rstrip(":")


class S3Client:
    """One S3 bucket/prefix with errors translated to UDR-FS's typed errors."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        url: str,
        endpoint: str | None,
        profile: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.url = url
        self.requests = 0  # calls made (a listing of many pages counts once)
        self.listings = 0  # of which listings
        self._count_lock = threading.Lock()
        self.timeout = request_timeout()
        # Every upload carries a SHA-256 the server checks: bytes damaged in transit are refused.
        config: dict[str, Any] = {"checksum_algorithm": "sha256"}
        self.profile = chosen_profile(profile)
        if self.profile is not None:
            config.update(profile_settings(self.profile))
        endpoint = endpoint or config.get("endpoint")
        self.where = f"{url}" + (f" at {endpoint}" if endpoint else "")
        if endpoint:
            config["endpoint"] = endpoint
            config["virtual_hosted_style_request"] = False
        if "region" not in config and not (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        ):
            config["region"] = "auto" if endpoint else "us-east-1"
        allow_http = (endpoint or os.environ.get("AWS_ENDPOINT_URL", "")).startswith("http://")
        try:
            self.store = self._connect(bucket, prefix, config, allow_http, self.timeout)
        except (obx.BaseError, ValueError, TypeError) as exc:
            raise RemoteError(f"cannot use {self.where}: {_first_line(exc)}") from None

    @staticmethod
    def _connect(
        bucket: str, prefix: str, config: dict[str, Any], allow_http: bool, timeout: float
    ) -> S3Store:
        return S3Store(
            bucket,
            prefix=prefix or None,
            client_options={
                "allow_http": allow_http,
                "connect_timeout": timedelta(seconds=5),
                "timeout": timedelta(seconds=timeout),
            },
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=_RETRY_FOR_S)},
            **config,
        )

    def call(self, what: str, fn: Callable[[], T]) -> T:
        with self._count_lock:
            self.requests += 1
            self.listings += what.startswith("list ")
        try:
            return fn()
        except (obx.NotFoundError, FileNotFoundError) as exc:
            if "NoSuchBucket" in str(exc):
                raise RemoteError(
                    f"bucket {self.bucket!r} does not exist on {self.where}; create it first"
                ) from None
            raise NotFoundError(f"{what} is missing from {self.url}") from None
        except (obx.PermissionDeniedError, obx.UnauthenticatedError) as exc:
            raise RemoteError(
                f"{self.where} refused the credentials"
                + (f" of AWS profile {self.profile!r}" if self.profile else "")
                + f" ({_first_line(exc)}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or name a profile with AWS_PROFILE, for this bucket"
            ) from None
        except (obx.AlreadyExistsError, obx.PreconditionError, obx.NotModifiedError):
            raise
        except obx.BaseError as exc:
            if "kind: Timeout" in str(exc) or "TimedOut" in str(exc):
                raise RemoteError(
                    f"cannot {what} on {self.where}: no answer within {self.timeout:g} s "
                    f"(a stalled connection or a slow link); check the connection and run the "
                    f"command again (it sends only what is missing), or raise {TIMEOUT_ENV}"
                ) from None
            raise RemoteError(f"cannot {what} on {self.where}: {_first_line(exc)}") from None
        except OSError as exc:
            raise RemoteError(f"cannot {what} on {self.where}: {exc}") from None


class S3BlobStore(BlobStore):
    def __init__(self, client: S3Client) -> None:
        self.client = client
        self.url = client.url

    @property
    def requests(self) -> int:
        """Requests made so far through this bucket/prefix (blobs and refs together)."""
        return self.client.requests

    @property
    def listings(self) -> int:
        return self.client.listings

    def get(self, key: str) -> bytes:
        return self.client.call(
            f"read {key}", lambda: bytes(obstore.get(self.client.store, key).bytes())
        )

    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        # A view of the response's own buffer: no copy of megabytes a read-ahead fetches.
        return self.client.call(
            f"read {key}",
            lambda: memoryview(
                obstore.get_range(self.client.store, key, start=start, length=length)
            ),
        )

    def put_if_absent(self, key: str, data: bytes) -> bool:
        store = self.client.store
        if len(data) > _CREATE_UP_TO:
            # The keys are content hashes, so a racing writer of the same key writes the same
            # bytes: look first (a HEAD instead of resending megabytes), then overwrite.
            if self.exists(key):
                return False
            multipart = len(data) > _MULTIPART_ABOVE
            self.client.call(
                f"write {key}", lambda: obstore.put(store, key, data, use_multipart=multipart)
            )
            return True
        try:
            self.client.call(f"write {key}", lambda: obstore.put(store, key, data, mode="create"))
        except (obx.AlreadyExistsError, obx.PreconditionError):
            return False
        return True

    def put(self, key: str, data: bytes) -> None:
        store = self.client.store
        multipart = len(data) > _MULTIPART_ABOVE
        self.client.call(
            f"write {key}", lambda: obstore.put(store, key, data, use_multipart=multipart)
        )

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        store = self.client.store
        try:
            result = self.client.call(
                f"write {key}", lambda: obstore.put(store, key, data, mode={"e_tag": etag})
            )
        except (obx.PreconditionError, NotFoundError):
            return None
        new = result.get("e_tag")
        return None if new is None else str(new)

    def delete(self, key: str) -> None:
        # S3 answers a DELETE of a missing key with success: nothing to translate.
        self.client.call(f"delete {key}", lambda: obstore.delete(self.client.store, key))

    def stat(self, key: str) -> BlobInfo | None:
        try:
            meta = self.client.call(f"look up {key}", lambda: obstore.head(self.client.store, key))
        except NotFoundError:
            return None
        return _info(key, meta)

    def list(self, prefix: str) -> list[BlobInfo]:
        def run() -> list[BlobInfo]:
            out: list[BlobInfo] = []
            for batch in obstore.list(self.client.store, prefix=prefix, chunk_size=1000):
                out.extend(_info(meta["path"], meta) for meta in batch)
            return out

        return sorted(self.client.call(f"list {prefix}", run), key=lambda b: b.key)


def _info(key: str, meta: Any) -> BlobInfo:
    return BlobInfo(key, int(meta["size"]), meta["last_modified"].timestamp(), meta.get("e_tag"))


class S3RefStore(RefStore):
    """Refs as small objects `refs/<kind>/<name>`, swapped by conditional PUT.

    The token is the ETag read with the value; `If-Match` makes the server refuse the PUT (412)
    when anyone wrote the ref since. Without `cas` (a remote with a single writer, recorded by
    `udr remote add --no-cas`) the swap compares ETags itself and then overwrites.
    """

    def __init__(self, client: S3Client, cas: bool = True) -> None:
        self.client = client
        self.cas_supported = cas
        self.blobs = S3BlobStore(client)

    def _key(self, kind: RefKind, name: str) -> str:
        return f"refs/{kind}/{name}"

    def _parse(self, raw: bytes, etag: object) -> tuple[str | None, object | None]:
        value = raw.decode("ascii", "replace").strip() or None
        if value == TOMBSTONE:
            # Being deleted: absent to every reader, and a create (If-None-Match: *) fails
            # until the delete lands, so no push is swallowed by it (architecture.md).
            return None, None
        return value, etag

    def read(self, kind: RefKind, name: str) -> tuple[str | None, object | None]:
        key = self._key(kind, name)
        try:
            result = self.client.call(f"read {key}", lambda: obstore.get(self.client.store, key))
            raw = bytes(result.bytes())
        except NotFoundError:
            return None, None
        return self._parse(raw, result.meta["e_tag"])

    def read_if_changed(
        self, kind: RefKind, name: str, token: object | None
    ) -> tuple[str | None, object | None] | None:
        if token is None:
            return self.read(kind, name)
        key = self._key(kind, name)
        store = self.client.store
        etag = str(token)
        try:
            result = self.client.call(
                f"read {key}", lambda: obstore.get(store, key, options={"if_none_match": etag})
            )
        except obx.NotModifiedError:
            return None
        except NotFoundError:
            return None, None
        return self._parse(bytes(result.bytes()), result.meta["e_tag"])

    def compare_and_swap(self, kind: RefKind, name: str, token: object | None, new: str) -> bool:
        key = self._key(kind, name)
        data = f"{new}\n".encode("ascii")
        store = self.client.store
        if not self.cas_supported:
            if self.read(kind, name)[1] != token:
                return False
            self.client.call(f"write {key}", lambda: obstore.put(store, key, data))
            return True
        mode: Any = "create" if token is None else {"e_tag": str(token)}
        try:
            self.client.call(f"write {key}", lambda: obstore.put(store, key, data, mode=mode))
        except (obx.AlreadyExistsError, obx.PreconditionError):
            return False
        return True

    def check_cas(self) -> None:
        """Some S3 front-ends accept If-None-Match / If-Match and ignore them: ask the server
        to refuse a second create and a stale swap of a scratch key, and see that it does."""
        if not self.cas_supported:
            return
        key = f"locks/cas-probe-{secrets.token_hex(8)}"
        store = self.client.store
        advice = (
            "so two writers could overwrite each other's branches. Use a server that honours "
            "conditional writes, or add the remote with --no-cas if only one machine ever "
            "pushes to it"
        )
        self.client.call(f"write {key}", lambda: obstore.put(store, key, b"1", mode="create"))
        try:
            modes: list[tuple[str, Any]] = [
                ("If-None-Match: *", "create"),
                ('If-Match: "0"', {"e_tag": '"00000000000000000000000000000000"'}),
            ]
            for header, mode in modes:

                def attempt(m: Any = mode) -> Any:
                    return obstore.put(store, key, b"2", mode=m)

                try:
                    answer = self.client.call(f"write {key}", attempt)
                except (obx.AlreadyExistsError, obx.PreconditionError):
                    continue
                raise RemoteError(
                    f"{self.client.where} accepted a PUT with {header} that it must refuse "
                    f"with 412 Precondition Failed (it answered success, ETag "
                    f"{answer.get('e_tag')}): it ignores conditional writes, {advice}"
                )
        finally:
            # Best effort: a scratch key left behind harms nothing, and must not hide the answer.
            with contextlib.suppress(obx.BaseError, OSError):
                obstore.delete(store, key)

    def delete(self, kind: RefKind, name: str) -> None:
        """Remove the ref whatever it holds, a tombstone left by an interrupted
        `delete_if_unchanged` included (NotFoundError if there is no object)."""
        key = self._key(kind, name)
        if not self.blobs.exists(key):
            raise NotFoundError(f"no {key} on {self.client.url}")
        self.client.call(f"delete {key}", lambda: obstore.delete(self.client.store, key))

    def delete_if_unchanged(self, kind: RefKind, name: str, token: object | None) -> bool:
        """S3 has no conditional DELETE (obstore sends none; many servers ignore If-Match on
        it): the ref is first swapped to a tombstone by `If-Match` (False if it moved), then
        deleted. A push that reads the tombstone creates the ref only after the delete."""
        if token is None or not self.compare_and_swap(kind, name, token, TOMBSTONE):
            return False
        key = self._key(kind, name)
        self.client.call(f"delete {key}", lambda: obstore.delete(self.client.store, key))
        return True

    def list(self, kind: RefKind) -> dict[str, str]:
        prefix = f"refs/{kind}/"
        keys = [b.key for b in S3BlobStore(self.client).list(prefix)]
        names = [k[len(prefix) :] for k in keys]
        with ThreadPoolExecutor(_REF_READERS) as pool:
            values = list(pool.map(lambda n: self.get(kind, n), names))
        return {n: v for n, v in sorted(zip(names, values, strict=True)) if v}


def open_s3(
    bucket: str,
    prefix: str,
    url: str,
    endpoint: str | None,
    cas: bool,
    profile: str | None = None,
) -> Backend:
    client = S3Client(bucket, prefix, url, endpoint, profile)
    return Backend(url, S3BlobStore(client), S3RefStore(client, cas))
