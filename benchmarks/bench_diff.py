"""Row-level diffs of two 856,000-row versions, beside a plain DuckDB diff of the same files.

Builds the parcel table (tools/parcels.py) and commits three versions with the dedup writer
(key ``bbl``): v1 the base, v2 a localized edit (2,000 lots deleted, 2,000 added, one column
rezoned on 1,000), v3 one column changed on 1% of lots spread uniformly. For each pair it
prints:

* the commit, which also counts rows for the change log (`catalog/rowcounts.py`);
* `repo.diff` in a fresh process (nothing cached: footers, key uniqueness, DuckDB's caches),
  and again in the same process;
* the baseline: DuckDB alone on the two versions as Parquet files on local disk, one full
  outer join on the key producing the same added/removed/modified rows (median of 3);
* the change log's row counting for the same pair in a fresh process (what a commit spends
  before taking its branch lock).

Target: a diff of two 856,000-row versions in under 2 seconds.
Usage: ``python benchmarks/bench_diff.py [--rows 856000]``; about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import parcels  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402
from udrfs.catalog.rowcounts import quote  # noqa: E402

TARGET_SECONDS = 2.0


def measure_in_fresh_process(
    store: Path, old: int, new: int
) -> tuple[float, float, dict[str, int]]:
    """Time `repo.diff` twice in a new interpreter: cold, then warm."""
    code = (
        "import json, sys, time, udrfs\n"
        "repo = udrfs.Repo(sys.argv[1])\n"
        "times = []\n"
        "for _ in range(2):\n"
        "    start = time.perf_counter()\n"
        "    diff = repo.diff('nyc_master', int(sys.argv[2]), int(sys.argv[3]))\n"
        "    times.append(time.perf_counter() - start)\n"
        "print(json.dumps({'times': times, 'counts': diff.counts}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store), str(old), str(new)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    return result["times"][0], result["times"][1], result["counts"]


def count_in_fresh_process(store: Path, old: int, new: int) -> float:
    """Time the change log's row counting (what a commit adds before its lock), cold."""
    code = (
        "import sys, time, udrfs\n"
        "from udrfs.catalog.rowcounts import count_row_changes\n"
        "repo = udrfs.Repo(sys.argv[1])\n"
        "a, b = (repo.version('nyc_master', int(v)) for v in sys.argv[2:4])\n"
        "start = time.perf_counter()\n"
        "count_row_changes(repo.store.chunks, a, b)\n"
        "print(time.perf_counter() - start)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store), str(old), str(new)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def baseline_diff(old_file: Path, new_file: Path, key: str) -> tuple[float, dict[str, int]]:
    """A plain DuckDB diff: one full outer join on the key over every column."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW o AS SELECT * FROM read_parquet('{old_file}')")
    con.execute(f"CREATE VIEW n AS SELECT * FROM read_parquet('{new_file}')")
    columns = [r[0] for r in con.execute("DESCRIBE o").fetchall() if r[0] != key]
    differs = " OR ".join(f"o.{quote(c)} IS DISTINCT FROM n.{quote(c)}" for c in columns)
    sql = f"""
        CREATE OR REPLACE TEMP TABLE changed AS
        SELECT o.p AS in_old, n.p AS in_new, o.* EXCLUDE (p), n.* EXCLUDE (p)
        FROM (SELECT *, true AS p FROM o) AS o FULL JOIN (SELECT *, true AS p FROM n) AS n
            ON o.{key} = n.{key}
        WHERE o.p IS NULL OR n.p IS NULL OR {differs}
    """
    times = []
    for _ in range(3):
        start = time.perf_counter()
        con.execute(sql)
        added = con.sql("SELECT * FROM changed WHERE in_old IS NULL").to_arrow_table()
        removed = con.sql("SELECT * FROM changed WHERE in_new IS NULL").to_arrow_table()
        modified = con.sql("SELECT * FROM changed WHERE in_old AND in_new").to_arrow_table()
        times.append(time.perf_counter() - start)
    counts = {"added": added.num_rows, "removed": removed.num_rows, "modified": modified.num_rows}
    return statistics.median(times), counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=parcels.ROWS)
    args = parser.parse_args()

    base = parcels.parcels(args.rows)
    versions = {"v1 base": base, "v2 localized": parcels.localized(base)}
    versions["v3 scattered"] = parcels.scattered(versions["v2 localized"])

    with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
        store = Path(tmp) / "store"
        repo = udrfs.Repo.init(store)
        print(f"parcel table: {args.rows:,} rows, {base.num_columns} columns, key bbl\n")
        for name, table in versions.items():
            start = time.perf_counter()
            commit = repo.write_table("nyc_master", table, key="bbl", message=name)
            elapsed = time.perf_counter() - start
            assert commit is not None
            (change,) = commit.changes
            print(
                f"commit {name:<13} {elapsed:6.2f} s  change log: +{change.rows_added} "
                f"-{change.rows_removed} ~{change.rows_modified}"
            )
        files = {}
        for v in (1, 2, 3):
            files[v] = Path(tmp) / f"v{v}.parquet"
            with repo.open("nyc_master", v) as src, open(files[v], "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)

        print(
            f"\n{'diff':<16} {'repo.diff cold':>15} {'warm':>8} {'DuckDB on files':>16}"
            f" {'commit counting':>16}  counts"
        )
        worst = 0.0
        panels = []
        for old, new, label in ((1, 2, "v1..v2 localized"), (2, 3, "v2..v3 scattered")):
            cold, warm, counts = measure_in_fresh_process(store, old, new)
            counting = count_in_fresh_process(store, old, new)
            base_time, base_counts = baseline_diff(files[old], files[new], "bbl")
            assert counts == base_counts, (counts, base_counts)
            worst = max(worst, cold)
            print(
                f"{label:<16} {cold:>13.3f} s {warm:>6.3f} s {base_time:>14.3f} s"
                f" {counting:>14.3f} s  +{counts['added']} -{counts['removed']}"
                f" ~{counts['modified']}"
            )
            panels.append(
                Panel(
                    label,
                    "seconds",
                    ("repo.diff, cold", cold),
                    [("repo.diff, warm", warm), ("DuckDB join on files", base_time)],
                    better="lower",
                    target=TARGET_SECONDS,
                )
            )
        repo.close()
    print(f"\nslowest cold diff {worst:.2f} s (target: under {TARGET_SECONDS:.0f} s)")
    save_chart("bench_diff", f"Row-level diff of two {args.rows:,}-row versions (key bbl)", panels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
