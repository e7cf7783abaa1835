"""The four demos (tools/examples/demo_*.py, docs/demos.md) run at the small scale, each as
its own command, and every check they print holds."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mounting import requires_fuse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tools" / "examples"


def run_demo(name: str, tmp_path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--small", "--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "FAIL" not in out
    assert out.rstrip().endswith("all checks passed")
    return out


@pytest.mark.timeout(120)
def test_transaction_demo(tmp_path: Path) -> None:
    out = run_demo("demo_transaction.py", tmp_path)
    for what in ("from outside", "after the data was flushed", "before the ref"):
        assert "tables at their new version: 0 of 5" in out.split(what)[1].splitlines()[0]
    for line in [
        "  ok: the rerun lands all five tables together, in one commit",
        "  ok: udr fsck: clean after the rerun",
        "  measured: 2 of 5 tables moved: torn",
    ]:
        assert line in out, line
    assert out.count("  ok: udr fsck: clean (") == 3
    table = out.split("== Comparison")[1]
    assert "UDR-FS" in table and "Delta Lake" in table and "0 of 5 (3 kills)" in table


@pytest.mark.mount
@pytest.mark.timeout(120)
@requires_fuse
def test_change_stream_demo(tmp_path: Path) -> None:
    out = run_demo("demo_change_stream.py", tmp_path)
    for line in [
        "  ok: tail -F on .changes saw every commit once, in order",
        "  ok: the subscriber handled every entry exactly once, in order",
        "  ok: it caught up on what it missed",
        "  ok: get_changes(since=seq) lists the missed commits, each with its tables",
        "  subscriber: seq 5 batch 4: flights v4, weather v4",
    ]:
        assert line in out, line
    assert out.count("subscriber: seq 5 ") == 1  # delivered once, after the restart
    assert "1 seq for all tables" in out and "5 versions, one a table" in out
    assert str(tmp_path) not in Path("/proc/mounts").read_text()  # unmounted


def test_branches_demo(tmp_path: Path) -> None:
    out = run_demo("demo_branches.py", tmp_path)
    for line in [
        "  ok: 100 branches besides main",
        "  ok: the branches added no data (packs, index, objects)",
        "  ok: the diff finds exactly the edited lots",
        "  ok: and only the edited column",
        "  diff by hand (DuckDB join of both copies): 200 modified rows",
    ]:
        assert line in out, line


def test_unified_demo(tmp_path: Path) -> None:
    out = run_demo("demo_unified.py", tmp_path)
    for line in [
        "  ok: the failed transaction applied nothing",
        "  ok: the subscriber received the correction as one entry of both tables",
        "  ok: SQL over joined tables",
        "  ok: v1 reads as loaded",
        "  ok: the diff finds every corrected flight",
    ]:
        assert line in out, line
    assert "diff by hand (DuckDB join of two versions): 394 modified rows" in out


def test_a_demo_exits_1_when_a_claim_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An A/B "edit" that changes nothing: the branch's checks fail, and the demo says so."""
    spec = importlib.util.spec_from_file_location("demo_branches", EXAMPLES / "demo_branches.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "scattered", lambda table: table)
    assert module.main(["--small", "--work", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "  FAIL: the branch does" in out
    assert "  FAIL: the diff finds exactly the edited lots" not in out  # 0 edited, 0 found
    assert "checks failed" in out and "all checks passed" not in out
