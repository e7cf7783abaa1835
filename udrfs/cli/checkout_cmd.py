"""`udr checkout`: the store's default branch, which every command that takes a branch uses
when none is given (docs/format.md, "HEAD")."""

from __future__ import annotations

import argparse
from typing import Any

# The parameters through which a command names the branch it works on (None: not given).
BRANCH_ARGUMENTS = ("branch", "into", "from_", "ref")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "checkout", help="set the branch commands default to (shown by `udr branch list`)"
    )
    p.add_argument("store")
    p.add_argument("name", nargs="?", help="branch to check out (omit: print the current one)")
    p.set_defaults(run=run_checkout)


def run_checkout(args: argparse.Namespace) -> int:
    from udrfs.cli.stores import open_repo

    catalog = open_repo(args)
    if args.name is None:
        print(catalog.default_branch)
        return 0
    catalog.set_default_branch(args.name)
    print(f"checked out branch {args.name}: commands on {catalog.path} now default to it")
    return 0


def fill_default_branch(args: argparse.Namespace) -> None:
    """Give every branch argument left out the store's checked-out branch."""
    missing = [n for n in BRANCH_ARGUMENTS if n in vars(args) and getattr(args, n) is None]
    if not missing or not isinstance(getattr(args, "store", None), str):
        return
    from udrfs.catalog.catalog import default_branch_of

    branch = default_branch_of(args.store)  # one small read: the command opens the store
    for name in missing:
        setattr(args, name, branch)
