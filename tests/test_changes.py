"""The change feed: row counts in every entry, `repo.changes`, subscriptions, `udr changes`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

import udrfs
from udrfs import ChangeEntry

EXAMPLES = Path(__file__).resolve().parents[1] / "tools" / "examples"


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


def lots(keys: range, value: int = 0) -> pa.Table:
    return pa.table({"bbl": pa.array(keys, pa.int64()), "v": [value] * len(keys)})


def counted(repo: udrfs.Repo, commit: udrfs.Commit | None) -> tuple[udrfs.TableChange, ...]:
    """The commit's changes with the row counts computed after it."""
    assert commit is not None
    return repo.counted(commit.id).changes


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


# ---- what each entry says -----------------------------------------------------------------


def test_an_entry_counts_rows_exactly_when_the_key_is_known(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(0, 100)), key="bbl")
    rows = lots(range(10, 110)).to_pydict()
    rows["v"][50] = 7  # bbl 60 modified; 0..9 removed; 100..109 added
    commit = repo.write_table("t", pa.table(rows), key="bbl")
    assert commit is not None
    (change,) = repo.counted(commit.id).changes
    assert (change.old_version, change.new_version) == (1, 2)
    assert (change.rows_before, change.rows) == (100, 100)
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (10, 10, 1)


def test_an_entry_without_a_key_carries_row_counts_before_and_after(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(5)))
    (change,) = counted(repo, repo.write_table("t", lots(range(8))))
    assert (change.rows_before, change.rows) == (5, 8)
    assert change.rows_added is None and change.rows_modified is None


def test_nested_columns_are_compared_too(repo: udrfs.Repo) -> None:
    tags = pa.array([[1, 2], [3], None, []], pa.list_(pa.int64()))
    repo.write_table("t", pa.table({"k": [1, 2, 3, 4], "tags": tags}), key="k")
    changed = pa.array([[1, 2], [3, 4], None, []], pa.list_(pa.int64()))
    (change,) = counted(
        repo, repo.write_table("t", pa.table({"k": [1, 2, 3, 4], "tags": changed}), key="k")
    )
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (0, 0, 1)
    assert repo.diff("t", 1, 2).modified.column("k").to_pylist() == [2]


def test_a_new_keyed_table_counts_every_row_as_added(repo: udrfs.Repo) -> None:
    (change,) = counted(repo, repo.write_table("t", lots(range(7)), key="bbl"))
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (7, 0, 0)


def test_a_key_that_repeats_leaves_the_counts_unknown(repo: udrfs.Repo) -> None:
    # A declared key is checked at write time; one kept from the previous version is not.
    repo.write_table("t", pa.table({"k": [1, 2], "v": [1, 2]}), key="k")
    (change,) = counted(repo, repo.write_table("t", pa.table({"k": [1, 1], "v": [1, 3]})))
    assert change.rows_added is None and (change.rows_before, change.rows) == (2, 2)


def test_one_transaction_counts_each_table_it_writes(repo: udrfs.Repo) -> None:
    with repo.transaction(message="night") as tx:
        tx.write_table("a", lots(range(3)), key="bbl")
        tx.write_table("b", lots(range(4)), key="bbl")
    with repo.transaction(message="night 2") as tx:
        tx.write_table("a", lots(range(3), value=1), key="bbl")
        tx.write_table("b", lots(range(5)), key="bbl")
    entry = repo.changes(since=1)[0]
    counts = {c.table: (c.rows_added, c.rows_removed, c.rows_modified) for c in entry.tables}
    assert counts == {"a": (0, 0, 3), "b": (1, 0, 0)}


# ---- reading the log ----------------------------------------------------------------------


def test_changes_since_a_seq_are_the_later_entries_oldest_first(repo: udrfs.Repo) -> None:
    for n in range(1, 5):
        repo.write_table("t", lots(range(n)), key="bbl", message=f"night {n}")
    entries = repo.changes(since=2, branch="main")
    assert [(e.seq, e.message) for e in entries] == [(3, "night 3"), (4, "night 4")]
    assert [e.seq for e in repo.get_changes(since=3)] == [4]


def test_changes_of_a_branch_are_its_own(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(1)))
    repo.create_branch("exp")
    repo.write_table("t", lots(range(2)), branch="exp")
    repo.write_table("u", lots(range(3)))
    assert [e.tables[0].table for e in repo.changes(branch="exp")] == ["t", "t"]
    assert [e.tables[0].table for e in repo.changes(branch="main")] == ["t", "u"]


