"""`udr://` URLs: pandas, polars, pyarrow and DuckDB read versions without a mount."""

from __future__ import annotations

from pathlib import Path

import duckdb
import fsspec
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import udrfs
from udrfs import _native
from udrfs.query.fsspec import UdrFileSystem


@pytest.fixture
def store(repo: udrfs.Repo) -> udrfs.Repo:
    """main: t v1 (3 rows), t v2 (4 rows); a branch with a '/', a tag at v1."""
    repo.write_table("t", pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]}), key="k")
    repo.create_tag("first")
    repo.write_table("t", pa.table({"k": [1, 2, 3, 4], "v": ["a", "b", "c", "d"]}), key="k")
    repo.create_branch("exp/one")
    repo.write_table("t", pa.table({"k": [9], "v": ["z"]}), key="k", branch="exp/one")
    return repo


def url(repo: udrfs.Repo, rest: str) -> str:
    return f"udr://{repo.path}/{rest}"


def test_pandas_reads_a_version_by_url(store: udrfs.Repo) -> None:
    df = pd.read_parquet(url(store, "@main/t/v1.parquet"))
    assert df["v"].tolist() == ["a", "b", "c"]


def test_latest_is_the_branch_head_version(store: udrfs.Repo) -> None:
    assert len(pd.read_parquet(url(store, "@main/t/latest.parquet"))) == 4
    assert len(pd.read_parquet(url(store, "@exp/one/t/latest.parquet"))) == 1


def test_polars_reads_an_opened_url(store: udrfs.Repo) -> None:
    with fsspec.open(url(store, "@main/t/v2.parquet")) as f:
        assert pl.read_parquet(f)["k"].to_list() == [1, 2, 3, 4]


def test_pyarrow_reads_through_the_filesystem(store: udrfs.Repo) -> None:
    fs = fsspec.filesystem("udr")
    table = pq.read_table(f"{store.path}/@main/t/v2.parquet", filesystem=fs)
    assert table.num_rows == 4
    dataset = ds.dataset(f"{store.path}/@first/t/v1.parquet", filesystem=fs)
    assert dataset.count_rows() == 3


def test_duckdb_reads_through_a_registered_filesystem(store: udrfs.Repo) -> None:
    con = duckdb.connect()
    con.register_filesystem(fsspec.filesystem("udr"))
    path = url(store, "@main/t/latest.parquet")
    assert con.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall() == [(4,)]
    con.close()


def test_the_store_can_be_a_storage_option(store: udrfs.Repo) -> None:
    df = pd.read_parquet("udr://@main/t/v2.parquet", storage_options={"store": str(store.path)})
    assert len(df) == 4
    fs = fsspec.filesystem("udr", store=str(store.path))
    assert fs.ls("@main/t", detail=False) == [
        "@main/t/v1.parquet",
        "@main/t/v2.parquet",
        "@main/t/latest.parquet",
        "@main/t/.changes",
        "@main/t/.changes.txt",
    ]


def test_bytes_read_are_the_exact_bytes_committed(store: udrfs.Repo, tmp_path: Path) -> None:
    fs = UdrFileSystem()
    data = fs.cat_file(f"{store.path}/@main/t/v2.parquet")
    assert _native.blake3_hex(data) == store.version("t", 2).blake3
    assert fs.cat_file(f"{store.path}/@main/t/v2.parquet", start=4, end=12) == data[4:12]
    with fs.open(f"{store.path}/@main/t/v2.parquet") as f:
        assert f.read() == data


def test_listing_shows_refs_groups_tables_and_change_logs_last(store: udrfs.Repo) -> None:
    # The same listing as the mount's is asserted by tests/test_namespace_conformance.py.
    fs = UdrFileSystem()
    root = str(store.path)
    assert fs.ls(root, detail=False) == [f"{root}/@exp", f"{root}/@first", f"{root}/@main"]
    assert fs.ls(f"{root}/@exp", detail=False) == [f"{root}/@exp/one"]
    assert fs.ls(f"{root}/@main", detail=False) == [
        f"{root}/@main/t",
        f"{root}/@main/.changes",
        f"{root}/@main/.changes.txt",
    ]
    assert fs.isdir(f"{root}/@main/t")
    info = fs.info(f"{root}/@main/t/v1.parquet")
    assert (info["type"], info["version"], info["rows"]) == ("file", 1, 3)


