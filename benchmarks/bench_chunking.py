"""Throughput of the native chunk engine beside the baselines that bound it.

Measures, on ~1 GiB of pseudo-random, somewhat compressible bytes (median of 3 runs):

* chunk + hash from memory on one core (``chunk_boundaries``: FastCDC + BLAKE3, nothing stored),
  and BLAKE3 alone for reference;
* ``ingest_file`` of a page-cached file into a fresh store (chunk + hash + pack write) against
  ``cp`` of the same file, and ``ingest_file`` + ``flush`` against ``cp`` + ``sync``;
* ``read_into`` of the whole file in sequential 1 MiB reads against reading the source file
  the same way, cold (page cache dropped first; needs root) and with the packs in the page
  cache. Every chunk read from a pack is verified (BLAKE3) on every read, so the warm figure
  is bounded by BLAKE3 alone; a read of chunks already in the engine's verified-bytes cache
  (filled by ``prefetch``, the mount's read-ahead) is a memory copy. Read figures come with
  the CPU seconds per GB this process spent, which the load of shared cores barely moves.

Run: ``python benchmarks/bench_chunking.py [--size-mib 1024] [--dir /path/on/the/store/disk]``.
Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from charts import Panel, save_chart

from udrfs import _native
from udrfs.store.format import StoreFormat

# A new store's sizes (udrfs/store/format.py).
_NEW = StoreFormat()
CHUNK_MIN, CHUNK_AVG, CHUNK_MAX = _NEW.chunk_min, _NEW.chunk_avg, _NEW.chunk_max
PACK_TARGET = _NEW.pack_target
HAS_PREFETCH = hasattr(_native.ChunkEngine, "prefetch")
READ_SIZE = 1024 * 1024
RUNS = 3


def make_data(size: int) -> np.ndarray:
    """Random bytes with 6 bits of entropy each: no dedup, zstd would save about a quarter."""
    rng = np.random.default_rng(20261122)
    data = np.frombuffer(rng.bytes(size), dtype=np.uint8) & 0x3F
    return data + ord("0")  # printable, like CSV digits


@dataclass(frozen=True)
class Timing:
    """Medians over RUNS: wall seconds, and CPU seconds of this process (all its threads;
    nearly independent of what else the shared cores run)."""

    wall: float
    cpu: float

    def rate(self, size: int) -> str:
        return f"{gbps(size, self.wall)}  cpu {self.cpu / (size / 1e9):5.3f} s/GB"


def timed(run: Callable[[], object], setup: Callable[[], object] | None = None) -> Timing:
    walls, cpus = [], []
    for _ in range(RUNS):
        if setup is not None:
            setup()
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return Timing(statistics.median(walls), statistics.median(cpus))


def median_seconds(run: Callable[[], object], setup: Callable[[], object] | None = None) -> float:
    return timed(run, setup).wall


def aligned_buffer(size: int) -> mmap.mmap:
    # Page-aligned: a bytearray starts 16 bytes into a page, which halves copy speed.
    return mmap.mmap(-1, size)


def read_file_sequentially(path: Path, buf: mmap.mmap) -> None:
    with open(path, "rb", buffering=0) as f:
        view = memoryview(buf)
        while f.readinto(view):
            pass


def read_chunks_sequentially(
    engine: _native.ChunkEngine, chunks: _native.ChunkList, buf: mmap.mmap
) -> None:
    offset = 0
    while True:
        n = engine.read_into(chunks, offset, buf)
        if n == 0:
            return
        offset += n


def drop_page_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


def open_engine(store: Path, read_cache_bytes: int | None = None) -> _native.ChunkEngine:
    version = _NEW.format_version
    if read_cache_bytes is None:
        return _native.ChunkEngine(
            str(store), CHUNK_MIN, CHUNK_AVG, CHUNK_MAX, PACK_TARGET, version
        )
    return _native.ChunkEngine(
        str(store), CHUNK_MIN, CHUNK_AVG, CHUNK_MAX, PACK_TARGET, version, read_cache_bytes
    )


def read_ahead_timings(
    store: Path, chunks: _native.ChunkList, size: int, buf: mmap.mmap
) -> tuple[Timing, Timing]:
    """(prefetch, then read_into of the prefetched chunks) over the whole file, in 32 MiB
    windows through a 64 MiB cache."""
    window = 32 * 1024 * 1024
    engine = open_engine(store, read_cache_bytes=2 * window)
    fills, copies = [], []
    for _ in range(RUNS):
        fill, copy = [0.0, 0.0], [0.0, 0.0]
        for start in range(0, size, window):
            t0, c0 = time.perf_counter(), time.process_time()
            engine.prefetch(chunks, start, window)
            t1, c1 = time.perf_counter(), time.process_time()
            offset = start
            while offset < min(size, start + window):
                offset += engine.read_into(chunks, offset, buf)
            fill = [fill[0] + t1 - t0, fill[1] + c1 - c0]
            copy = [copy[0] + time.perf_counter() - t1, copy[1] + time.process_time() - c1]
        fills.append(fill)
        copies.append(copy)

    def median(values: list[list[float]]) -> Timing:
        return Timing(
            statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        )

    return median(fills), median(copies)


def gbps(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e9:6.2f} GB/s"


def in_memory_rows(data: np.ndarray, rates: dict[str, float]) -> list[tuple[str, str, str]]:
    """Chunk + hash and hash alone, from memory, on the calling thread (GB/s into `rates`)."""
    chunk_s = median_seconds(
        lambda: _native.chunk_boundaries(data, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
    )
    hashing = timed(lambda: _native.blake3_hex(data))
    rates["chunk + hash"] = data.nbytes / chunk_s / 1e9
    rates["BLAKE3 alone"] = data.nbytes / hashing.wall / 1e9
    return [
        ("chunk + hash, 1 core (chunk_boundaries)", gbps(data.nbytes, chunk_s), ""),
        ("  BLAKE3 alone, 1 core (blake3_hex)", hashing.rate(data.nbytes), ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (same disk)")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024

    data = make_data(size)
    rates: dict[str, float] = {}  # GB/s, for the chart
    rows = in_memory_rows(data, rates)

    scratch = Path(tempfile.mkdtemp(prefix="udr-bench-", dir=args.dir))
    try:
        src = scratch / "source.bin"
        data.tofile(src)
        del data
        dst = scratch / "copy.bin"

        def remove_copy() -> None:
            dst.unlink(missing_ok=True)
            subprocess.run(["sync"], check=True)  # start each run with no dirty pages

        cp_s = median_seconds(lambda: subprocess.run(["cp", src, dst], check=True), remove_copy)
        cp_sync_s = median_seconds(
            lambda: subprocess.run(f"cp '{src}' '{dst}' && sync '{dst}'", shell=True, check=True),
            remove_copy,
        )
        remove_copy()

        ingest_times, flush_times = [], []
        store = scratch / "store"
        engine = chunks = None
        for _ in range(RUNS):
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir()
            subprocess.run(["sync"], check=True)  # start each run with no dirty pages
            engine = open_engine(store)
            start = time.perf_counter()
            chunks = engine.ingest_file(str(src))
            ingest_times.append(time.perf_counter() - start)
            engine.flush()
            flush_times.append(time.perf_counter() - start)
        assert engine is not None and chunks is not None
        ingest_s = statistics.median(ingest_times)
        ingest_flush_s = statistics.median(flush_times)
        rates.update(
            {
                "cp": size / cp_s / 1e9,
                "ingest_file": size / ingest_s / 1e9,
                "cp + sync": size / cp_sync_s / 1e9,
                "ingest_file + flush": size / ingest_flush_s / 1e9,
            }
        )
        rows.append(("cp (page cache)", gbps(size, cp_s), ""))
        rows.append(("ingest_file", gbps(size, ingest_s), f"{cp_s / ingest_s:5.0%} of cp"))
        rows.append(("cp + sync", gbps(size, cp_sync_s), ""))
        rows.append(
            (
                "ingest_file + flush (fsync)",
                gbps(size, ingest_flush_s),
                f"{cp_sync_s / ingest_flush_s:5.0%} of cp + sync",
            )
        )

        buf = aligned_buffer(READ_SIZE)
        engines: list[_native.ChunkEngine] = []

        def open_fresh() -> None:
            engines[:] = [open_engine(store)]

        if os.geteuid() == 0:
            cold_file = timed(lambda: read_file_sequentially(src, buf), drop_page_cache)

            def cold_engine() -> None:
                drop_page_cache()
                open_fresh()

            cold_read = timed(
                lambda: read_chunks_sequentially(engines[0], chunks, buf), cold_engine
            )
            rates["file read, cold"] = size / cold_file.wall / 1e9
            rates["read_into, cold"] = size / cold_read.wall / 1e9
            rows.append(("read source file cold, 1 MiB reads", cold_file.rate(size), ""))
            rows.append(
                (
                    "read_into 1 MiB cold (verifies)",
                    cold_read.rate(size),
                    f"{cold_file.wall / cold_read.wall:5.0%} of file read",
                )
            )
        file_read = timed(lambda: read_file_sequentially(src, buf))
        # Packs in the page cache. Each pass verifies every chunk again, in a fresh engine
        # and in one that read them all before alike.
        first_read = timed(lambda: read_chunks_sequentially(engines[0], chunks, buf), open_fresh)
        fresh = engines[0]
        warm_read = timed(lambda: read_chunks_sequentially(fresh, chunks, buf))
        rates["file read, warm"] = size / file_read.wall / 1e9
        rates["read_into, warm"] = size / warm_read.wall / 1e9
        rows.append(("read source file, 1 MiB reads", file_read.rate(size), ""))
        for name, timing in (
            ("read_into 1 MiB, fresh engine (verifies)", first_read),
            ("read_into 1 MiB, again (verifies again)", warm_read),
        ):
            rows.append(
                (name, timing.rate(size), f"{file_read.wall / timing.wall:5.0%} of file read")
            )
        # The mount's read-ahead: chunks verified into the cache, then copied out of it.
        # (Skipped by engines without a read-ahead, to measure older code with this script.)
        if HAS_PREFETCH:
            for name, timing in zip(
                ("prefetch (read + verify into the cache)", "read_into 1 MiB of prefetched chunks"),
                read_ahead_timings(store, chunks, size, buf),
                strict=True,
            ):
                rows.append(
                    (name, timing.rate(size), f"{file_read.wall / timing.wall:5.0%} of file read")
                )
        stats = fresh.stats()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"{args.size_mib} MiB, chunks {CHUNK_MIN}/{CHUNK_AVG}/{CHUNK_MAX}, median of {RUNS}")
    print(f"store: {stats['packs']} packs, {stats['chunks']} chunks")
    width = max(len(r[0]) for r in rows)
    for name, rate, note in rows:
        print(f"  {name:<{width}}  {rate}  {note}")
    panels = [
        Panel(
            "chunk + hash, 1 core",
            "GB/s",
            ("chunk + hash", rates["chunk + hash"]),
            [("BLAKE3 alone", rates["BLAKE3 alone"])],
        ),
        Panel(
            "ingest, page cache",
            "GB/s",
            ("ingest_file", rates["ingest_file"]),
            [("cp", rates["cp"])],
        ),
        Panel(
            "ingest, durable",
            "GB/s",
            ("ingest_file + flush", rates["ingest_file + flush"]),
            [("cp + sync", rates["cp + sync"])],
        ),
        Panel(
            "1 MiB reads, packs in the page cache",
            "GB/s",
            ("read_into (verifies)", rates["read_into, warm"]),
            [("file read", rates["file read, warm"]), ("BLAKE3 alone", rates["BLAKE3 alone"])],
        ),
    ]
    if "read_into, cold" in rates:
        panels.append(
            Panel(
                "1 MiB reads, cold",
                "GB/s",
                ("read_into (verifies)", rates["read_into, cold"]),
                [("file read", rates["file read, cold"])],
            )
        )
    save_chart(
        "bench_chunking", f"The chunk engine on {args.size_mib} MiB (median of {RUNS})", panels
    )


if __name__ == "__main__":
    main()
