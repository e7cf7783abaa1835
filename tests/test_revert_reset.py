"""Undo: `repo.revert` / `udr revert` and `repo.reset` / `udr reset`."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from stores import pack_bytes

import udrfs
from udrfs.cli.main import main
from udrfs.errors import EXIT_CONFLICT


@pytest.fixture
def nightly(repo: udrfs.Repo, nyc_parquet_dir: Path) -> udrfs.Repo:
    """Night 1: airlines and planes as imported; night 2: a bad build of both."""
    with repo.transaction(message="night 1") as tx:
        tx.import_file("airlines", nyc_parquet_dir / "airlines.parquet", key="carrier")
        tx.import_file("planes", nyc_parquet_dir / "planes.parquet", key="tailnum")
    with repo.transaction(message="night 2 (bad)") as tx:
        tx.write_table("airlines", tx.read_table("airlines").slice(0, 4), key="carrier")
        tx.write_table("planes", tx.read_table("planes").slice(0, 100), key="tailnum")
    return repo


def test_revert_puts_back_previous_versions_without_copying_data(nightly: udrfs.Repo) -> None:
    bad = nightly.head()
    good = nightly.version("planes", 1)
    before = pack_bytes(nightly)
    commit = nightly.revert(bad)
    assert commit is not None and commit.parents == (bad,)
    assert commit.message.startswith(f"revert {bad[:12]}")
    assert pack_bytes(nightly) == before  # old chunk lists, no data written
    planes = nightly.version("planes")
    assert planes.version == 3 and planes.blake3 == good.blake3
    assert nightly.read_table("planes").equals(nightly.read_table("planes", version=1))
    assert nightly.version("airlines").blake3 == nightly.version("airlines", 1).blake3
    # the change log shows the revert as an ordinary commit, with row counts
    entry = nightly.changes(since=commit.seq - 1)[-1]
    assert entry.commit == commit.id
    change = {c.table: c for c in entry.tables}["planes"]
    assert (change.old_version, change.new_version) == (2, 3)
    assert (change.rows_before, change.rows) == (100, good.rows)
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (good.rows - 100, 0, 0)


def test_revert_drops_an_added_table_and_brings_back_a_dropped_one(nightly: udrfs.Repo) -> None:
    added = nightly.write_table("extra", pa.table({"a": [1, 2]}))
    assert added is not None
    with nightly.transaction(message="drop airlines") as tx:
        tx.drop_table("airlines")
    dropped = nightly.head()
    nightly.revert(dropped)
    assert nightly.read_table("airlines").num_rows == 4  # back as it was before the drop
    nightly.revert(added.id)
    assert "extra" not in {t.name for t in nightly.tables()}
    assert nightly.log(limit=1)[0].changes[0].new_version is None


def test_revert_refuses_when_a_later_commit_changed_the_table(nightly: udrfs.Repo) -> None:
    bad = nightly.head()
    nightly.write_table("planes", nightly.read_table("planes").slice(0, 50), key="tailnum")
    head = nightly.head()
    with pytest.raises(udrfs.RevertConflictError, match="later commits changed planes") as err:
        nightly.revert(bad)
    assert isinstance(err.value, udrfs.ConflictError) and err.value.tables == ("planes",)
    assert nightly.head() == head  # nothing committed
    nightly.revert(bad, force=True)
    assert nightly.version("planes").blake3 == nightly.version("planes", 1).blake3
    assert nightly.version("airlines").blake3 == nightly.version("airlines", 1).blake3


def test_revert_of_a_merge_commit_undoes_what_the_merge_brought(nightly: udrfs.Repo) -> None:
    nightly.create_branch("experiment")
    nightly.write_table("scores", pa.table({"k": [1, 2], "s": [0.5, 0.7]}), branch="experiment")
    nightly.write_table("planes", nightly.read_table("planes").slice(0, 10), branch="experiment")
    nightly.write_table("airlines", nightly.read_table("airlines").slice(0, 2), key="carrier")
    airlines = nightly.version("airlines")
    planes_before = nightly.version("planes")
    merged = nightly.merge("experiment")
    assert merged.commit is not None and len(merged.commit.parents) == 2
    commit = nightly.revert(merged.commit.id)
    assert commit is not None
    assert sorted(c.table for c in commit.changes) == ["planes", "scores"]
    assert "scores" not in {t.name for t in nightly.tables()}
    assert nightly.version("planes").blake3 == planes_before.blake3
    assert nightly.version("airlines").id == airlines.id  # main's own change stays


def test_revert_refuses_a_commit_outside_the_branch_and_the_first_commit(
    nightly: udrfs.Repo,
) -> None:
    nightly.create_branch("experiment")
    other = nightly.write_table("x", pa.table({"a": [1]}), branch="experiment")
    assert other is not None
    with pytest.raises(udrfs.UsageError, match="not in the history of 'main'"):
        nightly.revert(other.id)
    root = nightly.log()[-1].id
    with pytest.raises(udrfs.UsageError, match="nothing to revert"):
        nightly.revert(root)


def test_reset_moves_a_branch_back_when_another_ref_keeps_the_commits(
    nightly: udrfs.Repo,
) -> None:
    bad = nightly.head()
    good = nightly.log()[1].id
    nightly.create_tag("bad-night", bad)
    result = nightly.reset("main", to=good)
    assert (result.old, result.new, result.lost) == (bad, good, ())
    assert nightly.head() == good and nightly.read_table("planes").num_rows > 100


def test_reset_refuses_to_lose_commits_unless_forced(nightly: udrfs.Repo) -> None:
    bad = nightly.head()
    good = nightly.log()[1].id
    with pytest.raises(udrfs.NonFastForwardError, match="would lose 1 commit"):
        nightly.reset("main", to=good)
    assert nightly.head() == bad
    result = nightly.reset("main", to=good, force=True)
    assert result.lost == (bad,) and nightly.head() == good
    nightly.commit(bad)  # still in the store, by id


def test_reset_on_a_handle_defaults_to_its_branch(nightly: udrfs.Repo) -> None:
    nightly.create_branch("experiment")
    exp = nightly.checkout("experiment")
    start = exp.head()
    exp.write_table("x", pa.table({"a": [1]}))
    exp.reset(to=start, force=True)
    assert nightly.head("experiment") == start


def test_cli_revert_and_reset(nightly: udrfs.Repo, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(nightly.path)
    bad = nightly.head()
    assert main(["revert", store, bad[:12]]) == 0
    out = capsys.readouterr().out
    assert "reverted on main" in out and "planes v2 -> v3" in out
    assert main(["revert", store, bad[:12]]) == EXIT_CONFLICT  # already undone meanwhile
    assert "later commits changed airlines, planes" in capsys.readouterr().err
    reverted = nightly.head()
    assert main(["reset", store, "main", "--to", bad]) == EXIT_CONFLICT
    assert "--force" in capsys.readouterr().err
    assert main(["reset", store, "main", "--to", bad, "--force"]) == 0
    assert f"{reverted[:12]} -> {bad[:12]}" in capsys.readouterr().out
    assert nightly.head() == bad
