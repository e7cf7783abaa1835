"""A benchmark's own virtualenv, for a baseline whose packages pin another version of one
the project uses (DuckDB's extensions from PyPI are built for one DuckDB each)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def side_python(venv: Path, pins: Sequence[str]) -> Path:
    """The interpreter of `venv`, made with `pins` installed if it is not there yet (or was
    made with other pins)."""
    python = venv / "bin" / "python"
    recorded = venv / "pins.txt"
    if not python.exists() or not recorded.exists() or recorded.read_text().split() != list(pins):
        print(f"making {venv} with {' '.join(pins)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *pins], check=True)
        recorded.write_text("\n".join(pins) + "\n")
    return python
