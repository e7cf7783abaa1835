"""Merge strategies ("ours", "theirs", per table) and the bounded conflict report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from test_merge import current, diverged, edit, parcels, write

import udrfs
from udrfs.query.merge import MAX_REPORTED

__all__ = ["diverged"]  # the fixture, imported


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


def scores(repo: udrfs.Repo, branch: str = "main") -> dict[int, float]:
    return {r["bbl"]: r["score"] for r in current(repo, branch).to_pylist()}


@pytest.fixture
def conflicting(diverged: udrfs.Repo) -> udrfs.Repo:
    """bbl 1001 changed differently on both sides; 1002 only on main, 1004 only on
    experiment (both kept by any strategy)."""
    write(diverged, edit(edit(parcels(), 1001, score=101.0), 1002, score=102.0))
    write(diverged, edit(edit(parcels(), 1001, score=-1.0), 1004, score=104.0), "experiment")
    return diverged


@pytest.mark.parametrize(("strategy", "expected"), [("ours", 101.0), ("theirs", -1.0)])
def test_a_strategy_settles_conflicting_rows_and_keeps_every_other_change(
    conflicting: udrfs.Repo, strategy: str, expected: float
) -> None:
    result = conflicting.merge("experiment", into="main", strategy=strategy)  # type: ignore[arg-type]
    assert result.resolved == ("nyc_master",)
    got = scores(conflicting)
    assert (got[1001], got[1002], got[1004]) == (expected, 102.0, 104.0)
    assert len(got) == 500
    assert conflicting.fsck().ok


def test_a_per_table_strategy_leaves_other_tables_conflicting(conflicting: udrfs.Repo) -> None:
    conflicting.write_table("other", pa.table({"a": [1]}))
    conflicting.create_branch("side", from_="main")
    conflicting.write_table("other", pa.table({"a": [2]}))
    conflicting.write_table("other", pa.table({"a": [3]}), branch="side")
    head = conflicting.head("main")
    with pytest.raises(udrfs.MergeConflictError) as caught:
        conflicting.merge("side", into="main", strategy={"nyc_master": "theirs"})
    assert caught.value.tables == ["other"]  # no key: a conflict about the whole table
    assert conflicting.head("main") == head
    result = conflicting.merge("side", into="main", strategy={"*": "theirs"})
    assert result.resolved == ("other",)
    assert conflicting.read_table("other").to_pydict() == {"a": [3]}


def test_a_dropped_table_conflict_is_settled_by_the_strategy(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1]}))
    repo.create_branch("experiment")
    with repo.transaction() as tx:
        tx.drop_table("t")
    repo.write_table("t", pa.table({"a": [2]}), branch="experiment")
    repo.create_branch("keep", from_="main")
    repo.merge("experiment", into="keep", strategy="ours")
    assert "t" not in [t.name for t in repo.tables("keep")]  # the target dropped it
    repo.merge("experiment", into="main", strategy="theirs")
    assert repo.read_table("t").to_pydict() == {"a": [2]}


def test_many_conflicts_keep_the_first_on_the_error_and_all_in_the_file(
    diverged: udrfs.Repo, tmp_path: Path
) -> None:
    base = parcels()
    ours = base.set_column(2, "score", pa.array([1000.0 + i for i in range(base.num_rows)]))
    theirs = base.set_column(2, "score", pa.array([-1000.0 - i for i in range(base.num_rows)]))
    write(diverged, ours)
    write(diverged, theirs, "experiment")
    head = diverged.head("main")
    (tmp_path / "report").mkdir()
    out = tmp_path / "report" / "conflicts.jsonl"
    with pytest.raises(udrfs.MergeConflictError) as caught:
        diverged.merge("experiment", into="main", conflicts_file=out)
    error = caught.value
    assert error.total == base.num_rows
    assert len(error.conflicts) == MAX_REPORTED
    assert [c["key"] for c in error.conflicts[:2]] == [{"bbl": 1000}, {"bbl": 1001}]
    assert str(out) in str(error)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == base.num_rows
    assert lines[-1]["key"] == {"bbl": 1499} and lines[-1]["source"]["score"] == -1499.0
    assert [p.name for p in out.parent.iterdir()] == ["conflicts.jsonl"]  # no temporary left
    # Without a file the count is still exact and the message says how to get them all.
    with pytest.raises(udrfs.MergeConflictError, match="first 100 are listed") as caught:
        diverged.merge("experiment", into="main")
    assert caught.value.total == base.num_rows
    assert diverged.head("main") == head
    assert diverged.fsck().ok


def test_an_unknown_strategy_is_refused_before_anything_happens(conflicting: udrfs.Repo) -> None:
    head = conflicting.head("main")
    with pytest.raises(udrfs.errors.UsageError, match="'mine' is not one of: ours, theirs"):
        conflicting.merge("experiment", into="main", strategy="mine")  # type: ignore[arg-type]
    assert conflicting.head("main") == head


def test_the_cli_takes_strategies_and_writes_every_conflict(
    conflicting: udrfs.Repo, tmp_path: Path
) -> None:
    store = str(conflicting.path)
    out = tmp_path / "all.jsonl"
    done = udr("merge", store, "experiment", "--into", "main", "--conflicts-out", str(out))
    assert done.returncode == udrfs.errors.EXIT_CONFLICT
    assert "CONFLICT nyc_master bbl=1001: changed differently on both sides" in done.stdout
    assert len(out.read_text().splitlines()) == 1
    done = udr("merge", store, "experiment", "--into", "main", "--strategy", "bogus")
    assert done.returncode == udrfs.errors.EXIT_USAGE and "not one of" in done.stderr
    done = udr("merge", store, "experiment", "--into", "main", "--strategy", "nyc_master=theirs")
    assert done.returncode == 0, done.stderr
    assert "conflicts settled by the strategy: nyc_master" in done.stdout
    assert scores(conflicting)[1001] == -1.0
