"""The migration plan's spellings of the change feed run unchanged (aliases, not copies)."""

from __future__ import annotations

from pathlib import Path

import pytest

import udrfs


@pytest.fixture
def engine(repo: udrfs.Repo, nyc_parquet_dir: Path) -> udrfs.Repo:
    repo.import_file("nyc_planes", nyc_parquet_dir / "planes.parquet", key="tailnum")
    return repo


def test_get_changes_since_tx_id_as_the_plan_writes_it(engine: udrfs.Repo) -> None:
    last_checkpoint = engine.latest_tx_id()
    assert last_checkpoint == engine.latest_seq()
    planes = engine.read_table("nyc_planes")
    engine.write_table("nyc_planes", planes.slice(0, 3000), key="tailnum", message="night 2")
    engine.write_table("nyc_other", planes.slice(0, 5), message="night 2b")
    lines = []
    changes = engine.get_changes(since_tx_id=last_checkpoint)
    for entry in changes:
        lines.append(f"Transaction {entry['tx_id']}:")
        for change in entry["changes"]:
            lines.append(
                f"  {change['table_name']}: v{change['old_version']} → v{change['new_version']}"
            )
    assert lines == [
        f"Transaction {last_checkpoint + 1}:",
        "  nyc_planes: v1 → v2",
        f"Transaction {last_checkpoint + 2}:",
        "  nyc_other: vNone → v1",
    ]
    assert changes == engine.changes(since=last_checkpoint)  # the same entries
    entry = changes[0]
    assert entry["tx_id"] == entry["seq"] == entry.seq
    assert entry["changes"][0]["table"] == entry["tables"][0]["table"] == "nyc_planes"
    assert entry["changes"][0]["rows_removed"] == planes.num_rows - 3000


def test_get_changes_refuses_both_spellings_and_unknown_fields(engine: udrfs.Repo) -> None:
    with pytest.raises(udrfs.UsageError, match="not both"):
        engine.get_changes(since=1, since_tx_id=1)
    entry = engine.get_changes()[0]
    with pytest.raises(KeyError):
        entry["nope"]
    with pytest.raises(KeyError):
        entry["changes"][0]["nope"]


def test_diff_versions_as_the_plan_writes_it(engine: udrfs.Repo) -> None:
    planes = engine.read_table("nyc_planes")
    seats = planes.column("seats").to_pylist()
    changed = planes.set_column(
        planes.schema.get_field_index("seats"), "seats", [[s + 1 for s in seats[:10]] + seats[10:]]
    )
    engine.write_table("nyc_planes", changed, key="tailnum")
    diff = engine.diff_versions("nyc_planes", 1, 2, key_columns=["tailnum"])
    assert len(diff["rows_modified"]) == 10
