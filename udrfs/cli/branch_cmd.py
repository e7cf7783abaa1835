"""`udr branch`, `udr tag`."""

from __future__ import annotations

import argparse
from typing import Any

from udrfs.cli.output import print_rows
from udrfs.cli.stores import open_repo


def add_parser(sub: Any) -> None:
    p = sub.add_parser("branch", help="create, list or delete branches")
    p.add_argument("store")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("create", help="create a branch (one small file, no data copied)")
    a.add_argument("name")
    a.add_argument("--from", dest="from_", default=None, help="branch, tag or commit id")
    a.set_defaults(run=run_branch_create)
    a = actions.add_parser("list", help="list branches and their heads")
    a.set_defaults(run=run_branch_list)
    a = actions.add_parser("delete", help="delete a branch (its commits stay reachable by id)")
    a.add_argument("name")
    a.set_defaults(run=run_branch_delete)

    p = sub.add_parser("tag", help="tag a commit (or list tags with --list)")
    p.add_argument("store")
    p.add_argument("name", nargs="?")
    p.add_argument("ref", nargs="?", default=None, help="branch, tag or commit id")
    p.add_argument("--list", action="store_true")
    p.add_argument("--delete", action="store_true")
    p.set_defaults(run=run_tag)


def run_branch_create(args: argparse.Namespace) -> int:
    commit_id = open_repo(args).create_branch(args.name, from_=args.from_)
    print(f"branch {args.name} at {commit_id[:12]}")
    return 0


def run_branch_list(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    rows = []
    current = repo.default_branch  # `udr checkout`: marked with *
    for name, commit_id in repo.branches().items():
        c = repo.commit(commit_id)
        shown = f"* {name}" if name == current else f"  {name}"
        rows.append((shown, commit_id[:12], c.seq, f"{c.time:%Y-%m-%d %H:%M:%S}", c.message))
    print_rows(("  BRANCH", "HEAD", "SEQ", "TIME (UTC)", "MESSAGE"), rows)
    return 0


def run_branch_delete(args: argparse.Namespace) -> int:
    open_repo(args).delete_branch(args.name)
    print(f"deleted branch {args.name}")
    return 0


def run_tag(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    if args.list or args.name is None:
        print_rows(("TAG", "COMMIT"), [(n, c[:12]) for n, c in repo.tags().items()])
    elif args.delete:
        repo.delete_tag(args.name)
        print(f"deleted tag {args.name}")
    else:
        commit_id = repo.create_tag(args.name, args.ref)
        print(f"tag {args.name} at {commit_id[:12]}")
    return 0
