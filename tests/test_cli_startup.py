"""The `udr` command starts without loading what only some commands need (pyarrow, DuckDB,
pandas, FUSE): those load inside the commands that use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pyarrow", "duckdb", "pandas", "pyfuse3", "trio", "numpy")

# Run the command in-process, then report which heavy packages it loaded.
_PROBE = """
import json, sys
from udrfs.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(%r)))
print(json.dumps(heavy), file=sys.stderr)
"""


def loaded_by(*args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE % json.dumps(HEAVY), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result: list[str] = json.loads(proc.stderr.strip().splitlines()[-1])
    return result


@pytest.fixture
def store(tmp_path: Path, nyc_parquet_dir: Path) -> str:
    import udrfs

    path = tmp_path / "store"
    repo = udrfs.Repo.init(path)
    repo.import_file("airlines", nyc_parquet_dir / "airlines.parquet")
    return str(path)


def test_help_and_version_load_no_heavy_package() -> None:
    assert loaded_by("--help") == []
    assert loaded_by("--version") == []


def test_tables_and_log_load_no_heavy_package(store: str) -> None:
    assert loaded_by("tables", store) == []
    assert loaded_by("log", store) == []


def test_mount_help_still_lists_the_daemon_options() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", "mount", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "--read-mode" in proc.stdout and "--foreground" in proc.stdout


def test_import_udrfs_still_offers_the_api() -> None:
    import udrfs

    for name in udrfs.__all__:
        assert getattr(udrfs, name) is not None
