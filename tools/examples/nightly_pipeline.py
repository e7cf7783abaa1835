"""The nightly pipeline of the first user's plan ("Phased Pipeline Transactions"), with udrfs
names: source compounds, then derived compounds, then the master, each phase one transaction.

    with repo.transaction(branch="main", message=...) as tx:   # commits on normal exit,
        tx.write_table(...)                                     # rolls back on an exception
        tx.read_table(...)                                      # the snapshot + own writes

It runs three nights on a small synthetic city (tools/parcels.py, 20,000 lots); each night
changes some source data. Night 3 fails in phase 2: phase 1 is committed (a consistent
state: new sources, derived tables and master of night 2), phase 2 applies nothing, and the
rerun of the whole night finds phase 1 already done (identical writes commit nothing) and
completes phases 2 and 3.

Run: python tools/examples/nightly_pipeline.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import udrfs
from tools.parcels import parcels

LOTS = 20_000
SOURCE_COMPOUNDS = ["city_owned", "dob_permits", "hpd_violations", "dof_sales"]
DERIVED_COMPOUNDS = ["distress", "opportunity"]


class FeedDown(RuntimeError):
    """A source the pipeline depends on did not answer (night 3)."""


def fetch_data(compound: str, lots: pa.Table, night: int) -> pa.Table:
    """One source compound: a value per lot, from a deterministic generator (the real
    pipeline downloads these). Night 2 brings new permits and violations, night 3 sales."""
    bbl = lots.column("bbl").to_numpy()
    salt = sum(map(ord, compound))
    rng = np.random.default_rng(salt)
    if compound == "city_owned":
        values = pc.equal(lots.column("ownertype"), "C").fill_null(False).cast(pa.int64())
        return pa.table({"bbl": bbl, "city_owned": values})
    counts = rng.poisson(0.3 if compound != "dof_sales" else 0.05, len(bbl))
    if night >= 2 and compound in ("dob_permits", "hpd_violations"):
        counts[: len(bbl) // 50] += 1  # 2% of lots get one more
    if night >= 3 and compound == "dof_sales":
        counts[-len(bbl) // 100 :] += 1  # 1% of lots sold
    return pa.table({"bbl": bbl, compound: counts})


def compute_derived(tx: udrfs.Transaction, compound: str, night: int, fail: bool) -> pa.Table:
    """A derived compound, read from the source compounds this transaction sees."""
    if compound == "distress":
        permits = tx.read_table("nyc_dob_permits")
        violations = tx.read_table("nyc_hpd_violations").column("hpd_violations")
        if fail:
            raise FeedDown("the violations feed returned nothing; try again later")
        score = pc.add(pc.multiply(violations, 10), permits.column("dob_permits"))
        return pa.table({"bbl": permits.column("bbl"), "distress_score": score})
    owned = tx.read_table("nyc_city_owned")
    sales = tx.read_table("nyc_dof_sales").column("dof_sales")
    score = pc.add(pc.multiply(owned.column("city_owned"), 50), pc.multiply(sales, 20))
    return pa.table({"bbl": owned.column("bbl"), "opportunity_score": score})


def build_master_from_udr(tx: udrfs.Transaction) -> pa.Table:
    """The master: parcel attributes joined with every derived score, one row per lot."""
    master = tx.read_table("nyc_parcels").select(["bbl", "borough", "address", "assesstot"])
    for compound in DERIVED_COMPOUNDS:
        master = master.join(tx.read_table(f"nyc_{compound}"), "bbl")
    return master.sort_by("bbl")


def run_night(repo: udrfs.Repo, night: int, lots: pa.Table, fail_phase_2: bool = False) -> None:
    # Phase 1: source compounds (transactional)
    with repo.transaction(branch="main", message=f"night {night}: source compounds") as tx:
        tx.write_table("nyc_parcels", lots, key="bbl")
        for compound in SOURCE_COMPOUNDS:
            tx.write_table(f"nyc_{compound}", fetch_data(compound, lots, night), key="bbl")

    # Phase 2: derived compounds (transactional)
    with repo.transaction(branch="main", message=f"night {night}: derived compounds") as tx:
        for compound in DERIVED_COMPOUNDS:
            derived = compute_derived(tx, compound, night, fail_phase_2)
            tx.write_table(f"nyc_{compound}", derived, key="bbl")

    # Phase 3: master build (transactional)
    with repo.transaction(branch="main", message=f"night {night}: master") as tx:
        master_df = build_master_from_udr(tx)
        tx.write_table("nyc_master", master_df, key="bbl")


def summary(repo: udrfs.Repo) -> str:
    return ", ".join(f"{t.name} v{t.version}" for t in repo.tables() if t.name != "nyc_parcels")


def main() -> int:
    lots = parcels(LOTS)
    with tempfile.TemporaryDirectory() as tmp:
        repo = udrfs.Repo.init(Path(tmp) / "store")
        for night in (1, 2):
            run_night(repo, night, lots)
            print(f"night {night}: {summary(repo)}")

        derived_before = {t: repo.version(f"nyc_{t}").id for t in [*DERIVED_COMPOUNDS, "master"]}
        try:
            run_night(repo, 3, lots, fail_phase_2=True)
        except FeedDown as exc:
            print(f"night 3 failed in phase 2: {exc}")
        # Phase 1 committed; the failed phase 2 applied nothing, phase 3 never ran.
        derived_after = {t: repo.version(f"nyc_{t}").id for t in [*DERIVED_COMPOUNDS, "master"]}
        assert derived_after == derived_before, "a failed phase must apply nothing"
        print(f"after the failure: {summary(repo)}")
        run_night(repo, 3, lots)  # the rerun: nothing to undo, it simply runs again
        print(f"night 3, rerun: {summary(repo)}")

        for entry in repo.changes(since=0):
            changed = ", ".join(
                f"{c.table} v{c.old_version}->v{c.new_version}"
                if c.old_version
                else f"{c.table} v{c.new_version}"
                for c in entry.tables
            )
            print(f"  seq {entry.seq}: {entry.message}: {changed}")
        master = repo.read_table("nyc_master")
        print(f"nyc_master: {master.num_rows} rows, columns {master.column_names}")
        repo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
