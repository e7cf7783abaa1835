"""Serializable transactions: a commit fails if a table it read changed meanwhile."""

from __future__ import annotations

import pyarrow as pa
import pytest

import udrfs


def compounds(repo: udrfs.Repo, zoning: str) -> None:
    repo.write_table("nyc_zoning", pa.table({"bbl": [1, 2], "zone": [zoning, zoning]}))
    repo.write_table("nyc_lots", pa.table({"bbl": [1, 2], "area": [10.0, 20.0]}))


def master_from(tx: udrfs.Transaction) -> pa.Table:
    zoning = tx.read_table("nyc_zoning")
    return zoning.append_column("area", tx.read_table("nyc_lots").column("area"))


def test_a_table_read_and_changed_meanwhile_fails_the_serializable_commit(
    repo: udrfs.Repo,
) -> None:
    compounds(repo, "R1")
    tx = repo.transaction(message="master", isolation="serializable")
    master = master_from(tx)
    repo.write_table("nyc_zoning", pa.table({"bbl": [1, 2], "zone": ["C4", "C4"]}))
    tx.write_table("nyc_master", master)
    with pytest.raises(udrfs.ConflictError) as caught:
        tx.commit()
    assert caught.value.tables == ("nyc_zoning",)
    assert "nyc_master" not in [t.name for t in repo.tables()]
    assert repo.fsck().ok
    # The retry reads the new zoning and lands.
    with repo.transaction(message="master", isolation="serializable") as tx:
        tx.write_table("nyc_master", master_from(tx))
    assert repo.read_table("nyc_master").column("zone").to_pylist() == ["C4", "C4"]


def test_snapshot_isolation_lets_the_stale_master_through(repo: udrfs.Repo) -> None:
    compounds(repo, "R1")
    tx = repo.transaction(message="master")
    master = master_from(tx)
    repo.write_table("nyc_zoning", pa.table({"bbl": [1, 2], "zone": ["C4", "C4"]}))
    tx.write_table("nyc_master", master)
    assert tx.commit() is not None  # what "serializable" is for
    assert repo.read_table("nyc_master").column("zone").to_pylist() == ["R1", "R1"]


def test_only_current_reads_conflict(repo: udrfs.Repo) -> None:
    compounds(repo, "R1")
    tx = repo.transaction(isolation="serializable")
    tx.read_table("nyc_zoning", 1)  # an explicit version never changes
    with pytest.raises(udrfs.errors.NotFoundError):
        tx.read_table("nyc_permits")  # missing now: one made meanwhile is a change
    repo.write_table("nyc_zoning", pa.table({"bbl": [1], "zone": ["C4"]}))
    repo.write_table("nyc_lots", pa.table({"bbl": [1], "area": [1.0]}))  # never read
    tx.write_table("out", pa.table({"a": [1]}))
    assert tx.commit() is not None
    tx = repo.transaction(isolation="serializable")
    with pytest.raises(udrfs.errors.NotFoundError):
        tx.version("nyc_permits")
    repo.write_table("nyc_permits", pa.table({"bbl": [1]}))
    tx.write_table("out", pa.table({"a": [2]}))
    with pytest.raises(udrfs.ConflictError, match="nyc_permits changed on main"):
        tx.commit()


def test_an_unknown_isolation_level_is_refused(repo: udrfs.Repo) -> None:
    with pytest.raises(udrfs.errors.UsageError, match="'strict' is not one of"):
        repo.transaction(isolation="strict")  # type: ignore[arg-type]
