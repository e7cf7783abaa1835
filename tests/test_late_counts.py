"""Row counts computed after the commit point: pending until known, exact, durable, synced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udrfs
from tools import parcels
from udrfs.catalog import late_counts
from udrfs.catalog.crashpoints import ENV

WRITER = Path(__file__).with_name("crashwriter.py")
FLIGHT_KEY = ["year", "month", "day", "sched_dep_time", "carrier", "flight", "origin"]


def lots(keys: range, value: int = 0) -> pa.Table:
    return pa.table({"bbl": pa.array(keys, pa.int64()), "v": [value] * len(keys)})


def counts(change: udrfs.TableChange) -> tuple[int | None, int | None, int | None]:
    return change.rows_added, change.rows_removed, change.rows_modified


# ---- what a commit and the log say --------------------------------------------------------


def test_counts_that_need_rows_read_are_pending_in_the_commit(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(100)), key="bbl")
    commit = repo.write_table("t", lots(range(10, 110), value=1), key="bbl")
    assert commit is not None
    (change,) = commit.changes
    assert change.counts_pending and counts(change) == (None, None, None)
    assert commit.pending_counts == ("t",)
    (change,) = repo.counted(commit.id).changes
    assert not change.counts_pending and counts(change) == (10, 10, 90)


def test_a_reader_tells_pending_counts_from_no_rows_changed(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(100)), key="bbl")
    # The same rows under a wider key: other bytes, no row changed.
    same = repo.write_table("t", lots(range(100)), key=["bbl", "v"])
    assert same is not None and same.pending_counts
    same = repo.counted(same.id)
    late = repo.write_table("t", lots(range(100), value=1), key="bbl")
    never = repo.write_table(
        "t", pa.table({"x": [1, 2]}), allow_schema_change=True
    )  # no key: never counted
    assert late is not None and never is not None
    zero = json_table(same.change_entry())
    assert zero["rows_modified"] == 0 and "counts_pending" not in zero
    pending = json_table(late.change_entry())  # as committed, before its counts are known
    assert pending["counts_pending"] is True and pending["rows_modified"] is None
    unknown = json_table(never.change_entry())
    assert unknown["rows_modified"] is None and "counts_pending" not in unknown
    text = late.change_entry().to_text_line()
    assert text.endswith("t v2→v3 100→100 rows (counts pending)"), text
    done = json_table(repo.changes(since=2)[0])  # the reader waits for them
    del pending["counts_pending"]
    assert done == {**pending, "rows_added": 0, "rows_removed": 0, "rows_modified": 100}


def json_table(entry: udrfs.ChangeEntry) -> dict[str, object]:
    (table,) = json.loads(entry.to_json_line())["tables"]
    return table  # type: ignore[no-any-return]


def test_the_writer_completes_its_counts_in_the_background(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(1000)), key="bbl")
    commit = repo.write_table("t", lots(range(500, 1500)), key="bbl")
    assert commit is not None and commit.pending_counts
    assert late_counts.worker.wait_idle(30)
    assert repo.store.counts.exists(commit.id)
    record = repo.store.counts.get(commit.id)
    assert record is not None
    assert record["tables"] == {"t": {"rows_added": 500, "rows_removed": 500, "rows_modified": 0}}


def test_row_group_fingerprints_count_a_rewrite_of_the_same_rows_at_the_commit(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    table = parcels.parcels(20_000)
    first, second = tmp_path / "1.parquet", tmp_path / "2.parquet"
    pq.write_table(edited(table, [parcels.KEY]), first, row_group_size=4000)
    repo.import_file("p", tmp_path / "1.parquet", key=parcels.KEY)
    pq.write_table(table, first, row_group_size=4000)
    counted_once = repo.import_file("p", first)
    assert counted_once is not None and counted_once.pending_counts
    repo.counted(counted_once.id)  # learns that the key identifies this version's rows
    # The same rows and row groups, another footer: other bytes, the same column chunks.
    pq.write_table(table.replace_schema_metadata({"run": "2"}), second, row_group_size=4000)
    rewrite = repo.import_file("p", second)
    assert rewrite is not None and not rewrite.pending_counts
    assert counts(rewrite.changes[0]) == (0, 0, 0)


def test_a_subscriber_receives_each_entry_with_its_counts(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(1000)), key="bbl")
    got: list[udrfs.ChangeEntry] = []
    sub = repo.subscribe(got.append, start=False)
    commit = repo.write_table("t", lots(range(100, 1100), value=3), key="bbl")
    assert commit is not None and commit.pending_counts
    assert sub.poll() == 1
    (change,) = got[0].tables
    assert not change.counts_pending and counts(change) == (100, 100, 900)


# ---- exact whether computed before or after the commit point ------------------------------


def oracle(old: pa.Table, new: pa.Table, key: list[str]) -> tuple[int, int, int]:
    """Rows added, removed and modified, by pandas (NaN/None equal)."""
    a, b = old.to_pandas(), new.to_pandas()
    both = a.merge(b, on=key, how="outer", indicator=True, suffixes=("_o", "_n"))
    added = int((both["_merge"] == "right_only").sum())
    removed = int((both["_merge"] == "left_only").sum())
    inner = both[both["_merge"] == "both"]
    differs = pd.Series(False, index=inner.index)
    for column in (c for c in a.columns if c not in key and c in b.columns):
        left, right = inner[f"{column}_o"], inner[f"{column}_n"]
        differs |= ~((left == right) | (left.isna() & right.isna()))
    return added, removed, int(differs.sum())


def edited(table: pa.Table, key: list[str]) -> pa.Table:
    """20 rows removed, a non-key column changed on 30 rows, 7 rows with new keys added."""
    df = table.to_pandas()
    df = df.drop(index=df.index[100:120])
    column = next(c for c in df.columns if c not in key and pd.api.types.is_numeric_dtype(df[c]))
    df.loc[df.index[200:230], column] = df[column].iloc[200:230].fillna(0) + 1
    new = df.iloc[:7].copy()
    first = key[0]
    if pd.api.types.is_numeric_dtype(new[first]):
        new[first] = new[first] + 10**7
    else:
        new[first] = new[first].astype(str) + "-new"
    out = pd.concat([df, new], ignore_index=True)
    return pa.Table.from_pandas(out, schema=table.schema, preserve_index=False)


def nyc(nyc_parquet_dir: Path, name: str) -> pa.Table:
    return pq.read_table(nyc_parquet_dir / f"{name}.parquet")


CASES = {
    "planes": (lambda d: nyc(d, "planes"), ["tailnum"]),
    "airports": (lambda d: nyc(d, "airports"), ["faa"]),
    "flights": (lambda d: nyc(d, "flights").slice(0, 60_000), FLIGHT_KEY),
    "parcels": (lambda d: parcels.parcels(60_000), [parcels.KEY]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("how", ["write_table", "import_file"])
def test_counts_after_the_commit_equal_counts_before_it_and_the_rows(
    name: str, how: str, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    make, key = CASES[name]
    old = make(nyc_parquet_dir)
    new = edited(old, key)
    results = []
    for inline in (True, False):
        repo = udrfs.Repo.init(tmp_path / f"store-{inline}")
        for n, data in enumerate((old, new)):
            with repo.transaction(inline_counts=inline) as tx:
                if how == "write_table":
                    tx.write_table(name, data, key=key)
                else:  # a file from another writer: row groups do not follow chunks
                    path = tmp_path / f"{name}-{n}.parquet"
                    pq.write_table(data, path)
                    tx.import_file(name, path, key=key)
            assert tx.result is not None
            assert bool(tx.result.pending_counts) == (n == 1 and not inline)
        (change,) = repo.counted(tx.result.id).changes
        results.append(counts(change))
    assert results[0] == results[1] == oracle(old, new, key)


@pytest.mark.parametrize("scenario", ["localized", "append", "scattered"])
def test_late_counts_of_the_parcel_scenarios_equal_inline_counts(
    scenario: str, tmp_path: Path
) -> None:
    base = parcels.parcels(40_000)
    changed = getattr(parcels, scenario)(base)
    found = []
    for inline in (True, False):
        repo = udrfs.Repo.init(tmp_path / f"store-{inline}")
        repo.write_table("p", base, key=parcels.KEY)
        with repo.transaction(inline_counts=inline) as tx:
            tx.write_table("p", changed, key=parcels.KEY)
        assert tx.result is not None
        found.append(counts(repo.counted(tx.result.id).changes[0]))
    assert found[0] == found[1] == oracle(base, changed, [parcels.KEY])


# ---- a writer killed between its commit and its counts ------------------------------------


def _run_writer(store: Path, crashpoint: str | None = None) -> int:
    env = dict(os.environ)
    env.pop(ENV, None)
    if crashpoint:
        env[ENV] = crashpoint
    return subprocess.run(
        [sys.executable, str(WRITER), str(store), "1"], env=env, capture_output=True
    ).returncode


@pytest.mark.parametrize("point", ["after-ref", "before-counts-record"])
def test_a_writer_killed_before_its_counts_leaves_a_log_that_completes(
    repo: udrfs.Repo, point: str
) -> None:
    assert _run_writer(repo.path) == 0  # generation 1: new tables, counted at the commit
    assert _run_writer(repo.path, point) == -signal.SIGKILL
    fresh = udrfs.Repo(repo.path)
    head = fresh.commit(fresh.head())
    assert head.seq == 2 and head.pending_counts == ("a", "b", "c")
    assert not fresh.store.counts.exists(head.id)  # killed before the record was written
    assert fresh.fsck().ok
    # The next reader (here: a new process's change log) completes the counts.
    entry = fresh.changes(since=1)[0]
    rows = 20_002  # generation 2: one more row, and `gen` changed on every earlier row
    assert [counts(c) for c in entry.tables] == [(1, 0, rows - 1)] * 3
    assert fresh.store.counts.exists(head.id)
    assert udrfs.Repo(repo.path).fsck().ok
    assert _run_writer(repo.path) == 0  # and the store goes on
    assert late_counts.worker.wait_idle(30)


# ---- damage and remotes -------------------------------------------------------------------


def test_a_damaged_record_is_found_repaired_and_counted_again(repo: udrfs.Repo) -> None:
    repo.write_table("t", lots(range(100)), key="bbl")
    commit = repo.write_table("t", lots(range(50, 150)), key="bbl")
    assert commit is not None
    assert repo.changes(since=1)[0].tables[0].rows_added == 50
    path = repo.store.counts.path(commit.id)
    path.write_bytes(b"not a record")
    late_counts.records.clear()
    report = udrfs.Repo(repo.path).fsck()
    assert not report.ok and "counts" in report.problems[0]
    assert udrfs.Repo(repo.path).fsck(repair=True).ok
    assert not path.exists()
    assert udrfs.Repo(repo.path).changes(since=1)[0].tables[0].rows_added == 50
    assert udrfs.Repo(repo.path).fsck().ok


def test_push_and_clone_carry_the_late_counts(
    repo: udrfs.Repo, s3_url: str, tmp_path: Path
) -> None:
    repo.write_table("t", lots(range(100)), key="bbl")
    commit = repo.write_table("t", lots(range(30, 130), value=2), key="bbl")
    assert commit is not None and commit.pending_counts
    repo.add_remote("r2", s3_url)
    repo.push("r2")  # counts the commit first if its worker has not yet
    assert repo.store.counts.exists(commit.id)
    clone = udrfs.Repo.clone(s3_url, tmp_path / "clone")
    assert clone.store.counts.exists(commit.id)  # fetched, not counted again
    assert counts(clone.changes(since=1)[0].tables[0]) == (30, 30, 70)
    assert clone.fsck().ok
