"""`repo.checkout(branch)` handles and the store's default branch (`udr checkout`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import udrfs
from udrfs.cli.main import main


@pytest.fixture
def nyc(repo: udrfs.Repo, nyc_parquet_dir: Path) -> udrfs.Repo:
    repo.import_file("airlines", nyc_parquet_dir / "airlines.parquet", key="carrier")
    repo.import_file("planes", nyc_parquet_dir / "planes.parquet", key="tailnum")
    return repo


def test_checkout_handle_writes_and_reads_its_branch(nyc: udrfs.Repo) -> None:
    main_head = nyc.head()
    nyc.create_branch("experiment/new-scoring-weights")
    exp = nyc.checkout("experiment/new-scoring-weights")
    planes = exp.read_table("planes")
    with exp.transaction(message="fewer planes") as tx:
        tx.write_table("planes", planes.slice(0, 100), key="tailnum")
    exp.write_table("extra", pa.table({"a": [1, 2]}))
    assert nyc.head() == main_head  # main is untouched
    assert exp.read_table("planes").num_rows == 100
    assert nyc.read_table("planes").num_rows == planes.num_rows
    assert [v.version for v in exp.versions("planes")] == [1, 2]
    assert exp.log(limit=1)[0].message == "write extra"
    assert [e.message for e in exp.changes(since=nyc.latest_seq())] == [
        "fewer planes",
        "write extra",
    ]
    assert exp.query("SELECT count(*) AS n FROM planes").column("n")[0].as_py() == 100
    # branch= still wins on a handle
    assert exp.read_table("planes", branch="main").num_rows == planes.num_rows


def test_checkout_main_then_merge_branch_as_the_plan_writes_it(nyc: udrfs.Repo) -> None:
    nyc.create_branch("experiment")
    exp = nyc.checkout("experiment")
    exp.write_table("airlines", exp.read_table("airlines").slice(0, 5), key="carrier")
    on_main = exp.checkout("main")
    result = on_main.merge_branch("experiment")
    assert result.commit is not None
    assert nyc.read_table("airlines").num_rows == 5
    # and the other way round: merging main into the handle's branch
    nyc.write_table("airlines", nyc.read_table("airlines").slice(0, 3), key="carrier")
    exp.merge("main")
    assert nyc.read_table("airlines", branch="experiment").num_rows == 3


def test_checkout_handle_defaults_branch_and_tag_sources(nyc: udrfs.Repo) -> None:
    nyc.create_branch("a")
    a = nyc.checkout("a")
    a.write_table("airlines", pa.table({"carrier": ["XX"]}), allow_schema_change=True)
    a.create_branch("b")
    a.create_tag("t")
    assert nyc.head("b") == nyc.head("a") == nyc.tags()["t"] != nyc.head()
    assert a.branch == "a" and "on branch 'a'" in repr(a)
    assert a.path == nyc.path  # attributes pass through


def test_checkout_of_missing_branch_is_not_found(nyc: udrfs.Repo) -> None:
    with pytest.raises(udrfs.NotFoundError, match="no branch named 'nope'"):
        nyc.checkout("nope")


def test_cli_checkout_sets_default_branch_for_commands(
    nyc: udrfs.Repo, nyc_parquet_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(nyc.path)
    assert main(["checkout", store]) == 0
    assert capsys.readouterr().out.strip() == "main"
    nyc.create_branch("experiment")
    assert main(["checkout", store, "experiment"]) == 0
    assert (nyc.path / "HEAD").read_text() == "experiment\n"
    assert nyc.default_branch == "experiment"
    capsys.readouterr()
    assert main(["import", store, "weather", str(nyc_parquet_dir / "weather.parquet")]) == 0
    assert "v1 on experiment" in capsys.readouterr().out
    assert nyc.read_table("weather", branch="experiment").num_rows > 0
    assert "weather" not in {t.name for t in nyc.tables()}
    assert main(["branch", store, "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].startswith("* experiment") and listed[2].startswith("  main")
    # -b still wins
    assert main(["tables", store, "-b", "main"]) == 0
    assert "weather" not in capsys.readouterr().out


def test_cli_checkout_refuses_missing_branch_and_keeps_head(
    nyc: udrfs.Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["checkout", str(nyc.path), "nope"]) == 3
    assert "no branch named 'nope'" in capsys.readouterr().err
    assert nyc.default_branch == "main" and not (nyc.path / "HEAD").exists()


def test_checked_out_branch_cannot_be_deleted(nyc: udrfs.Repo) -> None:
    nyc.create_branch("experiment")
    nyc.set_default_branch("experiment")
    with pytest.raises(udrfs.UsageError, match="checked-out branch"):
        nyc.delete_branch("experiment")
    nyc.set_default_branch("main")
    nyc.delete_branch("experiment")


def test_head_naming_a_vanished_branch_falls_back_to_main(nyc: udrfs.Repo) -> None:
    (nyc.path / "HEAD").write_text("gone\n")
    assert nyc.default_branch == "main"
    (nyc.path / "HEAD").write_text("../../etc\n")
    assert nyc.default_branch == "main"


def test_cli_push_without_branches_sends_the_checked_out_branch(
    nyc: udrfs.Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(nyc.path)
    nyc.create_branch("experiment")
    nyc.write_table("extra", pa.table({"a": [1]}), branch="experiment")
    assert main(["remote", store, "add", "origin", str(tmp_path / "remote")]) == 0
    assert main(["checkout", store, "experiment"]) == 0
    assert main(["push", store]) == 0
    remote = udrfs.Repo(tmp_path / "remote")
    assert remote.branches() == {"experiment": nyc.head("experiment")}
