"""`udr diff`, `udr merge`, `udr query`, `udr changes`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, cast

from udrfs.catalog.specs import parse_pin, parse_version_spec
from udrfs.cli.output import print_rows, printable
from udrfs.cli.progress import TerminalProgress
from udrfs.cli.stores import open_repo
from udrfs.cli.tables_cmd import parse_time
from udrfs.errors import MergeConflictError, UsageError
from udrfs.repo import Repo

if TYPE_CHECKING:
    import pyarrow as pa

    from udrfs.catalog import ChangeEntry
    from udrfs.query.merge import StrategySpec

# Conflicts printed before the summary line; the rest are counted.
SHOWN_CONFLICTS = 50


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="what changed between two refs (tables) or two versions of a table (rows)",
        description=(
            "REF..REF lists tables added, removed and changed. TABLE@N..TABLE@M (or "
            "REF..REF with --table) compares rows, matched by the table's key."
        ),
    )
    p.add_argument("store")
    p.add_argument("range", metavar="OLD..NEW", help="main..experiment or nyc_master@11..@12")
    p.add_argument("--table", default=None, help="compare this table's rows between the refs")
    p.add_argument("--key", action="append", help="key column (repeat for several)")
    p.add_argument("-b", "--branch", default=None, help="branch the version numbers are on")
    p.add_argument("-o", "--output", default=None, help="write added/removed/modified.parquet")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run_diff)

    p = sub.add_parser("merge", help="merge a branch into another (rows merged by key)")
    p.add_argument("store")
    p.add_argument("source", help="branch, tag or commit id to merge")
    p.add_argument("--into", default=None, help="branch that receives the merge")
    p.add_argument("--key", action="append", help="key column for row merges (repeatable)")
    p.add_argument("-m", "--message", default=None)
    p.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="ours|theirs|TABLE=ours|theirs",
        help="settle conflicts: keep the target's rows (ours) or take the source's (theirs), "
        "for every table or for one (repeatable)",
    )
    p.add_argument(
        "--conflicts-out",
        default=None,
        metavar="FILE",
        help="write every conflict to FILE, one JSON line each (the terminal shows the first)",
    )
    p.set_defaults(run=run_merge)

    p = sub.add_parser(
        "history",
        help="one row's value in every version of a table where it changed",
        description="The row whose key columns equal the values given, in each version of "
        "TABLE on the branch where it was added, changed or removed, oldest first.",
    )
    p.add_argument("store")
    p.add_argument("table")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="COLUMN=VALUE",
        help="the row's key (repeat for a key of several columns)",
    )
    p.add_argument("-b", "--branch", default=None)
    p.add_argument("--json", action="store_true", help="one JSON object a change")
    p.set_defaults(run=run_history)

    p = sub.add_parser("query", help="run DuckDB SQL over one snapshot of the store")
    p.add_argument("store")
    p.add_argument("sql")
    p.add_argument("-b", "--branch", default=None, help="branch, tag or commit id")
    p.add_argument(
        "--version", action="append", default=[], metavar="TABLE=N", help="pin a table version"
    )
    p.add_argument("--as-of", default=None, help="the snapshot current at this time (ISO 8601)")
    p.add_argument("-o", "--output", default=None, help="write the result to a Parquet file")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("-n", "--limit", type=int, default=100, help="rows printed (table format)")
    p.set_defaults(run=run_query)

    p = sub.add_parser(
        "changes",
        help="the change log: JSON lines (the mount's .changes) or one line a commit for people",
    )
    p.add_argument("store")
    p.add_argument("-b", "--branch", default=None)
    p.add_argument("--since", type=int, default=0, help="only entries after this seq")
    p.add_argument("--table", default=None)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    p.add_argument(
        "--format",
        choices=("json", "text"),
        default="json",
        help="json: a JSON line per commit (default); text: a short line per commit",
    )
    p.set_defaults(run=run_changes)


# ---- diff ---------------------------------------------------------------------------------


def run_diff(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    old, sep, new = args.range.partition("..")
    if not sep or not old or not new:
        raise UsageError(f"{args.range!r}: write OLD..NEW, e.g. main..experiment or t@3..t@4")
    if args.table is not None:
        return _diff_rows(repo, args, args.table, old, new)
    if any(mark in side for side in (old, new) for mark in "@:"):
        table, old_spec = _table_side(old, None)
        _, new_spec = _table_side(new, table)
        return _diff_rows(repo, args, table, old_spec, new_spec)
    return _diff_tables(repo, args, old, new)


def _table_side(text: str, table: str | None) -> tuple[str, str]:
    """`TABLE@N`, `REF:TABLE@N`, `REF:TABLE` or `@REF/TABLE/vN.parquet` (the new side may be
    just `@N`); catalog/specs.py parses them.

    Returns (table, side) with side in `Repo.diff`'s form: "N", "REF@N" or "REF".
    """
    spec = parse_version_spec(text)
    name = spec.table or table or ""
    if not name or (spec.ref is None and spec.version is None):
        raise UsageError(
            f"{text!r}: write TABLE@N, REF:TABLE@N, REF:TABLE or @REF/TABLE/vN.parquet"
        )
    if table is not None and name != table:
        raise UsageError(f"both sides must name one table, not {table!r} and {name!r}")
    if spec.version is not None:
        return name, f"{spec.ref}@{spec.version}" if spec.ref else str(spec.version)
    return name, spec.ref or ""


def _diff_rows(repo: Repo, args: argparse.Namespace, table: str, old: str, new: str) -> int:
    diff = repo.diff(table, old, new, key=args.key, branch=args.branch)
    summary: dict[str, Any] = {
        "table": table,
        "old_version": diff.old.version,
        "new_version": diff.new.version,
        "key": list(diff.key) if diff.key else None,
        **diff.counts,
        "columns_added": list(diff.columns_added),
        "columns_removed": list(diff.columns_removed),
    }
    if args.output:
        summary["files"] = {k: str(v) for k, v in diff.write_parquet(args.output).items()}
    if args.json:
        print(json.dumps(summary))
        return 0
    key = f"key {', '.join(diff.key)}" if diff.key else "no key: whole rows compared"
    print(
        f"{table} v{diff.old.version} -> v{diff.new.version} ({key}): "
        f"{diff.counts['added']} added, {diff.counts['removed']} removed, "
        f"{diff.counts['modified']} modified"
    )
    changed = _changed_column_counts(diff.modified)
    if changed:
        print("modified columns: " + ", ".join(f"{c} ({n})" for c, n in changed))
    if diff.columns_added or diff.columns_removed:
        print(
            f"columns added: {', '.join(diff.columns_added) or '-'}; "
            f"removed: {', '.join(diff.columns_removed) or '-'}"
        )
    for part, path in summary.get("files", {}).items():
        print(f"wrote {part} rows to {path}")
    return 0


def _changed_column_counts(modified: pa.Table) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for names in modified.column("changed_columns").to_pylist():
        for name in names or ():
            counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _diff_tables(repo: Repo, args: argparse.Namespace, old: str, new: str) -> int:
    diff = repo.diff_refs(old, new)
    if args.json:
        print(json.dumps({"old": old, "new": new, "tables": [t.__dict__ for t in diff.tables]}))
        return 0
    if not diff:
        print(f"no table differs between {old} and {new}")
        return 0
    rows = [
        (
            t.table,
            t.status,
            f"v{t.old_version}" if t.old_version else "-",
            f"v{t.new_version}" if t.new_version else "-",
            t.old_rows if t.old_rows is not None else "-",
            t.new_rows if t.new_rows is not None else "-",
        )
        for t in diff.tables
    ]
    print_rows(("TABLE", "CHANGE", old, new, f"ROWS {old}", f"ROWS {new}"), rows)
    return 0


# ---- merge --------------------------------------------------------------------------------


def run_merge(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    try:
        with TerminalProgress(f"merge {args.source} into {args.into}").ticking():
            result = repo.merge(
                args.source,
                into=args.into,
                key=args.key,
                message=args.message,
                strategy=parse_strategy(args.strategy),
                conflicts_file=args.conflicts_out,
            )
    except MergeConflictError as exc:
        try:
            for c in exc.conflicts[:SHOWN_CONFLICTS]:
                key = c.get("key")
                where = (
                    " ".join(f"{k}={v}" for k, v in key.items()) if isinstance(key, dict) else ""
                )
                print(printable(f"CONFLICT {c['table']} {where}: {c['kind']}".replace("  ", " ")))
            shown = min(len(exc.conflicts), SHOWN_CONFLICTS)
            if exc.total > shown:
                print(f"... and {exc.total - shown} more")
            sys.stdout.flush()
        except BrokenPipeError:
            pass  # the reader went away; the conflict still fails the command
        raise
    if result.kind == "up-to-date":
        print(f"{args.into} already contains {args.source}; nothing to merge")
    elif result.commit is not None:
        what = "fast-forwarded" if result.kind == "fast-forward" else "merged"
        print(
            f"{what} {args.source} into {args.into}: commit {result.commit.id[:12]} "
            f"(seq {result.commit.seq})"
        )
        if result.tables:
            print(f"tables changed: {', '.join(result.tables)}")
        if result.rows_merged:
            print(f"merged row by row: {', '.join(result.rows_merged)}")
        if result.resolved:
            print(f"conflicts settled by the strategy: {', '.join(result.resolved)}")
    return 0


def parse_strategy(given: list[str]) -> StrategySpec:
    """`--strategy theirs` (every table) and `--strategy scores=ours` (one table), combined:
    a per-table strategy whose "*" is the one for every other table (the merge checks the
    values)."""
    whole = [g for g in given if "=" not in g]
    if len(whole) > 1:
        raise UsageError("give --strategy without a table at most once")
    per_table = dict(g.split("=", 1) for g in given if "=" in g)
    if whole:
        per_table["*"] = whole[0]
    if set(per_table) == {"*"}:
        return cast("StrategySpec", per_table["*"])
    return cast("StrategySpec", per_table or None)


def run_history(args: argparse.Namespace) -> int:
    key = dict(parse_key_value(given) for given in args.key)
    changes = open_repo(args).history(args.table, key, args.branch)
    if args.json:
        for change in changes:
            print(json.dumps(change.to_dict(), default=str))
        return 0
    if not changes:
        shown = ", ".join(f"{k}={v}" for k, v in key.items())
        print(f"no version of {args.table} on {args.branch} has a row with {shown}")
        return 0
    rows = [
        (
            f"v{c.version}",
            c.time.strftime("%Y-%m-%d %H:%M:%S"),
            c.commit[:12],
            "(removed)" if c.row is None else json.dumps(c.row, default=str),
        )
        for c in changes
    ]
    print_rows(("VERSION", "TIME", "COMMIT", "ROW"), rows)
    return 0


def parse_key_value(given: str) -> tuple[str, object]:
    """`bbl=1000010001` -> ("bbl", 1000010001): an integer or a number when it reads as one
    (DuckDB compares it with the column's type), else the text."""
    column, eq, text = given.partition("=")
    if not eq or not column:
        raise UsageError(f"--key takes COLUMN=VALUE, not {given!r}")
    for convert in (int, float):
        try:
            return column, convert(text)
        except ValueError:
            pass
    return column, text


# ---- query --------------------------------------------------------------------------------


def run_query(args: argparse.Namespace) -> int:
    versions: dict[str, int] = {}
    for item in args.version:
        pin = parse_pin(item)
        assert pin.table is not None and pin.version is not None
        versions[pin.table] = pin.version
    as_of = parse_time(args.as_of) if args.as_of else None
    result = open_repo(args).query(args.sql, versions=versions, branch=args.branch, as_of=as_of)
    if args.output:
        import pyarrow.parquet as pq

        pq.write_table(result, args.output)
        print(f"wrote {result.num_rows} rows to {args.output}")
    elif args.format == "csv":
        import pyarrow.csv as pa_csv

        pa_csv.write_csv(result, sys.stdout.buffer)
    elif args.format == "json":
        for row in result.to_pylist():
            print(json.dumps(row, default=str))
    else:
        shown = result.slice(0, args.limit).to_pylist()
        print_rows(result.column_names, [[_cell(v) for v in r.values()] for r in shown])
        if result.num_rows > args.limit:
            print(f"... {result.num_rows - args.limit} more rows ({result.num_rows} in all)")
    return 0


def _cell(value: object) -> str:
    return "NULL" if value is None else str(value)


# ---- changes ------------------------------------------------------------------------------


def run_changes(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    text = args.format == "text"
    if not args.follow:
        for entry in repo.changes(since=args.since, table=args.table, branch=args.branch):
            print(entry.to_text_line() if text else entry.to_json_line())
        return 0

    def show(entry: ChangeEntry) -> None:
        print(entry.to_text_line() if text else entry.to_json_line(), flush=True)

    sub = repo.subscribe(
        show, args.branch, args.since, args.table, poll_interval=args.interval, start=False
    )
    sub.run()  # until interrupted: Ctrl-C exits 130 through main
    return 0
