"""How fast does `Repo.write_table` store a table, against pyarrow and Delta Lake writing it?

Writes the parcel table (tools/parcels.py, 856,000 rows by default) and times, median of
``--repeat``, each into a fresh place so every write is a first version:

* `repo.write_table(table, key="bbl")` into a new store (sort by key, content-anchored row
  groups, zstd at a new table's level, row groups encoded on every core and joined, then
  chunked, hashed and packed);
* the same with the row groups encoded on one thread (the writer before it used every core);
* the same with the rows given in random order (the table is made in key order, which the
  writer finds and does not sort again);
* the same into a table set to zstd level 9 (`udr table set --zstd-level 9`: the level of
  tables written before levels were recorded);
* `pyarrow.parquet.write_table` with its defaults (snappy, one thread per file: the goal of
  the write-speed issue is 1.5x of this);
* `pyarrow.parquet.write_table` with zstd at a new table's level;
* `deltalake.write_deltalake` into a new table (if the `deltalake` package is installed).

Then where `write_table`'s time goes, on one thread, median of ``--repeat``: sorting by the key,
cutting the row groups, and encoding them with zstd at levels 9, 6, 3 and with no
compression (seconds and bytes of the file each makes): what the level would buy.

Usage: ``python benchmarks/bench_write_table.py [--rows N] [--repeat K]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import parcels  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402
from udrfs.catalog.model import DEFAULT_ZSTD_LEVEL, UNRECORDED_ZSTD_LEVEL  # noqa: E402
from udrfs.parquet import writer  # noqa: E402

T = TypeVar("T")
PYARROW = "pyarrow write_table, defaults (snappy)"


def timed(repeat: int, step: Callable[[], T]) -> tuple[float, T]:
    """Median seconds of `repeat` calls of `step`, and what the last one returned."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def stages(table: pa.Table, repeat: int) -> None:
    """Where the writer's time goes, one thread (the module docstring)."""
    key = (parcels.KEY,)
    sort_s, order = timed(repeat, lambda: writer._key_order(table, key))
    ordered = table if order is None else table.take(order)
    cut_s, ends = timed(repeat, lambda: writer.row_group_boundaries(ordered, list(key)))
    print(f"where the time goes, one thread, median of {repeat}:")
    print(f"  {'sort by ' + parcels.KEY:<46} {sort_s:6.2f} s")
    print(f"  {f'cut {len(ends)} row groups':<46} {cut_s:6.2f} s")
    options = writer._writer_options(ordered.schema, key, DEFAULT_ZSTD_LEVEL)
    for level in (9, 6, 3, None):

        def encode(level: int | None = level) -> int:
            sink = pa.BufferOutputStream()
            chosen = {**options, "compression": "zstd", "compression_level": level}
            if level is None:
                chosen = {**options, "compression": "none", "compression_level": None}
            writer._write_groups(sink, ordered, chosen, ends)
            return int(sink.getvalue().size)

        seconds, size = timed(repeat, encode)
        label = f"encode, zstd level {level}" if level else "encode, no compression"
        mark = {DEFAULT_ZSTD_LEVEL: " (a new table's)", UNRECORDED_ZSTD_LEVEL: " (older tables')"}
        mark_text = mark.get(level, "") if level else ""
        print(f"  {label + mark_text:<46} {seconds:6.2f} s  {size / 1e6:6.1f} MB")


def median_seconds(repeat: int, write: Callable[[Path], object], tmp: Path) -> float:
    times = []
    for _ in range(repeat):
        target = Path(tempfile.mkdtemp(dir=tmp)) / "out"  # a new place: a first version
        start = time.perf_counter()
        write(target)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=parcels.ROWS)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    table = parcels.parcels(args.rows)
    threads = writer._THREADS

    shuffled = table.take(np.random.default_rng(1).permutation(table.num_rows))

    def udr(
        target: Path, encoders: int = threads, level: int | None = None, rows: pa.Table = table
    ) -> None:
        writer._THREADS = encoders
        repo = udrfs.Repo.init(target)
        try:
            if level is not None:
                repo.set_table("parcels", zstd_level=level)
            repo.write_table("parcels", rows, key=parcels.KEY)
        finally:
            writer._THREADS = threads
            repo.close()

    cases: list[tuple[str, Callable[[Path], object]]] = [
        (f"repo.write_table ({threads} encoding threads)", udr),
        ("repo.write_table (1 encoding thread)", lambda t: udr(t, 1)),
        ("repo.write_table, rows in random order", lambda t: udr(t, rows=shuffled)),
        (
            f"repo.write_table, zstd level {UNRECORDED_ZSTD_LEVEL}",
            lambda t: udr(t, level=UNRECORDED_ZSTD_LEVEL),
        ),
        (PYARROW, lambda t: pq.write_table(table, t)),
        (
            f"pyarrow write_table, zstd level {DEFAULT_ZSTD_LEVEL}",
            lambda t: pq.write_table(
                table, t, compression="zstd", compression_level=DEFAULT_ZSTD_LEVEL
            ),
        ),
    ]
    try:
        import deltalake

        cases.append(("deltalake write_deltalake", lambda t: deltalake.write_deltalake(t, table)))
    except ImportError:
        print("(deltalake is not installed: its line is left out)")

    print(
        f"writing {table.num_rows:,} rows ({table.nbytes / 1e6:.0f} MB in Arrow), "
        f"median of {args.repeat}, {pa.cpu_count()} CPU threads:"
    )
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in cases:
            seconds[name] = median_seconds(args.repeat, write, Path(tmp))
    baseline = seconds[PYARROW]
    for name, s in seconds.items():
        print(f"  {name:<46} {s:6.2f} s  x{s / baseline:5.2f} of pyarrow's defaults")
    stages(table, args.repeat)
    names = list(seconds)
    save_chart(
        "bench_write_table",
        f"Writing the {table.num_rows:,}-row parcel table, median of {args.repeat}",
        [
            Panel(
                "one new version",
                "s",
                ("repo.write_table", seconds[names[0]]),
                [(name.replace("repo.", ""), seconds[name]) for name in names[1:]],
                better="lower",
                target=1.5 * baseline,
            )
        ],
        note="target: 1.5x pyarrow's defaults",
    )


if __name__ == "__main__":
    main()
