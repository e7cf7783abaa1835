"""Time and peak memory of `udr gc` on a store with many versions.

Builds a store with VERSIONS versions of a keyed table (each version edits a few rows and
appends some, as a nightly refresh does), with every ABORT_EVERY-th write aborted so its
chunks become garbage, and a branch of BRANCH versions that is then deleted. Then, each in a
fresh process: `gc --dry-run` (a whole scan: refs, history, manifests, fragments, files), the
condemning run and the deleting run (grace 0), beside two baselines from the same store: a
walk that stats every file (what any collector must at least do) and `udr fsck --quick`
(which reads the same history). Prints time and peak resident memory of each, the store's
size before and after and the bytes reclaimed.

Usage: ``python benchmarks/bench_gc.py [--versions 200] [--rows 50000] [--abort-every 5]``

With ``--target-gb G`` (``--versions 1000 --target-gb 2``) it builds a large store fast
instead: TABLES tables written together, one transaction per commit, each version a Parquet
file (imported as is) of the table's fixed first row group and a row group of fresh random
bytes, sized so that the packs reach G GB. Every ABORT_EVERY-th commit is preceded by a
transaction that stages a version of every table and aborts without a flush, so its chunks
share a pack with the next commit's (a pack repack has to rewrite); a branch of a few commits
is made and deleted; then `udr expire --keep-last` releases the oldest EXPIRE share of every
table's versions. Measured, each in a fresh process: the baselines (a stat walk of every
file, `du -sb` run from a Python child, `udr fsck --quick`), `gc --dry-run`, the condemning
and the deleting run (grace 0), `udr stats`, `udr repack`, and the two gc runs that then
free the packs repack copied.

    python benchmarks/bench_gc.py --versions 1000 --target-gb 2 [--tables 10] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import pyarrow as pa  # noqa: E402

import udrfs  # noqa: E402

CHILD = """
import json, os, sys, time
sys.path[:0] = [sys.argv[1]]
import udrfs
store, what = sys.argv[2], sys.argv[3]
start = time.perf_counter()
if what == "walk":
    n = 0
    for dirpath, _dirs, files in os.walk(store):
        for name in files:
            os.lstat(os.path.join(dirpath, name))
            n += 1
    out = {"files": n}
elif what == "fsck":
    out = {"ok": udrfs.Repo(store).fsck(verify_packs=False).ok}
elif what == "du":
    import subprocess
    du = subprocess.run(["du", "-sb", store], capture_output=True, text=True, check=True)
    out = {"bytes": int(du.stdout.split()[0])}
elif what == "stats":
    s = udrfs.Repo(store).stats()
    out = {"tables": len(s.by_table), "branches": len(s.by_branch)}
elif what == "repack":
    r = udrfs.Repo(store).repack()
    out = {"copied_bytes": r.copied_bytes, "reclaimable_bytes": r.reclaimable_bytes,
           "rewritten": len(r.rewritten), "new_packs": len(r.new_packs)}
else:
    r = udrfs.Repo(store).gc(grace=0, dry_run=(what == "dry-run"), force=True)
    out = {"deleted_bytes": r.deleted_bytes, "condemned_bytes": r.condemned_bytes,
           "reclaimable_bytes": r.reclaimable_bytes}
