"""Importing a large real Parquet file into a store, beside `cp` of the same file.

    python benchmarks/bench_ingest.py [--scale 6] [--dir DIR] [--runs 3]

The file is TPC-H `lineitem` from `tpchgen-cli` at the given scale factor (scale 6 gives
about 1.3 GB). Each run imports it into a fresh store and prints medians:

* `import_file`: the whole job a user waits for — read the footer, chunk + hash + write packs,
  hash the whole file, make packs durable, commit;
* `ingest only`: chunk + hash + pack write, without the flush (what `cp` does: no fsync);
* `ingest + file hash` into a store of format version 2 and of version 1 (docs/format.md,
  "Format versions"): what an import does before its flush, for each way of naming packs;
* `cp` and `cp + sync` of the same file to the same disk.
The source file is read once first, so every run reads it from the page cache.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_mount import quiet_disk  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

import udrfs  # noqa: E402
from tools import sample_data  # noqa: E402
from udrfs.parquet.inspect import describe_parquet  # noqa: E402
from udrfs.store.format import StoreFormat  # noqa: E402
from udrfs.store.store import Store  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of the children it waited for."""
    return sum(
        u.ru_utime + u.ru_stime
        for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def median_seconds(run: Callable[[Path], object], work: Path, runs: int) -> tuple[float, float]:
    """Medians of the wall time and of the CPU time of `runs` runs."""
    times, cpu = [], []
    for i in range(runs):
        target = work / f"run{i}"
        quiet_disk()
        cpu_start, start = cpu_seconds(), time.perf_counter()
        run(target)
        times.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - cpu_start)
        shutil.rmtree(target, ignore_errors=True)
        (work / f"run{i}.parquet").unlink(missing_ok=True)
    return statistics.median(times), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=6.0)
    parser.add_argument("--dir", type=Path, default=None, help="where stores and copies go")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    source = sample_data.tpch_parquet_dir(args.scale) / "lineitem.parquet"
    size = source.stat().st_size
    source.read_bytes()  # into the page cache, for every contender alike
    work = Path(tempfile.mkdtemp(prefix="udr-bench-ingest-", dir=args.dir))
    gb = size / 1e9
    print(f"file: {source} ({gb:.2f} GB); work dir {work}; median of {args.runs} runs")

    cuts = describe_parquet(source).cut_points

    def import_file(target: Path) -> None:
        udrfs.Repo.init(target).import_file("lineitem", source)

    def ingest_only(target: Path) -> None:
        udrfs.Repo.init(target).store.chunks.ingest_file(source, cuts)

    def hashed_ingest(version: int) -> Callable[[Path], object]:
        """Chunks stored and the whole file hashed, as an import does before its flush, into
        a new store of format `version` (1: packs named by every byte; 2: by their headers)."""
        return lambda target: Store.init(
            target, StoreFormat(format_version=version)
        ).chunks.ingest_file_hashed(source, cuts)

    def cp(target: Path) -> None:
        subprocess.run(["cp", str(source), f"{target}.parquet"], check=True)

    def cp_sync(target: Path) -> None:
        cp(target)
        subprocess.run(["sync", f"{target}.parquet"], check=True)

    try:
        measured = {
            "cp": median_seconds(cp, work, args.runs),
            "cp + sync": median_seconds(cp_sync, work, args.runs),
            "ingest only (no flush)": median_seconds(ingest_only, work, args.runs),
            "import_file (to commit)": median_seconds(import_file, work, args.runs),
            "ingest + file hash, v2": median_seconds(hashed_ingest(2), work, args.runs),
            "ingest + file hash, v1": median_seconds(hashed_ingest(1), work, args.runs),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = {name: seconds for name, (seconds, _) in measured.items()}
    print(f"{'':26} {'GB/s':>6}  vs cp  vs cp+sync  CPU s/GB")
    for name, (seconds, cpu) in measured.items():
        print(
            f"{name:26} {gb / seconds:6.2f}  {results['cp'] / seconds:5.2f}  "
            f"{results['cp + sync'] / seconds:9.2f}  {cpu / gb:8.2f}"
        )
    print("target: ingest at least 0.70x cp")
    rate = {name: gb / seconds for name, seconds in results.items()}
    save_chart(
        "bench_ingest",
        f"Importing TPC-H lineitem, {gb:.2f} GB (scale {args.scale:g}, median of {args.runs})",
        [
            Panel(
                "page cache",
                "GB/s",
                ("ingest only", rate["ingest only (no flush)"]),
                [("cp", rate["cp"])],
            ),
            Panel(
                "durable",
                "GB/s",
                ("import_file", rate["import_file (to commit)"]),
                [("cp + sync", rate["cp + sync"])],
            ),
            Panel(
                "format versions (no flush)",
                "GB/s",
                ("version 2 store", rate["ingest + file hash, v2"]),
                [("version 1 store", rate["ingest + file hash, v1"])],
            ),
        ],
        note="target: ingest at least 0.70x cp",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
