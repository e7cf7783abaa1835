"""30 nights of the first user's workload: UDR-FS beside Delta Lake, Iceberg, Lance and DuckLake.

    python benchmarks/bench_nights30.py [--nights 30] [--scale 1.0] [--small-rows 3000]
                                        [--systems udr,delta,iceberg,lance,ducklake]
                                        [--work DIR] [--keep]

The nights are those of benchmarks/bench_tx_nights.py (imported, not rewritten): the parcel
master (tools/parcels.py, key `bbl`; --scale keeps that fraction of its 856,000 rows) with 1%
of its rows edited a night in one column, spread uniformly, and 77 keyed compound tables
(key `id`, --small-rows rows each), of which 8 a night get rows edited, added and removed and
all come out of the pipeline in a new row order. The first night loads every table; each
later night brings every table again, whole, as the nightly job exports it, and each system
takes it the way a team using it would:

* UDR-FS: `Repo.write_table(table, key=...)` for all 78 tables in one transaction (the dedup
  layout; a table whose rows did not change makes no version);
* Delta Lake (`deltalake`): per table a MERGE on the key that updates only rows whose values
  differ, inserts new keys and deletes keys gone from the export; one commit per table;
* Apache Iceberg (`pyiceberg`, SqlCatalog on SQLite, a local-filesystem warehouse): per table
  `Table.overwrite` (pyiceberg's upsert does not delete rows missing from the source, and its
  deletes are copy-on-write, so a changed master is rewritten either way); one snapshot per
  table;
* Lance (`pylance`): per table `merge_insert` on the key, updating only rows that differ,
  inserting new ones and deleting those gone; one version per table;
* DuckLake (DuckDB's `ducklake` extension): all 78 tables in one transaction, each a MERGE
  on the key updating only rows that differ and inserting new ones, then a DELETE of the keys
  gone (DuckLake's MERGE takes one UPDATE/DELETE action). The extension comes from PyPI
  (`duckdb-extension-ducklake`), built for one DuckDB version that is not the project's, so
  this side runs in its own virtualenv (benchmarks/.venv-ducklake, made on first use with the
  pinned versions in DUCKLAKE_PINS) as a subprocess; it reads each night's tables from
  Parquet files the benchmark writes beforehand (that export is not timed; its reading is).

Printed per system: the store's bytes after the last night (every file under its directory,
catalog and logs included), the bytes the first night and a later night (median) added, the
time a later night took (median and p95; the first night's load is left out), the time of a
count and sum over the master as of the middle night (median of 3, the system's own query
path), and whether every version of the master is still an ordinary Parquet file: the files
the system lists for that version, read by pyarrow alone, give that version's rows and sum.
Our figure is printed beside each baseline from the same run; nothing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# DuckLake's extension is built for one DuckDB release: both pinned together.
DUCKLAKE_PINS = ("duckdb==1.5.5", "duckdb-extension-ducklake==1.5.5")
DUCKLAKE_VENV = HERE / ".venv-ducklake"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ducklake_worker(root: Path) -> int:
    """The DuckLake side, run in DUCKLAKE_VENV: one JSON request a line on stdin, one JSON
    answer a line on stdout. Imports nothing but DuckDB and its extension."""
    import duckdb
    import duckdb_extension_ducklake

    extension = next(Path(duckdb_extension_ducklake.__file__).parent.rglob("*.duckdb_extension"))
    con = duckdb.connect()
    con.execute(f"LOAD '{extension}'")
    con.execute(
        f"ATTACH 'ducklake:{root / 'meta.ducklake'}' AS lake (DATA_PATH '{root / 'data'}/')"
    )
    created: set[str] = set()
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {}
        if "night" in request:
            start = time.perf_counter()
            con.execute("BEGIN")
            for name, (path, key) in request["tables"].items():
                table, source, k = f"lake.{_quote(name)}", f"read_parquet('{path}')", _quote(key)
                if name not in created:
                    con.execute(f"CREATE TABLE {table} AS SELECT * FROM {source}")
                    created.add(name)
                    continue
                columns = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
                changed = " OR ".join(
                    f"s.{_quote(c)} IS DISTINCT FROM t.{_quote(c)}" for c in columns if c != key
                )
                con.execute(
                    f"MERGE INTO {table} AS t USING {source} AS s ON t.{k} = s.{k} "
                    f"WHEN MATCHED AND ({changed}) THEN UPDATE WHEN NOT MATCHED THEN INSERT"
                )
                con.execute(f"DELETE FROM {table} WHERE {k} NOT IN (SELECT {k} FROM {source})")
            con.execute("COMMIT")
            answer["seconds"] = time.perf_counter() - start
            (answer["snapshot"],) = con.execute(
                "SELECT max(snapshot_id) FROM lake.snapshots()"
            ).fetchone()
        elif "travel" in request:
            column, table = _quote(request["column"]), _quote(request["table"])
            sql = (
                f"SELECT count(*), sum({column}) FROM lake.{table} "
                f"AT (VERSION => {int(request['travel'])})"
            )
            times = []
            for _ in range(request["runs"]):
                start = time.perf_counter()
                count, total = con.execute(sql).fetchone()
                times.append(time.perf_counter() - start)
            answer.update(seconds=times, count=count, sum=total)
        elif "files" in request:
            rows = con.execute(
                "SELECT data_file, delete_file FROM ducklake_list_files('lake', ?, "
                "snapshot_version => ?)",
                [request["table"], int(request["files"])],
            ).fetchall()
            answer["files"] = [data for data, _ in rows]
            answer["deletes"] = sum(1 for _, delete in rows if delete)
        else:
            break
        print(json.dumps(answer), flush=True)
    con.close()
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--ducklake-worker"]:
    sys.exit(ducklake_worker(Path(sys.argv[2])))

sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tools"))
sys.path.insert(2, str(HERE))

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402

import parcels  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_commit_latency import MASTER, SMALL_TABLES, percentile  # noqa: E402
from bench_tx_nights import CHURNED_PER_NIGHT, Nights  # noqa: E402
from charts import Panel, save_chart  # noqa: E402
from side_env import side_python  # noqa: E402

import udrfs  # noqa: E402

COLUMN = parcels.SCATTERED_COLUMN


class MergeOnRead(Exception):
    """A version's data files come with delete files: they alone are not its rows."""


