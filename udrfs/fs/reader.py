"""Answering reads of version files: bytes from the catalog into page-aligned buffers.

The catalog's `read_into` runs in the native engine with the GIL released. Where it runs is
the one performance decision of the read path (figures in docs/mount.md):

* ``thread``: every request is handed to a worker thread. The trio loop never waits for
  the disk, and the kernel's parallel readahead requests are served on all cores at once;
  each hand-off costs two thread switches, which on busy cores is most of a request.
* ``inline``: the engine is called on the loop itself. Cheapest per request when the packs
  are in the page cache, but a read from disk stalls every other request meanwhile.
* ``auto`` (the default): per open file, start in a worker thread; a read the engine
  finished quickly (see `HOT_READ_*`) shows the packs are cached, and the file's next reads
  run inline until one is slow again, which sends the file back to the thread. The loop is
  held only by reads that were hot a moment ago: at most one slow read per file.

Every byte handed to the kernel was verified against its chunk's BLAKE3 when the engine
read it from its pack, on every read (docs/mount.md, "Reads"). A sequential reader is read
ahead: a worker thread has the engine read and verify the next window into its cache of
verified chunk bytes, so the reader's requests are memory copies on the loop while the next
chunks are being read and hashed on another core.

Buffers are page-aligned (mmap): a `bytearray` starts 16 bytes into a page, which halves
copy speed. A buffer goes back to the pool before the reply is sent; that is safe because
pyfuse3 copies the returned buffer into the reply synchronously, with no checkpoint between
our return and the copy, and buffers are only handed out on the trio thread.
"""

from __future__ import annotations

import errno
import logging
import mmap
import re
import time
from dataclasses import dataclass
from typing import Literal

import pyfuse3
import trio

from udrfs.catalog import Catalog, TableVersion
from udrfs.errors import CorruptObjectError

log = logging.getLogger(__name__)

ReadMode = Literal["thread", "inline", "auto"]
READ_MODES: tuple[ReadMode, ...] = ("thread", "inline", "auto")
DEFAULT_READ_MODE: ReadMode = "auto"

# A read counts as hot (its packs were in the page cache) when the engine finished it within
# a fixed 0.2 ms plus 2 GB/s: a 1 MiB read of read-ahead chunks takes ~0.1 ms, one from
# page-cached packs (read and hashed) ~0.3 ms, one from this machine's disk (1-2 GB/s) a
# millisecond or more.
HOT_READ_FIXED_SECONDS = 0.0002
HOT_READ_BYTES_PER_SECOND = 2e9
# A small read still reads and hashes the whole chunks it touches (up to 256 KiB each at
# either end), so it is timed as a read of at least this many bytes.
HOT_READ_MIN_BYTES = 512 << 10

# How far ahead of a sequential reader the daemon reads and verifies on its own. The engine's
# cache (64 MiB unless UDR_READ_CACHE_MIB says otherwise) holds several readers' windows.
# A store read from a remote lets the window double each time the reader reaches the window
# read ahead before, up to its `read_ahead_limit` (128 MiB), so that a long sequential read
# keeps several ranged GETs in flight while a short one fetches little more than it reads;
# a window found all in the disk cache sets it back to this one.
PREFETCH_WINDOW = 8 << 20
# A reader is read ahead only once it has read this much in order: a query engine reading a
# few column chunks (each one run of in-order requests, the kernel's readahead) must not have
# the columns between them fetched (from a remote: bytes over the network it never reads).
PREFETCH_AFTER = 8 << 20

# Damaged chunks are logged once per pack (a damaged pack fails many reads); a bounded memory.
_PACK_IN_MESSAGE = re.compile(r"pack ([0-9a-f]{64})")
_REPORTED_MAX = 4096

_MIN_BUFFER = 128 * 1024
# Enough for every request in flight at once (pyfuse3 runs up to ~100 handler tasks).
_POOL_LIMIT = 64


class AlignedBuffers:
    """A pool of page-aligned buffers in power-of-two sizes."""

    def __init__(self) -> None:
        self._free: dict[int, list[mmap.mmap]] = {}

    def acquire(self, size: int) -> mmap.mmap:
        capacity = max(_MIN_BUFFER, 1 << (size - 1).bit_length())
        free = self._free.get(capacity)
        if free:
            return free.pop()
        return mmap.mmap(-1, capacity)

    def release(self, buf: mmap.mmap) -> None:
        free = self._free.setdefault(len(buf), [])
        # Past the limit the buffer is dropped, not closed: the reply may still hold a view.
        if len(free) < _POOL_LIMIT:
            free.append(buf)


@dataclass
class OpenVersion:
    """One open version file: its manifest, whether its packs looked cached lately, where a
    sequential reader is expected next, and how far the read-ahead got."""

    manifest: TableVersion
    hot: bool = False
    next_offset: int = 0
    run_start: int = 0  # where the reader's current run of in-order reads began
    sequential: bool = False
    prefetched_to: int = 0
    prefetching: bool = False
    window: int = PREFETCH_WINDOW
    window_start: int = 0  # where the last window read ahead began


