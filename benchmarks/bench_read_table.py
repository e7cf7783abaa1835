"""How fast does `Repo.read_table` decode a table, against pyarrow reading the same file?

Stores the parcel table (tools/parcels.py, 856,000 rows by default) with key ``bbl``, copies the
stored version's exact bytes to a local file, and times, best of ``--repeat``:

* pyarrow reading that local file (the baseline: native file, threaded decode);
* `repo.read_table` (stored bytes copied into an Arrow buffer, threaded decode);
* the call this project used to make: pyarrow over the stored version as a Python file object
  (threaded; it could abort the interpreter at exit, docs/architecture.md#reading-through-pyarrow);
* the same Python file object with ``use_threads=False`` (the other safe pattern);
* one column (``bbl``), pyarrow from the local file and `repo.read_table(columns=...)`.

Usage: ``python benchmarks/bench_read_table.py [--rows N] [--repeat K]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import parcels  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402


def best(repeat: int, read: Callable[[], pa.Table]) -> tuple[float, int]:
    """Fastest of `repeat` reads (seconds) and the rows read."""
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = read().num_rows
        times.append(time.perf_counter() - start)
    return min(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=parcels.ROWS)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    table = parcels.parcels(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        repo = udrfs.Repo.init(Path(tmp) / "store")
        repo.write_table("parcels", table, key=parcels.KEY)
        local = Path(tmp) / "parcels.parquet"
        with repo.open("parcels") as src, open(local, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        size = local.stat().st_size

        def python_file(threads: bool) -> pa.Table:
            with repo.open("parcels") as f:
                return pq.read_table(f, use_threads=threads)

        cases: list[tuple[str, Callable[[], pa.Table]]] = [
            ("pyarrow, local file (baseline)", lambda: pq.read_table(local)),
            ("repo.read_table", lambda: repo.read_table("parcels")),
            ("pyarrow over a Python file (before)", lambda: python_file(True)),
            ("pyarrow over a Python file, no threads", lambda: python_file(False)),
            (
                f"one column, pyarrow, local file ({parcels.KEY})",
                lambda: pq.read_table(local, columns=[parcels.KEY]),
            ),
            (
                f"one column, repo.read_table ({parcels.KEY})",
                lambda: repo.read_table("parcels", columns=[parcels.KEY]),
            ),
        ]
        print(
            f"read_table of {table.num_rows:,} rows, {size / 1e6:.1f} MB of Parquet, "
            f"best of {args.repeat}, {pa.cpu_count()} CPU threads:"
        )
        baseline = None
        ms: dict[str, float] = {}
        for name, read in cases:
            seconds, rows = best(args.repeat, read)
            if baseline is None or name.startswith("one column, pyarrow"):
                baseline = seconds
            ms[name] = seconds * 1000
            print(f"  {name:<44} {seconds * 1000:8.1f} ms  x{seconds / baseline:5.2f}  {rows:,}")
        repo.close()
    names = [name for name, _ in cases]
    save_chart(
        "bench_read_table",
        f"Decoding the {table.num_rows:,}-row parcel table ({size / 1e6:.1f} MB), "
        f"best of {args.repeat}",
        [
            Panel(
                "whole table",
                "ms",
                ("repo.read_table", ms[names[1]]),
                [
                    ("pyarrow, local file", ms[names[0]]),
                    ("Python file (before)", ms[names[2]]),
                    ("Python file, no threads", ms[names[3]]),
                ],
                better="lower",
            ),
            Panel(
                f"one column ({parcels.KEY})",
                "ms",
                ("repo.read_table", ms[names[5]]),
                [("pyarrow, local file", ms[names[4]])],
                better="lower",
            ),
        ],
    )


if __name__ == "__main__":
    main()
