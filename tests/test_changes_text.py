"""The change log for people: one short line a commit (`udr changes --format text`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import udrfs

pytestmark = pytest.mark.timeout(180)

TABLES = 78


def rows(ids: range, note: str) -> pa.Table:
    return pa.table({"id": list(ids), "note": [note] * len(ids)})


@pytest.fixture
def wide(tmp_path: Path) -> udrfs.Repo:
    """78 tables committed at once, then a commit that changes two of them."""
    repo = udrfs.Repo.init(tmp_path / "store")
    with repo.transaction(message="nightly load") as tx:
        for i in range(TABLES):
            tx.write_table(f"t{i:02d}", rows(range(100), "a"), key="id")
    with repo.transaction(message="nightly\nsecond line") as tx:
        tx.write_table("t00", rows(range(10, 110), "a"), key="id")  # +10 -10
        changed = rows(range(100), "a").to_pydict()
        changed["note"][:5] = ["b"] * 5
        tx.write_table("t01", pa.table(changed), key="id")  # ~5
    return repo


def udr(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_78_table_commit_is_one_text_line(wide: udrfs.Repo) -> None:
    first = wide.changes()[0]
    assert len(first.tables) == TABLES
    line = first.to_text_line()
    assert "\n" not in line
    assert line.startswith("seq 1 ")
    assert "nightly load: t00 new v1 +100, t01 new v1 +100, t02 new v1 +100, +75 more" in line
    assert len(line) < 120


def test_text_line_gives_versions_row_counts_and_unchanged_tables(wide: udrfs.Repo) -> None:
    line = wide.changes()[-1].to_text_line()
    assert line.startswith("seq 2 ")
    assert "nightly: t00 v1→v2 +10 −10 ~0, t01 v1→v2 +0 −0 ~5; 76 tables unchanged" in line
    assert "second line" not in line


def test_udr_changes_format_text_prints_one_line_a_commit(wide: udrfs.Repo) -> None:
    lines = udr("changes", str(wide.path), "--format", "text").splitlines()
    assert [line.split()[:2] for line in lines] == [["seq", "1"], ["seq", "2"]]
    assert lines == [e.to_text_line() for e in wide.changes()]
    table_log = udr("changes", str(wide.path), "--format", "text", "--table", "t01").splitlines()
    assert table_log[-1].endswith("t01 v1→v2 +0 −0 ~5")  # one table's log: no unchanged count


def test_udr_changes_json_stays_as_it_was(wide: udrfs.Repo) -> None:
    lines = udr("changes", str(wide.path)).splitlines()
    entry = json.loads(lines[-1])
    assert set(entry) == {"seq", "commit", "time", "branch", "message", "author", "tables"}
    assert lines == [e.to_json_line() for e in wide.changes()]
