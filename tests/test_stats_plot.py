"""`udr stats --plot`: stored beside logical bytes of each table over its versions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import udrfs
from udrfs.catalog.growth import store_growth, table_growth

pytestmark = pytest.mark.timeout(120)


def rows(n: int) -> pa.Table:
    return pa.table({"id": list(range(n)), "name": [f"lot {i:07d}" for i in range(n)]})


@pytest.fixture
def repo(tmp_path: Path) -> udrfs.Repo:
    """`parcels` v1 (40,000 rows), v2 (1,000 appended), v3 (a revert to v1's bytes);
    `small` v1."""
    repo = udrfs.Repo.init(tmp_path / "store")
    repo.write_table("parcels", rows(40_000), key="id")
    second = repo.write_table("parcels", rows(41_000), key="id")
    repo.write_table("small", rows(10), key="id")
    assert second is not None
    repo.revert(second.id)  # v3 holds v1's chunks again
    assert repo.version("parcels", 3).blake3 == repo.version("parcels", 1).blake3
    return repo


def run_udr(*args: str, python: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    command = python or [sys.executable, "-m", "udrfs.cli.main"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


def test_growth_counts_the_files_whole_and_each_chunk_once(repo: udrfs.Repo) -> None:
    sizes = [repo.version("parcels", v).size for v in (1, 2, 3)]
    growth = table_growth(repo.catalog.history, "parcels", "main")
    assert [g.version for g in growth] == [1, 2, 3]
    assert [g.logical_bytes for g in growth] == [sizes[0], sizes[0] + sizes[1], sum(sizes)]
    assert growth[0].stored_bytes == sizes[0]  # no chunk repeats inside one version
    # v2 appended rows: it shares chunks with v1, so it stores less than its size.
    assert sizes[0] < growth[1].stored_bytes < sizes[0] + sizes[1]
    # v3 is v1's bytes again: nothing new is stored.
    assert growth[2].stored_bytes == growth[1].stored_bytes


def test_store_growth_covers_the_tables_the_head_holds(repo: udrfs.Repo) -> None:
    growth = store_growth(repo.catalog.history, "main")
    assert sorted(growth) == ["parcels", "small"]
    assert [g.version for g in growth["small"]] == [1]


def test_udr_stats_plot_draws_a_png(repo: udrfs.Repo, tmp_path: Path) -> None:
    out = tmp_path / "growth.png"
    result = run_udr("stats", str(repo.path), "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert f"plot             {out} (2 tables of main)" in result.stdout
    assert "dedup ratio" in result.stdout
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_udr_stats_plot_without_matplotlib_says_how_to_install_it(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    out = tmp_path / "growth.png"
    # An interpreter where `import matplotlib` fails, as where it is not installed.
    no_matplotlib = [
        sys.executable,
        "-c",
        "import sys; sys.modules['matplotlib'] = None; "
        "from udrfs.cli.main import main; sys.exit(main())",
    ]
    result = run_udr("stats", str(repo.path), "--plot", str(out), python=no_matplotlib)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("udr: error: udr stats --plot draws with matplotlib")
    assert "pip install matplotlib" in result.stderr
    assert not out.exists()
    assert repo.fsck().ok


def test_udr_stats_plot_refuses_a_file_it_cannot_draw(repo: udrfs.Repo, tmp_path: Path) -> None:
    result = run_udr("stats", str(repo.path), "--plot", str(tmp_path / "growth.txt"))
    assert result.returncode == 2
    assert "name a .png, .svg, .pdf file" in result.stderr
    assert repo.fsck().ok
