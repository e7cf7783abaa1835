"""Test a new scoring on a branch, compare it with main, merge it (the plan's Phase E).

Branches are pointers: the 100 branches made at the end add no pack bytes at all.

Run: python tools/examples/branch_experiment.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

import udrfs


def master(weight: float, rows: int = 3000) -> pa.Table:
    return pa.table(
        {
            "bbl": pa.array(range(1_000_010_000, 1_000_010_000 + rows), pa.int64()),
            "opportunity_score": [float((i * 13) % 90) * weight for i in range(rows)],
        }
    )


def pack_bytes(repo: udrfs.Repo) -> int:
    return sum(p.stat().st_size for p in repo.path.glob("packs/??/*.pack"))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        repo = udrfs.Repo.init(Path(tmp) / "store")
        repo.write_table("nyc_master", master(1.0), key="bbl", message="nightly build")

        branch = "experiment/new-scoring-weights"
        repo.create_branch(branch)
        engine = repo.checkout(branch)  # a handle whose calls default to the branch
        with engine.transaction(message="new weights") as tx:
            tx.write_table("nyc_master", master(1.1), key="bbl")

        sql = "SELECT AVG(opportunity_score) AS avg_opp FROM nyc_master"
        main_avg = repo.query(sql, branch="main").to_pandas()["avg_opp"].iloc[0]
        exp_avg = repo.query(sql, branch=branch).to_pandas()["avg_opp"].iloc[0]
        print(f"Main avg: {main_avg:.1f}")
        print(f"Experiment avg: {exp_avg:.1f}")

        for table in repo.diff_refs("main", branch).changed:
            print(f"{table.table}: main v{table.old_version}, experiment v{table.new_version}")
        engine = engine.checkout("main")
        result = engine.merge_branch(branch, into="main")
        print(f"merge: {result.kind}; main now at v{repo.version('nyc_master').version}")

        before = pack_bytes(repo)
        start = time.perf_counter()
        for i in range(100):
            repo.create_branch(f"trial/{i}")
        elapsed = time.perf_counter() - start
        print(f"100 branches in {elapsed:.3f} s, pack bytes added: {pack_bytes(repo) - before}")
        repo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
