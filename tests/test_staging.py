"""Named transactions (the mount's `.tx` directories) survive the process that opened them."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

import udrfs
from udrfs.catalog.staging import TxOutcome
from udrfs.catalog.tx_files import TxFileNote


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


# -- recovery after a restart (NamedTransaction.recover), without a mount ---------------------


def test_a_recovered_transaction_resumes_with_its_staged_tables(repo: udrfs.Repo) -> None:
    tx = repo.staging.open("main", "nightly")
    tx.write_table("a", pa.table({"k": [1, 2]}))
    repo.staging.save(tx)
    found = udrfs.Repo(repo.path).staging.named("main", "nightly").recover()
    assert (found.phase, found.status) == ("open", "open")
    assert found.tx is not None and list(found.tx.staged) == ["a"]
    assert found.staged["a"].rows == 2 and found.blocked == {}


def test_a_transaction_killed_after_its_commit_point_recovers_as_committed(
    repo: udrfs.Repo,
) -> None:
    tx = repo.staging.open("main", "nightly")
    tx.write_table("a", pa.table({"k": [1, 2]}))
    repo.staging.save(tx)
    commit = tx.commit()  # the process dies here: the outcome is never recorded
    assert commit is not None
    found = udrfs.Repo(repo.path).staging.named("main", "nightly").recover()
    assert (found.phase, found.landed, found.tx) == ("committed", commit.id, None)
    # Recorded now: the next start reads the outcome instead of searching the history.
    outcome = repo.staging.outcome("main", "nightly")
    assert outcome == TxOutcome("committed", f"committed {commit.id}")


def test_an_ended_transaction_recovers_its_outcome_and_takes_no_changes(
    repo: udrfs.Repo,
) -> None:
    tx = repo.staging.open("main", "nightly")
    named = repo.staging.named("main", "nightly")
    named.save_notes({"t.parquet": TxFileNote(problem="not Parquet")})
    named.end(tx, TxOutcome("aborted", "aborted: nothing was applied"))
    found = repo.staging.named("main", "nightly").recover()
    assert (found.phase, found.status) == ("aborted", "aborted: nothing was applied")
    assert found.tx is None and found.blocked == {}
    assert not list((repo.path / "staging" / "tx-files").glob("**/*.json"))  # notes forgotten


def test_a_file_being_written_recovers_as_incomplete_unless_it_was_staged_since(
    repo: udrfs.Repo,
) -> None:
    tx = repo.staging.open("main", "nightly")
    tx.write_table("done", pa.table({"k": [1]}))
    repo.staging.save(tx)
    # Both noted as being written; "done" was staged after its note, "cut" never was.
    repo.staging.named("main", "nightly").save_notes(
        {
            "done.parquet": TxFileNote(writing=True, replacing=None),
            "cut.parquet": TxFileNote(writing=True, replacing=None, size=10),
        }
    )
    found = repo.staging.named("main", "nightly").recover()
    assert list(found.staged) == ["done"]
    assert list(found.blocked) == ["cut.parquet"]
    problem = found.blocked["cut.parquet"].problem
    assert problem is not None and "cut.parquet is incomplete" in problem


def test_a_transaction_whose_state_is_damaged_recovers_as_lost(repo: udrfs.Repo) -> None:
    repo.staging.open("main", "nightly")
    (repo.path / "staging" / "tx" / "main" / "nightly.json").write_text("{not json")
    found = repo.staging.named("main", "nightly").recover()
    assert found.phase == "lost" and "damaged" in found.status and found.tx is None


def test_discarding_a_named_transaction_forgets_its_state_and_notes(repo: udrfs.Repo) -> None:
    repo.staging.open("main", "nightly")
    named = repo.staging.named("main", "nightly")
    named.save_notes({"t.parquet": TxFileNote(problem="not Parquet")})
    assert list((repo.path / "staging").glob("tx-files/**/*.json"))
    named.discard()
    assert repo.staging.names("main") == []
    assert not list((repo.path / "staging").glob("tx-files/**/*.json"))
