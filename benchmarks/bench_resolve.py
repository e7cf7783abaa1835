"""What resolving a name costs in a store with many objects: a branch, a full commit id and a
12-digit short id, beside a scan of every object id (what a prefix lookup must not do).

Builds a store with a few real commits, then adds `--objects` placeholder files under
`objects/xx/` (empty files with random ids: listing cost is what is measured, and no placeholder
begins like a real commit's id). A short id lists one fan-out directory (1/256 of the
objects) and reads only the objects whose ids match.

Usage: ``python benchmarks/bench_resolve.py [--objects 200000]``; under a minute.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402


def median_ms(fn: Callable[[], object], runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = udrfs.Repo.init(Path(tmp) / "store")
        for i in range(5):
            repo.write_table("t", pa.table({"a": list(range(i + 1))}))
        commit = repo.log()[2].id
        real = {p.name[:12] for p in (repo.path / "objects").glob("??/*")}
        objects = repo.path / "objects"
        made = 0
        while made < args.objects:
            fake = secrets.token_hex(32)
            if fake[:12] in real:
                continue
            folder = objects / fake[:2]
            folder.mkdir(exist_ok=True)
            (folder / fake).touch()
            made += 1
        total = sum(len(os.listdir(objects / d)) for d in os.listdir(objects))
        print(f"store with {total} object files ({made} placeholders)")
        rows = [
            ("resolve a branch (main)", median_ms(lambda: repo.resolve("main"))),
            ("resolve a full commit id", median_ms(lambda: repo.resolve(commit))),
            ("resolve a 12-digit short id", median_ms(lambda: repo.resolve(commit[:12]))),
            ("baseline: list every object id", median_ms(repo.store.objects.ids, runs=3)),
        ]
        for label, ms in rows:
            print(f"{label:34s} {ms:9.3f} ms")
    baseline = [("list every object id", rows[-1][1])]
    save_chart(
        "bench_resolve",
        f"Resolving a name in a store of {total:,} object files (median)",
        [
            Panel(label.removeprefix("resolve "), "ms", (label, ms), baseline, better="lower")
            for label, ms in rows[:-1]
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
