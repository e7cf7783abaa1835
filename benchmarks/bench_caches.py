"""Memory of a long-lived catalog: the bounded caches beside unbounded ones, same walk.

Builds a store whose branch has COMMITS commits, each a new version of one of TABLES tables
with a chunk list of CHUNKS entries (written as objects directly: no data is chunked), then,
in a fresh process per variant, lists every table's versions at every 10th commit, as a
daemon serving `ls` over a long history would. Prints the growth of the process's resident
memory and the time of the walk, for the caches as shipped (docs/architecture.md, "Caches")
and for the same caches with their bounds lifted (what the catalog had before they existed).

Usage: ``python benchmarks/bench_caches.py [--commits 1500] [--tables 8] [--chunks 4096]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from charts import Panel, save_chart  # noqa: E402

from udrfs import _native  # noqa: E402
from udrfs.catalog import Catalog, Commit, TableChange, TableVersion  # noqa: E402
from udrfs.catalog.model import now_utc  # noqa: E402
from udrfs.lru import LruCache  # noqa: E402


def build(store: Path, commits: int, tables: int, chunks: int) -> None:
    catalog = Catalog.init(store)
    objects = catalog.store.objects
    chunk_list = _native.ChunkList((bytes(range(32)) + (65536).to_bytes(4, "little")) * chunks)
    head = catalog.head()
    latest: dict[str, tuple[int, str]] = {}
    start = now_utc()
    for seq in range(1, commits + 1):
        table = f"t{seq % tables}"
        number, parent = latest.get(table, (0, None))
        doc = TableVersion.document(
            table=table,
            version=number + 1,
            parent=parent,
            size=65536 * chunks,
            blake3=f"{seq:064x}",
            chunks=chunk_list,
            rows=seq,
            schema=[{"name": "a", "type": "int64"}],
            key=None,
            columns=[],
        )
        latest[table] = (number + 1, objects.put(doc))
        head = objects.put(
            Commit.document(
                parents=[head],
                branch="long",
                seq=seq,
                time=start + timedelta(microseconds=seq),
                author="bench",
                message=f"commit {seq}",
                tables={name: m for name, (_, m) in latest.items()},
                changes=[TableChange(table, number or None, number + 1, seq)],
            )
        )
    catalog.create_branch("long", head)


def _rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def walk(store: Path, tables: int, bounded: bool) -> dict[str, float]:
    catalog = Catalog(store)
    if not bounded:
        catalog.store.objects.cache = LruCache(10**9)
        catalog.history.manifest_cache = LruCache(10**9)
        catalog.history.versions_cache = LruCache(10**9)
    commits = [c.id for c in catalog.first_parent_history("long")][::10]
    before = _rss()
    started = time.perf_counter()
    for commit_id in commits:
        for n in range(tables):
            catalog.table_versions(f"t{n}", commit_id)
    seconds = time.perf_counter() - started
    return {"rss_mib": (_rss() - before) / 2**20, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=1500)
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=4096)
    parser.add_argument("--walk", choices=["bounded", "unbounded"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.walk:
        print(json.dumps(walk(args.store, args.tables, args.walk == "bounded")))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        build(store, args.commits, args.tables, args.chunks)
        print(
            f"{args.commits} commits, {args.tables} tables, {args.chunks} chunks per version; "
            "versions listed for every table at every 10th commit"
        )
        print(f"{'caches':<12}{'memory growth':>16}{'walk':>10}")
        measured: dict[str, dict[str, float]] = {}
        for variant in ("bounded", "unbounded"):
            out = subprocess.run(
                [
                    *(sys.executable, __file__, "--walk", variant),
                    *("--store", str(store), "--tables", str(args.tables)),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            figures = json.loads(out)
            measured[variant] = figures
            print(f"{variant:<12}{figures['rss_mib']:>12.0f} MiB{figures['seconds']:>8.2f} s")
    ours, unbounded = measured["bounded"], measured["unbounded"]
    save_chart(
        "bench_caches",
        f"A catalog listing {args.tables} tables at every 10th of {args.commits:,} commits",
        [
            Panel(
                "memory growth",
                "MiB",
                ("bounded caches", ours["rss_mib"]),
                [("unbounded", unbounded["rss_mib"])],
                better="lower",
            ),
            Panel(
                "time of the walk",
                "seconds",
                ("bounded caches", ours["seconds"]),
                [("unbounded", unbounded["seconds"])],
                better="lower",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
