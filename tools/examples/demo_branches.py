"""100 zero-copy branches: the time to make them, the bytes the store grew by, an A/B edit on
one of them and its diff against main.

A parcel table shaped like NYC PLUTO (tools/parcels.py: 856,000 lots, 38 columns) is written
to a store; 100 branches are made from main (`ab/000` .. `ab/099`), and the store's bytes on
disk are measured before and after. On one branch a re-assessment changes `assesstot` on 1%
of the lots (the A/B edit); main does not see it, the branch's query does, and the diff
between the branches finds exactly the rows the edit changed.

Then the same with Delta Lake, in the same run: a Delta table of the same rows, a branch
made the only way Delta can make one, by copying the table's directory (100 times); the same
edit on one copy (a MERGE of the changed rows), and the diff done by hand with DuckDB (Delta
has none). Time and bytes of each step are printed side by side.

Run: python tools/examples/demo_branches.py [--small] [--work DIR]
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import udrfs
from tools.examples.demo_common import (
    Clock,
    Demo,
    changed_rows,
    demo,
    disk_bytes,
    hand_diff,
    human_bytes,
    parser,
    print_rows,
    section,
)
from tools.parcels import KEY, ROWS, SCATTERED_COLUMN, parcels, scattered

BRANCHES = 100
EDITED = "ab/042"
SMALL_ROWS = 20_000
DATA = ("packs", "index", "objects")  # a store's data; refs/ holds the branches


def data_bytes(store: Path) -> int:
    return sum(disk_bytes(store / part, apparent=True) for part in DATA)


def ref_bytes(store: Path) -> int:
    """A branch's bytes: its ref file (a commit id) and the empty file its updates lock."""
    return disk_bytes(store / "refs") + disk_bytes(store / "locks")


def udr_part(d: Demo, lots: pa.Table, edit: pa.Table, changed: int) -> dict[str, float]:
    section(f"UDR-FS: {BRANCHES} branches of a {lots.num_rows:,}-lot table")
    store = d.work / "store"
    repo = udrfs.Repo.init(store)
    write = Clock()
    with write:
        repo.write_table("parcels", lots, key=KEY, message="parcels")
    empty, apparent, data = disk_bytes(store), disk_bytes(store, apparent=True), data_bytes(store)
    refs = ref_bytes(store)
    print(f"  main: parcels v1 written in {write.seconds:.2f} s; store {human_bytes(empty)}")
    make = Clock()
    with make:
        for i in range(BRANCHES):
            repo.create_branch(f"ab/{i:03d}")
    grown = disk_bytes(store) - empty
    files = disk_bytes(store, apparent=True) - apparent
    print(
        f"  {BRANCHES} branches in {make.seconds:.3f} s; the store grew by {grown:,} bytes"
        f" on disk (du), {files:,} bytes (stat): a ref file and a lock file a branch"
    )
    d.check(len(repo.branches()) == BRANCHES + 1, f"{BRANCHES} branches besides main")
    d.check(data_bytes(store) == data, "the branches added no data (packs, index, objects)")
    d.check(ref_bytes(store) - refs == grown, "all it grew by is refs/ and locks/")

    exp = repo.checkout(EDITED)
    before_edit = disk_bytes(store)
    ab = Clock()
    with ab:
        exp.write_table("parcels", edit, key=KEY, message="A/B: re-assessment")
    edit_bytes = disk_bytes(store) - before_edit
    print(
        f"  {EDITED}: re-assessment of {changed:,} lots in {ab.seconds:.2f} s,"
        f" +{human_bytes(edit_bytes)}"
    )
    sql = f"SELECT sum({SCATTERED_COLUMN}) AS total FROM parcels"
    on_main = repo.query(sql).column(0)[0].as_py()
    on_branch = exp.query(sql).column(0)[0].as_py()
    print(f"  sum(assesstot): main {on_main:,.0f}, {EDITED} {on_branch:,.0f}")
    d.check(on_main == lots.column(SCATTERED_COLUMN).to_numpy().sum(), "main does not see it")
    d.check(on_branch != on_main, "the branch does")
    diff_clock = Clock()
    with diff_clock:
        diff = repo.diff("parcels", "main", EDITED)
    print(f"  diff main..{EDITED}: {diff.counts} in {diff_clock.seconds:.3f} s")
    d.check(
        diff.counts == {"added": 0, "removed": 0, "modified": changed},
        "the diff finds exactly the edited lots",
    )
    d.check(
        [c for c in diff.modified.column_names if c.endswith("_after")]
        == [f"{SCATTERED_COLUMN}_after"],
        "and only the edited column",
    )
    d.check(repo.fsck().ok, "the store is intact")
    repo.close()
    return {
        "branch": make.seconds,
        "branch_bytes": grown,
        "edit": ab.seconds,
        "edit_bytes": edit_bytes,
        "diff": diff_clock.seconds,
        "total": disk_bytes(store),
    }


