"""Row-level diffs (`repo.diff`, `udr diff T@N..T@M`) and snapshot diffs (`udr diff A..B`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import udrfs
from udrfs.catalog.rowgroups import plan_comparison, row_groups


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


def edited_airports(airports: pa.Table) -> pa.Table:
    """Hawaii (tz -10) closed, Alaska (tz -9) one foot higher, three new airports."""
    kept = airports.filter(pc.not_equal(airports["tz"], -10))
    alaska = pc.equal(kept["tz"], -9)
    alt = pc.if_else(alaska, pc.add(kept["alt"], 1), kept["alt"])
    kept = kept.set_column(kept.schema.get_field_index("alt"), "alt", alt)
    new = pa.table(
        {
            "faa": ["ZZ1", "ZZ2", "ZZ3"],
            "name": ["New One", "New Two", "New Three"],
            "lat": [40.0, 41.0, 42.0],
            "lon": [-73.0, -74.0, -75.0],
            "alt": [10, 20, 30],
            "tz": [-5, -5, -5],
            "dst": ["A", "A", "A"],
            "tzone": ["America/New_York"] * 3,
        },
        schema=airports.schema,
    )
    return pa.concat_tables([kept, new])


@pytest.fixture
def airports(nyc_parquet_dir: Path) -> pa.Table:
    return pq.read_table(nyc_parquet_dir / "airports.parquet")


@pytest.fixture
def airports_repo(repo: udrfs.Repo, airports: pa.Table) -> udrfs.Repo:
    repo.write_table("airports", airports, key="faa")
    repo.write_table("airports", edited_airports(airports), key="faa")
    return repo


def test_row_diff_matches_counts_known_from_the_data(
    airports_repo: udrfs.Repo, airports: pa.Table
) -> None:
    hawaii = pc.sum(pc.equal(airports["tz"], -10)).as_py()
    alaska = pc.sum(pc.equal(airports["tz"], -9)).as_py()
    diff = airports_repo.diff("airports", 1, 2)
    assert diff.counts == {"added": 3, "removed": hawaii, "modified": alaska}
    assert sorted(diff.added["faa"].to_pylist()) == ["ZZ1", "ZZ2", "ZZ3"]
    assert set(diff.removed["tz"].to_pylist()) == {-10}


def test_modified_rows_show_before_and_after_of_changed_columns_only(
    airports_repo: udrfs.Repo,
) -> None:
    modified = airports_repo.diff("airports", 1, 2).modified
    assert modified.column_names == ["faa", "alt_before", "alt_after", "changed_columns"]
    rows = modified.to_pylist()
    assert rows  # the Alaskan airports
    assert all(r["alt_after"] == r["alt_before"] + 1 for r in rows)
    assert all(r["changed_columns"] == ["alt"] for r in rows)


def test_the_change_log_counts_equal_the_diff(airports_repo: udrfs.Repo) -> None:
    (change,) = airports_repo.changes(since=1)[0].tables
    diff = airports_repo.diff("airports", 1, 2)
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (
        diff.counts["added"],
        diff.counts["removed"],
        diff.counts["modified"],
    )


def test_diff_without_a_key_compares_whole_rows(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1, 2, 3, 3], "b": ["x", "y", "z", "z"]}))
    repo.write_table("t", pa.table({"a": [1, 2, 3, 4], "b": ["x", "Y", "z", "w"]}))
    diff = repo.diff("t", 1, 2)
    assert diff.key is None
    assert sorted(diff.added.to_pylist(), key=str) == [{"a": 2, "b": "Y"}, {"a": 4, "b": "w"}]
    assert sorted(diff.removed.to_pylist(), key=str) == [{"a": 2, "b": "y"}, {"a": 3, "b": "z"}]
    assert diff.modified.num_rows == 0


def test_a_key_given_to_diff_overrides_the_recorded_one(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1, 2], "b": ["x", "y"]}))
    repo.write_table("t", pa.table({"a": [1, 2], "b": ["x", "Y"]}))
    assert repo.diff("t", 1, 2, key=["a"]).counts == {"added": 0, "removed": 0, "modified": 1}


def test_diff_of_identical_content_is_empty(repo: udrfs.Repo) -> None:
    data = pa.table({"k": list(range(100)), "v": list(range(100))})
    repo.write_table("t", data, key="k")
    repo.create_branch("b")
    repo.write_table("t", pa.table({"k": [1], "v": [1]}), key="k")
    repo.write_table("t", data, key="k")
    diff = repo.diff("t", 1, 3)
    assert diff.counts == {"added": 0, "removed": 0, "modified": 0} and not diff


def test_sides_can_be_refs_and_ref_at_version(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 2], "v": [0, 0]}), key="k")
    repo.create_branch("exp")
    repo.write_table("t", pa.table({"k": [1, 2, 3], "v": [0, 5, 0]}), key="k", branch="exp")
    diff = repo.diff("t", "main", "exp")
    assert diff.counts == {"added": 1, "removed": 0, "modified": 1}
    assert repo.diff("t", "main@1", "exp@2").counts == diff.counts
    assert repo.diff("t", 1, 2, branch="exp").counts == diff.counts


def test_a_key_that_repeats_is_refused(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 1, 2], "v": [1, 2, 3]}))
    repo.write_table("t", pa.table({"k": [1, 1, 2], "v": [1, 2, 4]}))
    with pytest.raises(udrfs.KeyNotUniqueError, match="does not identify rows"):
        repo.diff("t", 1, 2, key="k")


def test_a_key_column_that_is_missing_is_named(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1], "v": [1]}))
    repo.write_table("t", pa.table({"k": [1], "v": [2]}))
    with pytest.raises(udrfs.NotFoundError, match="nope"):
        repo.diff("t", 1, 2, key="nope")


def test_added_and_removed_columns_are_reported(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 2], "old": [1, 1], "v": [1, 1]}), key="k")
    repo.write_table(
        "t", pa.table({"k": [1, 2], "v": [1, 2], "new": [3, 3]}), key="k", allow_schema_change=True
    )
    diff = repo.diff("t", 1, 2)
    assert (diff.columns_added, diff.columns_removed) == (("new",), ("old",))
    assert diff.modified.to_pylist() == [
        {"k": 2, "v_before": 1, "v_after": 2, "changed_columns": ["v"]}
    ]


def test_diff_rows_write_to_parquet(airports_repo: udrfs.Repo, tmp_path: Path) -> None:
    diff = airports_repo.diff("airports", 1, 2)
    paths = diff.write_parquet(tmp_path / "out")
    assert {k: pq.read_table(p).num_rows for k, p in paths.items()} == diff.counts


def test_diff_versions_alias_answers_the_change_log_spelling(
    airports_repo: udrfs.Repo, airports: pa.Table
) -> None:
    diff = airports_repo.diff_versions("airports", 1, 2, key_columns=["faa"])
    plain = airports_repo.diff("airports", 1, 2, key="faa")
    for part in ("added", "removed", "modified"):
        assert by_key(diff[f"rows_{part}"]) == by_key(getattr(plain, part)), part
        assert by_key(diff[part]) == by_key(getattr(plain, part)), part
    alaska = airports.filter(pc.equal(airports["tz"], -9))["faa"].to_pylist()
    assert sorted(diff["rows_modified"]["faa"].to_pylist()) == sorted(alaska)
    assert sorted(diff["added"]["faa"].to_pylist()) == ["ZZ1", "ZZ2", "ZZ3"]
    with pytest.raises(KeyError):
        diff["rows_renamed"]


def by_key(rows: pa.Table) -> list[dict[str, object]]:
    return sorted(rows.to_pylist(), key=lambda r: str(r["faa"]))


def wide(n: int) -> pa.Table:
    return pa.table(
        {"k": list(range(n)), "v": [i % 7 for i in range(n)], "w": [str(i) for i in range(n)]}
    )


def test_an_edit_to_one_column_reads_only_that_column_of_one_row_group(repo: udrfs.Repo) -> None:
    base = wide(60_000)
    edited = base.to_pydict()
    edited["v"][30_000] = 99
    repo.write_table("t", base, key="k")
    repo.write_table("t", pa.table(edited), key="k")
    old = row_groups(repo.store.chunks, repo.version("t", 1))
    new = row_groups(repo.store.chunks, repo.version("t", 2))
    plan = plan_comparison(old, new, ["k"])
    assert len(old.rows) > 2
    assert (plan.old_full, plan.new_full) == ((), ())
    assert (len(plan.old_aligned), len(plan.new_aligned), plan.aligned_columns) == (1, 1, ("v",))
    diff = repo.diff("t", 1, 2)
    assert diff.modified.to_pylist() == [
        {"k": 30_000, "v_before": 30_000 % 7, "v_after": 99, "changed_columns": ["v"]}
    ]


def test_an_insert_compares_only_the_row_groups_around_it(repo: udrfs.Repo) -> None:
    base = wide(60_000)
    grown = pa.concat_tables([base, pa.table({"k": [100_000], "v": [1], "w": ["new"]})])
    repo.write_table("t", base, key="k")
    repo.write_table("t", grown, key="k")
    old = row_groups(repo.store.chunks, repo.version("t", 1))
    new = row_groups(repo.store.chunks, repo.version("t", 2))
    plan = plan_comparison(old, new, ["k"])
    assert 0 < len(plan.new_full) < len(new.rows) - 1
    assert repo.diff("t", 1, 2).counts == {"added": 1, "removed": 0, "modified": 0}


def test_edits_in_aligned_and_whole_groups_show_together(repo: udrfs.Repo) -> None:
    base = wide(60_000)
    edited = base.to_pydict()
    edited["v"][10] = 99  # an in-place edit: its row group stays aligned
    edited["w"][50_000] = "changed"
    rows = pa.table(edited)
    grown = pa.concat_tables([rows, pa.table({"k": [70_000], "v": [1], "w": ["x"]})])
    repo.write_table("t", base, key="k")
    repo.write_table("t", grown, key="k")
    diff = repo.diff("t", 1, 2)
    assert diff.counts == {"added": 1, "removed": 0, "modified": 2}
    by_key = {r["k"]: r for r in diff.modified.to_pylist()}
    assert by_key[10]["changed_columns"] == ["v"] and by_key[10]["w_before"] == "10"
    assert by_key[50_000]["changed_columns"] == ["w"] and by_key[50_000]["v_after"] == 50_000 % 7
    (change,) = repo.changes(since=1)[0].tables
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (1, 0, 2)


def test_snapshot_diff_lists_tables_added_removed_and_changed(repo: udrfs.Repo) -> None:
    repo.write_table("same", pa.table({"a": [1]}))
    repo.write_table("changed", pa.table({"a": [1]}))
    repo.write_table("dropped", pa.table({"a": [1]}))
    repo.create_branch("exp")
    with repo.transaction("exp") as tx:
        tx.write_table("changed", pa.table({"a": [1, 2]}))
        tx.write_table("added", pa.table({"a": [1]}))
        tx.drop_table("dropped")
    diff = repo.diff_refs("main", "exp")
    assert [(t.table, t.status, t.old_version, t.new_version) for t in diff.tables] == [
        ("added", "added", None, 1),
        ("changed", "changed", 1, 2),
        ("dropped", "removed", 1, None),
    ]


def test_cli_diff_between_branches_lists_tables(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1]}))
    repo.create_branch("experiment")
    repo.write_table("t", pa.table({"a": [1, 2]}), branch="experiment")
    proc = udr("diff", str(repo.path), "main..experiment")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split() == ["t", "changed", "v1", "v2", "1", "2"]
    listed = json.loads(udr("diff", str(repo.path), "main..experiment", "--json").stdout)
    assert listed["tables"][0]["status"] == "changed"


def test_cli_row_diff_prints_counts_and_writes_parquet(
    airports_repo: udrfs.Repo, airports: pa.Table, tmp_path: Path
) -> None:
    hawaii = pc.sum(pc.equal(airports["tz"], -10)).as_py()
    alaska = pc.sum(pc.equal(airports["tz"], -9)).as_py()
    out = tmp_path / "rows"
    proc = udr(
        "diff", str(airports_repo.path), "airports@1..airports@2", "--key", "faa", "-o", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert f"3 added, {hawaii} removed, {alaska} modified" in proc.stdout
    assert f"modified columns: alt ({alaska})" in proc.stdout
    assert pq.read_table(out / "removed.parquet").num_rows == hawaii
    summary = json.loads(udr("diff", str(airports_repo.path), "airports@1..@2", "--json").stdout)
    assert (summary["added"], summary["key"]) == (3, ["faa"])


def test_cli_row_diff_across_branches(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 2], "v": [0, 0]}), key="k")
    repo.create_branch("exp")
    repo.write_table("t", pa.table({"k": [1, 2], "v": [0, 1]}), key="k", branch="exp")
    by_table = udr("diff", str(repo.path), "main..exp", "--table", "t")
    by_spec = udr("diff", str(repo.path), "main:t..exp:t")
    assert "0 added, 0 removed, 1 modified" in by_table.stdout
    assert by_spec.stdout == by_table.stdout


def test_cli_diff_needs_two_sides(repo: udrfs.Repo) -> None:
    proc = udr("diff", str(repo.path), "main")
    assert proc.returncode == 2 and "OLD..NEW" in proc.stderr  # usage
