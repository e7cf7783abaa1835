"""Merging branches: fast-forward, three-way by table, and by row when both changed a table."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest
from stores import pack_bytes

import udrfs


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


def parcels(n: int = 500) -> pa.Table:
    return pa.table(
        {
            "bbl": pa.array(range(1000, 1000 + n), pa.int64()),
            "zone": [f"R{i % 9}" for i in range(n)],
            "score": [float(i % 50) for i in range(n)],
        }
    )


def edit(table: pa.Table, bbl: int, **values: object) -> pa.Table:
    """The table with the row of `bbl` changed (or deleted when values is {"delete": True})."""
    rows = table.to_pylist()
    if values.pop("delete", False):
        rows = [r for r in rows if r["bbl"] != bbl]
    elif not any(r["bbl"] == bbl for r in rows):
        rows.append({"bbl": bbl, **values})
    else:
        rows = [{**r, **values} if r["bbl"] == bbl else r for r in rows]
    return pa.Table.from_pylist(rows, schema=table.schema)


def row(repo: udrfs.Repo, bbl: int, branch: str = "main") -> dict[str, object] | None:
    found = repo.query(f"SELECT * FROM nyc_master WHERE bbl = {bbl}", branch=branch).to_pylist()
    return found[0] if found else None


@pytest.fixture
def diverged(repo: udrfs.Repo) -> udrfs.Repo:
    """nyc_master (keyed by bbl) on main and on experiment, branched at v1."""
    repo.write_table("nyc_master", parcels(), key="bbl")
    repo.create_branch("experiment")
    return repo


def write(repo: udrfs.Repo, table: pa.Table, branch: str = "main") -> None:
    repo.write_table("nyc_master", table, key="bbl", branch=branch)


def current(repo: udrfs.Repo, branch: str = "main") -> pa.Table:
    return repo.read_table("nyc_master", branch=branch)


def test_merge_fast_forwards_when_the_target_has_not_moved(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 1001, score=99.0), "experiment")
    result = diverged.merge("experiment", into="main")
    assert result.kind == "fast-forward"
    assert diverged.head("main") == diverged.head("experiment")
    assert row(diverged, 1001)["score"] == 99.0  # type: ignore[index]


def test_merging_an_ancestor_is_up_to_date(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 1001, score=99.0))
    head = diverged.head("main")
    assert diverged.merge("experiment", into="main").kind == "up-to-date"
    assert diverged.head("main") == head


def test_a_table_changed_on_one_side_is_taken_without_copying_data(repo: udrfs.Repo) -> None:
    repo.write_table("nyc_master", parcels(), key="bbl")
    repo.create_branch("experiment")
    repo.write_table("scores", parcels(50), key="bbl", branch="experiment")
    repo.write_table("other", pa.table({"a": [1]}))  # main moves too: no fast-forward
    before = pack_bytes(repo)
    result = repo.merge("experiment", into="main")
    assert result.kind == "merge" and result.tables == ("scores",)
    assert pack_bytes(repo) == before
    ours, theirs = repo.version("scores"), repo.version("scores", branch="experiment")
    assert ours.blake3 == theirs.blake3 and ours.id != theirs.id
    assert [v.version for v in repo.table_versions("other")] == [1]


def test_the_merged_version_is_numbered_on_the_target(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1]}))
    repo.create_branch("experiment")
    for n in (2, 3, 4):
        repo.write_table("t", pa.table({"a": list(range(n))}), branch="experiment")
    repo.write_table("other", pa.table({"a": [1]}))
    repo.merge("experiment", into="main")
    assert repo.version("t").version == 2
    assert repo.version("t", branch="experiment").version == 4


def test_a_merge_commit_has_the_target_then_the_source_as_parents(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 1001, score=101.5))
    target = diverged.head("main")
    write(diverged, edit(parcels(), 1400, score=2.5), "experiment")
    source = diverged.head("experiment")
    result = diverged.merge("experiment", into="main")
    assert result.commit is not None
    assert result.commit.parents == (target, source)
    assert result.commit.branch == "main" and result.commit.message == "merge experiment into main"
    assert diverged.head("main") == result.commit.id


def test_disjoint_row_edits_to_one_table_merge_by_key(diverged: udrfs.Repo) -> None:
    ours = edit(edit(parcels(), 1001, score=11.0), 1002, delete=True)
    write(diverged, ours)
    theirs = edit(edit(parcels(), 1300, zone="C4"), 2000, zone="M1", score=1.0)
    write(diverged, theirs, "experiment")
    result = diverged.merge("experiment", into="main")
    assert result.rows_merged == ("nyc_master",)
    assert row(diverged, 1001)["score"] == 11.0  # type: ignore[index]
    assert row(diverged, 1002) is None
    assert row(diverged, 1300)["zone"] == "C4"  # type: ignore[index]
    assert row(diverged, 2000) == {"bbl": 2000, "zone": "M1", "score": 1.0}
    assert current(diverged).num_rows == 500
    untouched = [r for r in current(diverged).to_pylist() if r["bbl"] not in (1001, 1300, 2000)]
    assert untouched == [r for r in parcels().to_pylist() if r["bbl"] not in (1001, 1002, 1300)]


def test_the_same_edit_on_both_sides_is_not_a_conflict(diverged: udrfs.Repo) -> None:
    write(diverged, edit(edit(parcels(), 1001, score=5.5), 1010, score=7.0))
    write(diverged, edit(edit(parcels(), 1001, score=5.5), 1020, score=8.0), "experiment")
    diverged.merge("experiment", into="main")
    assert [row(diverged, b)["score"] for b in (1001, 1010, 1020)] == [5.5, 7.0, 8.0]  # type: ignore[index]


def test_rows_changed_differently_on_both_sides_apply_nothing(diverged: udrfs.Repo) -> None:
    write(
        diverged,
        edit(edit(edit(parcels(), 1001, score=101.0), 1002, score=102.0), 1003, delete=True),
    )
    write(
        diverged,
        edit(edit(edit(parcels(), 1001, score=-1.0), 1002, score=102.0), 1003, score=103.0),
        "experiment",
    )
    head, before = diverged.head("main"), pack_bytes(diverged)
    with pytest.raises(udrfs.MergeConflictError) as caught:
        diverged.merge("experiment", into="main")
    conflicts = caught.value.conflicts
    assert [(c["key"], c["kind"]) for c in conflicts] == [
        ({"bbl": 1001}, "changed differently on both sides"),
        ({"bbl": 1003}, "deleted on the target, changed on the source"),
    ]
    assert conflicts[0]["target"]["score"] == 101.0  # type: ignore[index]
    assert conflicts[0]["source"]["score"] == -1.0  # type: ignore[index]
    assert conflicts[0]["base"]["score"] == 1.0  # type: ignore[index]
    assert diverged.head("main") == head
    assert pack_bytes(diverged) == before


def test_rows_added_on_both_sides_with_different_values_conflict(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 5000, zone="A", score=0.0))
    write(diverged, edit(parcels(), 5000, zone="B", score=0.0), "experiment")
    with pytest.raises(udrfs.MergeConflictError) as caught:
        diverged.merge("experiment", into="main")
    assert caught.value.conflicts[0]["kind"] == "added on both sides with different values"


def test_a_table_changed_on_both_sides_without_a_key_is_a_conflict(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1, 2]}))
    repo.create_branch("experiment")
    repo.write_table("t", pa.table({"a": [1, 3]}))
    repo.write_table("t", pa.table({"a": [1, 4]}), branch="experiment")
    with pytest.raises(udrfs.MergeConflictError, match="1 conflict"):
        repo.merge("experiment", into="main")


def test_a_key_given_to_merge_allows_a_row_merge(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 2], "v": [0, 0]}))
    repo.create_branch("experiment")
    repo.write_table("t", pa.table({"k": [1, 2], "v": [5, 0]}))
    repo.write_table("t", pa.table({"k": [1, 2], "v": [0, 6]}), branch="experiment")
    repo.merge("experiment", into="main", key={"t": ["k"]})
    assert repo.read_table("t").to_pylist() == [{"k": 1, "v": 5}, {"k": 2, "v": 6}]


def test_dropped_on_one_side_and_changed_on_the_other_is_a_conflict(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1]}))
    repo.create_branch("experiment")
    with repo.transaction() as tx:
        tx.drop_table("t")
    repo.write_table("t", pa.table({"a": [2]}), branch="experiment")
    with pytest.raises(udrfs.MergeConflictError) as caught:
        repo.merge("experiment", into="main")
    assert caught.value.conflicts == [
        {"table": "t", "kind": "dropped on the target, changed on the other side"}
    ]


def test_a_table_dropped_on_the_source_only_is_dropped(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"a": [1]}))
    repo.create_branch("experiment")
    with repo.transaction("experiment") as tx:
        tx.drop_table("t")
    repo.write_table("other", pa.table({"a": [1]}))
    repo.merge("experiment", into="main")
    assert [t.name for t in repo.tables()] == ["other"]


def test_merging_again_after_more_work_uses_the_last_merge_as_base(
    diverged: udrfs.Repo,
) -> None:
    write(diverged, edit(parcels(), 1001, score=101.0))
    write(diverged, edit(parcels(), 1100, score=102.0), "experiment")
    diverged.merge("experiment", into="main")
    # experiment carries on from its own history; main changes another row meanwhile
    write(diverged, edit(edit(parcels(), 1100, score=102.0), 1200, score=103.0), "experiment")
    write(diverged, edit(current(diverged), 1300, score=104.0))
    diverged.merge("experiment", into="main")
    scores = {b: row(diverged, b)["score"] for b in (1001, 1100, 1200, 1300)}  # type: ignore[index]
    assert scores == {1001: 101.0, 1100: 102.0, 1200: 103.0, 1300: 104.0}


def test_the_merge_commit_change_log_counts_rows(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 1001, score=101.0))
    write(
        diverged, edit(edit(parcels(), 1100, score=102.0), 3000, zone="X", score=0.0), "experiment"
    )
    diverged.merge("experiment", into="main")
    (change,) = diverged.changes(branch="main")[-1].tables
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (1, 0, 1)


def test_merge_branch_is_merge(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 1001, score=99.0), "experiment")
    assert diverged.merge_branch("experiment", into="main").kind == "fast-forward"


def test_cli_merge_fast_forward_and_up_to_date(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 1001, score=99.0), "experiment")
    store = str(diverged.path)
    first = udr("merge", store, "experiment", "--into", "main")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("fast-forwarded experiment into main")
    assert "already contains" in udr("merge", store, "experiment", "--into", "main").stdout


def test_cli_merge_prints_conflicts_and_exits_non_zero(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 1001, score=101.0))
    write(diverged, edit(parcels(), 1001, score=102.0), "experiment")
    proc = udr("merge", str(diverged.path), "experiment", "--into", "main", "--key", "bbl")
    assert proc.returncode == 4  # conflict
    assert "CONFLICT nyc_master bbl=1001: changed differently on both sides" in proc.stdout
    assert proc.stderr.startswith("udr: error: merge of experiment into main has 1 conflict")


def test_cli_merge_of_disjoint_edits_reports_the_row_merge(diverged: udrfs.Repo) -> None:
    write(diverged, edit(parcels(), 1001, score=101.0))
    write(diverged, edit(parcels(), 1002, score=102.0), "experiment")
    proc = udr("merge", str(diverged.path), "experiment")
    assert proc.returncode == 0, proc.stderr
    assert "merged row by row: nyc_master" in proc.stdout


def test_rows_merge_across_a_column_one_side_added(diverged: udrfs.Repo) -> None:
    # main adds an `owner` column to every row; experiment edits a score and adds a parcel.
    base = parcels()
    owners = pa.array([f"o{i}" for i in range(base.num_rows)])
    write(diverged, base.append_column("owner", owners))
    write(diverged, edit(edit(base, 1001, score=-1.0), 5000, zone="Z", score=0.0), "experiment")
    result = diverged.merge("experiment", into="main")
    assert result.rows_merged == ("nyc_master",)
    merged = {r["bbl"]: r for r in current(diverged).to_pylist()}
    assert merged[1001] == {"bbl": 1001, "zone": "R1", "score": -1.0, "owner": "o1"}
    assert merged[5000] == {"bbl": 5000, "zone": "Z", "score": 0.0, "owner": None}
    assert merged[1002]["owner"] == "o2" and len(merged) == 501


def test_a_column_both_sides_added_with_different_values_conflicts(diverged: udrfs.Repo) -> None:
    base = parcels()
    write(diverged, base.append_column("owner", pa.array(["a"] * base.num_rows)))
    theirs = base.append_column("owner", pa.array(["a"] * (base.num_rows - 1) + ["b"]))
    write(diverged, theirs, "experiment")
    with pytest.raises(udrfs.MergeConflictError) as caught:
        diverged.merge("experiment", into="main")
    assert [c["key"] for c in caught.value.conflicts] == [{"bbl": 1499}]


def test_a_removed_or_retyped_column_is_still_a_conflict(diverged: udrfs.Repo) -> None:
    diverged.write_table(
        "nyc_master", parcels().drop_columns(["zone"]), key="bbl", allow_schema_change=True
    )
    write(diverged, edit(parcels(), 1001, score=-1.0), "experiment")
    with pytest.raises(udrfs.MergeConflictError) as caught:
        diverged.merge("experiment", into="main")
    assert caught.value.conflicts == [
        {
            "table": "nyc_master",
            "kind": "column zone was removed on the target; rows can only be merged when "
            "both sides keep the merge base's columns",
        }
    ]
    assert diverged.merge("experiment", into="main", strategy="ours").resolved == ("nyc_master",)
