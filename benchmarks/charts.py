"""Pictures of the benchmarks: each one draws our figures beside its baselines as a PNG.

Every benchmark script calls `save_chart` after printing its table. A chart is a row of
panels, one per measurement, each with its own unit: our bar first (coloured), then the
baselines measured in the same run (grey), each bar labelled with its value. The footer
names the command that made it, the machine and its load, and the date, so a picture is
never read without knowing where it came from. docs/benchmarks.md shows the latest ones.

Beside each PNG, NAME.json records what was drawn (figures, command, machine, date), so
`python benchmarks/charts.py [RESULTS/NAME.json ...]` redraws charts without running the
benchmarks again.

matplotlib comes with the `bench` extra (`pip install udrfs[bench]`); without it a benchmark
still prints its table and says that no chart was drawn.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

RESULTS = Path(__file__).resolve().parent / "results"
OURS_COLOUR = "#1f6fb4"
BASELINE_COLOUR = "#9a9a9a"
PANELS_PER_ROW = 3


@dataclass(frozen=True)
class Panel:
    """One measurement: our figure and the baselines it is compared with, in one unit."""

    title: str
    unit: str
    ours: tuple[str, float]
    baselines: Sequence[tuple[str, float]] = field(default_factory=tuple)
    better: Literal["higher", "lower"] = "higher"
    # Drawn as a dashed line where the project set a target in this unit.
    target: float | None = None


def machine() -> str:
    """`2 cores, AMD EPYC 7B13, load 3.1` (the load average of the last minute, now)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores, {model}, load {load:.1f}{page_reporting()}"


def page_reporting() -> str:
    """`, free page reporting (min_free_ms 0)` on a virtual machine whose balloon hands freed
    memory back to its host: there, growing the page cache or a process costs a fault in the
    host per page, which moves write and cold-read figures (docs/architecture.md, "Measured")."""
    params = Path("/sys/module/page_reporting/parameters")
    balloons = Path("/sys/bus/virtio/drivers/virtio_balloon").glob("virtio*")
    if not params.is_dir() or not any(balloons):
        return ""
    delay = params / "min_free_ms"  # not in every kernel
    if not delay.exists():
        return ", free page reporting"
    return f", free page reporting (min_free_ms {delay.read_text().strip()})"


def command() -> str:
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(RESULTS.parent.parent):
        script = script.relative_to(RESULTS.parent.parent)
    return shlex.join(["python", str(script), *sys.argv[1:]])


def save_chart(
    name: str, heading: str, panels: Sequence[Panel], note: str = "", out: Path | None = None
) -> Path | None:
    """Draw `panels` into `out` (default benchmarks/results/NAME.png) and keep what was drawn
    beside it (NAME.json, which `python benchmarks/charts.py` redraws from); returns the
    PNG's path, or None (with a line on stderr) when matplotlib is not installed or nothing
    was measured."""
    measured = [p for p in panels if p.ours[1] == p.ours[1]]  # NaN: not measured
    if not measured:
        return None
    path = out or RESULTS / f"{name}.png"
    record = {
        "name": name,
        "heading": heading,
        "note": note,
        "command": command(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "panels": [asdict(p) for p in measured],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return draw(record, path)


def draw(record: dict[str, Any], path: Path) -> Path | None:
    """Draw a chart recorded by `save_chart` into `path`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            f"{record['name']}: no chart drawn: matplotlib is not installed "
            "(pip install 'udrfs[bench]')",
            file=sys.stderr,
        )
        return None
    panels = [_panel(p) for p in record["panels"]]
    columns = 2 if len(panels) == 4 else min(PANELS_PER_ROW, len(panels))
    rows = (len(panels) + columns - 1) // columns
    height = 2.9 * rows + 0.9
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, height))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax, panel in zip(flat, panels, strict=False):
        _draw(ax, panel)
    for ax in flat[len(panels) :]:
        ax.axis("off")
    fig.suptitle(record["heading"], fontsize=12, fontweight="bold")
    footer = f"{record['command']}\n{record['machine']}; {record['date']}"
    if record["note"]:
        footer = f"{record['note']}\n{footer}"
    fig.text(0.01, 0.01, footer, fontsize=7.5, color="#444444", va="bottom")
    top = 1 - 0.35 / height
    bottom = (0.3 + 0.14 * footer.count("\n")) / height
    fig.tight_layout(rect=(0, bottom, 1, top))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"chart: {path}")
    return path


def _panel(fields: dict[str, Any]) -> Panel:
    return Panel(
        title=fields["title"],
        unit=fields["unit"],
        ours=(fields["ours"][0], fields["ours"][1]),
        baselines=[(label, value) for label, value in fields["baselines"]],
        better=fields["better"],
        target=fields["target"],
    )


def _draw(ax: object, panel: Panel) -> None:
    bars = [panel.ours, *panel.baselines]
    labels = [label for label, _ in bars]
    values = [value for _, value in bars]
    colours = [OURS_COLOUR] + [BASELINE_COLOUR] * len(panel.baselines)
    positions = list(range(len(bars)))[::-1]  # ours on top
    ax.barh(positions, values, color=colours, height=0.6)  # type: ignore[attr-defined]
    # Room above the top bar for the target's label, inside the panel.
    ax.set_ylim(-0.6, max(positions) + 0.95)  # type: ignore[attr-defined]
    ax.set_yticks(positions, labels, fontsize=8)  # type: ignore[attr-defined]
    arrow = "higher is better" if panel.better == "higher" else "lower is better"
    ax.set_xlabel(f"{panel.unit} ({arrow})", fontsize=8)  # type: ignore[attr-defined]
    ax.set_title(panel.title, fontsize=9)  # type: ignore[attr-defined]
    top = max([*values, panel.target or 0.0])
    top = top if top > 0 else 1.0
    ax.set_xlim(0, top * 1.3)  # type: ignore[attr-defined]
    if panel.target is not None:
        ax.axvline(panel.target, color="#c0392b", linestyle="--", linewidth=1)  # type: ignore[attr-defined]
        ax.text(  # type: ignore[attr-defined]
            panel.target, max(positions) + 0.55, " target", color="#c0392b", fontsize=7
        )
    for position, value in zip(positions, values, strict=True):
        ax.text(  # type: ignore[attr-defined]
            value + top * 0.02, position, _number(value), va="center", fontsize=8
        )
    ax.tick_params(axis="x", labelsize=7)  # type: ignore[attr-defined]
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)  # type: ignore[attr-defined]


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.2f}"
    return f"{value:.2g}"


def redraw(paths: Sequence[Path]) -> int:
    """Redraw charts from their records (every one in benchmarks/results/ if none given),
    e.g. after changing how charts look, without running the benchmarks again."""
    records = list(paths) or sorted(RESULTS.glob("*.json"))
    for record in records:
        draw(json.loads(record.read_text()), record.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(redraw([Path(arg) for arg in sys.argv[1:]]))
