"""`udr status` (the store at a glance) and `udr show` (one commit and its tables)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC
from typing import Any

from udrfs.catalog.status import store_status
from udrfs.cli.output import human_bytes, print_rows, printable
from udrfs.cli.stores import open_repo


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="where the store is, its branches, the mount serving it, open transactions, remotes",
    )
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_status)

    p = sub.add_parser("show", help="a commit: who, when, why, and its tables' versions and rows")
    p.add_argument("store")
    p.add_argument("commit", metavar="COMMIT", help="branch, tag, commit id or 8+ hex prefix")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_show)


def run_status(args: argparse.Namespace) -> int:
    catalog = open_repo(args).catalog
    status = store_status(catalog.store, catalog.history, catalog.staging)
    if args.json:
        print(json.dumps(status.to_dict()))
        return 0
    print(f"store    {printable(status.path)} (format version {status.format_version})")
    mount = status.mount
    if mount is None:
        print("mount    not mounted")
    elif mount.running:
        print(f"mount    {printable(mount.mountpoint)} (daemon pid {mount.pid})")
    else:
        print(f"mount    not mounted (last at {printable(mount.mountpoint)}, pid {mount.pid})")
    print(f"branches {len(status.branches)} (default {status.default_branch}), tags {status.tags}")
    print_rows(
        ["  branch", "head", "seq", "time", "message"],
        [
            [f"  {b.name}", b.commit[:12], b.seq, b.time, b.message.split("\n", 1)[0][:50]]
            for b in status.branches
        ],
    )
    if status.transactions:
        print(f"open transactions {len(status.transactions)}")
        print_rows(
            ["  branch", "name", "base", "staged tables", "status"],
            [
                [f"  {t.branch}", t.name, t.base[:12], ", ".join(t.tables) or "-", t.status]
                for t in status.transactions
            ],
        )
    else:
        print("open transactions none")
    if not status.remotes:
        print("remotes  none")
    for remote in status.remotes:
        print(f"remote   {printable(remote.name)} {printable(remote.url)}")
        for branch, commit in remote.tracking.items():
            print(f"  {printable(remote.name)}/{printable(branch)} {commit[:12]}")
        if not remote.tracking:
            print("  (not fetched yet)")
    return 0


def run_show(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    commit = repo.counted(repo.resolve(args.commit))  # with counts computed after it
    tables = repo.tables(commit.id)
    changed = {c.table: c for c in commit.changes}
    if args.json:
        doc = {
            "commit": commit.id,
            "parents": list(commit.parents),
            "branch": commit.branch,
            "seq": commit.seq,
            "time": commit.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "author": commit.author,
            "message": commit.message,
            "tables": [
                {
                    "table": t.name,
                    "version": t.version,
                    "rows": t.rows,
                    "size": t.size,
                    "changed": t.name in changed,
                }
                for t in tables
            ],
            "changes": [c.to_dict() for c in commit.changes],
        }
        print(json.dumps(doc))
        return 0
    print(f"commit  {commit.id}")
    if commit.parents:
        print(f"parents {' '.join(p[:12] for p in commit.parents)}")
    print(f"branch  {printable(commit.branch)} (seq {commit.seq})")
    print(f"date    {commit.time.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}")
    print(f"author  {printable(commit.author)}")
    print()
    for line in commit.message.splitlines() or ["(no message)"]:
        print(f"    {printable(line)}")
    print()
    print(f"{len(tables)} tables, {len(changed)} changed by this commit")
    rows = []
    for t in tables:
        change = changed.get(t.name)
        if change is None:
            what = ""
        elif change.old_version is None:
            what = "new"
        else:
            what = f"from v{change.old_version}"
        rows.append([t.name, f"v{t.version}", f"{t.rows:,}", human_bytes(t.size), what])
    removed = [c for c in commit.changes if c.new_version is None]
    rows += [[c.table, "-", "-", "-", f"removed (was v{c.old_version})"] for c in removed]
    print_rows(["table", "version", "rows", "size", "changed"], rows)
    return 0