class VersionReader:
    """Reads byte ranges of table versions for the FUSE `read` handler."""

    def __init__(
        self,
        catalog: Catalog,
        mode: ReadMode = DEFAULT_READ_MODE,
        nursery: trio.Nursery | None = None,
    ) -> None:
        if mode not in READ_MODES:
            raise ValueError(f"read mode must be one of {', '.join(READ_MODES)}, not {mode!r}")
        self.mode = mode
        self._catalog = catalog
        self._buffers = AlignedBuffers()
        # Two cores: more threads than this only adds contention in the engine.
        self._limiter = trio.CapacityLimiter(8)
        self._prefetch_limiter = trio.CapacityLimiter(2)
        self._reported: set[str] = set()
        self._window_limit = max(PREFETCH_WINDOW, catalog.read_ahead_limit)
        # Where prefetches run (none without a nursery): the daemon's, open while it serves.
        self.nursery = nursery

    async def read(self, opened: OpenVersion, offset: int, size: int) -> memoryview:
        """Up to `size` bytes of the version at `offset` (fewer only at the end of the file).
        Damaged stored bytes are EIO, logged once per pack."""
        try:
            return await self._read(opened, offset, size)
        except CorruptObjectError as exc:
            self._report(opened.manifest, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None

    def _report(self, manifest: TableVersion, exc: CorruptObjectError) -> None:
        message = str(exc)
        found = _PACK_IN_MESSAGE.search(message)
        key = found.group(1) if found else message
        if key in self._reported:
            log.debug("read of %s v%d failed: %s", manifest.table, manifest.version, message)
            return
        if len(self._reported) >= _REPORTED_MAX:
            self._reported.clear()
        self._reported.add(key)
        log.error(
            "read of %s v%d failed (EIO; later failures in the same pack are not logged): %s",
            manifest.table,
            manifest.version,
            message,
        )

    async def _read(self, opened: OpenVersion, offset: int, size: int) -> memoryview:
        manifest = opened.manifest
        length = min(size, manifest.size - offset)
        if length <= 0:
            return memoryview(b"")
        buf = self._buffers.acquire(length)
        try:
            view = memoryview(buf)[:length]
            inline = self.mode == "inline" or (self.mode == "auto" and opened.hot)
            filled = 0
            if inline:
                # Only what this machine holds: a read that would wait for the network (of a
                # store on a remote) goes on in a worker thread.
                start = time.perf_counter()
                filled = self._catalog.read_local_into(manifest, offset, view)
                elapsed = time.perf_counter() - start
            if filled < length:
                elapsed, more = await trio.to_thread.run_sync(
                    self._timed_read,
                    manifest,
                    offset + filled,
                    view[filled:],
                    limiter=self._limiter,
                )
                filled += more
            hashed = max(filled, HOT_READ_MIN_BYTES)
            opened.hot = elapsed < HOT_READ_FIXED_SECONDS + hashed / HOT_READ_BYTES_PER_SECOND
            self._maybe_prefetch(opened, offset, filled)
            # Copy-free: the reply is built from this view before any other task runs.
            return view[:filled]
        finally:
            self._buffers.release(buf)

    def _maybe_prefetch(self, opened: OpenVersion, offset: int, filled: int) -> None:
        """A sequential reader: read and verify ahead of it in a worker thread, so that the
        disk and the hashing overlap with answering (hot or cold alike: hashing is the larger
        part of a read from page-cached packs). The engine reads and hashes each chunk once,
        whichever of the reader and the read-ahead gets to it first."""
        opened.sequential = sequential = offset == opened.next_offset
        if not sequential:
            opened.run_start = offset
        opened.next_offset = offset + filled
        if (
            sequential
            and opened.next_offset - opened.run_start >= PREFETCH_AFTER
            and not opened.prefetching
            and self.nursery is not None
            and self._prefetch_range(opened) is not None
        ):
            opened.prefetching = True
            self.nursery.start_soon(self._prefetch, opened)

    @staticmethod
    def _prefetch_range(opened: OpenVersion) -> tuple[int, int] | None:
        """The next window to read ahead, once the reader is within half a window of where
        the read-ahead got to."""
        start = max(opened.prefetched_to, opened.next_offset)
        end = min(opened.manifest.size, opened.next_offset + opened.window)
        return (start, end) if end - start >= opened.window // 2 else None

    async def _prefetch(self, opened: OpenVersion) -> None:
        try:
            await trio.to_thread.run_sync(self._read_ahead, opened, limiter=self._prefetch_limiter)
        except Exception:
            # Only a hint: the read that needs these bytes will report any error itself.
            log.debug("read-ahead of %s failed", opened.manifest.id, exc_info=True)
        finally:
            opened.prefetching = False

    def _read_ahead(self, opened: OpenVersion) -> None:
        # In the worker thread: window after window while the reader reads on in order and
        # keeps up, without a round trip through the loop in between (the reader's position
        # is plain attributes the loop updates).
        while opened.sequential and (window := self._prefetch_range(opened)) is not None:
            start, end = window
            asked = self._catalog.prefetch(opened.manifest, start, end - start)
            opened.prefetched_to = end
            if not asked:
                # All of it was cached: the engine's memory holds a local window, not more
                # (a larger one would leave most of it to the reader, unread ahead).
                opened.window = PREFETCH_WINDOW
            elif opened.next_offset >= opened.window_start:
                opened.window = min(opened.window * 2, self._window_limit)
            opened.window_start = start

    def _timed_read(
        self, manifest: TableVersion, offset: int, view: memoryview
    ) -> tuple[float, int]:
        # Timed in the worker: the hand-off back to the loop is not the engine's time.
        start = time.perf_counter()
        filled = self._catalog.read_into(manifest, offset, view)
        return time.perf_counter() - start, filled
