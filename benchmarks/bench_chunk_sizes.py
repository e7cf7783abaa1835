"""What a store's chunk sizes trade: chunking speed against the bytes an edit adds.

    python benchmarks/bench_chunk_sizes.py [--scale 6] [--rows 856000]

A store's FastCDC sizes (min/avg/max, in its udr.toml) are fixed for its life. For each set
below, on one core and with nothing stored, median of 3:

* chunk + hash speed (`chunk_boundaries`) of TPC-H `lineitem` (tpchgen-cli, page-cached), with
  its Parquet cut points as an import passes them, beside BLAKE3 alone of the same bytes;
* the mean chunk size there;
* the new bytes of three edits of the 856k-row parcel table written by the dedup writer (a
  localized edit, an append, one column changed on 1% of rows: tools/parcels.py, as
  bench_dedup.py), each against the version before, in % of the new file;
* the new bytes of ten 37-byte inserts at random places in the first 256 MiB of `lineitem`,
  cut without cut points (bytes that shift, as in a file that is not Parquet).

FastCDC does not look for a cut in the first `min` bytes of a chunk, so a larger minimum
hashes fewer bytes with its gear hash. Sizes between `min` and `max` come from the content
either way, so an insert still moves only the chunks around it.
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tools")]

import parcels  # noqa: E402
from charts import Panel, save_chart  # noqa: E402

from tools import sample_data  # noqa: E402
from udrfs import _native  # noqa: E402
from udrfs.catalog.model import DEFAULT_ZSTD_LEVEL  # noqa: E402
from udrfs.parquet.inspect import describe_parquet  # noqa: E402
from udrfs.parquet.writer import write_parquet  # noqa: E402
from udrfs.store.format import StoreFormat  # noqa: E402

KIB = 1024
# (min, avg, max) in KiB: the minimum of stores made before 2026-12-05, others between, the
# default of a new store, and larger averages.
SIZES: list[tuple[int, int, int]] = [
    (16, 64, 256),
    (32, 64, 256),
    (48, 64, 256),
    (32, 96, 384),
    (64, 128, 512),
]
NEW_STORE = tuple(v // KIB for v in (StoreFormat().chunk_min, StoreFormat().chunk_avg))
RUNS = 3
SHIFT_BYTES = 256 << 20
INSERTS = 10


def chunks(
    data: bytes, sizes: tuple[int, int, int], cuts: list[int] | None
) -> list[tuple[bytes, int]]:
    """(id, length) of each chunk of `data`."""
    low, avg, high = (s * KIB for s in sizes)
    blob = _native.chunk_boundaries(data, low, avg, high, cuts)
    return [
        (blob[i : i + 32], struct.unpack_from("<I", blob, i + 32)[0])
        for i in range(0, len(blob), 36)
    ]


def new_bytes(before: list[tuple[bytes, int]], after: list[tuple[bytes, int]]) -> int:
    held = {chunk_id for chunk_id, _ in before}
    return sum(length for chunk_id, length in after if chunk_id not in held)


def parquet_with_cuts(table: pa.Table) -> tuple[bytes, list[int]]:
    """The dedup writer's file of `table` (key bbl) and its cut points."""
    sink = io.BytesIO()
    write_parquet(table, sink, key=[parcels.KEY], unique_key=True, zstd_level=DEFAULT_ZSTD_LEVEL)
    data = sink.getvalue()
    with tempfile.NamedTemporaryFile(suffix=".parquet") as f:
        f.write(data)
        f.flush()
        return data, describe_parquet(Path(f.name)).cut_points


def with_inserts(data: bytes) -> bytes:
    rng = np.random.default_rng(3)
    parts, last = [], 0
    for at in sorted(int(p) for p in rng.integers(0, len(data), INSERTS)):
        parts += [data[last:at], rng.bytes(37)]
        last = at
    return b"".join([*parts, data[last:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=6.0)
    parser.add_argument("--rows", type=int, default=parcels.ROWS)
    args = parser.parse_args()

    lineitem_path = sample_data.tpch_parquet_dir(args.scale) / "lineitem.parquet"
    lineitem = lineitem_path.read_bytes()
    cuts = describe_parquet(lineitem_path).cut_points
    v1 = parcels.parcels(args.rows)
    v2 = parcels.localized(v1)
    v3 = parcels.append(v2)
    v4 = parcels.scattered(v3)
    files = [parquet_with_cuts(t) for t in (v1, v2, v3, v4)]
    shifted = lineitem[:SHIFT_BYTES]
    inserted = with_inserts(shifted)

    def seconds(run: Callable[[], object]) -> float:
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    gb = len(lineitem) / 1e9
    blake3 = gb / seconds(lambda: _native.blake3_hex(lineitem))
    print(
        f"lineitem {gb:.2f} GB (scale {args.scale:g}), parcels {args.rows:,} rows; one core, "
        f"median of {RUNS}; BLAKE3 alone {blake3:.2f} GB/s"
    )
    header = ("min/avg/max KiB", "GB/s", "mean KiB", "localized", "append", "scattered", "inserts")
    print(
        f"{header[0]:<17}{header[1]:>7}{header[2]:>10}{header[3]:>11}{header[4]:>8}"
        f"{header[5]:>11}{header[6]:>9}"
    )
    rates: dict[str, float] = {}
    for sizes in SIZES:
        rate = gb / seconds(functools.partial(chunks, lineitem, sizes, cuts))
        mean = len(lineitem) / len(chunks(lineitem, sizes, cuts)) / KIB
        lists = [chunks(data, sizes, file_cuts) for data, file_cuts in files]
        edits = [100 * new_bytes(lists[i - 1], lists[i]) / len(files[i][0]) for i in range(1, 4)]
        shift = new_bytes(chunks(shifted, sizes, None), chunks(inserted, sizes, None))
        name = "/".join(map(str, sizes)) + (" (new)" if sizes[:2] == NEW_STORE else "")
        rates[name] = rate
        print(
            f"{name:<17}{rate:>7.2f}{mean:>10.0f}{edits[0]:>10.1f}%{edits[1]:>7.1f}%"
            f"{edits[2]:>10.1f}%{shift / 1e6:>6.2f} MB"
        )
    ours = next(name for name in rates if name.endswith("(new)"))
    save_chart(
        "bench_chunk_sizes",
        f"Chunk + hash of TPC-H lineitem ({gb:.2f} GB), one core, by a store's chunk sizes",
        [
            Panel(
                "chunk + hash",
                "GB/s",
                (ours, rates[ours]),
                [(name, rate) for name, rate in rates.items() if name != ours],
                better="higher",
            )
        ],
        note="edits' new bytes are printed, not drawn",
    )


if __name__ == "__main__":
    main()
