"""A writer process for concurrency tests.

usage: python racewriter.py STORE WRITER_ID ROUNDS
Each round appends one row to the shared table (read-modify-write, so a lost update would lose
a row) and rewrites the writer's own table. Prints one line per ConflictError it received.
"""

from __future__ import annotations

import sys

import pyarrow as pa

import udrfs


def main() -> None:
    repo = udrfs.Repo(sys.argv[1])
    writer, rounds = sys.argv[2], int(sys.argv[3])

    for r in range(rounds):

        def attempt(r: int = r) -> udrfs.Commit | None:
            try:
                with repo.transaction(message=f"{writer} round {r}") as tx:
                    rows = tx.read_table("shared").to_pylist()
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
