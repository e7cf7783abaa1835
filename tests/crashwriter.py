"""A writer process for crash tests: commits versions of several tables until killed.

usage: python crashwriter.py STORE ROUNDS   (UDRFS_CRASHPOINT may be set in the environment)
Prints `begin N` before the transaction of generation N and `committed N` once it returned.
"""

from __future__ import annotations

import sys

import pyarrow as pa

import udrfs


def main() -> None:
    repo = udrfs.Repo(sys.argv[1])
    rounds = int(sys.argv[2])
    for r in range(rounds):
        n = len(repo.table_versions("a")) + 1
        print(f"begin {n}", flush=True)
        with repo.transaction(message=f"round {r}") as tx:
            for i, name in enumerate(("a", "b", "c")):
                # Every table of one commit carries the same generation number n; their keys
                # differ, so a table's chunks are not all another's (a test that one table's
                # chunks were kept must not pass on another's).
                rows = 20_000 + n
                keys = range(i * 1_000_000, i * 1_000_000 + rows)
                tx.write_table(name, pa.table({"k": keys, "gen": [n] * rows}), key="k")
        print(f"committed {n}", flush=True)


if __name__ == "__main__":
    main()
