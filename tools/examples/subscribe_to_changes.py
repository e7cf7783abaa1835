"""Follow a store's change log: one callback per commit, resumed after a restart.

The first user's plan subscribed like this:

    def on_change(entry):
        for change in entry.changes:
            if change.table_name == "parcels":
                print(f"Parcels updated: v{change.old_version} -> v{change.new_version}")

    subscriber = udr.Subscriber(changelog, from_commit=100)
    subscriber.subscribe(on_change)

In udrfs the entry's tables are `entry.tables`, a change's table is `change.table`, and the
position is a sequence number on a branch. The subscriber keeps its last seq in a checkpoint
file, so a restarted process resumes where the last one stopped: nothing missed, nothing twice.

Run: python tools/examples/subscribe_to_changes.py [STORE]   (a temporary store if none)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

import udrfs


def parcels(night: int) -> pa.Table:
    n = 1000 + night * 10
    return pa.table(
        {
            "bbl": pa.array(range(1_000_010_000, 1_000_010_000 + n), pa.int64()),
            "score": [float((i * 7 + night) % 100) for i in range(n)],
        }
    )


def on_change(entry: udrfs.ChangeEntry) -> None:
    for change in entry.tables:
        if change.table == "parcels":
            old, new = change.old_version or 0, change.new_version
            print(
                f"seq {entry.seq}: parcels updated: v{old} -> v{new}"
                f" ({change.rows_added} added, {change.rows_modified} modified)"
            )


def follow(repo: udrfs.Repo, checkpoint: Path, nights: range) -> None:
    """One process's life: resume from the checkpoint, handle what the nights commit, stop."""
    last = int(checkpoint.read_text()) if checkpoint.exists() else 0

    def handle(entry: udrfs.ChangeEntry) -> None:
        on_change(entry)
        checkpoint.write_text(str(entry.seq))  # only after the entry is handled

    subscriber = repo.subscribe(handle, branch="main", from_seq=last, poll_interval=0.05)
    for night in nights:
        repo.write_table("parcels", parcels(night), key="bbl", message=f"night {night}")
    while subscriber.last_seq < repo.latest_seq("main"):
        time.sleep(0.05)
    subscriber.stop()


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(argv[0]) if argv else Path(tmp) / "store"
        repo = udrfs.Repo(store) if (store / "udr.toml").exists() else udrfs.Repo.init(store)
        checkpoint = store.parent / "subscriber.seq"
        print("first run:")
        follow(repo, checkpoint, range(1, 4))
        # The process is gone; two more nights are committed while nobody listens.
        for night in (4, 5):
            repo.write_table("parcels", parcels(night), key="bbl", message=f"night {night}")
        print(f"restart from seq {checkpoint.read_text()}:")
        follow(udrfs.Repo(store), checkpoint, range(6, 7))
        repo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