def test_the_latest_seq_is_the_branch_heads(repo: udrfs.Repo) -> None:
    assert repo.latest_seq() == 0
    repo.write_table("t", lots(range(1)))
    assert repo.latest_seq("main") == 1


# ---- subscribing --------------------------------------------------------------------------


def test_a_subscriber_gets_each_new_commit_once_in_order(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(1)))
    seen: list[int] = []
    sub = repo.subscribe(lambda e: seen.append(e.seq), poll_interval=0.02)
    try:
        for n in range(2, 7):
            repo.write_table("t", lots(range(n)))
        wait_for(lambda: len(seen) >= 5)
    finally:
        sub.stop()
    assert seen == [2, 3, 4, 5, 6]  # commits before subscribing are not replayed
    assert not sub.running and sub.error is None


def test_a_restarted_subscriber_resumes_without_gaps_or_repeats(repo: udrfs.Repo) -> None:
    delivered: list[int] = []
    checkpoint = {"seq": 0}

    def handle(entry: ChangeEntry) -> None:
        delivered.append(entry.seq)
        checkpoint["seq"] = entry.seq

    first = repo.subscribe(handle, from_seq=checkpoint["seq"], poll_interval=0.02)
    for n in range(1, 4):
        repo.write_table("t", lots(range(n)))
    wait_for(lambda: checkpoint["seq"] == 3)
    first.stop()
    for n in range(4, 7):  # committed while no subscriber runs
        repo.write_table("t", lots(range(n)))
    reopened = udrfs.Repo(repo.path)
    second = reopened.subscribe(handle, from_seq=checkpoint["seq"], poll_interval=0.02)
    repo.write_table("t", lots(range(7)))
    wait_for(lambda: checkpoint["seq"] == 7)
    second.stop()
    assert delivered == [1, 2, 3, 4, 5, 6, 7]


def test_an_entry_whose_callback_failed_is_delivered_again(repo: udrfs.Repo) -> None:
    for n in range(1, 4):
        repo.write_table("t", lots(range(n)))
    delivered: list[int] = []
    failures = [2]  # the first delivery of seq 2 fails

    def flaky(entry: ChangeEntry) -> None:
        if entry.seq in failures:
            failures.remove(entry.seq)
            raise RuntimeError("downstream was down")
        delivered.append(entry.seq)

    sub = repo.subscribe(flaky, from_seq=0, poll_interval=0.02)
    wait_for(lambda: not sub.running)
    assert isinstance(sub.error, RuntimeError) and sub.last_seq == 1
    retry = repo.subscribe(flaky, from_seq=sub.last_seq, start=False)
    assert retry.poll() == 2
    assert delivered == [1, 2, 3]


def test_stopping_a_subscription_ends_its_thread(repo: udrfs.Repo) -> None:
    with repo.subscribe(lambda e: None, poll_interval=30.0) as sub:
        assert sub.running
        assert any(t.name.startswith("udr-subscription") for t in threading.enumerate())
    assert not sub.running
    assert not any(t.name.startswith("udr-subscription") for t in threading.enumerate())


def test_a_subscription_can_follow_one_table(repo: udrfs.Repo) -> None:
    seen: list[str] = []
    sub = repo.subscribe(lambda e: seen.extend(c.table for c in e.tables), table="b", start=False)
    repo.write_table("a", lots(range(1)))
    repo.write_table("b", lots(range(1)))
    assert sub.poll() == 1 and seen == ["b"]


def test_the_subscriber_example_runs_as_written(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "subscribe_to_changes.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    seqs = [
        int(line.split()[1].rstrip(":")) for line in proc.stdout.splitlines() if line[:4] == "seq "
    ]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert "restart from seq 3:" in proc.stdout


@pytest.mark.parametrize("example", ["what_changed.py", "branch_experiment.py"])
def test_the_plan_examples_run(example: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / example)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


# ---- the command --------------------------------------------------------------------------


def test_cli_changes_prints_the_same_lines_as_the_change_log(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(3)), key="bbl")
    repo.write_table("t", lots(range(4)), key="bbl")
    proc = udr("changes", str(repo.path), "--since", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [e.to_json_line() for e in repo.changes(since=1)]
    assert json.loads(proc.stdout)["tables"][0]["rows_added"] == 1


def test_cli_changes_follow_prints_new_commits_as_they_land(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(1)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "udrfs.cli.main", "changes", str(repo.path), "--since", "1",
         "--follow", "--interval", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        repo.write_table("t", lots(range(2)), message="late")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line)["message"] == "late"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