Tables = dict[str, tuple[pa.Table, str]]


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def changed(columns: list[str], key: str, source: str, target: str) -> str:
    """SQL that is true where a matched row's values differ (nulls compared as values); the
    columns are plain lower-case names (Lance's conditions take no quoted ones)."""
    return " OR ".join(f"({source}.{c} IS DISTINCT FROM {target}.{c})" for c in columns if c != key)


class System:
    """One store taking the nights; `versions[n]` is what the master's version after night n
    is called in it (a version number or snapshot id)."""

    label = ""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions: list[int] = []

    def night(self, n: int, tables: Tables) -> float:
        """Take night `n`; returns the seconds it took."""
        start = time.perf_counter()
        self.write(n, tables)
        return time.perf_counter() - start

    def write(self, n: int, tables: Tables) -> None:
        raise NotImplementedError

    def bytes(self) -> int:
        return tree_bytes(self.root)

    def travel(self, night: int) -> tuple[int, float]:
        """(rows, sum of COLUMN) of the master as of `night`."""
        raise NotImplementedError

    def travel_times(self, night: int, runs: int) -> tuple[list[float], tuple[int, float]]:
        """Seconds of each of `runs` `travel(night)`, and its answer."""
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            answer = self.travel(night)
            times.append(time.perf_counter() - start)
        return times, answer

    def files(self, night: int) -> list[Any]:
        """The files (paths or file objects) that make the master's version after `night`."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class Udr(System):
    label = "UDR-FS (write_table, one transaction)"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.repo = udrfs.Repo.init(root)

    def write(self, n: int, tables: Tables) -> None:
        with self.repo.transaction(message=f"night {n}") as tx:
            for name, (table, key) in tables.items():
                tx.write_table(name, table, key=key)
        self.versions.append(self.repo.version(MASTER).version)

    def travel(self, night: int) -> tuple[int, float]:
        result = self.repo.query(
            f"SELECT count(*), sum({COLUMN}) FROM {MASTER}", versions={MASTER: self.versions[night]}
        )
        return result.column(0)[0].as_py(), result.column(1)[0].as_py()

    def files(self, night: int) -> list[Any]:
        return [self.repo.open(MASTER, version=self.versions[night])]

    def close(self) -> None:
        self.repo.close()


class Delta(System):
    label = "Delta Lake (MERGE per table)"

    def write(self, n: int, tables: Tables) -> None:
        import deltalake

        for name, (table, key) in tables.items():
            path = str(self.root / name)
            if n == 0:
                deltalake.write_deltalake(path, table)
                continue
            (
                deltalake.DeltaTable(path)
                .merge(table, predicate=f"s.{key} = t.{key}", source_alias="s", target_alias="t")
                .when_matched_update_all(predicate=changed(table.column_names, key, "s", "t"))
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete()
                .execute()
            )
        self.versions.append(deltalake.DeltaTable(str(self.root / MASTER)).version())

    def travel(self, night: int) -> tuple[int, float]:
        import deltalake

        table = deltalake.DeltaTable(str(self.root / MASTER), version=self.versions[night])
        query = deltalake.QueryBuilder().register("t", table)
        result = pa.table(query.execute(f"SELECT count(*), sum({COLUMN}) FROM t").read_all())
        return result.column(0)[0].as_py(), result.column(1)[0].as_py()

    def files(self, night: int) -> list[Any]:
        import deltalake

        table = deltalake.DeltaTable(str(self.root / MASTER), version=self.versions[night])
        return [uri.removeprefix("file://") for uri in table.file_uris()]


class Iceberg(System):
    label = "Iceberg (overwrite per table)"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        from pyiceberg.catalog.sql import SqlCatalog

        root.mkdir(parents=True)
        self.catalog = SqlCatalog(
            "nights", uri=f"sqlite:///{root / 'catalog.db'}", warehouse=f"file://{root}/warehouse"
        )
        self.catalog.create_namespace("nights")
        self.tables: dict[str, Any] = {}

    def write(self, n: int, tables: Tables) -> None:
        for name, (table, _) in tables.items():
            if n == 0:
                self.tables[name] = self.catalog.create_table(f"nights.{name}", table.schema)
                self.tables[name].append(table)
            else:
                self.tables[name].overwrite(table)
        self.versions.append(self.tables[MASTER].current_snapshot().snapshot_id)

    def travel(self, night: int) -> tuple[int, float]:
        scan = self.tables[MASTER].scan(selected_fields=(COLUMN,), snapshot_id=self.versions[night])
        column = scan.to_arrow().column(COLUMN)
        return len(column), pc.sum(column).as_py()

    def files(self, night: int) -> list[Any]:
        scan = self.tables[MASTER].scan(snapshot_id=self.versions[night])
        tasks = list(scan.plan_files())
        if any(task.delete_files for task in tasks):
            raise MergeOnRead("the version has delete files")
        return [task.file.file_path.removeprefix("file://") for task in tasks]


class Lance(System):
    label = "Lance (merge_insert per table)"

    def write(self, n: int, tables: Tables) -> None:
        import lance

        for name, (table, key) in tables.items():
            uri = str(self.root / name)
            if n == 0:
                lance.write_dataset(table, uri)
                continue
            (
                lance.dataset(uri)
                .merge_insert(key)
                .when_matched_update_all(
                    condition=changed(table.column_names, key, "source", "target")
                )
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete()
                .execute(table)
            )
        self.versions.append(lance.dataset(str(self.root / MASTER)).version)

    def travel(self, night: int) -> tuple[int, float]:
        import lance

        dataset = lance.dataset(str(self.root / MASTER), version=self.versions[night])
        column = dataset.to_table(columns=[COLUMN]).column(COLUMN)
        return len(column), pc.sum(column).as_py()

    def files(self, night: int) -> list[Any]:
        import lance

        dataset = lance.dataset(str(self.root / MASTER), version=self.versions[night])
        return [
            str(self.root / MASTER / "data" / data.path)
            for fragment in dataset.get_fragments()
            for data in fragment.data_files()
        ]


class DuckLake(System):
    label = "DuckLake (MERGE + DELETE, one transaction)"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        root.mkdir(parents=True)
        self.exports = root.parent / "ducklake-exports"
        self.worker = subprocess.Popen(
            [str(ducklake_python()), __file__, "--ducklake-worker", str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.worker.stdin and self.worker.stdout
        self.worker.stdin.write(json.dumps(request) + "\n")
        self.worker.stdin.flush()
        line = self.worker.stdout.readline()
        if not line:
            raise RuntimeError(f"the DuckLake worker ended (exit {self.worker.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def night(self, n: int, tables: Tables) -> float:
        shutil.rmtree(self.exports, ignore_errors=True)
        self.exports.mkdir()
        paths = {}
        for name, (table, key) in tables.items():
            path = self.exports / f"{name}.parquet"
            pq.write_table(table, path)
            paths[name] = (str(path), key)
        answer = self.ask({"night": n, "tables": paths})
        shutil.rmtree(self.exports)
        self.versions.append(answer["snapshot"])
        return float(answer["seconds"])

    def travel_times(self, night: int, runs: int) -> tuple[list[float], tuple[int, float]]:
        answer = self.ask(
            {"travel": self.versions[night], "table": MASTER, "column": COLUMN, "runs": runs}
        )
        return answer["seconds"], (answer["count"], answer["sum"])

    def files(self, night: int) -> list[Any]:
        answer = self.ask({"files": self.versions[night], "table": MASTER})
        if answer["deletes"]:
            raise MergeOnRead(f"{answer['deletes']} of its data files have delete files")
        return list(answer["files"])

    def close(self) -> None:
        if self.worker.poll() is None:
            assert self.worker.stdin
            self.worker.stdin.write(json.dumps({"quit": True}) + "\n")
            self.worker.stdin.close()
            self.worker.wait(timeout=60)


def ducklake_python() -> Path:
    """The interpreter of DUCKLAKE_VENV, made with DUCKLAKE_PINS if it is not there yet."""
    return side_python(DUCKLAKE_VENV, DUCKLAKE_PINS)


SYSTEMS: dict[str, Callable[[Path], System]] = {
    "udr": Udr,
    "delta": Delta,
    "iceberg": Iceberg,
    "lance": Lance,
    "ducklake": DuckLake,
}


def plain_parquet(system: System, night: int, expected: tuple[int, float]) -> str:
    """'' if pyarrow alone, reading the files `system` lists for the master's version after
    `night`, gets that version's rows and sum; else why not."""
    try:
        files = system.files(night)
        parts = [pq.read_table(f, columns=[COLUMN]).column(COLUMN) for f in files]
    except MergeOnRead as e:
        return str(e)
    except (pa.ArrowInvalid, OSError) as e:
        suffixes = sorted({Path(str(f)).suffix for f in files if isinstance(f, str)})
        return f"not Parquet ({', '.join(suffixes) or type(e).__name__} files)"
    rows = sum(len(p) for p in parts)
    total = sum(pc.sum(p).as_py() or 0.0 for p in parts)
    if rows != expected[0] or not same_sum(total, expected[1]):
        return f"the files give {rows:,} rows, the version has {expected[0]:,}"
    return ""


