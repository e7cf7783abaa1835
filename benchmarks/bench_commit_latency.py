"""Commit latency through `.control` for a big keyed table and for a whole night of tables.

    python benchmarks/bench_commit_latency.py [--nights 10] [--small-rows 3000]
                                              [--code DIR]

The first user's nightly job, replayed through a mount: the 856,000-row parcel master
(tools/parcels.py, keyed by `bbl`) and 77 small keyed "compound" tables, re-exported every
night with `pandas.DataFrame.to_parquet` into `.tx/<night>/` and committed with a write of
`commit` to `.control`. Each night the master has 1% of its rows edited (one column, spread
uniformly) and every small table a few rows edited, added and removed, so every table is a
new version whose change-log counts must be computed.

Measured per night, p50/p95/p99 over --nights:
* commit: the time of the `write` of `commit\\n` (it returns once the commit is visible);
* counts in `.changes`: from the start of that write until `@main/.changes` holds the
  commit's line with the row counts of every table.
Two workloads: the master alone, and the 78-table night (77 small tables + master).

`--code DIR` runs the mount from another checkout (the daemon gets DIR on PYTHONPATH), so
the same script measures the baseline: run it with `--code /work/main` from a directory
outside both checkouts (`python -m` puts the working directory first on sys.path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _code_path() -> Path:
    for i, arg in enumerate(sys.argv):
        if arg == "--code" and i + 1 < len(sys.argv):
            return Path(sys.argv[i + 1]).resolve()
        if arg.startswith("--code="):
            return Path(arg.split("=", 1)[1]).resolve()
    return REPO


CODE = _code_path()
sys.path.insert(0, str(CODE))
sys.path.insert(1, str(REPO / "tools"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(CODE), os.environ.get("PYTHONPATH", "")) if p
)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import parcels  # noqa: E402

import udrfs  # noqa: E402
from udrfs.catalog import Catalog  # noqa: E402
from udrfs.fs import daemon  # noqa: E402

SMALL_TABLES = 77
MASTER = "nyc_master"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def small_table(n: int, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    ids = np.arange(rows, dtype=np.int64) * 3 + n
    return pd.DataFrame(
        {
            "id": ids,
            "score": rng.normal(size=rows).round(4),
            "count": rng.integers(0, 1000, rows),
            "label": [f"c{n}-{i % 97}" for i in range(rows)],
        }
    )


def churn(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A few rows edited, two added, one removed."""
    df = df.copy()
    edited = rng.choice(len(df), 5, replace=False)
    df.loc[df.index[edited], "score"] = rng.normal(size=5).round(4)
    gone = df.index[rng.integers(0, len(df))]
    df = df.drop(index=gone)
    top = int(df["id"].max())
    added = pd.DataFrame(
        {
            "id": np.array([top + 1000, top + 2000], dtype=np.int64),
            "score": [0.5, 0.25],
            "count": np.array([1, 2], dtype=np.int64),
            "label": ["new", "new"],
        }
    )
    return pd.concat([df, added], ignore_index=True)


def edit_master(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """1% of the lots get a new assessed value (one column, spread uniformly)."""
    df = df.copy()
    picked = rng.choice(len(df), len(df) // 100, replace=False)
    column = parcels.SCATTERED_COLUMN
    df.loc[df.index[picked], column] = df[column].iloc[picked].to_numpy() + 1
    return df


class Night:
    """The tables as last exported; `next` edits them for the following night."""

    def __init__(self, small_rows: int, with_small: bool, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.master = parcels.parcels().to_pandas()
        self.small = (
            {f"compound_{n:02d}": small_table(n, small_rows, self.rng) for n in range(SMALL_TABLES)}
            if with_small
            else {}
        )

    def next(self) -> None:
        self.master = edit_master(self.master, self.rng)
        self.small = {name: churn(df, self.rng) for name, df in self.small.items()}

    def export(self, directory: Path) -> None:
        self.master.to_parquet(directory / f"{MASTER}.parquet", index=False)
        for name, df in self.small.items():
            df.to_parquet(directory / f"{name}.parquet", index=False)


def seed_store(store: Path, night: Night, work: Path) -> None:
    """The first night, imported with each table's key (a `.tx` commit keeps it)."""
    shutil.rmtree(store, ignore_errors=True)
    catalog = Catalog.init(store)
    staging = work / "seed"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    night.export(staging)
    with catalog.transaction(message="first night") as tx:
        tx.import_file(MASTER, staging / f"{MASTER}.parquet", key=parcels.KEY)
        for name in night.small:
            tx.import_file(name, staging / f"{name}.parquet", key="id")
    shutil.rmtree(staging)


def last_change(changes: Path) -> dict[str, Any] | None:
    data = changes.read_bytes()
    lines = data.splitlines()
    return json.loads(lines[-1]) if lines else None


def counted(entry: dict[str, Any] | None, commit_id: str, tables: int) -> bool:
    if entry is None or entry["commit"] != commit_id or len(entry["tables"]) != tables:
        return False
    return all(t.get("rows_modified") is not None for t in entry["tables"])


def run(work: Path, nights: int, small_rows: int, with_small: bool) -> dict[str, list[float]]:
    name = "night" if with_small else "master"
    store, mountpoint = work / f"lat-{name}-store", work / f"lat-{name}-mnt"
    night = Night(small_rows, with_small, seed=7)
    seed_store(store, night, work)
    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mountpoint):
        daemon.unmount(mountpoint, lazy=True)
    daemon.start_background(
        daemon.MountOptions(store=store, mountpoint=mountpoint, log_file=work / f"lat-{name}.log")
    )
    figures: dict[str, list[float]] = {"commit": [], "counts": []}
    try:
        changes = mountpoint / "@main" / ".changes"
        for n in range(nights):
            night.next()
            tx = mountpoint / "@main" / ".tx" / f"n{n}"
            tx.mkdir()
            night.export(tx)
            status = (tx / ".control").read_text()  # waits until every file is staged
            assert "writing" not in status, status
            fd = os.open(tx / ".control", os.O_WRONLY)
            try:
                start = time.perf_counter()
                os.write(fd, f"commit night {n}\n".encode())
                figures["commit"].append(time.perf_counter() - start)
            finally:
                os.close(fd)
            commit_id = (tx / ".control").read_text().split()[1]
            tables = 1 + len(night.small)
            while not counted(last_change(changes), commit_id, tables):
                if time.perf_counter() - start > 120:
                    raise AssertionError(f"no counted line in .changes for {commit_id}")
                time.sleep(0.01)
            figures["counts"].append(time.perf_counter() - start)
            shutil.rmtree(tx)
    finally:
        daemon.unmount(mountpoint, lazy=True)
        shutil.rmtree(store, ignore_errors=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--small-rows", type=int, default=3000)
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose udrfs runs")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(
        f"udrfs from {Path(udrfs.__file__).parent}; {args.nights} nights; cores: {os.cpu_count()}"
    )
    header = f"{'p50':>8} {'p95':>8} {'p99':>8}  target (p50)"
    print(f"\n{'through .control (ms)':<48} {header}")
    for with_small, label, target in (
        (False, "856k-row master", "< 50"),
        (True, f"{SMALL_TABLES + 1}-table night", "< 300"),
    ):
        figures = run(args.work, args.nights, args.small_rows, with_small)
        for key, what, goal in (
            ("commit", "commit", target),
            ("counts", "counts in .changes", "seconds"),
        ):
            ms = [s * 1e3 for s in figures[key]]
            p50, p95, p99 = (percentile(ms, p) for p in (50, 95, 99))
            print(f"{label + ', ' + what:<48} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f}  {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
