"""A writer process for concurrency tests.

usage: python racewriter.py STORE WRITER_ID ROUNDS [BARRIER_DIR WRITERS]
Each round appends one row to the shared table (read-modify-write, so a lost update would lose
a row) and rewrites the writer's own table. Prints one line per ConflictError it received.
With a barrier, the first round's first attempt waits, after reading the shared table, until
all WRITERS have read it: they then all commit on the same base, so every one but the first
to commit must get a ConflictError.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow as pa

import udrfs


def wait_for_everyone(barrier: Path, writer: str, writers: int) -> None:
    (barrier / writer).touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.iterdir())) < writers:
        if time.monotonic() > deadline:
            raise SystemExit(f"{writer}: the other writers never reached the barrier")
        time.sleep(0.01)


def main() -> None:
    repo = udrfs.Repo(sys.argv[1])
    writer, rounds = sys.argv[2], int(sys.argv[3])
    barrier = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    writers = int(sys.argv[5]) if len(sys.argv) > 5 else 0

    for r in range(rounds):

        def attempt(r: int = r) -> udrfs.Commit | None:
            try:
                with repo.transaction(message=f"{writer} round {r}") as tx:
                    rows = tx.read_table("shared").to_pylist()
                    if barrier is not None and r == 0 and not (barrier / writer).exists():
                        wait_for_everyone(barrier, writer, writers)
                    rows.append({"writer": writer, "round": r})
                    tx.write_table("shared", pa.Table.from_pylist(rows))
                return tx.result
            except udrfs.ConflictError as exc:
                print(f"conflict {exc.tables}", flush=True)
                raise

        udrfs.retry_on_conflict(attempt, attempts=100, base_delay=0.005)
        repo.write_table(f"own_{writer}", pa.table({"round": [r]}))


if __name__ == "__main__":
    main()
