"""`udr init`, `udr stats`, `udr fsck`, `udr upgrade`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from udrfs.catalog.growth import store_growth
from udrfs.catalog.remote import upgrade_store
from udrfs.cli.output import human_bytes, print_rows, printable
from udrfs.cli.progress import TerminalProgress
from udrfs.cli.stores import open_repo
from udrfs.errors import EXIT_CORRUPT, EXIT_OK
from udrfs.repo import Repo


def add_parser(sub: Any) -> None:
    p = sub.add_parser("init", help="create a new, empty store")
    p.add_argument("store", help="directory to create (must be new or empty)")
    p.set_defaults(run=run_init)

    p = sub.add_parser(
        "stats",
        help="logical and stored bytes, dedup ratio, chunks, packs; bytes per table and branch",
        description="The figures per table and per branch are defined in docs/usage.md, "
        '"Where the bytes are".',
    )
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="also draw stored vs logical bytes of each table over its versions (matplotlib)",
    )
    p.add_argument("-b", "--branch", help="the branch whose versions --plot draws")
    p.set_defaults(run=run_stats)

    p = sub.add_parser(
        "fsck",
        help="check that every ref, commit, manifest, index fragment and pack is intact",
        description="Exits 0 when the store is intact, 5 when something is damaged. Each "
        "problem names what it affects and the command that repairs it.",
    )
    p.add_argument("store")
    p.add_argument("--quick", action="store_true", help="skip re-hashing every pack")
    p.add_argument(
        "--repair",
        action="store_true",
        help="rebuild index fragments from packs, restore refs, and move what cannot be "
        "repaired to lost+found/ in the store; then check again",
    )
    p.set_defaults(run=run_fsck)

    p = sub.add_parser(
        "upgrade",
        help="raise a store (a directory or s3://...) to the newest format version",
        description="Only udr.toml changes: packs already written keep their version and stay "
        "readable; new packs are written at the new version. Every machine using the store "
        'then needs a udrfs that reads the new version (docs/format.md, "Format versions").',
    )
    p.add_argument("store")
    p.set_defaults(run=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    was, now = upgrade_store(args.store, args.endpoint, args.profile)
    if was == now:
        print(f"{printable(args.store)} is already at format version {now}")
    else:
        print(f"upgraded {printable(args.store)} from format version {was} to {now}")
    return EXIT_OK


def run_init(args: argparse.Namespace) -> int:
    repo = Repo.init(args.store)
    print(f"created store {repo.path} (branch main)")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    with TerminalProgress("stats").ticking():
        stats = repo.stats()
    plotted = ""
    if args.plot is not None:
        from udrfs.cli.stats_plot import draw_growth

        branch = args.branch or repo.default_branch
        drawn = draw_growth(
            store_growth(repo.catalog.history, branch), args.plot, f"{repo.path.name} @{branch}"
        )
        plotted = f"{args.plot} ({drawn} table{'s' if drawn != 1 else ''} of {branch})"
    if args.json:
        print(json.dumps(stats.to_dict()))
        return 0
    print(f"tables           {stats.tables}")
    print(f"table versions   {stats.versions}")
    print(f"commits          {stats.commits}")
    print(f"branches, tags   {stats.branches}, {stats.tags}")
    print(f"logical bytes    {stats.logical_bytes} ({human_bytes(stats.logical_bytes)})")
    print(f"stored bytes     {stats.stored_bytes} ({human_bytes(stats.stored_bytes)})")
    print(f"dedup ratio      {stats.dedup_ratio:.2f}x")
    print(f"chunks, packs    {stats.chunks}, {stats.packs}")
    if stats.reclaimable_bytes is None:
        print("reclaimable      unknown (the store is damaged: see `udr fsck`)")
    else:
        reclaimable = stats.reclaimable_bytes
        print(f"reclaimable      {reclaimable} ({human_bytes(reclaimable)}, by `udr gc`)")
    if plotted:
        print(f"plot             {printable(plotted)}")
    if stats.by_table:
        print()
        print_rows(
            ("table", "versions", "released", "logical", "stored", "only this table", "shared"),
            [
                (
                    t.table,
                    t.versions,
                    t.released,
                    human_bytes(t.logical_bytes),
                    human_bytes(t.stored_bytes),
                    human_bytes(t.only_bytes),
                    human_bytes(t.shared_bytes),
                )
                for t in stats.by_table
            ],
        )
    if stats.by_branch:
        print()
        print_rows(
            ("branch", "reachable", "only this branch", "freed by delete + gc"),
            [
                (
                    b.branch,
                    human_bytes(b.reachable_bytes),
                    human_bytes(b.only_bytes),
                    human_bytes(b.freed_bytes),
                )
                for b in stats.by_branch
            ],
        )
    return 0


def run_fsck(args: argparse.Namespace) -> int:
    with TerminalProgress("repair" if args.repair else "fsck").ticking():
        report = open_repo(args).fsck(verify_packs=not args.quick, repair=args.repair)
    for action in report.repaired:
        print(f"repaired: {printable(action)}")
    label = "cannot repair" if args.repair else "problem"
    for problem in report.problems:
        print(f"{label}: {printable(problem)}")
    for warning in report.warnings:
        print(f"warning: {printable(warning)}")
    state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(
        f"{state}: {report.commits} commits, {report.manifests} table versions, "
        f"{report.packs} packs"
    )
    return EXIT_OK if report.ok else EXIT_CORRUPT
