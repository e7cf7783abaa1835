"""`udr init`, `udr stats`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from udrfs.cli.output import human_bytes
from udrfs.repo import Repo


def add_parser(sub: Any) -> None:
    p = sub.add_parser("init", help="create a new, empty store")
    p.add_argument("store", help="directory to create (must be new or empty)")
    p.set_defaults(run=run_init)

    p = sub.add_parser("stats", help="logical and stored bytes, dedup ratio, chunks, packs")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_stats)

    p = sub.add_parser("fsck", help="check that every ref, commit, manifest and pack is intact")
    p.add_argument("store")
    p.add_argument("--quick", action="store_true", help="skip re-hashing every pack")
    p.set_defaults(run=run_fsck)


def run_init(args: argparse.Namespace) -> int:
    repo = Repo.init(args.store)
    print(f"created store {repo.path} (branch main)")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    stats = Repo(args.store).stats()
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
    return 0


def run_fsck(args: argparse.Namespace) -> int:
    report = Repo(args.store).fsck(verify_packs=not args.quick)
    for problem in report.problems:
        print(f"problem: {problem}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(
        f"{state}: {report.commits} commits, {report.manifests} table versions, "
        f"{report.packs} packs"
    )
    return 0 if report.ok else 1