out["seconds"] = time.perf_counter() - start
# VmHWM: the peak of this program (ru_maxrss would keep the parent's peak from before exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
out["peak_mib"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""


def version(n: int, rows: int, branch: int = 0) -> pa.Table:
    """Version n: 1% more rows than version n-1, and 1% of the rows edited."""
    keys = list(range(rows + n * rows // 100))
    edit = (n + branch) % 97
    values = [(k * 2654435761 + (n + branch if k % 97 == edit else 0)) % 1000003 for k in keys]
    return pa.table({"k": keys, "v": values, "s": [f"row-{k % 5000}" for k in keys]})


def build(store: Path, versions: int, rows: int, abort_every: int, branch: int) -> None:
    repo = udrfs.Repo.init(store)
    for n in range(1, versions + 1):
        data = version(n, rows)
        if abort_every and n % abort_every == 0:
            with repo.transaction() as tx:
                tx.write_table("t", data, key="k")
                tx.abort()
            repo.flush_chunks()
        else:
            repo.write_table("t", data, key="k")
    repo.create_branch("scratch")
    for n in range(branch):
        repo.write_table("t", version(versions + n, rows, 13), key="k", branch="scratch")
    repo.delete_branch("scratch")


def large_version(path: Path, base: bytes, fresh: int, n: int) -> None:
    """A Parquet file of the table's first row group (`base`, the same in every version) and
    a row group of `fresh` new random bytes, stored as written (no compression, no
    dictionary), so the first group's column chunks dedup across versions."""
    import pyarrow.parquet as pq

    def group(blob: bytes, first: int) -> pa.Table:
        cell = 4096
        cells = [blob[i : i + cell] for i in range(0, len(blob), cell)]
        return pa.table({"k": range(first, first + len(cells)), "b": pa.array(cells, pa.binary())})

    head = group(base, 0)
    with pq.ParquetWriter(
        path, head.schema, compression="none", use_dictionary=False, write_statistics=False
    ) as writer:
        writer.write_table(head)
        writer.write_table(group(os.urandom(fresh), n << 20))


def build_large(
    store: Path, versions: int, target_gb: float, tables: int, abort_every: int, expire: float
) -> dict[str, float]:
    """The large store of the module docstring; returns what was written."""
    repo = udrfs.Repo.init(store)
    commits = -(-versions // tables)
    aborted = commits // abort_every if abort_every else 0
    # 3% over, so the packs exceed the target after the salt and the aborted writes' chunks
    per_version = int(1.03 * target_gb * 1e9 / (versions + aborted * tables + 3 * tables))
    base_size = max(per_version // 4, 65536)
    fresh = per_version - base_size // max(commits, 1)
    bases = {f"t{i:02d}": random.Random(i).randbytes(base_size) for i in range(tables)}
    work = store.parent / "versions"
    work.mkdir(exist_ok=True)
    written = 0

    def stage(tx: Any, n: int, names: list[str]) -> None:
        nonlocal written
        for name in names:
            path = work / f"{name}.parquet"
            large_version(path, bases[name], fresh, n)
            written += path.stat().st_size
            tx.import_file(name, path)

    names = sorted(bases)
    done = 0
    for c in range(commits):
        if abort_every and c % abort_every == abort_every - 1:
            with repo.transaction(message=f"aborted {c}") as tx:
                stage(tx, c * tables + 1_000_000, names)
                tx.abort()  # no flush: these chunks share a pack with the next commit's
        batch = names[: min(tables, versions - done)]
        with repo.transaction(message=f"commit {c}") as tx:
            stage(tx, c, batch)
        done += len(batch)
    repo.create_branch("scratch")
    for c in range(3):
        with repo.transaction(branch="scratch", message=f"scratch {c}") as tx:
            stage(tx, 2_000_000 + c, names)
    repo.delete_branch("scratch")
    keep = max(1, round(commits * (1 - expire)))
    released = len(repo.expire(keep_last=keep).released) if expire else 0
    shutil.rmtree(work)
    return {"written": written, "released": released, "keep": keep, "commits": commits}


def pack_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.glob("packs/??/*.pack"))


def du(store: Path) -> int:
    return sum(
        os.lstat(os.path.join(d, f)).st_size for d, _dirs, files in os.walk(store) for f in files
    )


def child(store: Path, what: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), str(store), what],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout))


def show(rows: list[tuple[str, dict[str, float]]]) -> None:
    for label, r in rows:
        print(f"{label:36s} {r['seconds']:7.2f} s  peak {r['peak_mib']:6.0f} MiB")


def main_large(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-gc-", dir=args.dir) as tmp:
        store = Path(tmp) / "store"
        t0 = time.perf_counter()
        built = build_large(
            store, args.versions, args.target_gb, args.tables, args.abort_every, args.expire
        )
        files = sum(len(f) for _d, _s, f in os.walk(store))
        before, packs = du(store), pack_bytes(store)
        print(
            f"store: {args.versions} versions of {args.tables} tables in {built['commits']:.0f} "
            f"commits, {built['written'] / 1e9:.2f} GB imported, {files} files, "
            f"{before / 1e9:.2f} GB ({packs / 1e9:.2f} GB of packs); expire --keep-last "
            f"{built['keep']:.0f} released {built['released']:.0f} versions "
            f"(built in {time.perf_counter() - t0:.0f} s)"
        )
        rows = [
            ("walk + stat every file (baseline)", child(store, "walk")),
            ("du -sb (baseline)", child(store, "du")),
            ("udr fsck --quick (baseline)", child(store, "fsck")),
            ("udr gc --dry-run", child(store, "dry-run")),
            ("udr gc (condemns)", child(store, "run")),
            ("udr gc (deletes)", child(store, "run")),
            ("udr stats (per table and branch)", child(store, "stats")),
        ]
        show(rows)
        after_gc = du(store)
        print(
            f"gc reclaimed {rows[5][1]['deleted_bytes'] / 1e9:.2f} GB: store "
            f"{before / 1e9:.2f} GB -> {after_gc / 1e9:.2f} GB"
        )
        repacked = child(store, "repack")
        after_repack = du(store)
        later = [
            ("udr repack", repacked),
            ("udr gc (condemns repacked)", child(store, "run")),
            ("udr gc (deletes repacked)", child(store, "run")),
        ]
        show(later)
        r = later[0][1]
        final = du(store)
        walk = rows[0][1]["seconds"]
        print(
            f"repack copied {r['copied_bytes'] / 1e6:.0f} MB out of {r['rewritten']:.0f} packs "
            f"into {r['new_packs']:.0f}; gc then reclaimed "
            f"{later[2][1]['deleted_bytes'] / 1e6:.0f} MB: store {after_gc / 1e9:.2f} GB -> "
            f"{after_repack / 1e9:.2f} GB (repack) -> {final / 1e9:.2f} GB; "
            f"gc --dry-run / walk = {rows[3][1]['seconds'] / walk:.1f}x, "
            f"gc --dry-run / du = {rows[3][1]['seconds'] / rows[1][1]['seconds']:.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--abort-every", type=int, default=5)
    parser.add_argument("--branch", type=int, default=10, help="versions on a deleted branch")
    parser.add_argument("--target-gb", type=float, help="build the large store of this size")
    parser.add_argument("--tables", type=int, default=10, help="tables of the large store")
    parser.add_argument(
        "--expire", type=float, default=0.3, help="share of versions the large store expires"
    )
    parser.add_argument("--dir", help="where the large store is built (default: temp dir)")
    args = parser.parse_args()
    if args.target_gb:
        main_large(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-gc-") as tmp:
        store = Path(tmp) / "store"
        t0 = time.perf_counter()
        build(store, args.versions, args.rows, args.abort_every, args.branch)
        files = sum(len(f) for _d, _s, f in os.walk(store))
        before = du(store)
        print(
            f"store: {args.versions} versions of {args.rows}+ rows, {files} files, "
            f"{before / 1e6:.1f} MB (built in {time.perf_counter() - t0:.0f} s)"
        )
        rows = [
            ("walk + stat every file (baseline)", child(store, "walk")),
            ("udr fsck --quick (baseline)", child(store, "fsck")),
            ("udr gc --dry-run", child(store, "dry-run")),
            ("udr gc (condemns)", child(store, "run")),
            ("udr gc (deletes)", child(store, "run")),
        ]
        show(rows)
        after = du(store)
        print(
            f"reclaimed {rows[4][1]['deleted_bytes'] / 1e6:.1f} MB: store {before / 1e6:.1f} MB "
            f"-> {after / 1e6:.1f} MB; gc --dry-run / walk = "
            f"{rows[2][1]['seconds'] / rows[0][1]['seconds']:.1f}x, "
            f"gc --dry-run / fsck --quick = {rows[2][1]['seconds'] / rows[1][1]['seconds']:.2f}x"
        )


if __name__ == "__main__":
    main()
