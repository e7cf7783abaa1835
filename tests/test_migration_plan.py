"""The migration guide and its example: the plan's workflows run end to end, and every block
of docs/migrating.md marked `<!-- run -->` runs against a store, so neither drifts from the
API."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tools" / "examples" / "migration_plan.py"
GUIDE = ROOT / "docs" / "migrating.md"
RUN_MARKER = "<!-- run -->"


def runnable_blocks(text: str) -> list[str]:
    """The ```python blocks directly after a `<!-- run -->` line, in order."""
    pattern = re.compile(rf"^{re.escape(RUN_MARKER)}\n```python\n(.*?)^```$", re.M | re.S)
    return pattern.findall(text)


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_plan", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_every_phase_at_the_small_scale(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    store = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "FAIL" not in out
    for line in [
        "4280 lots, 77 compounds",
        "  imported 78 files in commit",
        "  verify: 78 of 78 tables SAME (BLAKE3 of the bytes)",
        "  the plan's check, original.equals(query(...).to_pandas()): False",
        "  ok: night 1 committed exactly its 8 changed compounds + master",
        "  ok: the failed phase applied nothing",
        "  ok: revert put the master back",
        "  ok: the feed lists the night",
        "  ok: history lists the parcel at every night it changed",
        "  ok: a merge of two rewrites of the same rows reports conflicts",
        "  ok: the merge brought the experiment's scores to main",
        "all checks passed",
    ]:
        assert line in out, line
    assert "Transaction " in out and "nyc_master: v" in out  # the plan's change-feed loop
    # The store it left behind is whole, and main holds the merged experiment.
    import udrfs

    repo = udrfs.Repo(store)
    try:
        assert repo.fsck().ok
        assert len(repo.tables()) == 78
        assert "experiment/new-scoring-weights" in repo.branches()
        assert len(repo.log()[0].parents) == 2  # main's head is the merge commit
    finally:
        repo.close()


def test_example_exits_nonzero_when_a_check_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example()
    build = example.master_from_udr

    def same_weights(tx: Any, lots: Any, weight: float = 1.0) -> Any:
        return build(tx, lots)  # the "experiment" scores exactly as main does

    monkeypatch.setattr(example, "master_from_udr", same_weights)
    assert example.main(["--nights", "1"]) == 1
    out = capsys.readouterr().out
    assert "  FAIL: the experiment did not touch main" in out
    assert "checks failed" in out and "all checks passed" not in out


def test_the_guide_marks_its_runnable_blocks() -> None:
    text = GUIDE.read_text()
    blocks = runnable_blocks(text)
    assert len(blocks) >= 10
    markers = [line for line in text.splitlines() if line.strip() == RUN_MARKER]
    assert len(markers) == len(blocks)  # no marker before anything but a python block
    assert any("get_changes(since_tx_id=" in b for b in blocks)
    assert any("engine.verify(" in b for b in blocks)
    assert any('engine.history("nyc_master"' in b for b in blocks)


def test_the_guides_runnable_blocks_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    namespace: dict[str, Any] = {"__name__": "migrating_guide"}
    try:
        for number, block in enumerate(runnable_blocks(GUIDE.read_text()), 1):
            code = compile(block, f"docs/migrating.md block {number}", "exec")
            exec(code, namespace)
    finally:
        if "engine" in namespace:
            namespace["engine"].close()
    out = capsys.readouterr().out
    assert "\nFalse\n" in out  # the plan's DataFrame.equals check, shown failing
    assert "Transaction 2:" in out and "Main avg:" in out
    assert "would change columns of v" in out and "numbldgs double -> string" in out
    import udrfs

    repo = udrfs.Repo(tmp_path / "data/udr/nyc")
    try:
        assert repo.fsck().ok
        merged = repo.read_table("nyc_master")  # the merge was a fast-forward
        assert merged.equals(repo.read_table("nyc_master", branch="experiment/new-scoring-weights"))
        assert "numbldgs" in merged.column_names  # the serializable master phase landed
    finally:
        repo.close()
