"""Answer "what changed?" the way the first user's plan (Phase D) asked, with udrfs names.

    changes = repo.get_changes(since=last_checkpoint)
    result = repo.query("SELECT ... FROM nyc_master", versions={"nyc_master": last_week})
    diff = repo.diff_versions("nyc_master", last_week, current, key_columns=["bbl"])
    history = parcel_history(bbl, versions=[1, 2, 3])

Run: python tools/examples/what_changed.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

import udrfs


def nightly_master(night: int, rows: int = 2000) -> pa.Table:
    """A master table whose scores drift a little every night, and which grows."""
    n = rows + night * 5
    bbl = [1_000_010_000 + i for i in range(n)]
    return pa.table(
        {
            "bbl": pa.array(bbl, pa.int64()),
            "opportunity_score": [float((i * 31 + night * (i % 3 == 0)) % 100) for i in range(n)],
            "distress_score": [float((i * 17) % 100) for i in range(n)],
        }
    )


def parcel_history(repo: udrfs.Repo, bbl: int, versions: list[int]) -> pd.DataFrame:
    history = []
    for v in versions:
        row = repo.query(
            f"SELECT * FROM nyc_master WHERE bbl = {bbl}", versions={"nyc_master": v}
        ).to_pandas()
        row["version"] = v
        history.append(row)
    return pd.concat(history, ignore_index=True)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        repo = udrfs.Repo.init(Path(tmp) / "store")
        for night in (1, 2, 3):
            repo.write_table(
                "nyc_master", nightly_master(night), key="bbl", message=f"night {night}"
            )
        last_checkpoint = 1

        for entry in repo.get_changes(since=last_checkpoint):
            print(f"seq {entry['seq']}: {entry.message}")
            for change in entry["tables"]:
                print(
                    f"  {change['table']}: v{change['old_version']} -> v{change['new_version']}, "
                    f"{change['rows_added']} added, {change['rows_modified']} modified"
                )

        last_week, current = 1, repo.version("nyc_master").version
        result = repo.query(
            "SELECT bbl, opportunity_score, distress_score FROM nyc_master",
            versions={"nyc_master": last_week},
        )
        print(
            f"v{last_week} has {result.num_rows} parcels; v{current} has "
            f"{repo.version('nyc_master').rows}"
        )

        diff = repo.diff_versions("nyc_master", last_week, current, key_columns=["bbl"])
        print(
            f"Parcels with score changes: {len(diff['rows_modified'])}; "
            f"new parcels: {len(diff['rows_added'])}"
        )

        print(parcel_history(repo, 1_000_010_003, versions=[1, 2, 3]).to_string(index=False))
        repo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
