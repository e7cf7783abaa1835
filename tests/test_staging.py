"""Named transactions (the mount's `.tx` directories) survive the process that opened them."""

from __future__ import annotations

import pyarrow as pa
import pytest

import udrfs


def test_named_transaction_resumes_from_its_state_file_and_commits(repo: udrfs.Repo) -> None:
    tx = repo.staging.open("main", "nightly")
    tx.write_table("a", pa.table({"k": [1, 2]}))
    repo.staging.save(tx)

    resumed = udrfs.Repo(repo.path).staging.get("main", "nightly")  # as after a restart
    assert list(resumed.staged) == ["a"]
    resumed.write_table("b", pa.table({"k": [3]}))
    commit = resumed.commit()
    assert commit is not None and sorted(c.table for c in commit.changes) == ["a", "b"]
    repo.staging.discard("main", "nightly")
    assert repo.staging.names("main") == []


def test_resumed_transaction_keeps_its_snapshot(repo: udrfs.Repo) -> None:
    repo.write_table("master", pa.table({"k": [1]}))
    tx = repo.staging.open("main", "nightly")
    tx.write_table("master", pa.table({"k": [1, 2]}))
    repo.staging.save(tx)
    repo.write_table("master", pa.table({"k": [9]}))  # someone else commits meanwhile
    with pytest.raises(udrfs.ConflictError, match="master"):
        repo.staging.get("main", "nightly").commit()


def test_opening_a_name_twice_or_resuming_an_unknown_one_fails(repo: udrfs.Repo) -> None:
    repo.staging.open("main", "nightly")
    with pytest.raises(udrfs.AlreadyExistsError):
        repo.staging.open("main", "nightly")
    with pytest.raises(udrfs.NotFoundError, match="no open transaction 'other'"):
        repo.staging.get("main", "other")
