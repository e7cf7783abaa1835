"""The first user's migration plan, phases B to E, run end to end against a store of 77
compound tables and the master table (docs/migrating.md explains each call).

  B  one-time import: 77 compound files + the master, one atomic commit, checked by BLAKE3
     (`repo.verify`) and by value (`udrfs.equals`, where `DataFrame.equals` says False)
  C  nightly update: the changed compounds in one transaction, the master rebuilt from them in
     a serializable one; a night that fails applies nothing; a bad night is reverted
  D  what changed since yesterday (`get_changes(since_tx_id=...)`, a time-travel query,
     `diff_versions`), and one parcel's history (`repo.history`)
  E  scoring A/B on a branch, compared with main, merged after main's nightly rewrote the
     same master (conflicts reported, then settled with a strategy)

Every phase ends with checks; the script exits 1 if any fails. The data is a synthetic
city from tools/parcels.py: `--scale 1` is the real workload (856,000 lots); the default is
the small size CI runs.

Run: python tools/examples/migration_plan.py [--scale 0.005] [--nights 3] [--store DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import udrfs
from tools.parcels import ROWS, parcels

COMPOUNDS = 77
DISTRESS = 38  # compounds 0..37 feed the distress score, 38..76 the opportunity score
CHANGED_A_NIGHT = 8
EXPERIMENT = "experiment/new-scoring-weights"
_NAMES = [
    "hpd_violations", "dob_permits", "city_owned", "dof_sales", "ecb_violations",
    "hpd_complaints", "dob_complaints", "tax_liens", "evictions", "foreclosures",
]  # fmt: skip
NAMES = _NAMES + [f"compound_{i:02d}" for i in range(len(_NAMES), COMPOUNDS)]


class Checks:
    """Each phase's checks: printed as they run, counted for the exit status."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, ok: bool, what: str) -> None:
        print(f"  {'ok' if ok else 'FAIL'}: {what}")
        if not ok:
            self.failed.append(what)


