"""`udr stats STORE --plot FILE.png`: stored beside logical bytes of each table over its
versions (catalog/growth.py), one small panel per table.

matplotlib is imported here, when a plot is asked for, never at start-up; without it the
command fails in one line saying how to install it.
"""

from __future__ import annotations

from pathlib import Path

from udrfs.catalog.growth import VersionGrowth
from udrfs.cli.output import human_bytes, printable
from udrfs.errors import UdrError, UsageError

# The largest tables (by logical bytes) get a panel each; the rest are counted in the title.
MAX_PANELS = 12
COLUMNS = 3
FORMATS = (".png", ".svg", ".pdf")


def draw_growth(growth: dict[str, list[VersionGrowth]], path: Path, title: str) -> int:
    """Write the chart to `path` (its suffix picks the format); returns the tables drawn."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"--plot {path}: name a {', '.join(FORMATS)} file, e.g. growth.png")
    try:
        import matplotlib
    except ImportError:
        raise UdrError(
            "udr stats --plot draws with matplotlib, which is not installed: "
            "pip install matplotlib (it comes with the 'bench' extra: pip install 'udrfs[bench]')"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    shown = sorted(
        (t for t in growth if growth[t]), key=lambda t: (-growth[t][-1].logical_bytes, t)
    )
    hidden = len(shown) - MAX_PANELS
    shown = sorted(shown[:MAX_PANELS])
    if not shown:
        raise UsageError(f"{title}: no table has a version to plot")
    columns = min(COLUMNS, len(shown))
    rows = (len(shown) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows + 0.8))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    as_bytes = FuncFormatter(lambda value, _: human_bytes(int(value)))
    for ax, table in zip(flat, shown, strict=False):
        points = growth[table]
        versions = [p.version for p in points]
        logical = [p.logical_bytes for p in points]
        stored = [p.stored_bytes for p in points]
        ax.plot(versions, logical, marker="o", markersize=3, color="#8a8a8a", label="logical")
        ax.plot(versions, stored, marker="o", markersize=3, color="#1f6fb4", label="stored")
        ax.fill_between(versions, stored, logical, color="#1f6fb4", alpha=0.08)
        ratio = logical[-1] / stored[-1] if stored[-1] else 1.0
        ax.set_title(f"{printable(table)}  ({ratio:.1f}x dedup)", fontsize=9)
        ax.set_xlabel("version", fontsize=8)
        ax.yaxis.set_major_formatter(as_bytes)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in flat[len(shown) :]:
        ax.axis("off")
    flat[0].legend(fontsize=7, loc="upper left")
    more = f"; {hidden} smaller tables not drawn" if hidden > 0 else ""
    fig.suptitle(f"{printable(title)}: logical vs stored bytes over versions{more}", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return len(shown)
