"""`udr expire`, `udr repack`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from udrfs.catalog.specs import parse_duration, parse_share
from udrfs.cli.output import human_bytes, print_rows
from udrfs.cli.progress import TerminalProgress
from udrfs.cli.stores import open_repo
from udrfs.sizes import parse_size


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "expire",
        help="release the data of table versions a retention policy no longer keeps",
        description="Along the branch's history, each table keeps its last N versions "
        "(--keep-last) and every version current within the window (--keep-within); every "
        "branch head and tag keeps its versions. The rest are released: their commits stay "
        "in `udr log`, reading them says when and how they were expired, and `udr gc` "
        "reclaims their bytes.",
    )
    p.add_argument("store")
    p.add_argument("--keep-last", type=int, default=None, metavar="N")
    p.add_argument("--keep-within", default=None, metavar="DURATION", help="e.g. 90d, 12h, 2w")
    p.add_argument("--branch", "-b", default=None, help="the branch whose history (default main)")
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be released; change nothing"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_expire)

    p = sub.add_parser(
        "repack",
        help="copy the live chunks of mostly-unused packs (and small packs) into new packs",
        description="Deletes nothing: the old packs become reclaimable by `udr gc`. Readers, "
        "the mount included, keep working while it runs.",
    )
    p.add_argument("store")
    p.add_argument(
        "--max-unused",
        default="5%",
        metavar="SHARE",
        help="rewrite packs with more than this share of unused bytes (default 5%%)",
    )
    p.add_argument(
        "--max-bytes", default=None, metavar="SIZE", help="copy at most this much per run (10G)"
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be rewritten")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_repack)


def run_expire(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    within = parse_duration(args.keep_within) if args.keep_within is not None else None
    with TerminalProgress("expire").ticking():
        result = repo.expire(args.keep_last, within, args.branch, args.dry_run)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    verb = "would release" if result.dry_run else "released"
    rows = [(r.table, f"v{r.version}", human_bytes(r.size)) for r in result.released]
    if rows:
        print_rows(("TABLE", "VERSION", "SIZE"), rows)
    print(
        f"{verb} {len(result.released)} version(s) on {result.branch} ({result.policy}); "
        f"{result.kept} kept, {result.already_expired} expired before; "
        f"{human_bytes(result.reclaimable_bytes)} reclaimable by `udr gc`"
    )
    return 0


def run_repack(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    max_unused = parse_share(args.max_unused)
    max_bytes = parse_size(args.max_bytes) if args.max_bytes is not None else None
    with TerminalProgress("repack").ticking():
        result = repo.repack(max_unused, max_bytes, args.dry_run)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    verb = "would rewrite" if result.dry_run else "rewrote"
    new = result.live_packs_after - result.live_packs_before + len(result.rewritten)
    later = (
        f"; {result.left_for_later} pack(s) left for a later run" if result.left_for_later else ""
    )
    print(
        f"{verb} {len(result.rewritten)} pack(s) into {new} "
        f"({human_bytes(result.copied_bytes)} of live chunks copied); live packs "
        f"{result.live_packs_before} -> {result.live_packs_after}; "
        f"{human_bytes(result.reclaimable_bytes)} reclaimable by `udr gc`{later}"
    )
    return 0
