"""`udr revert`, `udr reset`: undo a commit with a new one, or move a branch back."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("revert", help="commit the undoing of one commit (tables and all)")
    p.add_argument("store")
    p.add_argument("commit", help="commit id (8+ hex digits), branch or tag")
    p.add_argument("-b", "--branch", default=None, help="branch to commit on")
    p.add_argument("-m", "--message")
    p.add_argument(
        "--force",
        action="store_true",
        help="revert even tables later commits changed again (undoes those changes too)",
    )
    p.set_defaults(run=run_revert)

    p = sub.add_parser("reset", help="move a branch back to a commit (refused if commits are lost)")
    p.add_argument("store")
    p.add_argument("name", metavar="BRANCH")
    p.add_argument("--to", required=True, help="commit id, branch or tag to move it to")
    p.add_argument(
        "--force", action="store_true", help="move it even if commits no other ref reaches are lost"
    )
    p.set_defaults(run=run_reset)


def run_revert(args: argparse.Namespace) -> int:
    from udrfs.cli.stores import open_repo

    repo = open_repo(args)
    commit = repo.revert(args.commit, branch=args.branch, force=args.force, message=args.message)
    if commit is None:
        print(f"{args.commit} changed no table; nothing to revert")
        return 0
    tables = ", ".join(
        f"{c.table} v{c.old_version or '-'} -> v{c.new_version or '-'}" for c in commit.changes
    )
    print(f"reverted on {args.branch}: commit {commit.id[:12]} (seq {commit.seq}): {tables}")
    return 0


def run_reset(args: argparse.Namespace) -> int:
    from udrfs.cli.stores import open_repo

    result = open_repo(args).reset(args.name, args.to, force=args.force)
    if result.old == result.new:
        print(f"{result.branch} is already at {result.new[:12]}")
        return 0
    print(f"branch {result.branch}: {result.old[:12]} -> {result.new[:12]}")
    if result.lost:
        print(
            f"{len(result.lost)} commit(s) no longer on any ref (reachable by id until collected)"
        )
    return 0
