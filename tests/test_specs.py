"""Version specs: every spelling the CLI accepts comes out as one VersionRef."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest

import udrfs
from udrfs import _native
from udrfs.catalog.specs import VersionRef, parse_pin, parse_ref_version, parse_version_spec
from udrfs.errors import UsageError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("t", VersionRef(None, "t", None)),
        ("t@3", VersionRef(None, "t", 3)),
        ("main:t", VersionRef("main", "t", None)),
        ("main:t@3", VersionRef("main", "t", 3)),
        ("experiment/a:t@12", VersionRef("experiment/a", "t", 12)),
        ("@4", VersionRef(None, None, 4)),
        ("@main/t/v12.parquet", VersionRef("main", "t", 12)),
        ("@main/t/latest.parquet", VersionRef("main", "t", None)),
        ("@main/t", VersionRef("main", "t", None)),
        ("@experiment/a/t/v2.parquet", VersionRef("experiment/a", "t", 2)),
    ],
)
def test_every_spelling_of_a_version_parses_to_one_version_ref(
    spec: str, expected: VersionRef
) -> None:
    assert parse_version_spec(spec) == expected


@pytest.mark.parametrize(
    "spec", ["t@x", "t@0", "t@-1", ":t@1", "@main/t/v0.parquet", "@main/t/x.parquet", "@t/"]
)
def test_malformed_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_version_spec(spec)


def test_a_query_pin_is_table_equals_number() -> None:
    assert parse_pin("nyc_master=5") == VersionRef(None, "nyc_master", 5)
    for bad in ("nyc_master", "nyc_master=x", "=5", "t=0"):
        with pytest.raises(UsageError, match="TABLE=N"):
            parse_pin(bad)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("3", VersionRef(None, None, 3)),
        ("main", VersionRef("main", None, None)),
        ("main@3", VersionRef("main", None, 3)),
        ("experiment/a@2", VersionRef("experiment/a", None, 2)),
    ],
)
def test_a_diff_side_is_a_number_a_ref_or_ref_at_number(spec: str, expected: VersionRef) -> None:
    assert parse_ref_version(spec) == expected


def _udr(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, check=True
    )


@pytest.fixture
def two_branches(repo: udrfs.Repo) -> udrfs.Repo:
    """main: t v1, v2; experiment/a: t v3 on top."""
    repo.write_table("t", pa.table({"k": [1, 2]}), key="k")
    repo.write_table("t", pa.table({"k": [1, 2, 3]}), key="k")
    repo.create_branch("experiment/a")
    repo.write_table("t", pa.table({"k": [7]}), key="k", branch="experiment/a")
    return repo


@pytest.mark.parametrize(
    ("spec", "ref", "number"),
    [
        ("@main/t/v1.parquet", "main", 1),
        ("@experiment/a/t/latest.parquet", "experiment/a", 3),
        ("experiment/a:t@2", "experiment/a", 2),
        ("t@2", "main", 2),
    ],
)
def test_cat_accepts_the_path_form_and_ref_colon_table(
    two_branches: udrfs.Repo, spec: str, ref: str, number: int
) -> None:
    data = _udr("cat", str(two_branches.path), spec, "-o", "-").stdout
    assert _native.blake3_hex(data) == two_branches.version("t", number, branch=ref).blake3


def test_diff_accepts_the_path_form(two_branches: udrfs.Repo) -> None:
    rng = "@main/t/v1.parquet..@experiment/a/t/v3.parquet"
    out = json.loads(_udr("diff", str(two_branches.path), rng, "--json").stdout)
    assert (out["old_version"], out["new_version"]) == (1, 3)
    assert (out["added"], out["removed"]) == (1, 2)