def same_sum(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def travel(system: System, night: int, runs: int = 3) -> tuple[float, tuple[int, float]]:
    """Median seconds of the count/sum over the master as of `night`, and its answer."""
    times, answer = system.travel_times(night, runs)
    return percentile(times, 50), answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", type=int, default=30, help="nights, the first load included")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the master's rows")
    parser.add_argument("--small-rows", type=int, default=3000, help="rows of a compound table")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--work", type=Path, default=None, help="parent of the stores (a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    args = parser.parse_args()
    asked = {s.strip() for s in args.systems.split(",") if s.strip()}
    unknown = sorted(asked - set(SYSTEMS))
    names = [name for name in SYSTEMS if name in asked]  # UDR-FS first
    if unknown or not names or args.nights < 2:
        parser.error(f"--systems from {','.join(SYSTEMS)}; --nights at least 2 ({unknown})")
    work = Path(tempfile.mkdtemp(prefix="bench-nights30-", dir=args.work))
    nights = Nights(args.small_rows)
    rows = max(1, round(len(nights.master) * args.scale))
    nights.master = nights.master.iloc[:rows].reset_index(drop=True)
    print(f"udrfs from {Path(udrfs.__file__).parent}; cores: {os.cpu_count()}; work in {work}")
    print(
        f"{args.nights} nights: the first loads a {rows:,}-row master and {SMALL_TABLES} compound "
        f"tables of {args.small_rows:,} rows; each later one edits 1% of the master and churns "
        f"{CHURNED_PER_NIGHT} compound tables, every table exported whole"
    )
    systems: dict[str, System] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            systems[name] = SYSTEMS[name](work / name)
        except (ImportError, OSError, subprocess.CalledProcessError) as e:
            failed[name] = f"not measured: {type(e).__name__}: {e}"
    sizes: dict[str, list[int]] = {name: [] for name in systems}
    seconds: dict[str, list[float]] = {name: [] for name in systems}
    expected: list[tuple[int, float]] = []
    try:
        for n in range(args.nights):
            if n:
                nights.next()
            tables = {
                name: (pa.Table.from_pandas(df, preserve_index=False), key)
                for name, (df, key) in nights.frames().items()
            }
            expected.append((len(nights.master), float(nights.master[COLUMN].sum())))
            line = [f"night {n + 1:>2}"]
            for name, system in list(systems.items()):
                if name in failed:
                    continue
                try:
                    seconds[name].append(system.night(n, tables))
                except Exception as e:  # a baseline that fails is reported, not fatal
                    failed[name] = f"failed on night {n + 1}: {type(e).__name__}: {e}"
                    continue
                sizes[name].append(system.bytes())
                line.append(f"{name} {seconds[name][-1]:.2f} s")
            print(", ".join(line), flush=True)
        report(args, systems, failed, sizes, seconds, expected, rows)
    finally:
        for system in systems.values():
            system.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def report(
    args: argparse.Namespace,
    systems: dict[str, System],
    failed: dict[str, str],
    sizes: dict[str, list[int]],
    seconds: dict[str, list[float]],
    expected: list[tuple[int, float]],
    rows: int,
) -> None:
    middle = args.nights // 2 - 1  # night 15 of 30
    figures: dict[str, dict[str, Any]] = {}
    for name, system in systems.items():
        if name in failed:
            continue
        grown = [b - a for a, b in zip(sizes[name], sizes[name][1:], strict=False)]
        travel_s, answer = travel(system, middle)
        right = answer[0] == expected[middle][0] and same_sum(answer[1], expected[middle][1])
        problems = [plain_parquet(system, n, expected[n]) for n in range(args.nights)]
        bad = [p for p in problems if p]
        figures[name] = {
            "label": system.label,
            "total": sizes[name][-1],
            "first": sizes[name][0],
            "night": percentile([float(g) for g in grown], 50),
            "p50": percentile(seconds[name][1:], 50),
            "p95": percentile(seconds[name][1:], 95),
            "travel": travel_s,
            "travel_right": right,
            "parquet": "yes" if not bad else f"no ({len(bad)}/{len(problems)}: {bad[-1]})",
        }
    ours = figures.get("udr")
    print(
        f"\n{'system':<44} {'store MB':>9} {'x UDR':>6} {'night 1 MB':>10} {'night MB':>9}"
        f" {'night s p50':>11} {'p95':>6} {'travel ms':>9}  every version plain Parquet"
    )
    for f in figures.values():
        ratio = f"{f['total'] / ours['total']:.2f}" if ours else "-"
        travel_ms = f"{f['travel'] * 1e3:.0f}" + ("" if f["travel_right"] else "!")
        print(
            f"{f['label']:<44} {f['total'] / 1e6:>9.1f} {ratio:>6} {f['first'] / 1e6:>10.1f}"
            f" {f['night'] / 1e6:>9.2f} {f['p50']:>11.2f} {f['p95']:>6.2f} {travel_ms:>9}"
            f"  {f['parquet']}"
        )
    for name, why in failed.items():
        print(f"{SYSTEMS[name].label:<44} {why}")
    print(
        f"\nstore MB: every file under the system's directory after night {args.nights}; "
        f"night MB: median growth of nights 2..{args.nights}; night s: nights "
        f"2..{args.nights}; travel: count and sum of {COLUMN} over the master as of night "
        f"{middle + 1}, median of 3 ('!' marks a wrong answer)"
    )
    if not ours:
        return
    others = [f for name, f in figures.items() if name != "udr"]

    def panel(title: str, unit: str, field: str, scale: float) -> Panel:
        return Panel(
            title,
            unit,
            ("UDR-FS", ours[field] * scale),
            [(f["label"].split(" (")[0], f[field] * scale) for f in others],
            better="lower",
        )

    plain = "; ".join(
        f"{f['label'].split(' (')[0]}: {f['parquet'].split(' (')[0]}" for f in figures.values()
    )
    save_chart(
        "bench_nights30",
        f"{args.nights} nights of a {rows:,}-row master and {SMALL_TABLES} compound tables",
        [
            panel(f"store after {args.nights} nights", "MB", "total", 1e-6),
            panel("a later night adds (median)", "MB", "night", 1e-6),
            panel("a later night's commit (median)", "s", "p50", 1.0),
            panel(f"count/sum as of night {middle + 1}", "ms", "travel", 1e3),
        ],
        note=f"every version of the master a plain Parquet file: {plain}",
    )


if __name__ == "__main__":
    sys.exit(main())
