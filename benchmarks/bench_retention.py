"""Retention: bytes a keep-the-last-7 policy releases after 30 versions, beside Delta Lake
and Iceberg.

    python benchmarks/bench_retention.py [--versions 30] [--keep 7] [--rows 856000] [--dir DIR]

The 856,000-row parcel table (tools/parcels.py), then each next version a 1% scattered change
of the previous one (`parcels.scattered`, a new seed each time), written:

* to a UDR store with `write_table(key="bbl")`; then `udr expire --keep-last K`: the bytes it
  makes reclaimable (chunks no kept version shares), then `udr repack`, and the pack bytes
  left once a collector removed the packs whose live chunks all sit in newer packs;
* to a Delta Lake table (`deltalake`, bench extra) by a MERGE on `bbl` per version; what
  VACUUM frees when the last K versions are to stay readable: the data files that no version
  among the last K references (deltalake's VACUUM takes its retention in whole hours, so the
  files are counted from the log, `DeltaTable(version=v).file_uris()`), and VACUUM run with
  no retention, keeping only the newest version, for the extreme.

* to an Iceberg table (`pyiceberg`, bench extra: a SqlCatalog on SQLite, a local warehouse)
  by `overwrite` per version (copy-on-write, as the 30-night benchmark writes it); then
  `expire_snapshots` of every snapshot but the last K versions', and orphan removal: pyiceberg
  has no `remove_orphan_files` (the Java API's), so the data files no remaining snapshot lists
  are found from its scans and deleted here, which is what that call does.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import udrfs  # noqa: E402
from tools import parcels  # noqa: E402
from udrfs.catalog.liveness import find_live  # noqa: E402
from udrfs.catalog.repack import keepers  # noqa: E402
from udrfs.store.packs import local_packs  # noqa: E402


def versions(count: int, rows: int) -> list[object]:
    table = parcels.parcels(rows)
    out = [table]
    for i in range(1, count):
        table = parcels.scattered(table, 0.01, seed=100 + i)
        out.append(table)
    return out


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pack_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("packs/??/*.pack"))


def needed_pack_bytes(repo: udrfs.Repo) -> int:
    """Bytes of the packs a collector keeps: those that keep some live chunk."""
    packs = local_packs(repo.path)
    kept = set(keepers(packs, find_live(repo.store, repo.catalog.history).chunks).values())
    return sum(p.size for p in packs if p.pack in kept)


def run_udr(tables: list[object], keep: int, work: Path) -> dict[str, float]:
    repo = udrfs.Repo.init(work / "udr")
    start = time.perf_counter()
    for table in tables:
        repo.write_table("parcels", table, key="bbl")
    written = time.perf_counter() - start
    total = pack_bytes(repo.path)
    start = time.perf_counter()
    result = repo.expire(keep_last=keep)
    expire_s = time.perf_counter() - start
    start = time.perf_counter()
    packed = udrfs.Repo(repo.path).repack()
    repack_s = time.perf_counter() - start
    after = udrfs.Repo(repo.path)
    kept = needed_pack_bytes(after)
    return {
        "total": total,
        "released": result.reclaimable_bytes,
        "keep": total - result.reclaimable_bytes,
        "freeable": pack_bytes(after.path) - kept,
        "kept": kept,
        "write_s": written,
        "expire_s": expire_s,
        "repack_s": repack_s,
        "copied": packed.copied_bytes,
    }


def run_delta(tables: list[object], keep: int, work: Path) -> dict[str, float] | None:
    try:
        import deltalake
    except ImportError:
        return None
    path = work / "delta"
    start = time.perf_counter()
    deltalake.write_deltalake(str(path), tables[0])
    for table in tables[1:]:
        dt = deltalake.DeltaTable(str(path))
        (
            dt.merge(table, predicate="s.bbl = t.bbl", source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
    written = time.perf_counter() - start
    data = {p.name: p.stat().st_size for p in path.glob("*.parquet")}
    total = sum(data.values())
    newest = deltalake.DeltaTable(str(path)).version()
    kept_files: set[str] = set()
    for v in range(newest - keep + 1, newest + 1):
        kept_files.update(
            Path(u).name for u in deltalake.DeltaTable(str(path), version=v).file_uris()
        )
    kept = sum(data[name] for name in kept_files)
    before = tree_bytes(path)
    start = time.perf_counter()
    deltalake.DeltaTable(str(path)).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    vacuum_s = time.perf_counter() - start
    return {
        "total": total,
        "released": total - kept,
        "kept": kept,
        "vacuum_all": before - tree_bytes(path),
        "write_s": written,
        "vacuum_s": vacuum_s,
    }


def run_iceberg(tables: list[object], keep: int, work: Path) -> dict[str, float] | None:
    try:
        from pyiceberg.catalog.sql import SqlCatalog
    except ImportError:
        return None
    import pyarrow as pa

    root = work / "iceberg"
    root.mkdir()
    catalog = SqlCatalog(
        "retention", uri=f"sqlite:///{root / 'catalog.db'}", warehouse=f"file://{root}/warehouse"
    )
    catalog.create_namespace("retention")
    first = tables[0]
    assert isinstance(first, pa.Table)
    start = time.perf_counter()
    table = catalog.create_table("retention.parcels", first.schema)
    table.append(first)
    versions = [table.current_snapshot().snapshot_id]
    for version in tables[1:]:
        assert isinstance(version, pa.Table)
        table.overwrite(version)
        versions.append(table.current_snapshot().snapshot_id)
    written = time.perf_counter() - start

    def data_files() -> dict[str, int]:
        return {str(p): p.stat().st_size for p in (root / "warehouse").rglob("*.parquet")}

    def listed(snapshot_ids: list[int]) -> set[str]:
        return {
            task.file.file_path.removeprefix("file://")
            for sid in snapshot_ids
            for task in table.scan(snapshot_id=sid).plan_files()
        }

    data = data_files()
    total = sum(data.values())
    kept_versions = versions[-keep:]
    before = tree_bytes(root)
    start = time.perf_counter()
    expired = [s.snapshot_id for s in table.snapshots() if s.snapshot_id not in kept_versions]
    table.maintenance.expire_snapshots().by_ids(expired).commit()
    table = catalog.load_table("retention.parcels")
    remaining = [s.snapshot_id for s in table.snapshots()]
    needed = listed(remaining)
    orphans = [path for path in data if path not in needed]
    for path in orphans:
        Path(path).unlink()
    expire_s = time.perf_counter() - start
    released = sum(data[path] for path in orphans)
    return {
        "total": total,
        "released": released,
        "kept": total - released,
        "freed_on_disk": before - tree_bytes(root),
        "write_s": written,
        "expire_s": expire_s,
    }


def mb(n: float) -> str:
    return f"{n / 1e6:8.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=30)
    parser.add_argument("--keep", type=int, default=7)
    parser.add_argument("--rows", type=int, default=parcels.ROWS)
    parser.add_argument("--dir", type=Path, default=None, help="work here (default: a temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench-retention-"))
    try:
        tables = versions(args.versions, args.rows)
        print(f"{args.versions} versions of {args.rows:,} parcel rows, 1% scattered change each;")
        print(f"keep the last {args.keep}\n")
        udr = run_udr(tables, args.keep, work)
        delta = run_delta(tables, args.keep, work)
        iceberg = run_iceberg(tables, args.keep, work)
        print(f"{'':44}{'UDR-FS':>12}{'Delta Lake':>14}{'Iceberg':>14}")
        rows = [
            ("data bytes after all versions", "total", "total", "total"),
            (
                f"released, last {args.keep} kept (expire / VACUUM)",
                "released",
                "released",
                "released",
            ),
            (f"kept for the last {args.keep}", "keep", "kept", "kept"),
        ]
        for label, ours, theirs, iceberg_key in rows:
            other = mb(delta[theirs]) if delta else "not installed"
            third = mb(iceberg[iceberg_key]) if iceberg else "not installed"
            print(f"{label:44}{mb(udr[ours]):>12}{other:>14}{third:>14}")
        left = mb(udr["kept"])
        print(f"{'packs left after repack and a collector':44}{left:>12}")
        if delta:
            vacuumed = mb(delta["vacuum_all"])
            print(f"{'VACUUM keeping only the newest version':44}{'':>12}{vacuumed:>14}")
        if iceberg:
            freed = mb(iceberg["freed_on_disk"])
            print(f"{'Iceberg: freed on disk by expire + orphans':44}{'':>12}{'':>14}{freed:>14}")
        print()
        print(
            f"UDR-FS: writes {udr['write_s']:.1f} s, expire {udr['expire_s']:.2f} s, "
            f"repack {udr['repack_s']:.2f} s ({mb(udr['copied']).strip()} of live chunks copied)"
        )
        if delta:
            print(
                f"Delta:  writes {delta['write_s']:.1f} s (MERGE), VACUUM {delta['vacuum_s']:.2f} s"
            )
        if iceberg:
            print(
                f"Iceberg: writes {iceberg['write_s']:.1f} s (overwrite), expire_snapshots + "
                f"orphan removal {iceberg['expire_s']:.2f} s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
