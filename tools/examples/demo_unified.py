"""The unified one: transactional, analytical, streaming and versioned, on one store.

On the five nycflights13 tables, one short script:
  transactional  load all five in one commit; a correction of flights and weather together
                 in a second; a third that fails half way applies nothing
  streaming      a subscriber started before the correction receives it as one entry
  analytical     SQL over the tables (`repo.query`, DuckDB): delays by airline, by weather
  versioned      the same SQL over the first version (time travel), and the rows the
                 correction changed (`repo.diff`)

Then the same steps with Delta Lake and DuckDB, in the same run, each timed; where Delta has
no such step (a commit of two tables, one feed across tables, a diff) the script says so and
does what a Delta user would do instead.

Run: python tools/examples/demo_unified.py [--small] [--work DIR]
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import udrfs
from tools.examples.demo_common import (
    Demo,
    changed_rows,
    demo,
    disk_bytes,
    hand_diff,
    human_bytes,
    nyc_tables,
    parser,
    print_rows,
    revise,
    section,
)

TABLES = ("flights", "weather", "planes", "airports", "airlines")
KEYS = {
    "flights": "id",
    "weather": "id",
    "planes": "tailnum",
    "airports": "faa",
    "airlines": "carrier",
}
BY_AIRLINE = """
    SELECT a.name AS airline, count(*) AS flights, round(avg(f.arr_delay), 2) AS avg_delay
    FROM flights f JOIN airlines a USING (carrier)
    GROUP BY a.name ORDER BY avg_delay DESC LIMIT 3"""
BY_WEATHER = """
    SELECT w.precip > 0 AS raining, count(*) AS flights, round(avg(f.dep_delay), 2) AS avg_dep
    FROM flights f JOIN weather w USING (origin, time_hour)
    GROUP BY 1 ORDER BY 1"""
TOTAL = "SELECT sum(arr_delay) AS total FROM flights"


class Steps:
    """Each step's seconds by system, and each system's bytes on disk at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = {}
        self.bytes: dict[str, int] = {}

    @contextlib.contextmanager
    def timed(self, system: str, step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds.setdefault(step, {})[system] = time.perf_counter() - start


def show(table: pa.Table) -> None:
    print_rows(table.column_names, [list(r.values()) for r in table.to_pylist()])


def udr_part(d: Demo, tables: dict[str, pa.Table], steps: Steps) -> None:
    section("UDR-FS: one store, one script")
    store = d.work / "store"
    repo = udrfs.Repo.init(store)
    flights, weather = revise(tables["flights"], "arr_delay"), revise(tables["weather"], "temp")
    corrected = changed_rows(tables["flights"], flights, "arr_delay")

    print("transactional:")
    with steps.timed("udr", "load 5 tables"), repo.transaction(message="nycflights13") as tx:
        for name in TABLES:
            tx.write_table(name, tables[name], key=KEYS[name])
    print(f"  loaded {len(TABLES)} tables in one commit: {repo.head()[:12]}")
    received: list[udrfs.ChangeEntry] = []
    subscription = repo.subscribe(received.append, poll_interval=0.05)
    correcting = repo.transaction(message="late corrections")
    with steps.timed("udr", "correct flights + weather"), correcting as tx:
        tx.write_table("flights", flights, key="id")
        tx.write_table("weather", weather, key="id")
    head = repo.head()
    try:
        with repo.transaction(message="a job that fails") as tx:
            tx.write_table("flights", tables["flights"], key="id")
            raise RuntimeError("the weather feed timed out")
    except RuntimeError as exc:
        print(f"  a transaction failed half way ({exc}): head still {repo.head()[:12]}")
    d.check(repo.head() == head, "the failed transaction applied nothing")
    log = repo.log()
    print(f"  {len(log)} commits: " + "; ".join(f"{c.id[:12]} {c.message}" for c in log))

    print("streaming:")
    deadline = time.monotonic() + 30
    while subscription.last_seq < repo.latest_seq() and time.monotonic() < deadline:
        time.sleep(0.02)
    subscription.stop()
    for entry in received:
        print(f"  subscriber: {entry.to_text_line()}")
    d.check(
        len(received) == 1 and {c.table for c in received[0].tables} == {"flights", "weather"},
        "the subscriber received the correction as one entry of both tables",
    )
    with steps.timed("udr", "what changed since load"):
        since = repo.get_changes(since=1)
    d.check([e.seq for e in since] == [2], "get_changes(since=1) finds it too")

    print("analytical:")
    with steps.timed("udr", "two SQL queries"):
        by_airline, by_weather = repo.query(BY_AIRLINE), repo.query(BY_WEATHER)
    show(by_airline)
    show(by_weather)
    d.check(by_airline.num_rows == 3 and by_weather.num_rows >= 2, "SQL over joined tables")

    print("versioned:")
    with steps.timed("udr", "time travel query"):
        then = repo.query(TOTAL, versions={"flights": 1}).column(0)[0].as_py()
    now = repo.query(TOTAL).column(0)[0].as_py()
    print(f"  sum(arr_delay): v1 {then:,}, now {now:,}")
    d.check(then == pc.sum(tables["flights"].column("arr_delay")).as_py(), "v1 reads as loaded")
    d.check(now - then == corrected, "now: each corrected flight one minute later")
    with steps.timed("udr", "diff v1..v2 of flights"):
        diff = repo.diff("flights", 1, 2)
    print(f"  diff flights v1..v2: {diff.counts}, columns {diff.modified.column_names[1:3]}")
    d.check(diff.counts["modified"] == corrected, "the diff finds every corrected flight")
    d.check(repo.fsck().ok, "the store is intact")
    repo.close()
    steps.bytes["udr"] = disk_bytes(store)


def delta_part(d: Demo, tables: dict[str, pa.Table], steps: Steps) -> None:
    section("Delta Lake + DuckDB: the same steps")
    from deltalake import DeltaTable, write_deltalake

    root = d.work / "delta"
    flights, weather = revise(tables["flights"], "arr_delay"), revise(tables["weather"], "temp")
    with steps.timed("delta", "load 5 tables"):
        for name in TABLES:
            write_deltalake(root / name, tables[name])
    with steps.timed("delta", "correct flights + weather"):
        write_deltalake(root / "flights", flights, mode="overwrite")
        write_deltalake(root / "weather", weather, mode="overwrite")
    print("  the correction is two commits, one a table: a reader between them sees one")
    with steps.timed("delta", "what changed since load"):
        versions = {n: [h["version"] for h in DeltaTable(root / n).history()] for n in TABLES}
    print(f"  versions by table (no feed across tables): {versions}")
    con = duckdb.connect()

    def register(version: int | None = None) -> None:
        for name in TABLES:
            table = DeltaTable(root / name, version=version if name == "flights" else None)
            con.register(name, table.to_pyarrow_dataset())

    with steps.timed("delta", "two SQL queries"):
        register()
        con.execute(BY_AIRLINE).fetchall()
        con.execute(BY_WEATHER).fetchall()
    with steps.timed("delta", "time travel query"):
        register(version=0)
        then = con.execute(TOTAL).fetchone()
    print(f"  sum(arr_delay) at flights v0: {then[0] if then else None:,}")
    with steps.timed("delta", "diff v1..v2 of flights"):
        modified = hand_diff(
            DeltaTable(root / "flights", version=0), DeltaTable(root / "flights"), "id"
        )
    print(f"  diff by hand (DuckDB join of two versions): {modified:,} modified rows")
    con.close()
    steps.bytes["delta"] = disk_bytes(root)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    with demo(args) as d:
        tables = nyc_tables(d.small, TABLES)
        print(f"nycflights13: {', '.join(f'{n} {t.num_rows:,} rows' for n, t in tables.items())}")
        steps = Steps()
        udr_part(d, tables, steps)
        delta_part(d, tables, steps)
        section("Comparison (measured in this run, seconds)")
        rows = [
            (step, f"{by['udr']:.4f}", f"{by['delta']:.4f}") for step, by in steps.seconds.items()
        ]
        rows.append(
            ("bytes on disk", human_bytes(steps.bytes["udr"]), human_bytes(steps.bytes["delta"]))
        )
        print_rows(["step", "UDR-FS", "Delta Lake + DuckDB"], rows)
        print("Delta Lake could not: commit flights and weather together, give one feed of")
        print("the commits across tables, or diff two versions (done above by hand).")
        return d.finish()


if __name__ == "__main__":
    sys.exit(main())
