"""SIGKILL of a writer at any step of a commit leaves the branch before or after, never between."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

import udrfs
from udrfs.catalog.crashpoints import ENV, POINTS

WRITER = Path(__file__).with_name("crashwriter.py")


def _run_writer(store: Path, rounds: int, crashpoint: str | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if crashpoint:
        env[ENV] = crashpoint
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(store), str(rounds)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _assert_consistent(store: Path) -> int:
    """The head is a whole commit: every table at the same generation; fsck clean."""
    fresh = udrfs.Repo(store)
    report = fresh.fsck()
    assert report.ok, report.problems
    tables = fresh.tables()
    if not tables:
        return 0
    assert [t.name for t in tables] == ["a", "b", "c"]
    gens = {fresh.read_table(t.name, columns=["gen"]).column("gen")[0].as_py() for t in tables}
    assert len(gens) == 1, f"tables from different commits are visible together: {gens}"
    return gens.pop()


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_commit_step_leaves_branch_before_or_after(
    repo: udrfs.Repo, point: str
) -> None:
    assert _run_writer(repo.path, 1).wait(60) == 0  # generation 1 committed normally
    head = repo.head()
    proc = _run_writer(repo.path, 1, crashpoint=point)
    assert proc.wait(60) == -signal.SIGKILL
    gen = _assert_consistent(repo.path)
    if point == "after-ref":
        assert gen == 2 and repo.head() != head
    else:
        assert gen == 1 and repo.head() == head
    # The store keeps working after the crash.
    assert _run_writer(repo.path, 1).wait(60) == 0
    assert _assert_consistent(repo.path) == (3 if point == "after-ref" else 2)


@pytest.mark.slow
def test_kill_at_random_moments_never_shows_a_partial_commit(repo: udrfs.Repo) -> None:
    rng = random.Random(7)
    inside = 0
    for _ in range(6):
        proc = _run_writer(repo.path, 50)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("begin ")  # started: the kill lands in the commit loop
        time.sleep(rng.uniform(0.0, 1.2))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL  # killed, not finished
        what, n = [first, *proc.stdout.read().splitlines()][-1].split()
        gen = _assert_consistent(repo.path)
        if what == "committed":
            assert gen == int(n)
        else:
            # Killed inside the transaction of generation n: the branch shows the one before,
            # or n if the kill came after the ref moved.
            assert gen in (int(n) - 1, int(n))
            inside += 1
    # The kills must have landed inside transactions, or this tested nothing.
    assert inside >= 3, f"only {inside} of 6 kills landed inside a transaction"
    repo.write_table("after", pa.table({"k": [1]}))
    assert udrfs.Repo(repo.path).fsck().ok
