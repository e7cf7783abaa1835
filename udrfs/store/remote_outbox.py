"""Chunks written to a store that lives on a remote: local packs first, then uploaded.

A transaction on `Repo("s3://...")` chunks its files into packs under the store's cache
directory (`CACHE_DIR/stores/<store>/packs/`) through the native engine, exactly as for a
local store. Staging stays local until the commit. The engine opens that directory after
every index fragment of the remote was fetched into its `index/`, so it knows every chunk the
remote holds and writes only new ones: a new version uploads what it changed, not the file.

`flush` (the commit's step 2) makes the local packs durable and uploads each one the remote
does not hold, the pack before its index fragment (a fragment on the remote means its pack is
whole there, the rule of a push), and only then returns: the commit's objects follow, and the
branch moves last, by a conditional PUT (docs/architecture.md, "Writing to a remote").

`write_again` writes chunks read back from the remote again as themselves, into new local
packs: a commit keeping chunks that only condemned packs hold, and a repack copying the live
chunks out of wasteful packs (docs/architecture.md, "Repack").

Packs stay here after their upload, so that what this machine wrote reads back without a
GET, up to `keep_bytes` (a quarter of the chunk cache's bound): past it, each flush deletes
uploaded packs, oldest first. An evicted pack is then one of the remote's packs like any
other (its index fragment stays): a read finds it there, and a read that raced the eviction
(`holds`, then the file gone) fetches it from the remote.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from udrfs import _native
from udrfs.errors import CorruptObjectError, FormatVersionError
from udrfs.store.atomic import write_atomic
from udrfs.store.backends.base import BlobStore
from udrfs.store.chunks import ChunkStore
from udrfs.store.condemned import CondemnedView
from udrfs.store.format import MANIFEST_NAME, StoreFormat, fetch_format
from udrfs.store.keys import fragment_key, hashed_path, pack_key
from udrfs.store.pack_index import PackIndex, parse_fragment
from udrfs.store.packs import check_pack

UPLOADERS = 4


class _WriterView(CondemnedView):
    """What the engine of the local packs never deduplicates against: the packs the remote's
    collector condemned and, while `Outbox.rewriting` holds, the packs a repack copies out
    of (so each chunk given is written again even though a pack holds it)."""

    def __init__(self, root: Path, condemned: CondemnedView) -> None:
        super().__init__(root)
        self.condemned = condemned
        self.extra: frozenset[str] = frozenset()
        self._extra_changes = 0

    def refresh(self) -> int:
        # Both counts only grow, so their sum changes whenever either does.
        return self.condemned.refresh() + self._extra_changes

    def packs(self) -> list[str]:
        return sorted(self.extra.union(self.condemned.packs()))

    def has_object(self, object_id: str) -> bool:
        return self.condemned.has_object(object_id)

    def set_extra(self, packs: frozenset[str]) -> None:
        with self._lock:
            self.extra = packs
            self._extra_changes += 1


class Outbox:
    """The local packs of a remote store and their upload (the module docstring)."""

    def __init__(
        self,
        root: Path,
        fmt: StoreFormat,
        blobs: BlobStore,
        remote_index: PackIndex,
        fetch_remote_index: Callable[[], object],
        condemned: CondemnedView | None = None,
        keep_bytes: int | None = None,
    ) -> None:
        self.root = root
        # Uploaded packs kept here at most (None: all of them).
        self.keep_bytes = keep_bytes
        self.fmt = fmt
        self.blobs = blobs
        self.remote_index = remote_index
        self._fetch_remote_index = fetch_remote_index
        # The remote's record of condemned packs: never deduplicated against (chunks.py).
        self.condemned = condemned
        self._engine: ChunkStore | None = None
        self._lock = threading.Lock()
        self._writer_view = _WriterView(root, condemned or CondemnedView(root))

    @property
    def active(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> ChunkStore:
        """The native engine over the cache directory, opened on the first write."""
        with self._lock:
            if self._engine is None:
                self._fetch_remote_index()  # every remote fragment into index/: dedup
                self.fmt = self._remote_format()
                self._engine = ChunkStore(self.root, self.fmt, self._writer_view)
            return self._engine

    def _remote_format(self) -> StoreFormat:
        """The remote's udr.toml, read again before this process first writes: packs are
        written in the version the remote has now, also after `udr upgrade URL` from another
        machine, whose copy in this cache directory is then brought up to date."""
        fmt, data = fetch_format(self.blobs)
        path = self.root / MANIFEST_NAME
        if fmt != self.fmt:
            if replace(fmt, format_version=self.fmt.format_version) != self.fmt:
                raise FormatVersionError(
                    f"{self.blobs.url}/{MANIFEST_NAME} no longer describes the store this "
                    f"cache was filled from ({path}); nothing was written: remove {self.root} "
                    "and open the store again"
                )
            write_atomic(path, data, durable=False)
        return fmt

    @contextmanager
    def rewriting(self, packs: set[str] | frozenset[str]) -> Iterator[None]:
        """Within it, chunks are written again even when one of `packs` holds them (repack)."""
        self._writer_view.set_extra(frozenset(packs))
        try:
            yield
        finally:
            self._writer_view.set_extra(frozenset())

    def write_again(self, ids: Sequence[bytes], pieces: Sequence[bytes | memoryview]) -> None:
        """Write chunks read back (and checked) from the remote again as themselves, into the
        open local pack (uploaded by the next `flush`): one ingest, cut at each chunk's end.
        Each must come out as the same chunk, stored here or in a pack the engine may
        deduplicate against (not condemned, not one a repack copies out of);
        CorruptObjectError otherwise, before anything is uploaded."""
        if not ids:
            return
        ends, total = [], 0
        for piece in pieces:
            total += len(piece)
            ends.append(total)
        data = b"".join(pieces)
        written = self.engine.ingest_bytes(data, ends).ids()
        wanted = [chunk_id.hex() for chunk_id in ids]
        avoid = set(self._writer_view.packs())
        for n, chunk_id in enumerate(wanted):
            same = len(written) == len(wanted) and written[n] == chunk_id
            if not same or self.engine.pack_of(chunk_id) in avoid:
                raise CorruptObjectError(
                    f"chunk {chunk_id} was not written again as itself; nothing was sent to "
                    f"{self.blobs.url}"
                )

    def pack_path(self, pack_id: str) -> Path:
        return hashed_path(self.root / "packs", pack_id, ".pack")

    def holds(self, chunk_id: str) -> bool:
        """Whether the chunk can be read here: written by this store and not only on the
        remote (the engine also knows the remote's chunks, whose packs are not here)."""
        engine = self._engine
        if engine is None or not engine.contains(chunk_id):
            return False
        pack = engine.pack_of(chunk_id)
        return pack is None or pack not in self.remote_index or self.pack_path(pack).exists()

    def read_chunk(self, chunk_id: bytes, raw_length: int) -> bytes:
        """A chunk written here, read (and checked) by the engine."""
        one = _native.ChunkList(chunk_id + raw_length.to_bytes(4, "little"))
        return self.engine.read(one, 0, raw_length)

    def flush(self) -> list[str]:
        """Make the local packs durable and upload every one the remote lacks."""
        if self._engine is None:
            return []
        new = self._engine.flush()
        # A pack written just now with the bytes of one the remote's collector condemned is
        # sent again, so that the collector sees it changed and keeps it.
        condemned = set(self.condemned.packs()) if self.condemned is not None else set()
        self.upload(again={p for p in new if p in condemned})
        self.evict()
        return new

    def evict(self) -> int:
        """Delete uploaded packs, oldest first, until those left take at most `keep_bytes`;
        returns how many bytes went. Only packs the remote lists (or this store uploaded)."""
        if self.keep_bytes is None:
            return 0
        sizes: list[tuple[float, int, Path]] = []
        total = 0
        for path in (self.root / "packs").glob("??/*.pack"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # evicted by another process meanwhile
            total += st.st_size
            if path.stem in self.remote_index:
                sizes.append((st.st_mtime, st.st_size, path))
        freed = 0
        for _mtime, size, path in sorted(sizes):
            if total - freed <= self.keep_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            freed += size
        return freed

    def upload(self, again: set[str] | frozenset[str] = frozenset()) -> None:
        """Send each local pack the remote does not list (and those in `again`, whatever the
        remote holds), then its index fragment."""
        local = sorted(p.stem for p in (self.root / "packs").glob("??/*.pack"))
        missing = [p for p in local if p not in self.remote_index or p in again]
        if missing:
            with ThreadPoolExecutor(min(UPLOADERS, len(missing))) as pool:
                list(pool.map(lambda p: self._upload_one(p, p in again), missing))

    def _upload_one(self, pack_id: str, again: bool = False) -> None:
        key = fragment_key(pack_id)
        fragment = (self.root / key).read_bytes()
        entries = parse_fragment(pack_id, fragment, str(self.root))
        if again:
            data = self._checked_pack(pack_id)

            def send() -> None:
                self.blobs.put(pack_key(pack_id), data)
                self.blobs.put(key, fragment)

            self._writer_view.condemned.rewrite(pack_key(pack_id), send)
        elif not self.blobs.exists(key):
            self.blobs.put_if_absent(pack_key(pack_id), self._checked_pack(pack_id))
            self.blobs.put_if_absent(key, fragment)
        self.remote_index.add(pack_id, entries)

    def _checked_pack(self, pack_id: str) -> bytes:
        """The bytes of a local pack, once each chunk and its name are checked: read once for
        the check and the upload."""
        path = self.pack_path(pack_id)
        data = path.read_bytes()
        check_pack(
            data, pack_id, str(path.parent), "nothing was committed: delete it and write again"
        )
        return data
