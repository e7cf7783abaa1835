"""One wrong clock does not poison time travel (catalog/clock.py; docs/architecture.md,
"Commit times and as_of")."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

import udrfs
from udrfs.catalog.model import Commit, TableChange, now_utc
from udrfs.cli.main import main as udr_main
from udrfs.errors import ClockJumpWarning

FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def commit_dated(repo: udrfs.Repo, when: datetime, data: pa.Table) -> str:
    """Commit `data` as the next version of `t` on main, stamped `when`: what a writer whose
    clock says `when` commits (the table is staged on a scratch branch, then the commit is
    written with the given time and main moved to it)."""
    repo.create_branch("scratch")
    repo.write_table("t", data, branch="scratch")
    staged = repo.commit(repo.head("scratch"))
    repo.delete_branch("scratch")
    head = repo.commit(repo.head())
    doc = Commit.document(
        parents=[head.id],
        branch="main",
        seq=head.seq + 1,
        time=when,
        author="wrong clock",
        message=f"dated {when:%Y}",
        tables=staged.tables,
        changes=[TableChange("t", None, None, data.num_rows, None)],
    )
    commit_id = repo.store.objects.put(doc)
    assert repo.fast_forward("main", head.id, commit_id)
    return commit_id


@pytest.fixture
def jumped(repo: udrfs.Repo) -> udrfs.Repo:
    """main: v1 (now), v2 dated 2099 (a wrong clock), v3 (now, by a right clock)."""
    repo.write_table("t", pa.table({"a": [1]}), message="v1")
    commit_dated(repo, FUTURE, pa.table({"a": [1, 2]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClockJumpWarning)
        repo.write_table("t", pa.table({"a": [1, 2, 3]}), message="v3")
    return repo


def test_committing_on_a_head_dated_in_the_future_warns(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1]}))
    future = commit_dated(repo, FUTURE, pa.table({"a": [1, 2]}))
    with pytest.warns(ClockJumpWarning, match="ahead of this machine's clock") as caught:
        repo.write_table("t", pa.table({"a": [1, 2, 3]}))
    assert future[:12] in str(caught[0].message) and "udr fsck" in str(caught[0].message)


def test_as_of_now_sees_commits_made_after_a_future_dated_commit(jumped: udrfs.Repo) -> None:
    assert jumped.read_table("t", as_of=now_utc()).num_rows == 3


def test_a_commit_after_a_clock_jump_is_dated_by_its_writers_clock(jumped: udrfs.Repo) -> None:
    head = jumped.commit(jumped.head())
    assert head.message == "v3"
    assert abs(now_utc() - head.time) < timedelta(minutes=1)


def test_as_of_never_returns_a_snapshot_older_than_a_commit_dated_before_it(
    jumped: udrfs.Repo,
) -> None:
    history = jumped.log()  # newest first
    for position, commit in enumerate(history):
        for as_of in (commit.time, commit.time + timedelta(seconds=1)):
            found = jumped.commit_at("main", as_of)
            # The answer is this commit or a newer one on the history, never an older one.
            assert history.index(found) <= position
            assert found.time <= as_of


def test_as_of_before_the_jump_gives_the_snapshot_before_it(jumped: udrfs.Repo) -> None:
    v1 = jumped.log()[2]
    assert jumped.read_table("t", as_of=v1.time).num_rows == 1


def test_fsck_lists_a_clock_jump_without_calling_the_store_damaged(
    jumped: udrfs.Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    future = jumped.log()[1]
    report = jumped.fsck()
    assert report.ok
    assert any(future.id[:12] in w and "2099-01-01" in w for w in report.warnings)
    assert udr_main(["fsck", str(jumped.path), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and future.id[:12] in out


def test_a_store_without_jumps_has_no_clock_warnings(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1]}))
    repo.write_table("t", pa.table({"a": [1, 2]}))
    assert repo.fsck().warnings == []


def test_small_skew_between_writers_keeps_times_in_order(repo: udrfs.Repo) -> None:
    # A writer whose clock is a minute ahead: the next commit is dated after it, silently.
    repo.write_table("t", pa.table({"a": [1]}))
    ahead = commit_dated(repo, now_utc() + timedelta(minutes=1), pa.table({"a": [1, 2]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClockJumpWarning)
        repo.write_table("t", pa.table({"a": [1, 2, 3]}))
    assert repo.commit(repo.head()).time > repo.commit(ahead).time
    assert repo.fsck().warnings == []
