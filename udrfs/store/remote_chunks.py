"""Chunk reads of a store that lives on a remote: ranged GETs, verified, cached on disk.

`RemoteChunkStore` answers the read side of `ChunkStore` (`read`, `read_into`, `prefetch`)
for a store read straight from S3/R2 (docs/architecture.md, "Reading from a remote"):

1. The chunks a read needs come from the on-disk `ChunkCache`, read and checked in the
   native engine with the GIL released (as a local store's packs are read), up to the first
   chunk it does not hold; the rest from the in-memory cache of verified bytes, else the
   disk cache again (a segment indexed meanwhile), else the remote. The leading chunks of a
   read that are held in memory (just fetched: a cold reader behind its read-ahead; or the
   chunk it shares with the read before) are copied from there first, rather than read and
   checked again from their segment.
2. Missing chunks are found in the remote's index fragments (`PackIndex`; fragments are
   fetched once and kept), grouped by pack and sorted; neighbours in one pack are fetched by
   one ranged GET (gaps up to `COALESCE_GAP`, ranges up to `MAX_RANGE`), several GETs at once.
3. Each chunk is decoded and its BLAKE3 checked before any byte of it is handed out or cached;
   a mismatch is a `CorruptObjectError` naming the remote pack, never wrong bytes.
4. A chunk being fetched (by a read-ahead, say), or read from the disk cache in Python, by
   one thread is waited for by another that needs it, not fetched or read and checked twice
   (the native engine does the same for its own reads and read-ahead).
5. `prefetch` (the mount's read-ahead) starts the GETs, on a pool of its own: one thread
   checks the ranges in the order they were asked for, so the next window's GETs are in
   flight while a reader consumes the last one (a read-ahead that waited for its window to
   finish left the network idle at each window's end). Then it has the native engine read
   and check into its memory the window's chunks that are in the disk cache.

Every request is bounded (`UDR_REMOTE_TIMEOUT`, a few retries with backoff, backends/s3.py):
a server that goes away makes the read fail with `RemoteError` instead of hanging.
Writes go to the store's `Outbox` (store/remote_outbox.py): local packs, uploaded at flush.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import zstandard

from udrfs import _native
from udrfs.errors import CorruptObjectError, NotFoundError, NotLocalError, UdrError
from udrfs.lru import LruCache, MiB
from udrfs.store.atomic import write_atomic
from udrfs.store.backends.base import BlobStore
from udrfs.store.chunk_cache import ChunkCache
from udrfs.store.chunks import ChunkList, ChunkStore, ChunkStream, read_cache_bytes
from udrfs.store.condemned import CondemnedView
from udrfs.store.format import StoreFormat
from udrfs.store.keys import fragment_key, pack_key
from udrfs.store.objects import is_object_id
from udrfs.store.pack_index import CHUNK_LIST_ENTRY, ChunkLocation, PackIndex, parse_fragment
from udrfs.store.remote_outbox import Outbox

log = logging.getLogger(__name__)

# Neighbouring chunks of one pack are fetched by one GET when the bytes between them are at
# most this many (the 44-byte headers, chunks of other versions): cheaper than a round trip.
COALESCE_GAP = 1 * MiB
# One GET at most this long, so a large read-ahead runs as several GETs in flight.
MAX_RANGE = 8 * MiB
# Ranged GETs in flight at once per open store.
FETCHERS = 8
# How far a sequential reader of a mounted remote store is read ahead, at most (the window
# grows to it from the local 8 MiB: fs/reader.py).
READ_AHEAD_LIMIT = 128 * MiB

# How many times a read looks again for chunks whose pack turned out to be gone: a chunk kept
# in several packs may be found next in another pack the same collector run deletes (as the
# native engine does for a local store).
FETCH_ATTEMPTS = 4

# A chunk's verified bytes: its own, or a view into the range they were fetched in.
Piece: TypeAlias = bytes | memoryview


class PacksGone(NotFoundError):
    """Packs the remote no longer has: its collector deleted them since they were listed."""

    def __init__(self, message: str, packs: set[str]) -> None:
        super().__init__(message)
        self.packs = packs


class _Layout:
    """A chunk list as arrays: ids (32 bytes each), start offsets, raw lengths."""

    def __init__(self, chunks: ChunkList) -> None:
        table = np.frombuffer(chunks.to_bytes(), dtype=CHUNK_LIST_ENTRY)
        self.ids: list[bytes] = [bytes(v) for v in table["id"].tolist()]
        self.lengths = table["raw"].astype(np.int64)
        self.ends = np.cumsum(self.lengths)
        self.starts = self.ends - self.lengths
        self.chunks = chunks  # keeps the object (and so its id()) alive while cached

    def span(self, offset: int, length: int) -> tuple[int, int]:
        """Indexes [i, j) of the chunks holding bytes [offset, offset + length)."""
        i = int(np.searchsorted(self.ends, offset, side="right"))
        j = int(np.searchsorted(self.starts, offset + length, side="left"))
        return i, j


class RemoteChunkStore(ChunkStore):
    """`ChunkStore` over a remote store's packs (the module docstring); writes go to its
    `Outbox` (store/remote_outbox.py)."""

    read_ahead_limit = READ_AHEAD_LIMIT

    def __init__(
        self,
        root: Path,
        blobs: BlobStore,
        cache: ChunkCache,
        fmt: StoreFormat,
        condemned: CondemnedView | None = None,
    ) -> None:
        # No native engine for reads: the packs are on the remote. `root` is the store's
        # directory in the cache (index fragments are kept under it, local packs too).
        self.root = root
        self._engine = None
        self.blobs = blobs
        self.cache = cache
        self.index = PackIndex()
        self.index_dir = root / "index"
        self._indexed_once = False
        self._index_lock = threading.Lock()
        self._damaged: dict[str, str] = {}
        self._layouts: LruCache[int, _Layout] = LruCache(256)
        budget = max(read_cache_bytes(), 1 * MiB)
        self.memory: LruCache[bytes, Piece] = LruCache(1 << 16, budget, len)
        self._inflight: dict[bytes, threading.Event] = {}
        self._inflight_lock = threading.Lock()
        # Reads' own GETs and the read-ahead's, apart: a random read never queues behind a
        # 128 MiB read-ahead.
        self._pool = ThreadPoolExecutor(FETCHERS, thread_name_prefix="udr-fetch")
        self._ahead_pool = ThreadPoolExecutor(FETCHERS, thread_name_prefix="udr-ahead")
        self._ahead: queue.Queue[
            tuple[str, list[ChunkLocation], Future[memoryview], set[bytes]]
        ] = queue.Queue()
        self._checker: threading.Thread | None = None
        self._counts_lock = threading.Lock()
        self.fetched_bytes = 0
        self.fetches = 0
        self.outbox = Outbox(
            root, fmt, blobs, self.index, self.reload_index, condemned, cache.max_bytes // 4
        )

    # ---- writes: chunked into local packs, uploaded by `flush` ----------------------------

    def keep(self, chunks: ChunkList) -> int:
        """Write again, into new local packs (uploaded by the next `flush`), the chunks of
        `chunks` that the remote keeps in a pack its collector condemned (docs/architecture.md,
        "Garbage collection"): read from the remote (the pack is still there: it goes a grace
        period after it was condemned) and checked, then written as the same chunk."""
        engine = self.outbox.engine  # opened after the remote's index was read
        engine.refresh_condemned()
        condemned = set(self.outbox.condemned.packs()) if self.outbox.condemned else set()
        table = np.frombuffer(chunks.to_bytes(), dtype=CHUNK_LIST_ENTRY)
        ids_raw = [bytes(v) for v in table["id"].tolist()]
        sizes = dict(zip(ids_raw, table["raw"].tolist(), strict=True))
        ids = list(sizes)
        todo = []
        for chunk_id, loc in zip(ids, self.index.lookup(ids), strict=True):
            if loc is not None and loc.pack in condemned:
                todo.append(chunk_id)
            elif loc is None and not self.outbox.holds(chunk_id.hex()):
                raise NotFoundError(
                    f"chunk {chunk_id.hex()} of this commit is in no pack of {self.blobs.url} "
                    "(the remote's collector deleted it while the transaction was open, longer "
                    "than its grace period); nothing was committed: write the table again"
                )
        self._write_again(todo, sizes)
        return len(todo)

    def copy_chunks(self, chunk_ids: Sequence[str]) -> int:
        """Copy chunks the remote holds into new local packs (repack), each read from the
        remote and checked first, and written again even though a pack holds it; uploaded by
        the next `flush`. Returns the raw bytes copied. NotFoundError for a chunk no fragment
        lists."""
        ids = list(dict.fromkeys(bytes.fromhex(c) for c in chunk_ids))
        sizes = {loc_id: loc.raw for loc_id, loc in zip(ids, self._locate(ids), strict=True)}
        # No pack the engine knows is deduplicated against: each chunk is written again.
        local = {p.stem for p in self.root.glob("packs/??/*.pack") if is_object_id(p.stem)}
        every_pack = set(self.index.packs) | local
        with self.outbox.rewriting(every_pack):
            self._write_again(ids, sizes)
        return sum(sizes.values())

    def _write_again(self, ids: list[bytes], sizes: dict[bytes, int]) -> None:
        """Read chunks from the remote (checked), in batches of about a pack so that memory
        stays bounded, and write each again as itself into new local packs."""
        for batch in batches(ids, sizes, self.outbox.fmt.pack_target):
            pieces = self._verified(batch, keep=set(), sizes=sizes)
            self.outbox.write_again(batch, pieces)

    def ingest_file(
        self, path: Path, cut_points: Sequence[int] | None = None, compress: bool = False
    ) -> ChunkList:
        return self.outbox.engine.ingest_file(path, cut_points, compress)

    def ingest_file_hashed(
        self, path: Path, cut_points: Sequence[int] | None = None
    ) -> tuple[ChunkList, str]:
        return self.outbox.engine.ingest_file_hashed(path, cut_points)

    def ingest_bytes(
        self, data: bytes | memoryview, cut_points: Sequence[int] | None = None
    ) -> ChunkList:
        return self.outbox.engine.ingest_bytes(data, cut_points)

    def stream(self) -> ChunkStream:
        return self.outbox.engine.stream()

    def flush(self) -> list[str]:
        """Make the chunks written here durable and upload their packs (then fragments)."""
        return self.outbox.flush()

    def verify_pack(self, pack_id: str) -> int:
        raise NotLocalError(self.blobs.url, "`udr fsck`")  # it runs where the packs are

    def rebuild_index(self, pack_id: str) -> None:
        raise NotLocalError(self.blobs.url, "`udr fsck --repair`")

    # ---- the index ----------------------------------------------------------------------

    def damaged_pack_ids(self) -> list[str]:
        return sorted(self._damaged)

    def damaged_fragments(self) -> dict[str, str]:
        return dict(self._damaged)

    def reload_index(self) -> int:
        """List the remote's `index/` and add the fragments not known yet (each is fetched
        once and kept in the cache directory); returns how many packs are new. Packs whose
        fragment the remote no longer lists (its collector deleted them) are forgotten, and
        so are their fragments in the cache (the writing engine reads them) unless the pack
        was written here (then the next flush that needs it uploads it again). The first
        call also indexes the disk cache, so that a first read need not."""
        if not self._indexed_once:
            self.cache.rescan()
        with self._index_lock:
            listed = self.blobs.list("index/")
            names = {b.key.rsplit("/", 1)[-1] for b in listed}
            self._forget_unlisted({n[:-4] for n in names if n.endswith(".idx")})
            new = []
            for name in sorted(names):
                if name.endswith(".idx") and name[:-4] not in self.index:
                    new.append(name[:-4])
            for pack_id, entries in zip(new, self._pool.map(self._fragment, new), strict=True):
                if entries is not None:
                    self.index.add(pack_id, entries)
            self._indexed_once = True
            return len(new)

    def _forget_unlisted(self, listed: set[str]) -> None:
        for path in self.index_dir.glob("*.idx"):
            if path.stem not in listed and not self.outbox.pack_path(path.stem).exists():
                with contextlib.suppress(OSError):
                    path.unlink()
        # Not the remote's any more: a pack written here is uploaded again if used.
        self.index.discard(set(self.index.packs) - listed)

    def _fragment(self, pack_id: str) -> np.ndarray | None:
        path = self.index_dir / f"{pack_id}.idx"
        with contextlib.suppress(OSError, CorruptObjectError):
            return parse_fragment(pack_id, path.read_bytes(), str(self.root))
        try:
            data = self.blobs.get(fragment_key(pack_id))
            entries = parse_fragment(pack_id, data, self.blobs.url)
        except CorruptObjectError as exc:
            self._damaged[pack_id] = str(exc)
            log.error("%s: its chunks cannot be read", exc)
            return None
        except NotFoundError:
            return None  # removed since the listing
        with contextlib.suppress(OSError, UdrError):
            write_atomic(path, data, durable=False)
        return entries

    def _locate(self, ids: list[bytes]) -> list[ChunkLocation]:
        if not self._indexed_once:
            self.reload_index()
        found = self.index.lookup(ids)
        if any(loc is None for loc in found):
            self.reload_index()  # written by a commit since the last listing
            found = self.index.lookup(ids)
        out = []
        for chunk_id, loc in zip(ids, found, strict=True):
            if loc is None:
                raise NotFoundError(
                    f"chunk {chunk_id.hex()} is in no index fragment of {self.blobs.url}; the "
                    "remote is incomplete (a push that did not finish?): push again from a "
                    "store that has it"
                )
            out.append(loc)
        return out

    def contains(self, chunk_id: str) -> bool:
        if self.outbox.active and self.outbox.engine.contains(chunk_id):
            return True
        if not self._indexed_once:
            self.reload_index()
        return self.index.lookup([bytes.fromhex(chunk_id)])[0] is not None

    def pack_of(self, chunk_id: str) -> str | None:
        if self.outbox.active and (pack := self.outbox.engine.pack_of(chunk_id)) is not None:
            return pack
        if not self._indexed_once:
            self.reload_index()
        loc = self.index.lookup([bytes.fromhex(chunk_id)])[0]
        return None if loc is None else loc.pack

    # ---- reads --------------------------------------------------------------------------

    def _layout(self, chunks: ChunkList) -> _Layout:
        layout = self._layouts.get(id(chunks))
        if layout is None or layout.chunks is not chunks:
            layout = _Layout(chunks)
            self._layouts.put(id(chunks), layout)
        return layout

    def read(self, chunks: ChunkList, offset: int, length: int) -> bytes:
        n = max(0, min(length, chunks.size - offset))
        buf = bytearray(n)
        filled = self.read_into(chunks, offset, buf)
        return bytes(buf[:filled])

    def read_into(self, chunks: ChunkList, offset: int, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = max(0, min(len(view), chunks.size - offset))
        if n == 0:
            return 0
        # Leading chunks held in memory (verified when fetched: a cold reader behind its
        # read-ahead, or the chunk a read shares with the one before) are copied from there,
        # not read from their segment again; then the disk cache, natively, up to the first
        # chunk it does not hold; then the rest.
        layout = self._layout(chunks)
        done = self._copy_held(layout, offset, view[:n])
        if done < n:
            done += self.cache.read_into(chunks, offset + done, view[done:n])
        if done < n:
            done += self._read_into(chunks, offset + done, view[done:n])
        return done

    def read_local_into(self, chunks: ChunkList, offset: int, buf: Any) -> int:
        """The chunks in the disk cache only, up to the first that is not (no listing of
        the cache's directory either: it may be large)."""
        view = memoryview(buf).cast("B")
        n = max(0, min(len(view), chunks.size - offset))
        return self.cache.read_into(chunks, offset, view[:n], may_list=False) if n else 0

    def _copy_held(self, layout: _Layout, offset: int, view: memoryview) -> int:
        """Copy into `view` the bytes from `offset` of the leading chunks held in memory;
        returns how many (0 if the first is not held)."""
        k, _j = layout.span(offset, 1)
        pos = 0
        while pos < len(view) and k < len(layout.ids):
            data = self.memory.get(layout.ids[k])
            if data is None:
                break
            pos += _copy_part(layout, k, data, offset + pos, view[pos:])
            k += 1
        return pos

    def _read_into(self, chunks: ChunkList, offset: int, view: memoryview) -> int:
        layout = self._layout(chunks)
        i, j = layout.span(offset, len(view))
        ids = layout.ids[i:j]
        sizes = dict(zip(ids, layout.lengths[i:j].tolist(), strict=True))
        # Kept in memory: the chunks at the ends, which the neighbouring reads share (the
        # ones between are read whole; a later read finds them in the disk cache).
        pieces = self._verified(ids, keep={ids[0], ids[-1]}, sizes=sizes)
        pos = 0
        for k, data in zip(range(i, j), pieces, strict=True):
            pos += _copy_part(layout, k, data, offset + pos, view[pos:])
        return pos

    def prefetch(self, chunks: ChunkList, offset: int, length: int) -> int:
        """Read ahead: start fetching the chunks of [offset, offset + length) that are not
        cached (the number of stored bytes asked for is returned). The GETs run on the
        read-ahead pool in order; one thread checks each range as it arrives and keeps its
        chunks in the disk cache (the first half of the memory cache's worth in memory too);
        a reader that needs one of them waits for it. Then the chunks of the window in the
        disk cache are read and checked into the native engine's memory (`ChunkCache.
        prefetch`), in this thread. A read-ahead that fails only logs, and the reader reads
        what it needs itself."""
        length = max(0, min(length, chunks.size - offset))
        if length == 0:
            return 0
        layout = self._layout(chunks)
        i, j = layout.span(offset, length)
        ids = layout.ids[i:j]
        in_memory = 0
        keep = set()
        for k in range(i, j):
            in_memory += int(layout.lengths[k])
            if in_memory > (self.memory.max_bytes or 0) // 2:
                break
            keep.add(layout.ids[k])
        wanted: list[bytes] = []
        on_disk = False
        for chunk_id in dict.fromkeys(ids):
            if self.cache.contains(chunk_id):
                on_disk = True
            elif self.memory.peek(chunk_id) is None:
                wanted.append(chunk_id)
        if self.outbox.active:
            wanted = [c for c in wanted if not self.outbox.holds(c.hex())]
        mine, _theirs = self._claim(wanted)
        try:
            ranges = coalesce(self._locate(mine)) if mine else []
        except BaseException:
            self._release(mine)
            raise
        for pack, group in ranges:
            future = self._ahead_pool.submit(self._get_range, pack, group)
            self._ahead.put((pack, group, future, keep))
        with self._inflight_lock:
            if ranges and self._checker is None:
                self._checker = threading.Thread(
                    target=self._check_ahead, name="udr-read-ahead", daemon=True
                )
                self._checker.start()
        if on_disk:
            self.cache.prefetch(chunks, offset, length)
        return sum(g[-1].offset + g[-1].stored - g[0].offset for _p, g in ranges)

    def _check_ahead(self) -> None:
        """The read-ahead's one checking thread: ranges in the order they were asked for."""
        while True:
            pack, group, future, keep = self._ahead.get()
            try:
                self._verify_range(pack, group, future.result(), keep)
            except Exception as exc:
                log.debug("read-ahead of pack %s failed: %s", pack, exc)
            finally:
                self._release([bytes.fromhex(loc.chunk_id) for loc in group])

    def _verified(
        self, ids: Sequence[bytes], keep: set[bytes], sizes: dict[bytes, int]
    ) -> list[Piece]:
        """The verified bytes of each chunk (in order); those in `keep` are kept in memory.
        `sizes` (raw lengths) lets chunks written here and not uploaded yet be read from the
        local packs."""
        found: dict[bytes, Piece] = {}
        unique = list(dict.fromkeys(ids))
        for chunk_id in unique:
            data = self.memory.get(chunk_id)
            if data is not None:
                found[chunk_id] = data
        # Claimed before they are looked for: a chunk that another thread is loading from the
        # disk cache or fetching (a read-ahead's fetch) is waited for, not read and checked a
        # second time. Repeated for what such a load or fetch did not bring (it failed: then
        # this thread tries).
        wanted = [c for c in unique if c not in found]
        for _attempt in range(3):
            if not wanted:
                break
            mine, theirs = self._claim(wanted)
            try:
                if mine:
                    found.update(self._load(mine, keep, sizes))
            finally:
                self._release(mine)
            wanted = []
            for chunk_id, event in theirs:
                event.wait()
                data = self.memory.get(chunk_id) or self.cache.get(chunk_id)
                if data is None:
                    wanted.append(chunk_id)
                else:
                    found[chunk_id] = data
        if wanted:
            found.update(self._load(wanted, keep, sizes))
        return [found[c] for c in ids]

    def _load(
        self, ids: list[bytes], keep: set[bytes], sizes: dict[bytes, int]
    ) -> dict[bytes, Piece]:
        """Chunks not in memory, verified: from the disk cache, else from a pack written here,
        else fetched from the remote."""
        found: dict[bytes, Piece] = {}
        for chunk_id, data in self.cache.get_many(ids).items():
            if chunk_id in keep:
                self.memory.put(chunk_id, bytes(data))
            found[chunk_id] = data
        missing: list[bytes] = []
        for chunk_id in ids:
            if chunk_id in found:
                continue
            local = None
            if self.outbox.holds(chunk_id.hex()):
                local = self._read_local(chunk_id, sizes[chunk_id])
            if local is None:
                missing.append(chunk_id)
            else:
                found[chunk_id] = local
        if missing:
            found.update(self._fetch(missing, keep))
        return found

    def _read_local(self, chunk_id: bytes, raw_length: int) -> bytes | None:
        """A chunk from a pack written here; None if that pack was evicted since `holds`
        found it (uploaded: fetched from the remote instead)."""
        try:
            return self.outbox.read_chunk(chunk_id, raw_length)
        except (NotFoundError, CorruptObjectError, OSError):
            if self.outbox.holds(chunk_id.hex()):
                raise
            return None

    def _claim(self, ids: list[bytes]) -> tuple[list[bytes], list[tuple[bytes, threading.Event]]]:
        mine, theirs = [], []
        with self._inflight_lock:
            for chunk_id in ids:
                event = self._inflight.get(chunk_id)
                if event is None:
                    self._inflight[chunk_id] = threading.Event()
                    mine.append(chunk_id)
                else:
                    theirs.append((chunk_id, event))
        return mine, theirs

    def _release(self, ids: list[bytes]) -> None:
        with self._inflight_lock:
            for chunk_id in ids:
                event = self._inflight.pop(chunk_id, None)
                if event is not None:
                    event.set()

    def _fetch(self, ids: list[bytes], keep: set[bytes]) -> dict[bytes, Piece]:
        gone: set[str] = set()
        for _attempt in range(FETCH_ATTEMPTS - 1):
            try:
                return self._fetch_once(ids, keep)
            except PacksGone as exc:
                # Packs the remote's collector deleted (their chunks are also in another
                # pack, or the read is of a version nothing reaches): forget them, also
                # while a listing taken before their deletion still names them, and look
                # again.
                gone |= exc.packs
                self.reload_index()
                self.index.discard(gone)
        return self._fetch_once(ids, keep)

    def _fetch_once(self, ids: list[bytes], keep: set[bytes]) -> dict[bytes, Piece]:
        """Fetch chunks from the remote: coalesced ranged GETs of their packs, several in
        flight; this thread checks each range's chunks as the range arrives, in order, and
        hands them to waiters at once (the GETs release the GIL; the checks are many small
        calls, kept to one thread so that threads do not queue for the GIL)."""
        ranges = coalesce(self._locate(ids))
        futures: list[Future[memoryview]] = [
            self._pool.submit(self._get_range, pack, group) for pack, group in ranges
        ]
        out: dict[bytes, Piece] = {}
        error: BaseException | None = None
        gone: set[str] = set()
        for (pack, group), future in zip(ranges, futures, strict=True):
            try:
                data = future.result()  # every GET is waited for before raising
                if error is None:
                    out.update(self._verify_range(pack, group, data, keep))
            except NotFoundError as exc:
                gone.add(pack)
                error = error or exc
            except BaseException as exc:
                error = error or exc
        if gone:
            raise PacksGone(str(error), gone) from error
        if error is not None:
            raise error
        return out

    def _get_range(self, pack: str, group: list[ChunkLocation]) -> memoryview:
        start = group[0].offset
        end = group[-1].offset + group[-1].stored
        data = memoryview(self.blobs.get_range(pack_key(pack), start, end - start))
        with self._counts_lock:
            self.fetched_bytes += len(data)
            self.fetches += 1
        return data

    def _verify_range(
        self, pack: str, group: list[ChunkLocation], data: memoryview, keep: set[bytes]
    ) -> dict[bytes, Piece]:
        """Check every chunk of a fetched range, queue them for the disk cache as one segment,
        then hand them to whoever waits for them."""
        out: dict[bytes, Piece] = {}
        start = group[0].offset
        where = f"{self.blobs.url}/{pack_key(pack)}"
        whole = all(bytes.fromhex(loc.chunk_id) in keep for loc in group)
        for loc in group:
            lo = loc.offset - start
            raw = decode_chunk(loc, data[lo : lo + loc.stored], where)
            chunk_id = bytes.fromhex(loc.chunk_id)
            if chunk_id in keep:
                # A range kept whole (a read-ahead's) is kept as views of its one buffer; one
                # kept in part (the ends of a read) as copies, not pinning the whole range.
                raw = raw if whole else bytes(raw)
                self.memory.put(chunk_id, raw)
            out[chunk_id] = raw
        self.cache.put_later(list(out.items()))
        self._release(list(out))
        return out

    def stats(self) -> dict[str, int]:
        index = self.index.stats()
        return {
            "packs": index["packs"],
            "chunks": index["chunks"],
            "stored_bytes": 0,
            "raw_bytes": index["raw_bytes"],
            "pending_chunks": 0,
            "pending_bytes": 0,
            "remote_fetches": self.fetches,
            "remote_bytes": self.fetched_bytes,
            "disk_cache_hits": self.cache.hits,
            "disk_cache_misses": self.cache.misses,
            "disk_cache_damaged": self.cache.damaged,
            "disk_cache_evicted": self.cache.evicted,
            "memory_cache_hits": self.memory.hits,
        }


def _copy_part(layout: _Layout, k: int, data: Piece, offset: int, view: memoryview) -> int:
    """Copy the bytes of chunk `k` (`data`) from file offset `offset` (within the chunk) to
    the start of `view`, as many as fit; returns how many."""
    lo = offset - int(layout.starts[k])
    n = min(len(data) - lo, len(view))
    view[:n] = data[lo : lo + n]
    return n


def batches(ids: list[bytes], sizes: dict[bytes, int], limit: int) -> Iterator[list[bytes]]:
    """`ids` in order, in batches of at least `limit` bytes (`sizes`), the last one smaller."""
    batch: list[bytes] = []
    size = 0
    for chunk_id in ids:
        batch.append(chunk_id)
        size += sizes[chunk_id]
        if size >= limit:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def coalesce(locations: Sequence[ChunkLocation]) -> list[tuple[str, list[ChunkLocation]]]:
    """Group chunk locations into ranged GETs: by pack, in pack order, neighbours joined when
    the gap between them is at most COALESCE_GAP and the range stays within MAX_RANGE."""
    by_pack: dict[str, list[ChunkLocation]] = {}
    for loc in {loc.chunk_id: loc for loc in locations}.values():
        by_pack.setdefault(loc.pack, []).append(loc)
    out: list[tuple[str, list[ChunkLocation]]] = []
    for pack, locs in by_pack.items():
        locs.sort(key=lambda loc: loc.offset)
        group = [locs[0]]
        for loc in locs[1:]:
            gap = loc.offset - (group[-1].offset + group[-1].stored)
            if gap <= COALESCE_GAP and loc.offset + loc.stored - group[0].offset <= MAX_RANGE:
                group.append(loc)
            else:
                out.append((pack, group))
                group = [loc]
        out.append((pack, group))
    # Earliest ranges first, so a read-ahead's front arrives first.
    return out


def decode_chunk(loc: ChunkLocation, stored: memoryview, where: str) -> Piece:
    """The raw bytes of a stored chunk, checked against its id (CorruptObjectError)."""
    if len(stored) != loc.stored:
        raise CorruptObjectError(
            f"pack {where} ends inside chunk {loc.chunk_id}; the remote is damaged: push the "
            "store to it again from a store that is intact"
        )
    raw: bytes | memoryview
    if loc.codec == 1:
        try:
            raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=loc.raw)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(
                f"chunk {loc.chunk_id} in pack {where} does not decode ({exc})"
            ) from None
    elif loc.codec == 0:
        raw = stored  # a view into the fetched range: no copy
    else:
        raise CorruptObjectError(f"chunk {loc.chunk_id} in pack {where} has codec {loc.codec}")
    if len(raw) != loc.raw or _native.blake3_hex(raw) != loc.chunk_id:
        raise CorruptObjectError(
            f"chunk {loc.chunk_id} in pack {where} does not match its hash; the remote is "
            "damaged: nothing of it was returned"
        )
    return raw