def delta_part(d: Demo, lots: pa.Table, edit: pa.Table) -> dict[str, float]:
    section(f"Delta Lake: {BRANCHES} branches as copies of the table's directory")
    from deltalake import DeltaTable, write_deltalake

    root = d.work / "delta"
    main = root / "main"
    write_deltalake(main, lots)
    one = disk_bytes(main)
    make = Clock()
    with make:
        for i in range(BRANCHES):
            shutil.copytree(main, root / f"ab-{i:03d}")
    grown = disk_bytes(root) - one
    print(f"  {BRANCHES} copies in {make.seconds:.2f} s; {human_bytes(grown)} more on disk")
    print("  (delta-rs has no shallow clone: a copy is the only branch it can make)")

    branch = root / EDITED.replace("/", "-")
    changes = edit.filter(
        pa.array(
            edit.column(SCATTERED_COLUMN).to_numpy() != lots.column(SCATTERED_COLUMN).to_numpy()
        )
    )
    before_edit = disk_bytes(root)
    ab = Clock()
    with ab:
        (
            DeltaTable(branch)
            .merge(changes, predicate=f"t.{KEY} = s.{KEY}", source_alias="s", target_alias="t")
            .when_matched_update_all()
            .execute()
        )
    edit_bytes = disk_bytes(root) - before_edit
    print(
        f"  the same edit (MERGE of {changes.num_rows:,} rows) in {ab.seconds:.2f} s,"
        f" +{human_bytes(edit_bytes)}"
    )
    diff_clock = Clock()
    with diff_clock:
        modified = hand_diff(DeltaTable(main), DeltaTable(branch), KEY)
    print(
        f"  diff by hand (DuckDB join of both copies): {modified:,} modified rows"
        f" in {diff_clock.seconds:.3f} s"
    )
    return {
        "branch": make.seconds,
        "branch_bytes": grown,
        "edit": ab.seconds,
        "edit_bytes": edit_bytes,
        "diff": diff_clock.seconds,
        "total": disk_bytes(root),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    with demo(args) as d:
        lots = parcels(SMALL_ROWS if d.small else ROWS)
        edit = scattered(lots)
        changed = changed_rows(lots, edit, SCATTERED_COLUMN)
        print(
            f"parcels: {lots.num_rows:,} lots, {lots.num_columns} columns; the A/B edit"
            f" changes {SCATTERED_COLUMN} on {changed:,} of them"
        )
        ours = udr_part(d, lots, edit, changed)
        theirs = delta_part(d, lots, edit)
        section("Comparison (measured in this run)")
        print_rows(
            [
                "system",
                f"{BRANCHES} branches s",
                "bytes added",
                "A/B edit s",
                "edit bytes",
                "diff s",
                "store on disk",
            ],
            [
                (
                    system,
                    f"{r['branch']:.3f}",
                    human_bytes(int(r["branch_bytes"])),
                    f"{r['edit']:.2f}",
                    human_bytes(int(r["edit_bytes"])),
                    f"{r['diff']:.3f}",
                    human_bytes(int(r["total"])),
                )
                for system, r in (("UDR-FS", ours), ("Delta Lake", theirs))
            ],
        )
        return d.finish()


if __name__ == "__main__":
    sys.exit(main())
