"""Stored bytes per night: `.tx` into dedup-layout tables beside `write_table`.

    python benchmarks/bench_tx_nights.py [--nights 10] [--small-rows 3000] [--no-exact]

The first user's nights, replayed: the 856,000-row parcel master (tools/parcels.py, key
`bbl`, 1% of rows edited a night in one column, spread uniformly) and 77 keyed compound
tables of a few thousand rows (key `id`), of which 8 a night get a few rows edited, added and
removed; every table is re-exported every night with `pandas.DataFrame.to_parquet`, the
compound tables in a new row order (same rows, other bytes). Each night goes
* through a mount, into `.tx/<night>/`, committed by a write to `.control`, into a store
  whose tables are declared `udr table set ... --layout dedup` (the key as above);
* through `Repo.write_table(frame, key=...)`, all tables in one transaction, into another
  store (the baseline the goal is set against: `.tx` within 1.2x, unchanged tables adding
  nothing);
* and, unless --no-exact, through `.tx` into a store without settings (byte-exact, the
  behaviour before table layouts).
Printed per night: bytes the store grew by (packs, index and objects), the versions the night
created, and for the `.tx` runs the seconds from the start of the export until every file was
staged (the dedup rewrite runs there, when each file is closed) and the commit's latency
(the write of `commit` to `.control`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tools"))
sys.path.insert(2, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import parcels  # noqa: E402
from bench_commit_latency import (  # noqa: E402
    MASTER,
    SMALL_TABLES,
    churn,
    edit_master,
    percentile,
    small_table,
)
from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402
from udrfs.fs import daemon  # noqa: E402

CHURNED_PER_NIGHT = 8


class Nights:
    """The tables as exported each night (a pure function of the seed)."""

    def __init__(self, small_rows: int, seed: int = 11) -> None:
        self.rng = np.random.default_rng(seed)
        self.master = parcels.parcels().to_pandas()
        self.small = {
            f"compound_{n:02d}": small_table(n, small_rows, self.rng) for n in range(SMALL_TABLES)
        }

    def next(self) -> None:
        self.master = edit_master(self.master, self.rng)
        churned = self.rng.choice(sorted(self.small), CHURNED_PER_NIGHT, replace=False)
        for name in churned:
            self.small[name] = churn(self.small[name], self.rng)
        # Every compound table comes out of the pipeline in another order.
        self.small = {
            name: df.sample(frac=1.0, random_state=int(self.rng.integers(1 << 30))).reset_index(
                drop=True
            )
            for name, df in self.small.items()
        }

    def frames(self) -> dict[str, tuple[pd.DataFrame, str]]:
        out = {MASTER: (self.master, parcels.KEY)}
        out.update({name: (df, "id") for name, df in self.small.items()})
        return out


def store_bytes(store: Path) -> int:
    return sum(
        p.stat().st_size
        for part in ("packs", "index", "objects")
        for p in (store / part).rglob("*")
        if p.is_file()
    )


def versions(repo: udrfs.Repo) -> int:
    head = repo.commit(repo.head())
    return len(head.changes) if head.seq > 0 else 0


def run_tx(
    work: Path, nights: Nights, count: int, layout: str
) -> list[tuple[int, int, float, float]]:
    """(bytes grown, versions, seconds to stage, commit ms) per night through `.tx`."""
    store, mountpoint = work / f"nights-{layout}-store", work / f"nights-{layout}-mnt"
    shutil.rmtree(store, ignore_errors=True)
    repo = udrfs.Repo.init(store)
    if layout == "dedup":
        for name, (_, key) in nights.frames().items():
            repo.set_table(name, key=key, layout="dedup")
    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mountpoint):
        daemon.unmount(mountpoint, lazy=True)
    daemon.start_background(
        daemon.MountOptions(
            store=store, mountpoint=mountpoint, log_file=work / f"nights-{layout}.log"
        )
    )
    out = []
    try:
        for n in range(count):
            if n:
                nights.next()
            before, last = store_bytes(store), repo.head()
            tx = mountpoint / "@main" / ".tx" / f"n{n}"
            tx.mkdir()
            start = time.perf_counter()
            for name, (df, _) in nights.frames().items():
                df.to_parquet(tx / f"{name}.parquet", index=False)
            status = (tx / ".control").read_text()  # waits until every file is staged
            staged = time.perf_counter() - start
            assert "writing" not in status, status
            fd = os.open(tx / ".control", os.O_WRONLY)
            try:
                start = time.perf_counter()
                os.write(fd, f"commit night {n}\n".encode())
                commit_ms = (time.perf_counter() - start) * 1e3
            finally:
                os.close(fd)
            made = versions(repo) if repo.head() != last else 0
            out.append((store_bytes(store) - before, made, staged, commit_ms))
            shutil.rmtree(tx)
    finally:
        daemon.unmount(mountpoint, lazy=True)
        shutil.rmtree(store, ignore_errors=True)
    return out


def run_write_table(work: Path, nights: Nights, count: int) -> list[tuple[int, int]]:
    """(bytes grown, versions) per night through `write_table`, one transaction a night."""
    store = work / "nights-write-table-store"
    shutil.rmtree(store, ignore_errors=True)
    repo = udrfs.Repo.init(store)
    out = []
    try:
        for n in range(count):
            if n:
                nights.next()
            before, last = store_bytes(store), repo.head()
            with repo.transaction(message=f"night {n}") as tx:
                for name, (df, key) in nights.frames().items():
                    tx.write_table(name, df, key=key)
            made = versions(repo) if repo.head() != last else 0
            out.append((store_bytes(store) - before, made))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return out


def rewrite_seconds(work: Path, runs: int = 3) -> tuple[float, float]:
    """Median seconds to rewrite the master's pandas export in the dedup layout (what a
    dedup table's file costs when it is finished), and to chunk it byte-exact."""
    store = work / "nights-rewrite-store"
    shutil.rmtree(store, ignore_errors=True)
    repo = udrfs.Repo.init(store)
    repo.set_table(MASTER, key=parcels.KEY, layout="dedup")
    path = work / "nights-master.parquet"
    Nights(10).master.to_parquet(path, index=False)
    rewrite, exact = [], []
    try:
        for _ in range(runs):
            tx = repo.transaction()
            start = time.perf_counter()
            tx.lay_out_file(MASTER, path)
            rewrite.append(time.perf_counter() - start)
            start = time.perf_counter()
            repo.chunk_file(path)
            exact.append(time.perf_counter() - start)
            tx.abort()
    finally:
        shutil.rmtree(store, ignore_errors=True)
        path.unlink(missing_ok=True)
    return percentile(rewrite, 50), percentile(exact, 50)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--nights", type=int, default=10, help="nights after the first")
    parser.add_argument("--small-rows", type=int, default=3000)
    parser.add_argument("--no-exact", action="store_true", help="skip the byte-exact .tx run")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    count = args.nights + 1
    print(f"udrfs from {Path(udrfs.__file__).parent}; cores: {os.cpu_count()}")
    print(
        f"night 0: first export; nights 1..{args.nights}: master 1% edited, "
        f"{CHURNED_PER_NIGHT} of {SMALL_TABLES} compound tables churned, all re-exported"
    )
    rewrite, exact_chunking = rewrite_seconds(args.work)
    print(
        f"the master's file ({MASTER}, 856k rows): dedup rewrite {rewrite:.2f} s, "
        f"byte-exact chunking {exact_chunking:.2f} s (median of 3)"
    )
    dedup = run_tx(args.work, Nights(args.small_rows), count, "dedup")
    written = run_write_table(args.work, Nights(args.small_rows), count)
    exact = None if args.no_exact else run_tx(args.work, Nights(args.small_rows), count, "exact")

    header = (
        f"{'night':>5} {'.tx dedup MB':>13} {'versions':>8} {'stage s':>8} {'commit ms':>9}"
        f" {'write_table MB':>15} {'versions':>8} {'ratio':>6}"
    )
    if exact:
        header += f" {'.tx exact MB':>13} {'versions':>8} {'stage s':>8}"
    print("\n" + header)
    for n in range(count):
        grown, made, staged, commit_ms = dedup[n]
        w_grown, w_made = written[n]
        ratio = grown / w_grown if w_grown else float("nan")
        line = (
            f"{n:>5} {grown / 1e6:>13.2f} {made:>8} {staged:>8.2f} {commit_ms:>9.1f}"
            f" {w_grown / 1e6:>15.2f} {w_made:>8} {ratio:>6.2f}"
        )
        if exact:
            e_grown, e_made, e_staged, _ = exact[n]
            line += f" {e_grown / 1e6:>13.2f} {e_made:>8} {e_staged:>8.2f}"
        print(line)
    later = range(1, count)
    tx_total = sum(dedup[n][0] for n in later)
    wt_total = sum(written[n][0] for n in later)
    commits = [dedup[n][3] for n in later]
    print(
        f"\nnights 1..{args.nights}: .tx dedup {tx_total / 1e6:.2f} MB, write_table "
        f"{wt_total / 1e6:.2f} MB, ratio {tx_total / wt_total:.2f} (goal <= 1.2); "
        f".tx commit p50 {percentile(commits, 50):.1f} ms"
    )
    ex_total = sum(exact[n][0] for n in later) if exact else float("nan")
    if exact:
        print(f"nights 1..{args.nights}: .tx byte-exact {ex_total / 1e6:.2f} MB")
    made = percentile([float(dedup[n][1]) for n in later], 50)
    made_exact = percentile([float(exact[n][1]) for n in later], 50) if exact else float("nan")
    made_written = percentile([float(written[n][1]) for n in later], 50)
    save_chart(
        "bench_tx_nights",
        f"{args.nights} nights re-exported by pandas through .tx into dedup tables",
        [
            Panel(
                f"stored, nights 1..{args.nights}",
                "MB",
                (".tx, dedup layout", tx_total / 1e6),
                [("write_table", wt_total / 1e6), (".tx, byte-exact", ex_total / 1e6)],
                better="lower",
                target=1.2 * wt_total / 1e6,
            ),
            Panel(
                "versions a night (median)",
                "versions",
                (".tx, dedup layout", made),
                [("write_table", made_written), (".tx, byte-exact", made_exact)],
                better="lower",
            ),
            Panel(
                "rewrite of the master's file",
                "s",
                ("dedup rewrite", rewrite),
                [("byte-exact chunking", exact_chunking)],
                better="lower",
            ),
            Panel(
                ".control commit, p50",
                "ms",
                (".tx, dedup layout", percentile(commits, 50)),
                better="lower",
            ),
        ],
        note=f"{SMALL_TABLES} compound tables ({CHURNED_PER_NIGHT} churned a night) + 856k-row "
        "master (1% edited); goal: .tx within 1.2x of write_table",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
