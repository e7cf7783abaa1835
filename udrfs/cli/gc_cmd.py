"""`udr gc`: reclaim what nothing reaches (library: catalog/gc.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from udrfs.cli.output import human_bytes, printable
from udrfs.cli.progress import TerminalProgress
from udrfs.cli.stores import open_repo


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gc",
        help="reclaim packs, objects and temporary files that nothing reaches",
        description="Two phases a grace period apart, safe while writers run: a run condemns "
        "unreferenced files older than the grace period; a later run, at least the grace "
        "period after, deletes those still unreferenced. Run it from cron.",
    )
    p.add_argument("store")
    p.add_argument(
        "--grace",
        default="24h",
        help="how long a file must be unreferenced and then condemned before it goes; longer "
        "than any write takes (default 24h; e.g. 90m, 7d, 3600s)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--force", action="store_true", help="allow deleting more than half of the store's bytes"
    )
    p.add_argument(
        "--stale-lock",
        default="15m",
        help="on S3/R2: take over the lock of a run that has not renewed it for this long (a "
        "killed run; a running one renews it every quarter of it; default 15m)",
    )
    p.set_defaults(run=run_gc)


def run_gc(args: argparse.Namespace) -> int:
    catalog = open_repo(args)
    with TerminalProgress("gc") as bar:
        steps: dict[str, int] = {}

        def progress(step: str, done: int, total: int) -> None:
            steps[step] = done
            bar.update(0, files=sum(steps.values()))

        bar.ticking()
        result = catalog.gc(
            args.grace,
            dry_run=args.dry_run,
            force=args.force,
            progress=progress,
            stale_lock=args.stale_lock,
        )
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    for note in result.notes:
        print(note)
    verb = "would delete" if args.dry_run else "deleted"
    if args.dry_run:
        for f in result.deleted:
            print(f"would delete {printable(f.key)} ({human_bytes(f.size)})")
    print(f"{verb} {len(result.deleted)} file(s), {human_bytes(result.deleted_bytes)}")
    cverb = "would condemn" if args.dry_run else "condemned"
    print(
        f"{cverb} {len(result.condemned)} file(s), {human_bytes(result.condemned_bytes)} "
        f"(deleted by a run at least {args.grace} from now if still unreferenced)"
    )
    if result.waiting:
        size = sum(f.size for f in result.waiting)
        print(f"waiting: {len(result.waiting)} condemned file(s), {human_bytes(size)}")
    if result.uncondemned:
        print(f"un-condemned {len(result.uncondemned)} file(s) that are referenced again")
    print(
        f"store {human_bytes(result.store_bytes)}, unreferenced "
        f"{human_bytes(result.reclaimable_bytes)}"
    )
    return 0
