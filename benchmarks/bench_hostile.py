"""The daemon under hostile writes: its memory and its answers, beside an ordinary copy.

    python benchmarks/bench_hostile.py [--size-gb 1.0] [--max-file-size 64G]

Three daemons, one after the other, each on a fresh store (a daemon's peak memory, VmHWM,
only grows, so each scenario gets its own):
* idle: mounted, nothing written;
* baseline: `cp` of a >= 1 GB Parquet file into `.tx` (an ordinary large write);
* hostile: the writes of the trial that once took 21.6 GB and 13 minutes: `truncate -s 1T`
  and a write at a 1 TiB offset (refused: EFBIG), a sparse file of --max-file-size (`truncate
  -s` to the limit: the largest file the daemon accepts, all hole) and a write just below the
  limit into another, a 512 MiB `.control` line without a newline, the first sparse file
  reopened and written, and a sparse Parquet file whose footer claims 3 GiB.
For each: the daemon's peak RSS, the wall time, and how long `ls @main` took meanwhile (a
thread lists it in a loop: the daemon must stay responsive). The bound stated in
docs/mount.md is 512 MiB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_mount import make_big_parquet  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

from udrfs.catalog import Catalog  # noqa: E402
from udrfs.fs import daemon  # noqa: E402

BOUND = 512 << 20


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) << 10
    return fields


class Probe:
    """Lists `@main` in a loop on a thread; the latencies of the listings."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            os.listdir(self.directory)
            self.latencies.append(time.perf_counter() - start)
            time.sleep(0.01)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def scenario(
    work: Path, name: str, limit: str, act: Callable[[Path], None]
) -> tuple[int, int, float, list[float]]:
    """(idle RSS, peak RSS, seconds, listing latencies) of a fresh daemon running `act(tx)`."""
    store, mountpoint = work / f"hostile-{name}-store", work / f"hostile-{name}-mnt"
    shutil.rmtree(store, ignore_errors=True)
    Catalog.init(store)
    mountpoint.mkdir(parents=True, exist_ok=True)
    options = daemon.MountOptions(
        store=store,
        mountpoint=mountpoint,
        log_file=work / f"hostile-{name}.log",
        max_file_size=daemon.parse_size(limit),
    )
    pid = daemon.start_background(options)
    try:
        idle = memory(pid)["VmRSS"]
        tx = mountpoint / "@main" / ".tx" / name
        tx.mkdir()
        with Probe(mountpoint / "@main") as probe:
            start = time.perf_counter()
            act(tx)
            (tx / ".control").read_text()  # every file staged
            seconds = time.perf_counter() - start
        peak = memory(pid)["VmHWM"]
    finally:
        daemon.unmount(mountpoint, lazy=True)
        shutil.rmtree(store, ignore_errors=True)
    return idle, peak, seconds, probe.latencies


def sh(command: str) -> int:
    return subprocess.run(["bash", "-c", command], capture_output=True).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--max-file-size", default="64G")
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    big = make_big_parquet(args.work / "big.parquet", args.size_gb)
    limit = daemon.parse_size(args.max_file_size)

    def nothing(tx: Path) -> None:
        pass

    def copy(tx: Path) -> None:
        assert sh(f"cp {big} {tx / 'big.parquet'}") == 0

    def hostile(tx: Path) -> None:
        refused = [
            f"truncate -s 1T {tx / 'a.parquet'}",
            f"printf x | dd of={tx / 'b.parquet'} bs=1 seek=1T status=none",
            f"head -c 512M /dev/zero | tr '\\0' a > {tx / '.control'}",
        ]
        crafted = (
            f"f = open('{tx / 'e.parquet'}', 'wb'); f.write(b'PAR1'); f.seek({limit} - 8); "
            "f.write((3 << 30).to_bytes(4, 'little') + b'PAR1')"
        )
        accepted = [
            f"truncate -s {limit} {tx / 'c.parquet'}",
            f"printf x | dd of={tx / 'd.parquet'} bs=1 seek={limit - 1} status=none",
            f"printf x | dd of={tx / 'c.parquet'} bs=1 conv=notrunc status=none",
            f'{sys.executable} -c "{crafted}"',  # a footer that claims 3 GiB
        ]
        assert all(sh(command) != 0 for command in refused)
        assert all(sh(command) == 0 for command in accepted)

    runs = [
        ("idle daemon", nothing),
        (f"cp of a {big.stat().st_size / 1e9:.2f} GB file", copy),
        (f"hostile writes (limit {args.max_file_size})", hostile),
    ]
    print(f"bound: {BOUND >> 20} MiB peak RSS; cores: {os.cpu_count()}\n")
    print(
        f"{'scenario':<34} {'idle MiB':>9} {'peak MiB':>9} {'seconds':>8} "
        f"{'ls p50 ms':>10} {'ls max ms':>10}"
    )
    peaks: dict[str, float] = {}
    medians: dict[str, float] = {}
    for label, act in runs:
        idle, peak, seconds, latencies = scenario(
            args.work, label.split()[0], args.max_file_size, act
        )
        p50 = statistics.median(latencies) * 1e3 if latencies else float("nan")
        worst = max(latencies) * 1e3 if latencies else float("nan")
        print(
            f"{label:<34} {idle / 2**20:>9.0f} {peak / 2**20:>9.0f} {seconds:>8.1f} "
            f"{p50:>10.2f} {worst:>10.2f}"
        )
        peaks[label], medians[label] = peak / 2**20, p50
    hostile_label = runs[-1][0]
    save_chart(
        "bench_hostile",
        "The daemon under hostile writes, beside an idle daemon and an ordinary copy",
        [
            Panel(
                "peak memory (VmHWM)",
                "MiB",
                (hostile_label, peaks[hostile_label]),
                [(k, v) for k, v in peaks.items() if k != hostile_label],
                better="lower",
                target=BOUND / 2**20,
            ),
            Panel(
                "ls of @main meanwhile (p50)",
                "ms",
                (hostile_label, medians[hostile_label]),
                [(k, v) for k, v in medians.items() if k != hostile_label],
                better="lower",
            ),
        ],
    )


if __name__ == "__main__":
    main()
