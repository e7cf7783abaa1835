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
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--abort-every", type=int, default=5)
    parser.add_argument("--branch", type=int, default=10, help="versions on a deleted branch")
    args = parser.parse_args()
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
        for label, r in rows:
            print(f"{label:36s} {r['seconds']:7.2f} s  peak {r['peak_mib']:6.0f} MiB")
        after = du(store)
        print(
            f"reclaimed {rows[4][1]['deleted_bytes'] / 1e6:.1f} MB: store {before / 1e6:.1f} MB "
            f"-> {after / 1e6:.1f} MB; gc --dry-run / walk = "
            f"{rows[2][1]['seconds'] / rows[0][1]['seconds']:.1f}x, "
            f"gc --dry-run / fsck --quick = {rows[2][1]['seconds'] / rows[1][1]['seconds']:.2f}x"
        )


if __name__ == "__main__":
    main()
