"""The `udr` command: every command runs, and bad input gives one line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from udrfs import _native


def udr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"udr {' '.join(args)} failed: {proc.stderr}")
    return proc


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = str(tmp_path / "store")
    udr("init", path)
    return path


def test_import_tables_log_cat_stats(store: str, nyc_parquet_dir: Path, tmp_path: Path) -> None:
    weather = nyc_parquet_dir / "weather.parquet"
    flights = nyc_parquet_dir / "flights.parquet"
    assert "v1 on main" in udr("import", store, "nyc", str(weather), "-m", "night 1").stdout
    assert (
        "v2 on main"
        in udr(
            "import", store, "nyc", str(flights), "-m", "night 2", "--allow-schema-change"
        ).stdout
    )
    assert "unchanged" in udr("import", store, "nyc", str(flights)).stdout

    tables = udr("tables", store).stdout
    assert "nyc" in tables and "v2" in tables and "336776" in tables

    log = udr("log", store, "--table", "nyc").stdout
    assert log.index("night 2") < log.index("night 1")

    out = tmp_path / "out.parquet"
    with open(out, "wb") as f:
        subprocess.run(
            [sys.executable, "-m", "udrfs.cli.main", "cat", store, "nyc@1"], stdout=f, check=True
        )
    assert _native.blake3_file(str(out)) == _native.blake3_file(str(weather))

    stats = json.loads(udr("stats", store, "--json").stdout)
    assert stats["versions"] == 2 and stats["dedup_ratio"] > 0
    assert "dedup ratio" in udr("stats", store).stdout
    assert "ok:" in udr("fsck", store).stdout


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (("tables", "/nonexistent/store"), "does not exist", 3),
        (("cat", "{store}", "nope@1"), "no table named 'nope'", 3),
        (("cat", "{store}", "nope@x"), "a version is a positive number", 2),
        (("tables", "{store}", "-b", "nobranch"), "not a branch, tag or commit", 3),
        (("import", "{store}", "t", "{notparquet}"), "is not a Parquet file", 2),
        (("import", "{store}", "t", "/nonexistent.parquet"), "does not exist", 3),
        (("init", "{store}"), "already a UDR store", 1),
        (("branch", "{store}", "create", "bad..name"), "not a valid branch name", 2),
    ],
)
def test_bad_input_gives_one_line_and_an_exit_code_per_error_class(
    store: str, tmp_path: Path, args: tuple[str, ...], message: str, code: int
) -> None:
    notparquet = tmp_path / "x.csv"
    notparquet.write_text("a,b\n")
    proc = udr(*(a.format(store=store, notparquet=notparquet) for a in args), check=False)
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("udr: error:")
    assert message in lines[0]


def test_every_command_has_help() -> None:
    for cmd in (
        "init",
        "import",
        "tables",
        "versions",
        "log",
        "cat",
        "stats",
        "fsck",
        "branch",
        "tag",
    ):
        proc = udr(cmd, "--help")
        assert "usage: udr" in proc.stdout
