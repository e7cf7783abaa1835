"""A script that reads a table exits 0, every time, whichever public read path it uses.

pyarrow reading through a Python file object with threads could abort the interpreter at exit
("terminate called without an active exception"; docs/architecture.md#reading-through-pyarrow).
The abort is a race, so each path runs in many fresh interpreters, a few at a time (a busy
machine is where the race shows).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import udrfs

RUNS = 20
AT_ONCE = 2
ROWS = 200_000

# Each script reads through one public path; STORE is the store's path.
SCRIPTS = {
    "repo_read_table": "import udrfs; print(udrfs.Repo(STORE).read_table('t').num_rows)",
    "transaction_read_table": (
        "import udrfs\n"
        "with udrfs.Repo(STORE).transaction() as tx:\n"
        "    print(tx.read_table('t').num_rows)"
    ),
    "diff": "import udrfs; d = udrfs.Repo(STORE).diff('t', 1, 2); print(d.removed.num_rows)",
    "query": "import udrfs; print(udrfs.Repo(STORE).query('SELECT sum(x) FROM t'))",
    "udr_fsspec": (
        "import fsspec, pyarrow.parquet as pq\n"
        "fs = fsspec.filesystem('udr')\n"
        "print(pq.read_table(STORE + '/@main/t/latest.parquet', filesystem=fs).num_rows)"
    ),
    "udr_url_pandas": (
        "import pandas as pd\n"
        "print(len(pd.read_parquet('udr://' + STORE + '/@main/t/latest.parquet')))"
    ),
    "repo_open_in_pyarrow": (
        "import udrfs, pyarrow.parquet as pq\n"
        "with udrfs.Repo(STORE).open('t') as f:\n"
        "    print(pq.read_table(f).num_rows)"
    ),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("exit") / "store"
    repo = udrfs.Repo.init(path)
    rng = np.random.default_rng(17)
    table = pa.table(
        {
            "id": np.arange(ROWS),
            "x": rng.random(ROWS),
            "s": pa.array([f"name {i % 997}" for i in range(ROWS)]),
        }
    )
    repo.write_table("t", table, key="id")
    repo.write_table("t", table.slice(0, ROWS - 10), key="id")
    return str(path)


def _run_many(argv_of: list[list[str]]) -> list[tuple[int, str]]:
    """Run the commands AT_ONCE at a time: (exit code, stderr) of each."""
    results = []
    for start in range(0, len(argv_of), AT_ONCE):
        procs = [
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for argv in argv_of[start : start + AT_ONCE]
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            results.append((proc.returncode, err))
    return results


def _assert_all_exit_zero(results: list[tuple[int, str]]) -> None:
    failed = [(code, err.strip().splitlines()[-1:]) for code, err in results if code != 0]
    assert not failed, f"{len(failed)} of {len(results)} runs failed: {failed[:3]}"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", sorted(SCRIPTS))
def test_reading_a_table_exits_zero_every_time(store: str, path: str) -> None:
    code = f"STORE = {store!r}\n{SCRIPTS[path]}"
    _assert_all_exit_zero(_run_many([[sys.executable, "-c", code]] * RUNS))


@pytest.mark.timeout(600)
def test_udr_cat_exits_zero_every_time(store: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "udrfs.cli.main", "cat", store, "t", "-o"]
    results = _run_many([[*argv, os.fspath(tmp_path / f"t{i}.parquet")] for i in range(RUNS)])
    _assert_all_exit_zero(results)