class City:
    """The sources: 77 compounds over the city's lots, and each night's edits to them."""

    def __init__(self, rows: int) -> None:
        self.lots = parcels(rows)
        self.bbl = self.lots.column("bbl").to_numpy()
        self.watched = int(self.bbl[len(self.bbl) // 2])  # a parcel whose history we follow
        self.compounds: dict[str, pa.Table] = {}
        for i, name in enumerate(NAMES):
            # compound i covers every (1 + i % 4)-th lot; compound 0 covers them all
            keys = self.bbl[i % (1 + i % 4) :: 1 + i % 4]
            rng = np.random.default_rng(i)
            values = rng.poisson(2.0, len(keys)).astype(np.int64)
            self.compounds[name] = pa.table({"bbl": keys, name: values})

    def changed_on(self, night: int) -> list[str]:
        """The compounds a night's sources change: compound 0 every night, 7 others."""
        picks = {0} | {(night * 7 + j * 11) % (COMPOUNDS - 1) + 1 for j in range(64)}
        return [NAMES[i] for i in sorted(picks)[:CHANGED_A_NIGHT]]

    def night(self, night: int) -> list[str]:
        """Apply night `night`'s edits: 2% of each changed compound's rows get new values
        (the watched parcel among them in compound 0)."""
        changed = self.changed_on(night)
        for name in changed:
            table = self.compounds[name]
            keys = table.column("bbl").to_numpy()
            values = table.column(name).to_numpy().copy()
            edit = (keys * 31 + night) % 50 == 0
            if name == NAMES[0]:
                edit |= keys == self.watched
            values[edit] += 1 + night
            self.compounds[name] = table.set_column(1, name, pa.array(values))
        return changed


def build_master(lots: pa.Table, compounds: dict[str, pa.Table], weight: float = 1.0) -> pa.Table:
    """One row per lot: its attributes and the two scores summed over the compounds."""
    bbl = lots.column("bbl").to_numpy()
    distress = np.zeros(len(bbl))
    opportunity = np.zeros(len(bbl))
    for i, name in enumerate(NAMES):
        table = compounds[name]
        at = np.searchsorted(bbl, table.column("bbl").to_numpy())
        values = table.column(name).to_numpy().astype(np.float64)
        if i < DISTRESS:
            np.add.at(distress, at, values)
        else:
            np.add.at(opportunity, at, values * weight * (1 + (i % 3) / 2))
    attributes = lots.select(["bbl", "borough", "address", "zonedist1", "assesstot"])
    return attributes.append_column("distress_score", pa.array(distress.round(2))).append_column(
        "opportunity_score", pa.array(opportunity.round(2))
    )


def master_from_udr(tx: udrfs.Transaction, lots: pa.Table, weight: float = 1.0) -> pa.Table:
    return build_master(lots, {name: tx.read_table(f"nyc_{name}") for name in NAMES}, weight)


def phase_b(repo: udrfs.Repo, city: City, exports: Path, check: Checks) -> None:
    print("Phase B: one-time import of the 77 compounds and the master")
    exports.mkdir(parents=True)
    for name, table in city.compounds.items():
        pq.write_table(table, exports / f"nyc_{name}.parquet")
    master_df = build_master(city.lots, city.compounds).to_pandas()
    master_df["borough"] = master_df["borough"].astype("category")  # as the old pipeline wrote it
    master_df.to_parquet(exports / "nyc_master.parquet")
    files = sorted(exports.glob("*.parquet"))
    commits = len(repo.log())
    with repo.transaction(message="initial import") as tx:  # = udr import STORE DIR
        for path in files:
            tx.import_file(path.stem, path, key="bbl")
    print(f"  imported {len(files)} files in commit {repo.head()[:12]}")
    check(len(repo.tables()) == COMPOUNDS + 1, f"{COMPOUNDS} compounds + master in the store")
    check(len(repo.log()) == commits + 1, "one commit for the whole import")
    verified = repo.verify(exports)
    same = sum(v.verdict == "same" for v in verified)
    print(f"  verify: {same} of {len(verified)} tables SAME (BLAKE3 of the bytes)")
    check(same == len(files), "every table holds its file's exact bytes")
    original = pd.read_parquet(exports / "nyc_master.parquet")
    queried = repo.query("SELECT * FROM nyc_master").to_pandas()
    naive = original.equals(queried)
    print(f"  the plan's check, original.equals(query(...).to_pandas()): {naive}")
    check(not naive and udrfs.equals(original, queried), "udrfs.equals: the same data")
    check(original.equals(repo.read_table("nyc_master").to_pandas()), "read_table: same frame")
    # The nightly writes by key from now on: one commit rewrites each table by the writer
    # once (same rows, key order), so that unchanged compounds then commit nothing.
    with repo.transaction(message="rewrite by key") as tx:
        for path in files:
            tx.write_table(path.stem, tx.read_table(path.stem), key="bbl")
    check(
        udrfs.equals(original, repo.read_table("nyc_master"), key="bbl"),
        "rewritten by key: the same rows",
    )


def run_night(repo: udrfs.Repo, city: City, night: int, fail: bool = False) -> list[str]:
    """The plan's phased pipeline: sources in one transaction, the master in a second."""
    changed = city.night(night)
    with repo.transaction(message=f"night {night}: compounds") as tx:
        for name in NAMES:  # every compound is rewritten; unchanged ones commit nothing
            tx.write_table(f"nyc_{name}", city.compounds[name], key="bbl")
    with repo.transaction(message=f"night {night}: master", isolation="serializable") as tx:
        master = master_from_udr(tx, city.lots)
        if fail:
            raise RuntimeError(f"night {night}: the scoring service timed out")
        tx.write_table("nyc_master", master, key="bbl")
    return changed


def phase_c(repo: udrfs.Repo, city: City, nights: int, check: Checks) -> dict[int, list[str]]:
    print(f"Phase C: {nights} nightly updates, each two atomic transactions")
    changed: dict[int, list[str]] = {}
    for night in range(1, nights + 1):
        changed[night] = run_night(repo, city, night)
        entries = repo.changes(since=repo.latest_seq() - 2)
        tables = sorted(c.table for e in entries for c in e.tables)
        print(f"  night {night}: {len(tables)} tables changed: {', '.join(tables)}")
        check(
            tables == sorted([f"nyc_{n}" for n in changed[night]] + ["nyc_master"]),
            f"night {night} committed exactly its {len(changed[night])} changed compounds + master",
        )
    head = repo.head()
    master_before = repo.version("nyc_master").version
    try:
        run_night(repo, city, nights + 1, fail=True)
    except RuntimeError as exc:
        print(f"  night {nights + 1} failed in the master phase: {exc}")
    check(repo.version("nyc_master").version == master_before, "the failed phase applied nothing")
    check(repo.head() != head, "the compounds phase before it stayed committed")
    with repo.transaction(message=f"night {nights + 1}: master (rerun)") as tx:
        tx.write_table("nyc_master", master_from_udr(tx, city.lots), key="bbl")
    changed[nights + 1] = city.changed_on(nights + 1)

    good = repo.read_table("nyc_master")
    bad = good.slice(0, good.num_rows // 10)  # a bad export: 90% of the lots missing
    commit = repo.write_table("nyc_master", bad, key="bbl", message="bad night: truncated")
    assert commit is not None
    print(f"  bad night committed {bad.num_rows} master rows; reverting {commit.id[:12]}")
    repo.revert(commit.id)
    check(repo.read_table("nyc_master").equals(good), "revert put the master back")
    return changed


def phase_d(repo: udrfs.Repo, city: City, nights: int, check: Checks) -> None:
    print("Phase D: what changed since yesterday, and one parcel's history")
    last_checkpoint = repo.latest_tx_id()
    changed = run_night(repo, city, nights + 2)  # last night
    seen = set()
    for entry in repo.get_changes(since_tx_id=last_checkpoint):
        print(f"  Transaction {entry['tx_id']}: {entry.message}")
        for change in entry["changes"]:
            seen.add(change["table_name"])
            old, new = change["old_version"], change["new_version"]
            print(f"    {change['table_name']}: v{old} → v{new}")
    check(seen == {f"nyc_{n}" for n in changed} | {"nyc_master"}, "the feed lists the night")

    current = repo.version("nyc_master").version
    sql = "SELECT avg(distress_score) AS d FROM nyc_master"
    first = repo.query(sql, versions={"nyc_master": 1})
    now = repo.query(sql)
    d1, dn = first.column("d")[0].as_py(), now.column("d")[0].as_py()
    print(f"  avg distress: v1 {d1:.3f}, v{current} {dn:.3f}")
    check(dn > d1, "time travel: the first version reads as it was")
    diff = repo.diff_versions("nyc_master", current - 1, current, key_columns=["bbl"])
    print(f"  diff v{current - 1}..v{current}: {diff.counts}")
    modified = diff.counts["modified"]
    check(modified > 0 and diff.modified.num_rows == modified, "the diff finds modified rows")

    history = repo.history("nyc_master", key={"bbl": city.watched})
    for change in history:
        row = change.row or {}
        print(f"  bbl {city.watched} v{change.version}: distress {row.get('distress_score')}")
    scores = [c.row["distress_score"] for c in history if c.row is not None]
    latest = repo.query(
        "SELECT distress_score FROM nyc_master WHERE bbl = ?", params=[city.watched]
    ).column(0)[0]
    check(len(scores) >= nights + 2, "history lists the parcel at every night it changed")
    check(any(c.row is None for c in history), "and its absence in the bad night's version")
    check(scores == sorted(scores) and scores[-1] == latest.as_py(), "and ends at today's row")


def phase_e(repo: udrfs.Repo, city: City, nights: int, check: Checks) -> None:
    print("Phase E: scoring A/B on a branch, then merge")
    repo.create_branch(EXPERIMENT)
    exp = repo.checkout(EXPERIMENT)
    with exp.transaction(message="new scoring weights") as tx:
        tx.write_table("nyc_master", master_from_udr(tx, city.lots, weight=1.5), key="bbl")
    sql = "SELECT avg(opportunity_score) AS avg_opp FROM nyc_master"
    main_avg = repo.query(sql, branch="main").column(0)[0].as_py()
    exp_avg = repo.query(sql, branch=EXPERIMENT).column(0)[0].as_py()
    print(f"  main avg: {main_avg:.1f}, experiment avg: {exp_avg:.1f}")
    check(exp_avg > main_avg, "the experiment did not touch main")

    run_night(repo, city, nights + 3)  # main's nightly rewrites the master meanwhile
    try:
        repo.merge_branch(EXPERIMENT, into="main")
        check(False, "a merge of two rewrites of the same rows reports conflicts")
    except udrfs.MergeConflictError as exc:
        print(f"  merge: {exc.total} conflicting rows in {', '.join(exc.tables)}")
        check(exc.total > 0, "a merge of two rewrites of the same rows reports conflicts")
    result = repo.merge_branch(EXPERIMENT, into="main", strategy={"nyc_master": "theirs"})
    print(f"  merge with strategy theirs: {result.kind}, tables {list(result.tables)}")
    merged = repo.read_table("nyc_master").sort_by("bbl")
    experiment = repo.read_table("nyc_master", branch=EXPERIMENT).sort_by("bbl")
    check(
        merged.column("opportunity_score").equals(experiment.column("opportunity_score")),
        "the merge brought the experiment's scores to main",
    )
    compounds_kept = all(
        repo.version(f"nyc_{n}").blake3 != repo.version(f"nyc_{n}", branch=EXPERIMENT).blake3
        for n in city.changed_on(nights + 3)
    )
    check(compounds_kept, "main kept its nightly compounds")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.005, help="of 856,000 lots (1 = all)")
    parser.add_argument("--nights", type=int, default=3)
    parser.add_argument("--store", type=Path, help="a new directory (default: a temporary one)")
    args = parser.parse_args(argv)
    rows = max(500, int(ROWS * args.scale))
    check = Checks()
    with tempfile.TemporaryDirectory() as tmp:
        where = args.store or Path(tmp) / "store"
        city = City(rows)
        print(f"{rows} lots, {COMPOUNDS} compounds, store {where}")
        repo = udrfs.Repo.init(where)
        try:
            phase_b(repo, city, Path(tmp) / "exports", check)
            phase_c(repo, city, args.nights, check)
            phase_d(repo, city, args.nights, check)
            phase_e(repo, city, args.nights, check)
        finally:
            repo.close()
    if check.failed:
        print(f"{len(check.failed)} checks failed: {'; '.join(check.failed)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
