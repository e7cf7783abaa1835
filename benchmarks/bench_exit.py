"""How often a script that reads a table aborts at exit ("terminate called without an active
exception", docs/architecture.md#reading-through-pyarrow), per read path, over many fresh
interpreters run two at a time, beside the same read with the exit hook's settle time off
(what the code did before) and pyarrow reading a `BytesIO` (the upstream pattern).

A race, so a rate: `--runs` interpreters a path. Usage:
``python benchmarks/bench_exit.py [--runs 100]``; a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402

ROWS = 200_000
UDR_URL = (
    "import fsspec, pyarrow.parquet as pq\n"
    "fs = fsspec.filesystem('udr')\n"
    "print(pq.read_table(STORE + '/@main/t/latest.parquet', filesystem=fs).num_rows)"
)
PATHS = {
    "pq.read_table over udr://": UDR_URL,
    "repo.read_table": "import udrfs; print(udrfs.Repo(STORE).read_table('t').num_rows)",
    "pq.read_table over udr://, no settle (before)": (
        "import udrfs.catalog.files as f; f._EXIT_SETTLE = 0\n" + UDR_URL
    ),
    "pq.read_table(BytesIO) (upstream pattern)": (
        "import io, pyarrow.parquet as pq\n"
        "print(pq.read_table(io.BytesIO(open(FILE, 'rb').read())).num_rows)"
    ),
}


def aborts(code: str, runs: int) -> int:
    failed = 0
    for _ in range(0, runs, 2):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(2)
        ]
        failed += sum(p.wait(timeout=120) != 0 for p in procs)
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = udrfs.Repo.init(Path(tmp) / "store")
        rng = np.random.default_rng(17)
        table = pa.table(
            {
                "id": np.arange(ROWS),
                "x": rng.random(ROWS),
                "s": pa.array([f"name {i % 997}" for i in range(ROWS)]),
            }
        )
        repo.write_table("t", table, key="id")
        file = Path(tmp) / "t.parquet"
        file.write_bytes(repo.open("t").read())
        found = {}
        for label, script in PATHS.items():
            code = f"STORE = {str(repo.path)!r}\nFILE = {str(file)!r}\n{script}"
            found[label] = aborts(code, args.runs)
            print(f"{label:48s} {found[label]:4d} of {args.runs} aborted", flush=True)
    labels = list(PATHS)
    baselines = [(label, 100.0 * found[label] / args.runs) for label in labels[2:]]
    save_chart(
        "bench_exit",
        f"Scripts that abort at exit, of {args.runs} runs a path (2 at a time)",
        [
            Panel(
                label,
                "% aborted",
                (label, 100.0 * found[label] / args.runs),
                baselines,
                better="lower",
            )
            for label in labels[:2]
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
