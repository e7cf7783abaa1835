"""Named transactions (the mount's `.tx` directories) survive the process that opened them."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

import udrfs
from udrfs.catalog.staging import TxOutcome


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


def test_an_ended_transaction_keeps_its_outcome_until_discarded(repo: udrfs.Repo) -> None:
    tx = repo.staging.open("main", "nightly")
    tx.write_table("t", pa.table({"k": [1, 2]}))
    repo.staging.save(tx)
    commit = tx.commit()
    assert commit is not None
    repo.staging.end(tx, TxOutcome("committed", f"committed {commit.id}"))
    again = udrfs.Repo(repo.path).staging  # as after a restart
    assert again.names("main") == ["nightly"]
    assert again.outcome("main", "nightly") == TxOutcome("committed", f"committed {commit.id}")
    assert again.get("main", "nightly").staged == {}  # nothing staged is kept
    again.discard("main", "nightly")
    assert again.names("main") == []


def test_only_one_process_at_a_time_claims_the_staging_area(repo: udrfs.Repo) -> None:
    first = repo.staging.claim({"pid": 1, "mountpoint": "/mnt/a"})
    assert first is not None
    try:
        assert udrfs.Repo(repo.path).staging.claim({"pid": 2, "mountpoint": "/mnt/b"}) is None
        assert repo.staging.owner() == {"pid": 1, "mountpoint": "/mnt/a"}
    finally:
        os.close(first)
    second = repo.staging.claim({"pid": 2, "mountpoint": "/mnt/b"})
    assert second is not None
    os.close(second)
