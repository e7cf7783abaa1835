"""Writing through `.tx`: copy throughput beside a local copy, and commit latency.

    python benchmarks/bench_tx.py [--size-gb 1.0] [--repeat 3] [--commits 50]

Measured, in one run:
* `cp` of a >= 1 GB Parquet file (incompressible columns, from the page cache) into a fresh
  store's `.tx/` directory, beside `cp` of the same file to the same local disk, taken in
  alternation (the machine's load drifts); median of --repeat. Two figures each: when `cp`
  returns, and when the copy is durable (`.tx`: staged, which `cat .control` waits for;
  local: cp + fsync). Each `.tx` copy goes into a new store, so every chunk is new.
* the commit of that staged gigabyte through `.control` (write of `commit\\n` to return);
* commit latency through `.control` for transactions of 1 and of 10 small tables (staged
  first; the time of the `write` of `commit\\n`, which returns once the commit is visible
  under `@main/`), p50/p95/p99 of --commits each; and `echo commit > .control` from bash
  for 1 table (with bash's start).

The work directory (default data/bench) caches the generated file; the stores are removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_mount import make_big_parquet, quiet_disk  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

from udrfs.catalog import Catalog  # noqa: E402
from udrfs.fs import daemon  # noqa: E402


def cp(source: Path, target: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    return time.perf_counter() - start


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Mounted:
    """A fresh store mounted in a background daemon, unmounted and removed on exit."""

    def __init__(self, work: Path, name: str) -> None:
        self.store = work / f"{name}-store"
        self.mountpoint = work / f"{name}-mnt"
        self.log = work / f"{name}.log"

    def __enter__(self) -> Mounted:
        shutil.rmtree(self.store, ignore_errors=True)
        Catalog.init(self.store)
        self.mountpoint.mkdir(exist_ok=True)
        if os.path.ismount(self.mountpoint):
            daemon.unmount(self.mountpoint, lazy=True)
        daemon.start_background(
            daemon.MountOptions(store=self.store, mountpoint=self.mountpoint, log_file=self.log)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        daemon.unmount(self.mountpoint, lazy=True)
        shutil.rmtree(self.store, ignore_errors=True)

    def tx(self, name: str) -> Path:
        path = self.mountpoint / "@main" / ".tx" / name
        path.mkdir()
        return path


def commit(tx: Path) -> float:
    """Seconds for the write of `commit` to `.control` to return (the commit is visible)."""
    fd = os.open(tx / ".control", os.O_WRONLY)
    try:
        start = time.perf_counter()
        os.write(fd, b"commit\n")
        return time.perf_counter() - start
    finally:
        os.close(fd)


def engine_stream(work: Path, big: Path) -> float:
    """Seconds for the chunk engine alone (no FUSE) to stream the file into a new store in
    1 MiB writes, as the daemon does: the floor of a copy into `.tx`."""
    store = work / "tx-engine-store"
    shutil.rmtree(store, ignore_errors=True)
    catalog = Catalog.init(store)
    block = bytearray(1 << 20)
    try:
        with open(big, "rb", buffering=0) as source:
            start = time.perf_counter()
            stream = catalog.stream()
            while n := source.readinto(block):
                stream.write(memoryview(block)[:n])
            catalog.finish_stream(stream)
            catalog.flush_chunks()
            return time.perf_counter() - start
    finally:
        shutil.rmtree(store, ignore_errors=True)


def copy_figures(work: Path, big: Path, repeat: int) -> dict[str, list[float]]:
    keys = ("local", "local_sync", "tx", "tx_staged", "commit_big", "engine")
    figures: dict[str, list[float]] = {k: [] for k in keys}
    big.read_bytes()  # the source in the page cache for both copies
    local = work / "tx-local-copy.parquet"
    for _ in range(repeat):
        local.unlink(missing_ok=True)
        quiet_disk()
        took = cp(big, local)
        start = time.perf_counter()
        fsync_path(local)
        figures["local"].append(took)
        figures["local_sync"].append(took + time.perf_counter() - start)
        local.unlink()
        with Mounted(work, "tx-copy") as m:
            tx = m.tx("copy")
            quiet_disk()
            start = time.perf_counter()
            took = cp(big, tx / "big.parquet")
            status = (tx / ".control").read_text()  # waits until the file is staged
            figures["tx"].append(took)
            figures["tx_staged"].append(time.perf_counter() - start)
            assert "staged big.parquet" in status, status
            figures["commit_big"].append(commit(tx))
        quiet_disk()
        figures["engine"].append(engine_stream(work, big))
    return figures


def commit_latencies(work: Path, tables: int, commits: int) -> list[float]:
    out = []
    with Mounted(work, f"tx-commit{tables}") as m:
        for i in range(commits):
            tx = m.tx(f"c{i}")
            for t in range(tables):
                data = pa.table({"id": pa.array(range(100), pa.int64()), "gen": [i] * 100})
                pq.write_table(data, tx / f"table_{t}.parquet")
            assert "staged" in (tx / ".control").read_text()
            out.append(commit(tx))
            shutil.rmtree(tx)
    return out


def echo_latencies(work: Path, commits: int) -> list[float]:
    out = []
    with Mounted(work, "tx-echo") as m:
        for i in range(commits):
            tx = m.tx(f"e{i}")
            pq.write_table(pa.table({"gen": [i]}), tx / "table_0.parquet")
            (tx / ".control").read_text()
            start = time.perf_counter()
            subprocess.run(["bash", "-c", f"echo commit > {tx / '.control'}"], check=True)
            out.append(time.perf_counter() - start)
            shutil.rmtree(tx)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--commits", type=int, default=50)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    big = make_big_parquet(args.work / "big.parquet", args.size_gb)
    size_gb = big.stat().st_size / 1e9
    print(f"file: {size_gb:.2f} GB; median of {args.repeat}; cores: {os.cpu_count()}")

    copies = copy_figures(args.work, big, args.repeat)
    med: Callable[[str], float] = lambda k: statistics.median(copies[k])  # noqa: E731
    print(f"\n{'copy of the file':<44} {'.tx':>9} {'local':>9} {'unit':<5} {'ratio':>7}  target")
    for name, tx_key, local_key, target in (
        ("cp returns", "tx", "local", ">= 0.60x"),
        ("durable (.tx: staged; local: cp + fsync)", "tx_staged", "local_sync", ""),
    ):
        tx_rate, local_rate = size_gb / med(tx_key), size_gb / med(local_key)
        ratio = tx_rate / local_rate
        print(f"{name:<44} {tx_rate:>9.3f} {local_rate:>9.3f} GB/s  {ratio:>6.2f}x  {target}")
    engine_rate, local_rate = size_gb / med("engine"), size_gb / med("local_sync")
    print(
        f"{'engine alone: stream, 1 MiB writes, durable':<44} {engine_rate:>9.3f} "
        f"{local_rate:>9.3f} GB/s  {engine_rate / local_rate:>6.2f}x"
    )
    print(f"{'commit of the staged file (ms)':<44} {med('commit_big') * 1e3:>9.2f}")

    header = f"{'p50':>7} {'p95':>7} {'p99':>7}  target"
    print(f"\n{'commit latency through .control (ms)':<44} {header}")
    latency: dict[str, float] = {}
    for tables in (1, 10):
        ms = [s * 1e3 for s in commit_latencies(args.work, tables, args.commits)]
        p50, p95, p99 = (percentile(ms, p) for p in (50, 95, 99))
        label = f"{tables} table{'s' if tables > 1 else ''}, write of 'commit'"
        latency[f"{tables} table{'s' if tables > 1 else ''}"] = p50
        print(f"{label:<44} {p50:>7.2f} {p95:>7.2f} {p99:>7.2f}  p50 < 10")
    ms = [s * 1e3 for s in echo_latencies(args.work, max(10, args.commits // 2))]
    p50, p95, p99 = (percentile(ms, p) for p in (50, 95, 99))
    latency["1 table, bash echo"] = p50
    print(f"{'1 table, bash echo (with its start)':<44} {p50:>7.2f} {p95:>7.2f} {p99:>7.2f}")
    rate = {key: size_gb / med(key) for key in ("tx", "local", "tx_staged", "local_sync")}
    save_chart(
        "bench_tx",
        f"Writing a {size_gb:.2f} GB file through .tx (median of {args.repeat}), "
        f"and commit latency (p50 of {args.commits})",
        [
            Panel("cp returns", "GB/s", ("cp into .tx", rate["tx"]), [("local cp", rate["local"])]),
            Panel(
                "durable",
                "GB/s",
                (".tx, staged", rate["tx_staged"]),
                [("engine alone", engine_rate), ("local cp + fsync", rate["local_sync"])],
            ),
            Panel(
                "commit through .control",
                "ms (p50)",
                ("1 table", latency["1 table"]),
                [(k, v) for k, v in latency.items() if k != "1 table"],
                better="lower",
                target=10.0,
            ),
        ],
        note="targets: cp into .tx >= 0.60x local cp; commit p50 under 10 ms",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
