"""Moving a store's immutable files between the local store and a backend, verified.

Keys are the local layout (docs/format.md): `packs/xx/<id>.pack`, `index/<id>.idx`,
`objects/xx/<id>`, `counts/xx/<commit id>`. Every file is re-hashed (a row-count record:
checked) before it is sent and after it is received, so a damaged file is never published or
installed. Transfers run on a bounded thread pool
(obstore releases the GIL during requests). What to move is decided by the caller
(catalog/remote.py); this module only moves and checks bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import zstandard

from udrfs import _native
from udrfs.errors import CorruptObjectError, FormatVersionError, NotFoundError
from udrfs.store.atomic import write_atomic
from udrfs.store.backends import Backend
from udrfs.store.condemned import CondemnedView
from udrfs.store.counts import counts_key, decode_record
from udrfs.store.keys import fragment_key, object_key, pack_key
from udrfs.store.objects import is_object_id
from udrfs.store.packs import check_pack, fragment_entries
from udrfs.store.store import Store

T = TypeVar("T")
TRANSFER_THREADS = 8


def fragment_chunks(data: bytes, pack_id: str, where: str) -> set[str]:
    """The chunk ids an index fragment lists, after checking it (store/packs.py)."""
    return set(fragment_entries(data, pack_id, where))


def check_object(object_id: str, stored: bytes, where: str) -> dict[str, Any]:
    """Decode a stored object and check it against its id."""
    import json

    try:
        raw = zstandard.decompress(stored)
    except zstandard.ZstdError:
        raise CorruptObjectError(f"object {object_id} on {where} is damaged") from None
    if _native.blake3_hex(raw) != object_id:
        raise CorruptObjectError(f"object {object_id} on {where} does not match its hash")
    doc: dict[str, Any] = json.loads(raw)
    return doc


@dataclass
class TransferStats:
    """What a push or pull moved."""

    files: int = 0
    bytes: int = 0
    skipped: int = 0  # files the other side already had
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n_bytes: int, sent: bool = True) -> None:
        with self._lock:
            if sent:
                self.files += 1
                self.bytes += n_bytes
            else:
                self.skipped += 1

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes, "skipped": self.skipped}


Progress = Callable[[TransferStats], None]


class Transfer:
    """Copies verified files between a local store and a backend, `threads` at a time."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        progress: Progress | None = None,
        threads: int = TRANSFER_THREADS,
    ) -> None:
        self.store = store
        self.backend = backend
        self.stats = TransferStats()
        self._progress = progress
        self._threads = threads
        self._started = time.monotonic()

    def parallel(self, fn: Callable[[str], T], items: Iterable[str]) -> list[T]:
        """`fn` of each item on the transfer's thread pool, results in order."""
        items = list(items)
        if not items:
            return []
        with ThreadPoolExecutor(min(self._threads, len(items))) as pool:
            results = list(pool.map(fn, items))
        return results

    def _tick(self, n_bytes: int, sent: bool = True) -> None:
        self.stats.add(n_bytes, sent)
        self.stats.seconds = time.monotonic() - self._started
        if self._progress is not None:
            self._progress(self.stats)

    # ---- local side ---------------------------------------------------------------------

    def local_packs(self) -> set[str]:
        return {p.stem for p in (self.store.root / "index").glob("*.idx") if is_object_id(p.stem)}

    def local_pack_chunks(self, pack_ids: Iterable[str]) -> dict[str, set[str]]:
        """Chunk ids per local pack, read from the packs' index fragments."""
        root = self.store.root
        return {
            p: fragment_chunks((root / fragment_key(p)).read_bytes(), p, str(root))
            for p in pack_ids
        }

    # ---- upload -------------------------------------------------------------------------

    def upload_packs(
        self,
        pack_ids: Iterable[str],
        again: frozenset[str] | set[str],
        condemned: CondemnedView,
    ) -> list[str]:
        """Send packs, each followed by its index fragment; returns the ids now on the remote.
        Those in `again` (the remote's collector condemned them) are sent even if the remote
        has them, which tells its collector to keep them (through `condemned.rewrite`)."""

        def one(pack_id: str) -> str:
            blobs = self.backend.blobs
            if pack_id not in again and blobs.exists(fragment_key(pack_id)):
                self._tick(0, sent=False)
                return pack_id
            pack = (self.store.root / pack_key(pack_id)).read_bytes()
            check_pack(
                pack,
                pack_id,
                str(self.store.root),
                "restore it from a copy of the store before pushing",
            )
            fragment = (self.store.root / fragment_key(pack_id)).read_bytes()
            fragment_chunks(fragment, pack_id, str(self.store.root))
            # The fragment goes last: a fragment on the remote means its pack is whole there.
            if pack_id in again:

                def send() -> None:
                    blobs.put(pack_key(pack_id), pack)
                    blobs.put(fragment_key(pack_id), fragment)

                condemned.rewrite(pack_key(pack_id), send)
                self._tick(len(pack) + len(fragment))
                return pack_id
            self._tick(len(pack), blobs.put_if_absent(pack_key(pack_id), pack))
            self._tick(len(fragment), blobs.put_if_absent(fragment_key(pack_id), fragment))
            return pack_id

        return self.parallel(one, pack_ids)

    def upload_objects(
        self,
        object_ids: Iterable[str],
        again: frozenset[str] | set[str],
        condemned: CondemnedView,
    ) -> None:
        """Send objects the remote lacks (and those in `again`, whatever it holds, through
        `condemned.rewrite`)."""

        def one(object_id: str) -> None:
            stored = self.store.objects.path(object_id).read_bytes()
            check_object(object_id, stored, "this store")
            if object_id in again:
                key = object_key(object_id)
                condemned.rewrite(key, lambda: self.backend.blobs.put(key, stored))
                self._tick(len(stored))
                return
            sent = self.backend.blobs.put_if_absent(object_key(object_id), stored)
            self._tick(len(stored), sent)

        self.parallel(one, object_ids)

    def upload_counts(self, commit_ids: Iterable[str]) -> None:
        """Send the row-count records of these commits (docs/format.md, "Row-count records");
        each is checked first, and one the remote already holds is left as it is."""

        def one(commit_id: str) -> None:
            stored = self.store.counts.get_bytes(commit_id)
            if stored is None:
                return
            decode_record(commit_id, stored, "this store")
            self._tick(len(stored), self.backend.blobs.put_if_absent(counts_key(commit_id), stored))

        self.parallel(one, commit_ids)

    # ---- download -----------------------------------------------------------------------

    def fetch_counts(self, commit_ids: Iterable[str]) -> None:
        """Install the row-count records the backend holds for these commits (checked); a
        commit whose record is not there yet has its counts computed here when read."""

        def one(commit_id: str) -> None:
            if self.store.counts.exists(commit_id):
                return
            try:
                stored = self.backend.blobs.get(counts_key(commit_id))
            except NotFoundError:
                return
            decode_record(commit_id, stored, self.backend.url)
            self.store.counts.install(commit_id, stored)
            self._tick(len(stored))

        self.parallel(one, commit_ids)

    def fetch_objects(self, object_ids: Iterable[str]) -> dict[str, tuple[bytes, dict[str, Any]]]:
        """Read and check objects from the backend (not yet installed): id -> (stored, doc)."""

        def one(object_id: str) -> tuple[bytes, dict[str, Any]]:
            stored = self.backend.blobs.get(object_key(object_id))
            self._tick(len(stored))
            return stored, check_object(object_id, stored, self.backend.url)

        ids = list(object_ids)
        return dict(zip(ids, self.parallel(one, ids), strict=True))

    def install_object(self, object_id: str, stored: bytes) -> None:
        path = self.store.objects.path(object_id)
        if not path.exists():
            write_atomic(path, stored)

    def remote_fragments(self) -> set[str]:
        """Pack ids with an index fragment on the backend (one listing of `index/`)."""
        out = set()
        for info in self.backend.blobs.list("index/"):
            name = info.key.rsplit("/", 1)[-1]
            if name.endswith(".idx") and is_object_id(name[:-4]):
                out.add(name[:-4])
        return out

    def fetch_fragments(self, pack_ids: Iterable[str]) -> dict[str, tuple[bytes, set[str]]]:
        def one(pack_id: str) -> tuple[bytes, set[str]]:
            data = self.backend.blobs.get(fragment_key(pack_id))
            self._tick(len(data))
            return data, fragment_chunks(data, pack_id, self.backend.url)

        ids = list(pack_ids)
        return dict(zip(ids, self.parallel(one, ids), strict=True))

    def download_packs(self, fragments: dict[str, bytes]) -> None:
        """Fetch packs, check them and install each before its index fragment."""

        def one(pack_id: str) -> None:
            pack = self.backend.blobs.get(pack_key(pack_id))
            version = check_pack(pack, pack_id, self.backend.url, "nothing was installed")
            if version > self.store.format.format_version:
                raise FormatVersionError(
                    f"pack {pack_id} on {self.backend.url} is of format version {version}, "
                    f"newer than this store's ({self.store.format.format_version}); upgrade "
                    f"this store first (`udr upgrade {self.store.root}`)"
                )
            write_atomic(self.store.root / pack_key(pack_id), pack)
            write_atomic(self.store.root / fragment_key(pack_id), fragments[pack_id])
            self._tick(len(pack))

        self.parallel(one, fragments)
        self.store.chunks.reload_index()
