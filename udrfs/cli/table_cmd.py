"""`udr table set`, `udr table show`: a table's key, layout and zstd level (docs/usage.md,
"Table layouts")."""

from __future__ import annotations

import argparse
from typing import Any

from udrfs.catalog.model import DEFAULT_ZSTD_LEVEL, LAYOUTS, writer_level
from udrfs.cli.output import printable
from udrfs.cli.stores import open_repo
from udrfs.errors import NotFoundError, UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "table", help="a table's settings: its key, layout (exact or dedup) and zstd level"
    )
    p.add_argument("store")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser(
        "set",
        help="declare a table's key and layout (a commit that changes no data)",
        description="--layout dedup: files committed into the table (through .tx or udr "
        "import) are rewritten by the dedup writer, same rows, other bytes; a file whose rows "
        "equal the current version's is not a new version. --layout exact (the default) keeps "
        "a file's exact bytes. Applies to later writes; the table need not exist yet.",
    )
    a.add_argument("table")
    a.add_argument("--key", default=None, help="key column(s), comma-separated: COL[,COL]")
    a.add_argument("--no-key", action="store_true", help="clear the table's key")
    # Checked by the catalog, so an unknown layout is its typed error (not argparse's).
    a.add_argument("--layout", default=None, help=f"one of {', '.join(LAYOUTS)}")
    a.add_argument(
        "--zstd-level",
        type=int,
        default=None,
        metavar="N",
        help=f"zstd level of the rows the dedup writer writes (write_table, a dedup layout), "
        f"1-22: higher is smaller and slower to write (a new table: {DEFAULT_ZSTD_LEVEL}); "
        "the table's next version is written at it, as new bytes",
    )
    a.add_argument("-b", "--branch", default=None)
    a.add_argument("-m", "--message", default=None)
    a.set_defaults(run=run_table_set)
    a = actions.add_parser("show", help="a table's key, layout and zstd level")
    a.add_argument("table")
    a.add_argument("-b", "--branch", default=None, help="branch, tag or commit id")
    a.set_defaults(run=run_table_show)


def _key(args: argparse.Namespace) -> list[str] | None:
    if args.no_key and args.key is not None:
        raise UsageError("give --key or --no-key, not both")
    if args.no_key:
        return []
    if args.key is None:
        return None
    key = [part.strip() for part in args.key.split(",")]
    if not all(key):
        raise UsageError(f"--key {args.key!r}: name the key columns as COL[,COL]")
    return key


def run_table_set(args: argparse.Namespace) -> int:
    key = _key(args)
    if key is None and args.layout is None and args.zstd_level is None:
        raise UsageError("nothing to set: give --key COL[,COL], --no-key, --layout or --zstd-level")
    repo = open_repo(args)
    commit = repo.set_table(
        args.table,
        key=key,
        layout=args.layout,
        branch=args.branch,
        message=args.message,
        zstd_level=args.zstd_level,
    )
    policy = repo.table_policy(args.table, args.branch)
    shown = _describe(policy.key, policy.layout)
    if policy.zstd_level is not None:
        shown += f", zstd level {policy.zstd_level}"
    if commit is None:
        print(f"{printable(args.table)} already {shown}; nothing committed")
    else:
        print(f"{printable(args.table)}: {shown}, commit {commit.id[:12]} (seq {commit.seq})")
    return 0


def run_table_show(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    policy = repo.table_policy(args.table, args.branch)
    exists = any(t.name == args.table for t in repo.tables(args.branch))
    if not exists and policy.is_default:
        raise NotFoundError(f"no table named {args.table!r} on {args.branch!r}, and no settings")
    print(f"table   {printable(args.table)}{'' if exists else ' (no version yet)'}")
    print(f"key     {', '.join(policy.key) if policy.key else '(none)'}")
    print(f"layout  {policy.layout}{' (default)' if policy.is_default else ''}")
    level = str(writer_level(policy.zstd_level, exists))
    if policy.zstd_level is None:
        level += (
            " (not recorded: its versions predate recorded levels)"
            if exists
            else " (a new table's, recorded with its first version)"
        )
    print(f"zstd    {level}")
    return 0


def _describe(key: tuple[str, ...] | None, layout: str) -> str:
    return f"key {', '.join(key) if key else '(none)'}, layout {layout}"
