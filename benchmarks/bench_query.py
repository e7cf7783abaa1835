"""TPC-H queries through `repo.query` beside DuckDB on the same Parquet files on local disk.

The TPC-H tables (tools/sample_data.py, cached under data/) are imported into a fresh store
byte for byte; then each query runs, alternately, as plain DuckDB over views on the local
files (the baseline) and through `repo.query` (views on udr:// versions, read from packs).
Both use DuckDB's defaults otherwise. Printed per query: the first run of each (our engine
fresh, so it registers its views and reads the store; the files in the page cache for both)
and the median of the following runs, with our time as a multiple of the baseline.

Usage: ``python benchmarks/bench_query.py [--scale 1] [--runs 7]``. At scale 1 generating the
data takes about a minute the first time; the runs take under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402
from tools import sample_data  # noqa: E402

TABLES = ("lineitem", "orders", "customer")
TARGET = 1.2

QUERIES = {
    "Q1 pricing summary": """
        SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty,
               sum(l_extendedprice) AS sum_base_price,
               sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
               sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
               avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price,
               avg(l_discount) AS avg_disc, count(*) AS count_order
        FROM lineitem
        WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL 90 DAY
        GROUP BY l_returnflag, l_linestatus
        ORDER BY l_returnflag, l_linestatus""",
    "Q3 shipping priority": """
        SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue,
               o_orderdate, o_shippriority
        FROM customer, orders, lineitem
        WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey AND l_orderkey = o_orderkey
          AND o_orderdate < DATE '1995-03-15' AND l_shipdate > DATE '1995-03-15'
        GROUP BY l_orderkey, o_orderdate, o_shippriority
        ORDER BY revenue DESC, o_orderdate
        LIMIT 10""",
    "Q6 forecast revenue": """
        SELECT sum(l_extendedprice * l_discount) AS revenue
        FROM lineitem
        WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01'
          AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24""",
}


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    data = sample_data.tpch_parquet_dir(args.scale)
    sizes = {t: (data / f"{t}.parquet").stat().st_size for t in TABLES}
    print(
        f"TPC-H scale {args.scale:g}: "
        + ", ".join(f"{t} {s / 2**20:.0f} MiB" for t, s in sizes.items())
    )

    with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
        repo = udrfs.Repo.init(Path(tmp) / "store")
        start = time.perf_counter()
        with repo.transaction(message="tpch") as tx:
            for t in TABLES:
                tx.import_file(t, data / f"{t}.parquet")
        print(f"imported into a fresh store in {time.perf_counter() - start:.2f} s\n")

        direct = duckdb.connect()
        for t in TABLES:
            path = str(data / f"{t}.parquet").replace("'", "''")
            direct.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{path}')")

        print(f"{'query':<22} {'run':<7} {'DuckDB on files':>16} {'repo.query':>11} {'ratio':>6}")
        worst = 0.0
        panels = []
        for name, sql in QUERIES.items():
            expected = direct.sql(sql).to_arrow_table()
            assert repo.query(sql).equals(expected), f"{name}: results differ"
            repo.close()  # a fresh engine: the first run registers and reads from the store
            base_times, our_times = [], []
            for _ in range(args.runs):
                base_times.append(timed(lambda: direct.sql(sql).to_arrow_table()))  # noqa: B023
                our_times.append(timed(lambda: repo.query(sql)))  # noqa: B023
            first = (base_times[0], our_times[0])
            rest = (statistics.median(base_times[1:]), statistics.median(our_times[1:]))
            for label, (base, ours) in (("first", first), ("median", rest)):
                print(f"{name:<22} {label:<7} {base:>14.3f} s {ours:>9.3f} s {ours / base:>5.2f}x")
            worst = max(worst, rest[1] / rest[0])
            panels.append(
                Panel(
                    name,
                    "seconds (median)",
                    ("repo.query", rest[1]),
                    [("DuckDB on files", rest[0])],
                    better="lower",
                    target=TARGET * rest[0],
                )
            )
        repo.close()
    print(f"\nworst median ratio {worst:.2f}x (target: within {TARGET}x)")
    save_chart(
        "bench_query",
        f"TPC-H at scale {args.scale:g} through repo.query, beside DuckDB on the same files "
        f"(median of {args.runs - 1} warm runs)",
        panels,
        note=f"target: within {TARGET}x of DuckDB on the files",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
