"""Long operations show progress on a terminal, and print nothing of the kind into a pipe."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import udrfs

pytestmark = pytest.mark.timeout(120)


def run_udr(args: list[str], stderr_on_terminal: bool) -> tuple[int, str, str]:
    """Run `udr ARGS` with stderr on a pseudo-terminal or a pipe: (code, stdout, stderr)."""
    env = {**os.environ, "UDR_PROGRESS_AFTER": "0"}  # from the start: no timing in tests
    command = [sys.executable, "-m", "udrfs.cli.main", *args]
    if not stderr_on_terminal:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr
    main_fd, terminal_fd = pty.openpty()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal_fd, env=env)
    os.close(terminal_fd)
    err = b""
    while True:
        ready, _, _ = select.select([main_fd], [], [], 60)
        assert ready, "udr wrote nothing and did not end"
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        err += chunk
    os.close(main_fd)
    assert child.stdout is not None
    out = child.stdout.read().decode()
    return child.wait(timeout=60), out, err.decode()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    udrfs.Repo.init(tmp_path / "store")
    return tmp_path / "store"


def test_import_shows_progress_on_a_terminal(store: Path, nyc_parquet_dir: Path) -> None:
    flights = nyc_parquet_dir / "flights.parquet"
    code, out, err = run_udr(["import", str(store), "flights", str(flights)], True)
    assert code == 0 and "v1 on main" in out
    assert "\rimport flights: " in err and "MiB" in err
    assert err.endswith("\n")  # the line is ended: what follows starts on its own line


def test_import_prints_no_progress_into_a_pipe(store: Path, nyc_parquet_dir: Path) -> None:
    flights = nyc_parquet_dir / "flights.parquet"
    code, out, err = run_udr(["import", str(store), "flights", str(flights)], False)
    assert code == 0 and "v1 on main" in out
    assert err == ""


def test_push_shows_bytes_and_files_on_a_terminal_only(
    store: Path, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    repo = udrfs.Repo(store)
    repo.import_file("flights", nyc_parquet_dir / "flights.parquet")
    repo.add_remote("backup", str(tmp_path / "remote"))
    code, _, err = run_udr(["push", str(store), "backup", "main"], True)
    assert code == 0
    assert "\rpush: " in err and " files" in err
    repo.import_file("weather", nyc_parquet_dir / "weather.parquet")
    code, _, err = run_udr(["push", str(store), "backup", "main"], False)
    assert code == 0 and err == ""


def test_bulk_import_shows_bytes_and_files_on_a_terminal_only(
    store: Path, nyc_parquet_dir: Path
) -> None:
    code, out, err = run_udr(["bulk-import", str(store), str(nyc_parquet_dir)], True)
    assert code == 0 and "5 tables on main" in out
    assert "\rbulk import: " in err and " files" in err and "MiB" in err
    assert err.endswith("\n")
    code, out, err = run_udr(["bulk-import", str(store), str(nyc_parquet_dir)], False)
    assert code == 0 and "all 5 tables unchanged" in out
    assert err == ""


def keyed_branches(store: Path) -> None:
    """main and `scoring` both changed table t since they parted: a three-way row merge."""
    repo = udrfs.Repo(store)
    base = {"id": list(range(1000)), "score": [0] * 1000}
    repo.write_table("t", pa.table(base), key="id")
    repo.create_branch("scoring")
    repo.write_table("t", pa.table({**base, "score": [1] * 500 + [0] * 500}), key="id")
    repo.write_table(
        "t", pa.table({**base, "score": [0] * 500 + [2] * 500}), key="id", branch="scoring"
    )


def test_merge_shows_progress_on_a_terminal(store: Path) -> None:
    keyed_branches(store)
    code, out, err = run_udr(["merge", str(store), "scoring", "--into", "main"], True)
    assert code == 0 and "merged scoring into main" in out
    assert "\rmerge scoring into main: " in err
    assert err.endswith("\n")


def test_merge_prints_no_progress_into_a_pipe(store: Path) -> None:
    keyed_branches(store)
    code, out, err = run_udr(["merge", str(store), "scoring", "--into", "main"], False)
    assert code == 0 and "merged scoring into main" in out
    assert err == ""
