"""Pushing processes for the remote tests.

usage:
  python remotepusher.py push STORE REMOTE
      push every branch and tag, printing a line per file moved (the fault tests kill it
      after a chosen number of lines);
  python remotepusher.py race STORE REMOTE LABEL ROUNDS BARRIER_DIR
      each round: pull, commit table LABEL, wait for the other racer, push; print "won" or
      "lost"; a loser fetches, merges REMOTE/main and pushes again before the round ends.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow as pa

import udrfs


def barrier(directory: Path, name: str, label: str) -> None:
    (directory / f"{name}.{label}").touch()
    deadline = time.monotonic() + 120
    while len(list(directory.glob(f"{name}.*"))) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the other racer never reached {name}")
        time.sleep(0.005)


def race(store: str, remote: str, label: str, rounds: int, barrier_dir: Path) -> None:
    repo = udrfs.Repo(store)
    for r in range(rounds):
        repo.pull(remote, "main")
        barrier(barrier_dir, f"{r}.start", label)
        repo.write_table(label, pa.table({"round": [r]}), message=f"{label} round {r}")
        barrier(barrier_dir, f"{r}.push", label)
        try:
            repo.push(remote, ["main"])
            print("won", flush=True)
        except udrfs.NonFastForwardError as exc:
            assert "moved since you fetched; pull, then push again" in str(exc)
            print("lost", flush=True)
            repo.fetch(remote, ["main"])
            repo.merge(f"{remote}/main", into="main", message=f"{label} merges round {r}")
            repo.push(remote, ["main"])
        barrier(barrier_dir, f"{r}.end", label)


def main() -> None:
    mode, store, remote = sys.argv[1:4]
    if mode == "push":
        udrfs.Repo(store).push(remote, all=True, progress=lambda s: print(s.files, flush=True))
    else:
        race(store, remote, sys.argv[4], int(sys.argv[5]), Path(sys.argv[6]))


if __name__ == "__main__":
    main()
