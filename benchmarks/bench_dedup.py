"""How many new bytes does each new version of a table cost to store?

Builds five versions of the parcel table (tools/parcels.py): v1 the base,
v2 a localized edit, v3 an append, v4 an identical rewrite, v5 one column
changed on 1% of rows spread uniformly; each version builds on the previous
one. Each way of writing the table stores the versions in turn, and the
figure printed is the bytes the version added to storage as a percentage of
that version's own size:

* Parquet files written three ways (our writer with key ``bbl``, pyarrow's
  defaults, pyarrow's page-level content-defined chunking) go into a fresh
  chunk store each, the way the importer stores them: FastCDC chunks with the
  store's sizes, cut at every column-chunk start and at the footer. New bytes
  = growth of the store's raw bytes.
* Delta Lake and Lance apply each version as a merge on ``bbl``; new bytes =
  growth of the table's directory, size = the version's live data files.

Usage: ``python benchmarks/bench_dedup.py [--rows N | --quick] [--only-ours]
[--group-rows AVG]``. The full run takes about four minutes on two cores,
most of it in Delta Lake's merges; ``--quick`` (100,000 rows) is a smoke test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import parcels  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

from udrfs.catalog.model import DEFAULT_ZSTD_LEVEL  # noqa: E402
from udrfs.parquet import writer  # noqa: E402

SCENARIOS = ("v2 localized", "v3 append", "v4 identical", "v5 scattered")
TARGETS = "targets: localized <= 10%, append <= 3%, identical 0, scattered <= 2x column share"
# Figures from the design's trials on 856k-row parcel tables (not this run).
REFERENCE = {
    "pyarrow defaults": (72, 14, 0, 8),
    "pyarrow CDC": (65, 15, 0, 7),
    "Delta Lake merge": (200, 1.6, 0, 101),
    "Lance merge_insert": (1.1, 3.0, 0, 3.1),
}


@dataclass
class Run:
    """One system's figures: per version, bytes added and the version's size."""

    name: str
    added: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    column_share: float | None = None  # the scattered column's share of the last file
    note: str = ""

    def percents(self) -> list[float]:
        return [100.0 * a / s for a, s in zip(self.added[1:], self.sizes[1:], strict=True)]


def versions(rows: int) -> list[pa.Table]:
    v1 = parcels.parcels(rows)
    v2 = parcels.localized(v1)
    v3 = parcels.append(v2)
    v4 = parcels.identical(v3)
    v5 = parcels.scattered(v4)
    return [v1, v2, v3, v4, v5]


def store_parquet(
    name: str, write: Callable[[pa.Table, Path], object], tables: Sequence[pa.Table], work: Path
) -> Run:
    from udrfs.parquet.inspect import column_chunk_cut_points
    from udrfs.store.store import Store

    run = Run(name)
    start = time.perf_counter()
    chunks = Store.init(work / "store").chunks  # a new store's format and chunk sizes
    for number, table in enumerate(tables, start=1):
        path = work / f"v{number}.parquet"
        write(table, path)
        meta = pq.read_metadata(path)
        before = chunks.stats()["raw_bytes"]
        chunks.ingest_file(path, column_chunk_cut_points(meta))
        chunks.flush()
        run.added.append(chunks.stats()["raw_bytes"] - before)
        run.sizes.append(path.stat().st_size)
        if number == len(tables):
            run.column_share = _column_bytes(meta, parcels.SCATTERED_COLUMN) / run.sizes[-1]
        if number == 1:
            groups = meta.num_row_groups
            plural = "s" if groups != 1 else ""
            run.note = f"{groups} row group{plural}, {meta.num_rows // max(groups, 1)} rows avg"
        path.unlink()
    run.seconds = time.perf_counter() - start
    return run


def delta_merge(tables: Sequence[pa.Table], work: Path) -> Run:
    from deltalake import DeltaTable, write_deltalake

    run = Run("Delta Lake merge")
    start = time.perf_counter()
    path = str(work / "delta")
    write_deltalake(path, tables[0])
    run.added.append(_tree_bytes(work / "delta"))
    run.sizes.append(_delta_live_bytes(DeltaTable(path)))
    changed = " OR ".join(
        f"(s.{c} IS DISTINCT FROM t.{c})" for c in tables[0].column_names if c != parcels.KEY
    )
    for table in tables[1:]:
        before = _tree_bytes(work / "delta")
        (
            DeltaTable(path)
            .merge(table, f"t.{parcels.KEY} = s.{parcels.KEY}", source_alias="s", target_alias="t")
            .when_matched_update_all(predicate=changed)
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete()
            .execute()
        )
        run.added.append(_tree_bytes(work / "delta") - before)
        run.sizes.append(_delta_live_bytes(DeltaTable(path)))
    run.seconds = time.perf_counter() - start
    return run


def lance_merge(tables: Sequence[pa.Table], work: Path) -> Run:
    import lance

    run = Run("Lance merge_insert")
    start = time.perf_counter()
    path = work / "lance"
    dataset = lance.write_dataset(tables[0], str(path))
    run.added.append(_tree_bytes(path))
    run.sizes.append(_lance_live_bytes(dataset))
    changed = " OR ".join(
        f"(source.{c} IS DISTINCT FROM target.{c})"
        for c in tables[0].column_names
        if c != parcels.KEY
    )
    for table in tables[1:]:
        before = _tree_bytes(path)
        (
            lance.dataset(str(path))
            .merge_insert(parcels.KEY)
            .when_matched_update_all(changed)
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete()
            .execute(table)
        )
        run.added.append(_tree_bytes(path) - before)
        run.sizes.append(_lance_live_bytes(lance.dataset(str(path))))
    run.seconds = time.perf_counter() - start
    return run


def _column_bytes(meta: pq.FileMetaData, name: str) -> int:
    total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            if group.column(c).path_in_schema == name:
                total += group.column(c).total_compressed_size
    return total


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _delta_live_bytes(table: object) -> int:
    # deltalake returns an arro3 table; pyarrow takes it through the Arrow C interface.
    actions = pa.table(table.get_add_actions(flatten=True))  # type: ignore[attr-defined]
    return sum(size or 0 for size in actions.column("size_bytes").to_pylist())


def _lance_live_bytes(dataset: object) -> int:
    fragments = dataset.get_fragments()  # type: ignore[attr-defined]
    return sum(f.file_size_bytes or 0 for frag in fragments for f in frag.data_files())


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _print(runs: Sequence[Run], rows: int) -> None:
    print(f"\nnew stored bytes per version, % of that version's size ({rows:,} rows)")
    head = f"{'system':<26}" + "".join(f"{s:>14}" for s in SCENARIOS) + f"{'v1 size':>11}  time"
    print(head)
    print("-" * len(head))
    for run in runs:
        cells = "".join(f"{p:>13.1f}%" for p in run.percents())
        size = f"{run.sizes[0] / 1e6:>8.1f} MB"
        print(f"{run.name:<26}{cells}{size:>11}  {run.seconds:4.0f}s  {run.note}")
    print("reference, measured elsewhere:")
    for name, figures in REFERENCE.items():
        print(f"  {name:<24}" + "".join(f"{f:>13g}%" for f in figures))
    print(TARGETS)
    ours = runs[0]
    if ours.column_share is None:
        return
    share = 100.0 * ours.column_share
    column = parcels.SCATTERED_COLUMN
    print(f"{column} (the scattered column) is {share:.1f}% of {ours.name}'s v5")
    for run in runs[1:]:
        if run.column_share is not None:
            print(f"  and {100 * run.column_share:.1f}% of {run.name}'s v5")
    if rows != parcels.ROWS:
        # Edits keep their size in rows and groups theirs, so a smaller table has fewer,
        # relatively larger groups: its figures are a smoke test, not a verdict.
        print(f"(targets apply to {parcels.ROWS:,} rows; no verdict for {rows:,})")
        return
    local, app, _, scat = ours.percents()
    checks = [
        ("localized", local <= 10.0, f"{local:.1f}% <= 10%"),
        ("append", app <= 3.0, f"{app:.1f}% <= 3%"),
        ("identical", ours.added[3] == 0, f"{ours.added[3]} bytes == 0"),
        ("scattered", scat <= 2 * share, f"{scat:.1f}% <= 2 x {share:.1f}%"),
    ]
    verdicts = (f"{name} {text} {'ok' if ok else 'MISSED'}" for name, ok, text in checks)
    print(f"{ours.name}: " + "; ".join(verdicts))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=parcels.ROWS)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument(
        "--group-rows",
        type=int,
        help="our writer's average rows per group (min 1/4, max 4x), to choose the default",
    )
    parser.add_argument("--only-ours", action="store_true", help="skip the other systems")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows
    if args.group_rows:
        writer.AVG_ROWS = args.group_rows
        writer.MIN_ROWS = args.group_rows // 4
        writer.MAX_ROWS = args.group_rows * 4

    tables = versions(rows)
    runs: list[Run] = []
    parquet_writers: list[tuple[str, Callable[[pa.Table, Path], object]]] = [
        (
            f"udrfs writer, key {parcels.KEY}",
            lambda t, p: writer.write_parquet(
                t, p, key=[parcels.KEY], zstd_level=DEFAULT_ZSTD_LEVEL
            ),
        ),
        ("pyarrow defaults", lambda t, p: pq.write_table(t, p)),
        ("pyarrow CDC", lambda t, p: pq.write_table(t, p, use_content_defined_chunking=True)),
    ]
    others: list[tuple[str, str, Callable[[Sequence[pa.Table], Path], Run]]] = [
        ("Delta Lake merge", "deltalake", delta_merge),
        ("Lance merge_insert", "lance", lance_merge),
    ]
    if args.only_ours:
        parquet_writers, others = parquet_writers[:1], []
    for name, write in parquet_writers:
        with tempfile.TemporaryDirectory(prefix="bench-dedup-") as work:
            runs.append(store_parquet(name, write, tables, Path(work)))
        print(f"{name}: {runs[-1].seconds:.0f}s", file=sys.stderr)
    for name, module, merge in others:
        if not _installed(module):
            print(f"{name}: skipped, the {module} package is not installed")
            continue
        with tempfile.TemporaryDirectory(prefix="bench-dedup-") as work:
            runs.append(merge(tables, Path(work)))
        print(f"{name}: {runs[-1].seconds:.0f}s", file=sys.stderr)
    _print(runs, rows)
    ours, others = runs[0], runs[1:]
    save_chart(
        "bench_dedup",
        f"New bytes stored per version, % of its size ({rows:,}-row parcel table)",
        [
            Panel(
                scenario,
                "% of the version's size",
                (ours.name, ours.percents()[i]),
                [(run.name, run.percents()[i]) for run in others],
                better="lower",
            )
            for i, scenario in enumerate(SCENARIOS)
        ],
    )


if __name__ == "__main__":
    main()
