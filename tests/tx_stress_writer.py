"""A writer process for the `.tx` stress test: increments counters in a loop, retrying lost
races, through the mount or through the Python API.

usage: python tx_stress_writer.py mount MOUNTPOINT WRITER ROUNDS [BARRIER_DIR WRITERS]
       python tx_stress_writer.py api STORE WRITER ROUNDS [BARRIER_DIR WRITERS]

Each round adds one to table `shared` (every writer writes it) and to `own_<WRITER>` (only
this writer does), reading both from the transaction's snapshot, and retries until it
commits. It prints `done <commits> <conflicts>` and exits 0; any failure that is not a clean
conflict ends it with exit status 2 and the reason on stderr. With a barrier, the first
attempt of the first round waits before committing until all WRITERS have staged theirs:
they then all commit on the same base, so every one but the first to commit loses a race.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import udrfs

MAX_ATTEMPTS = 200
BARRIER: tuple[Path, int] | None = None  # (directory, writers), from the command line


def wait_for_everyone(writer: str) -> None:
    """At the barrier (once per writer): wait until every writer has reached it."""
    if BARRIER is None or (BARRIER[0] / writer).exists():
        return
    directory, writers = BARRIER
    (directory / writer).touch()
    deadline = time.monotonic() + 120
    while len(list(directory.iterdir())) < writers:
        if time.monotonic() > deadline:
            raise SystemExit(f"{writer}: the other writers never reached the barrier")
        time.sleep(0.01)


def counter(count: int, writer: str) -> pa.Table:
    return pa.table({"count": pa.array([count], pa.int64()), "writer": [writer]})


def count_in(path: Path) -> int:
    try:
        return int(pq.read_table(path).column("count")[0].as_py())
    except FileNotFoundError:
        return 0


def mount_round(mount: Path, writer: str, round_: int) -> int:
    """One committed round through `.tx`; returns the conflicts it lost first."""
    conflicts = 0
    for attempt in range(MAX_ATTEMPTS):
        tx = mount / "@main" / ".tx" / f"{writer}-{round_}-{attempt}"
        tx.mkdir()
        status = (tx / ".control").read_text().splitlines()
        base = status[1].rsplit("base ", 1)[1]  # the snapshot this transaction sees
        snapshot = mount / f"@{base}"
        shared = count_in(snapshot / "shared" / "latest.parquet")
        own = count_in(snapshot / f"own_{writer}" / "latest.parquet")
        pq.write_table(counter(shared + 1, writer), tx / "shared.parquet")
        pq.write_table(counter(own + 1, writer), tx / f"own_{writer}.parquet")
        wait_for_everyone(writer)
        try:
            with open(tx / ".control", "w") as control:
                control.write(f"commit {writer} round {round_}\n")
        except OSError as exc:
            reason = (tx / ".control").read_text().splitlines()[0]
            if not reason.startswith("conflict: shared changed on main"):
                raise SystemExit(f"{writer}: commit failed with {exc}: {reason}") from None
            conflicts += 1
        else:
            reason = (tx / ".control").read_text().splitlines()[0]
            if not reason.startswith("committed "):
                raise SystemExit(f"{writer}: commit returned but says {reason!r}")
            shutil.rmtree(tx)
            return conflicts
        shutil.rmtree(tx)
        time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 5)))
    raise SystemExit(f"{writer}: no commit in {MAX_ATTEMPTS} attempts")


def api_round(repo: udrfs.Repo, writer: str, round_: int) -> int:
    conflicts = 0
    for attempt in range(MAX_ATTEMPTS):
        try:
            with repo.transaction(branch="main", message=f"{writer} round {round_}") as tx:
                shared = tx.read_table("shared").column("count")[0].as_py()
                own = 0
                with contextlib.suppress(udrfs.NotFoundError):
                    own = tx.read_table(f"own_{writer}").column("count")[0].as_py()
                tx.write_table("shared", counter(shared + 1, writer))
                tx.write_table(f"own_{writer}", counter(own + 1, writer))
                wait_for_everyone(writer)
            return conflicts
        except udrfs.ConflictError as exc:
            if exc.tables != ("shared",):
                raise SystemExit(f"{writer}: conflict on unexpected tables {exc.tables}") from None
            conflicts += 1
            time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 5)))
    raise SystemExit(f"{writer}: no commit in {MAX_ATTEMPTS} attempts")


def main() -> None:
    global BARRIER
    mode, where, writer, rounds = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if len(sys.argv) > 6:
        BARRIER = (Path(sys.argv[5]), int(sys.argv[6]))
    random.seed(os.getpid())
    conflicts = 0
    repo = udrfs.Repo(where) if mode == "api" else None
    for round_ in range(rounds):
        if repo is not None:
            conflicts += api_round(repo, writer, round_)
        else:
            conflicts += mount_round(where, writer, round_)
    print(f"done {rounds} {conflicts}", flush=True)


if __name__ == "__main__":
    main()
