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

Buffers are page-aligned (mmap): a `bytearray` starts 16 bytes into a page, which halves
copy speed. A buffer goes back to the pool before the reply is sent; that is safe because
pyfuse3 copies the returned buffer into the reply synchronously, with no checkpoint between
our return and the copy, and buffers are only handed out on the trio thread.
"""

from __future__ import annotations

import logging
import mmap
import threading
import time
from dataclasses import dataclass
from typing import Literal

import trio

from udrfs.catalog import Catalog, TableVersion

log = logging.getLogger(__name__)

ReadMode = Literal["thread", "inline", "auto"]
READ_MODES: tuple[ReadMode, ...] = ("thread", "inline", "auto")
DEFAULT_READ_MODE: ReadMode = "auto"

# A read counts as hot (its packs were in the page cache) when the engine finished it within
# a fixed 0.2 ms plus 2 GB/s: a cached 1 MiB read takes 0.1-0.3 ms, one from this machine's
# disk (1-2 GB/s, plus verifying each chunk's hash on first read) a millisecond or more.
HOT_READ_FIXED_SECONDS = 0.0002
HOT_READ_BYTES_PER_SECOND = 2e9

# How far ahead of a sequential reader of cold data the daemon reads on its own.
PREFETCH_WINDOW = 8 << 20
PREFETCH_BLOCK = 1 << 20

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
    """One open version file: its manifest, whether its packs looked cached lately, and
    where a sequential reader is expected next."""

    manifest: TableVersion
    hot: bool = False
    next_offset: int = 0
    prefetched_to: int = 0
    prefetching: bool = False


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
        self._scratch = threading.local()
        # Where prefetches run (none without a nursery): the daemon's, open while it serves.
        self.nursery = nursery

    async def read(self, opened: OpenVersion, offset: int, size: int) -> memoryview:
        """Up to `size` bytes of the version at `offset` (fewer only at the end of the file)."""
        manifest = opened.manifest
        length = min(size, manifest.size - offset)
        if length <= 0:
            return memoryview(b"")
        buf = self._buffers.acquire(length)
        try:
            view = memoryview(buf)[:length]
            inline = self.mode == "inline" or (self.mode == "auto" and opened.hot)
            if inline:
                start = time.perf_counter()
                filled = self._catalog.read_into(manifest, offset, view)
                elapsed = time.perf_counter() - start
            else:
                elapsed, filled = await trio.to_thread.run_sync(
                    self._timed_read, manifest, offset, view, limiter=self._limiter
                )
            opened.hot = elapsed < HOT_READ_FIXED_SECONDS + filled / HOT_READ_BYTES_PER_SECOND
            self._maybe_prefetch(opened, offset, filled)
            # Copy-free: the reply is built from this view before any other task runs.
            return view[:filled]
        finally:
            self._buffers.release(buf)

    def _maybe_prefetch(self, opened: OpenVersion, offset: int, filled: int) -> None:
        """A sequential reader of cold data: read the next window ahead in a worker thread,
        so that the disk and the engine's first-read hash checks overlap with answering."""
        sequential = offset == opened.next_offset
        opened.next_offset = offset + filled
        if not sequential or opened.hot or opened.prefetching or self.nursery is None:
            return
        start = max(opened.prefetched_to, offset + filled)
        end = min(opened.manifest.size, offset + filled + PREFETCH_WINDOW)
        if end - start >= PREFETCH_WINDOW // 2:
            opened.prefetching = True
            self.nursery.start_soon(self._prefetch, opened, start, end)

    async def _prefetch(self, opened: OpenVersion, start: int, end: int) -> None:
        try:
            await trio.to_thread.run_sync(
                self._warm, opened.manifest, start, end, limiter=self._prefetch_limiter
            )
            opened.prefetched_to = end
        except Exception:
            # Only a hint: the read that needs these bytes will report any error itself.
            log.debug("prefetch of %s [%d, %d) failed", opened.manifest.id, start, end)
        finally:
            opened.prefetching = False

    def _warm(self, manifest: TableVersion, start: int, end: int) -> None:
        scratch: mmap.mmap | None = getattr(self._scratch, "buf", None)
        if scratch is None:
            scratch = self._scratch.buf = mmap.mmap(-1, PREFETCH_BLOCK)
        view = memoryview(scratch)
        offset = start
        while offset < end:
            offset += self._catalog.read_into(
                manifest, offset, view[: min(PREFETCH_BLOCK, end - offset)]
            )

    def _timed_read(
        self, manifest: TableVersion, offset: int, view: memoryview
    ) -> tuple[float, int]:
        # Timed in the worker: the hand-off back to the loop is not the engine's time.
        start = time.perf_counter()
        filled = self._catalog.read_into(manifest, offset, view)
        return time.perf_counter() - start, filled
