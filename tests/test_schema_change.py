"""A column changing type between versions is refused unless allow_schema_change=True."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import udrfs
from udrfs.cli.main import main
from udrfs.errors import EXIT_USAGE


@pytest.fixture
def planes(repo: udrfs.Repo, nyc_parquet_dir: Path) -> pa.Table:
    repo.import_file("planes", nyc_parquet_dir / "planes.parquet", key="tailnum")
    return repo.read_table("planes")


def retyped(planes: pa.Table) -> pa.Table:
    seats = planes.schema.get_field_index("seats")
    return planes.set_column(seats, "seats", pc.cast(planes.column("seats"), pa.string()))


def test_write_that_retypes_a_column_is_refused(repo: udrfs.Repo, planes: pa.Table) -> None:
    head = repo.head()
    with pytest.raises(udrfs.SchemaChangeError, match="seats int64 -> string") as err:
        repo.write_table("planes", retyped(planes), key="tailnum")
    assert err.value.retyped == (("seats", "int64", "string"),)
    assert "allow_schema_change=True" in str(err.value)
    assert repo.head() == head


def test_retype_is_committed_when_allowed(repo: udrfs.Repo, planes: pa.Table) -> None:
    commit = repo.write_table("planes", retyped(planes), key="tailnum", allow_schema_change=True)
    assert commit is not None
    assert repo.read_table("planes").schema.field("seats").type == pa.string()


def test_added_column_and_storage_only_differences_are_not_a_schema_change(
    repo: udrfs.Repo, planes: pa.Table
) -> None:
    wider = planes.append_column("note", pa.array([None] * planes.num_rows, pa.string()))
    assert repo.write_table("planes", wider, key="tailnum") is not None
    # a categorical's dictionary encoding and large strings are storage, not type
    df = pd.DataFrame({"k": [1, 2], "borough": pd.Categorical(["MN", "BK"])})
    repo.write_table("boroughs", df)
    df2 = pd.DataFrame({"k": [1, 2, 3], "borough": ["MN", "BK", "QN"]})
    repo.write_table(
        "boroughs",
        pa.Table.from_pandas(df2).cast(
            pa.schema([("k", pa.int64()), ("borough", pa.large_string())])
        ),
    )
    assert repo.version("boroughs").version == 2


def test_retype_inside_a_transaction_compares_with_what_it_staged(
    repo: udrfs.Repo, planes: pa.Table
) -> None:
    with repo.transaction() as tx:
        tx.write_table("planes", retyped(planes), key="tailnum", allow_schema_change=True)
        with pytest.raises(udrfs.SchemaChangeError):
            tx.write_table("planes", planes, key="tailnum")
    assert repo.read_table("planes").schema.field("seats").type == pa.string()


def test_cli_import_refuses_retype_without_the_flag(
    repo: udrfs.Repo, planes: pa.Table, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "planes.parquet"
    pq.write_table(retyped(planes), path)
    store = str(repo.path)
    assert main(["import", store, "planes", str(path)]) == EXIT_USAGE
    assert "--allow-schema-change" in capsys.readouterr().err
    assert main(["import", store, "planes", str(path), "--allow-schema-change"]) == 0
    assert repo.version("planes").version == 2


def test_a_removed_column_is_refused_unless_allowed(repo: udrfs.Repo, planes: pa.Table) -> None:
    head = repo.head()
    narrower = planes.drop_columns(["engine"])
    with pytest.raises(udrfs.SchemaChangeError, match=r"engine string -> \(removed\)") as err:
        repo.write_table("planes", narrower, key="tailnum")
    assert err.value.retyped == (("engine", "string", "(removed)"),)
    assert repo.head() == head and repo.fsck().ok
    assert repo.write_table("planes", narrower, key="tailnum", allow_schema_change=True)
    assert "engine" not in repo.read_table("planes").column_names


def test_change_log_records_each_commit_s_column_changes(
    repo: udrfs.Repo, planes: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    since = repo.latest_seq()
    repo.write_table("planes", retyped(planes), key="tailnum", allow_schema_change=True)
    wider = retyped(planes).append_column("note", pa.array(["x"] * planes.num_rows))
    repo.write_table("planes", wider.drop_columns(["engine"]), allow_schema_change=True)
    # rows edited, columns as they were: nothing to record
    edited = wider.drop_columns(["engine"]).slice(1)
    repo.write_table("planes", edited, key="tailnum")

    # read back from the stored commits, not from this process's objects
    entries = udrfs.Repo(repo.path).get_changes(since=since, table="planes")
    recorded = [entry.tables[0].schema_changes for entry in entries]
    assert recorded == [
        (udrfs.ColumnChange("seats", "int64", "string"),),
        (udrfs.ColumnChange("note", None, "string"), udrfs.ColumnChange("engine", "string", None)),
        (),
    ]
    assert entries[1].to_dict()["tables"][0]["schema_changes"] == [
        {"column": "note", "before": None, "after": "string"},
        {"column": "engine", "before": "string", "after": None},
    ]
    assert "schema_changes" not in entries[2].to_dict()["tables"][0]

    assert main(["changes", str(repo.path), "--since", str(since), "--format", "text"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "planes v1→v2 [seats int64→string]" in lines[0]
    assert "planes v2→v3 [+note, −engine]" in lines[1]
    assert "[" not in lines[2]


def test_storage_only_differences_record_no_column_change(repo: udrfs.Repo) -> None:
    repo.write_table("boroughs", pd.DataFrame({"k": [1, 2], "b": pd.Categorical(["MN", "BK"])}))
    repo.write_table("boroughs", pd.DataFrame({"k": [1, 2, 3], "b": ["MN", "BK", "QN"]}))
    (entry,) = repo.get_changes(since=repo.latest_seq() - 1, table="boroughs")
    assert entry.tables[0].new_version == 2
    assert entry.tables[0].schema_changes == ()
