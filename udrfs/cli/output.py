"""Small helpers for printing tables and sizes the same way in every command."""

from __future__ import annotations

from collections.abc import Sequence


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def printable(text: object) -> str:
    """`text` with control characters (newlines, escapes, ...) shown as escapes, so that a
    commit message or name cannot rewrite the terminal or fake extra output lines."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def print_rows(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[printable(c) for c in header]] + [[printable(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
