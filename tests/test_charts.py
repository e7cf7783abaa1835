"""The benchmarks' charts (benchmarks/charts.py): a PNG of our figures beside the baselines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from benchmarks.charts import Panel, machine, redraw, save_chart

PANELS = [
    Panel("cold read", "GB/s", ("mount", 1.8), [("local file", 2.2)], target=1.5),
    Panel("commit", "ms", ("1 table", 3.0), [("10 tables", 3.4)], better="lower"),
]


def test_a_chart_is_a_png_where_it_was_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "bench_x.png"
    assert save_chart("bench_x", "A benchmark", PANELS, note="target: 0.7x", out=out) == out
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_chart_is_redrawn_from_its_record_without_the_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "bench_x.png"
    save_chart("bench_x", "A benchmark", PANELS, out=out)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["panels"][0]["ours"] == ["mount", 1.8]
    assert record["machine"].startswith(f"{os.cpu_count()} cores, ")
    out.unlink()
    assert redraw([out.with_suffix(".json")]) == 0
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_nothing_measured_draws_nothing(tmp_path: Path) -> None:
    out = tmp_path / "none.png"
    nan = float("nan")
    assert save_chart("none", "Nothing", [Panel("t", "s", ("ours", nan))], out=out) is None
    assert not out.exists()


def test_without_matplotlib_a_benchmark_still_ends_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    out = tmp_path / "bench_x.png"
    assert save_chart("bench_x", "A benchmark", PANELS, out=out) is None
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not out.exists()


def test_the_machine_line_names_the_cores_and_the_load() -> None:
    line = machine()
    assert line.startswith(f"{os.cpu_count()} cores, ")
    assert ", load " in line