def test_a_commit_id_names_a_fixed_snapshot(store: udrfs.Repo) -> None:
    commit = store.head("main")
    store.write_table("t", pa.table({"k": [5], "v": ["e"]}), key="k")
    df = pd.read_parquet(url(store, f"@{commit}/t/latest.parquet"))
    assert len(df) == 4


def test_changes_file_is_the_change_log(store: udrfs.Repo) -> None:
    fs = UdrFileSystem()
    text = fs.cat_file(f"{store.path}/@main/t/.changes").decode()
    lines = [e.to_json_line() for e in store.changes(branch="main", table="t")]
    assert text.splitlines() == lines
    assert '"rows_added": 1' in lines[-1]


def test_changes_txt_is_the_change_log_for_people(store: udrfs.Repo) -> None:
    fs = UdrFileSystem()
    text = fs.cat_file(f"{store.path}/@main/.changes.txt").decode()
    assert text.splitlines() == [e.to_text_line() for e in store.changes(branch="main")]
    assert text.splitlines()[-1].startswith(f"seq {store.changes(branch='main')[-1].seq} ")
    assert fs.info(f"{store.path}/@main/t/.changes.txt")["size"] == len(
        fs.cat_file(f"{store.path}/@main/t/.changes.txt")
    )


def test_writing_is_refused(store: udrfs.Repo) -> None:
    fs = UdrFileSystem()
    with pytest.raises(PermissionError, match="read-only"):
        fs.open(f"{store.path}/@main/t/v3.parquet", "wb")


@pytest.mark.parametrize(
    "rest",
    ["@main/t/v9.parquet", "@main/nope", "@nobranch/t/v1.parquet", "@main/t/v1.parquet/x"],
)
def test_missing_paths_are_file_not_found(store: udrfs.Repo, rest: str) -> None:
    with pytest.raises(FileNotFoundError):
        UdrFileSystem().info(f"{store.path}/{rest}")


def test_a_table_dropped_at_the_head_is_gone_from_the_ref(store: udrfs.Repo) -> None:
    fs = UdrFileSystem()
    old = store.head("main")
    with store.transaction("main", "drop t") as tx:
        tx.drop_table("t")
    for rest in ("@main/t", "@main/t/v1.parquet", "@main/t/latest.parquet"):
        with pytest.raises(FileNotFoundError):
            fs.info(f"{store.path}/{rest}")
    assert fs.info(f"{store.path}/@{old}/t/v1.parquet")["version"] == 1


def test_latest_names_the_version_file_it_stands_for(store: udrfs.Repo) -> None:
    info = UdrFileSystem().info(f"{store.path}/@main/t/latest.parquet")
    assert (info["version"], info["destination"]) == (2, "v2.parquet")


def test_a_url_names_its_store_as_a_storage_option(store: udrfs.Repo) -> None:
    fs, path = fsspec.core.url_to_fs(url(store, "@main/t/v1.parquet"))
    assert fs.store == store.path.resolve()
    assert fs.info(path)["version"] == 1


def test_a_url_without_a_store_says_how_to_name_one() -> None:
    with pytest.raises(FileNotFoundError, match="store="):
        UdrFileSystem().info("@main/t/v1.parquet")


def test_a_glob_reads_every_version_at_once(store: udrfs.Repo) -> None:
    con = duckdb.connect()
    con.register_filesystem(fsspec.filesystem("udr"))
    rows = con.sql(
        f"SELECT filename, count(*) FROM read_parquet('{url(store, '@main/t/v*.parquet')}', "
        "filename = true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert [(name.rsplit("/", 1)[1], n) for name, n in rows] == [
        ("v1.parquet", 3),
        ("v2.parquet", 4),
    ]
    con.close()


def test_a_branch_hides_a_tag_below_its_name_as_in_the_mount(store: udrfs.Repo) -> None:
    store.create_branch("exp2")
    store.create_tag("exp2/t", "first")  # same spelling as branch exp2's table t
    assert len(pd.read_parquet(url(store, "@exp2/t/latest.parquet"))) == 4  # branch exp2
    tag_commit = store.resolve("exp2/t")
    assert len(pd.read_parquet(url(store, f"@{tag_commit}/t/latest.parquet"))) == 3
