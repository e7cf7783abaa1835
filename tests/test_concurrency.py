"""Several processes committing at once: no lost update; losers get ConflictError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa

import udrfs

WRITER = Path(__file__).with_name("racewriter.py")


def test_concurrent_writers_lose_no_update(repo: udrfs.Repo, tmp_path: Path) -> None:
    repo.write_table(
        "shared", pa.table({"writer": pa.array([], pa.string()), "round": pa.array([], pa.int64())})
    )
    writers, rounds = 4, 8
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                str(repo.path),
                f"w{i}",
                str(rounds),
                str(barrier),
                str(writers),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * writers

    shared = udrfs.Repo(repo.path).read_table("shared").to_pylist()
    assert sorted((r["writer"], r["round"]) for r in shared) == sorted(
        (f"w{i}", r) for i in range(writers) for r in range(rounds)
    )
    # Every commit that lost its race said so with a ConflictError naming the table. All
    # writers' first commits raced on one base (the barrier), so all but one lost at least once.
    conflicts = [line for out in outputs for line in out.splitlines()]
    assert len(conflicts) >= writers - 1
    assert set(conflicts) == {"conflict ('shared',)"}
    # Each writer's own table got all its rounds: disjoint commits were rebased, not lost.
    for i in range(writers):
        assert len(repo.table_versions(f"own_w{i}")) == rounds
    assert len(repo.table_versions("shared")) == writers * rounds + 1
    assert repo.fsck(verify_packs=False).ok
