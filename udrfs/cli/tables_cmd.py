"""`udr import`, `udr bulk-import`, `udr verify`, `udr tables`, `udr versions`, `udr log`,
`udr cat`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from udrfs.catalog.files import write_file_atomically
from udrfs.catalog.model import DEDUP
from udrfs.catalog.specs import parse_version_spec
from udrfs.catalog.verify import table_files
from udrfs.cli.output import human_bytes, print_rows, printable
from udrfs.cli.progress import TerminalProgress
from udrfs.cli.stores import open_repo
from udrfs.errors import EXIT_ERROR, NotFoundError, UsageError


def parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-21T23:00:00Z)") from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "import",
        help="commit a Parquet file as a table's next version (its exact bytes unless the "
        "table's layout is dedup)",
    )
    p.add_argument("store")
    p.add_argument("table", help="the table; or a directory: every *.parquet in it, one commit")
    p.add_argument("file", nargs="?", help="the Parquet file (not given with a directory)")
    p.add_argument("-m", "--message", default=None)
    p.add_argument("-b", "--branch", default=None)
    p.add_argument("--key", action="append", help="key column (repeat for several)")
    p.add_argument(
        "--allow-schema-change", action="store_true", help="accept columns that change type"
    )
    p.add_argument(
        "--layout",
        default=None,
        help="exact (the file's bytes) or dedup (its rows, rewritten to deduplicate); "
        "default: the table's layout (udr table set)",
    )
    p.set_defaults(run=run_import)

    p = sub.add_parser(
        "bulk-import",
        help="commit many Parquet files at once, each as the table named by its file name",
        description="Each FILE (or every *.parquet in a DIR) becomes the next version of the "
        "table named by its file name without .parquet; all of them land in one commit, or "
        "none does.",
    )
    p.add_argument("store")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR")
    p.add_argument("-m", "--message", default=None)
    p.add_argument("-b", "--branch", default=None)
    p.add_argument("--key", action="append", help="key column of every table (repeatable)")
    p.add_argument(
        "--allow-schema-change", action="store_true", help="accept columns that change type"
    )
    p.set_defaults(run=run_bulk_import)

    p = sub.add_parser(
        "verify",
        help="check each table's latest bytes against Parquet files, by BLAKE3",
        description="Each FILE (or every *.parquet in a DIR) is compared with the latest "
        "version of the table named by its file name; exit 1 if any differs or is missing.",
    )
    p.add_argument("store")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR")
    p.add_argument("-b", "--branch", default=None)
    p.add_argument("--json", action="store_true", help="one JSON object a table")
    p.set_defaults(run=run_verify)

    p = sub.add_parser("tables", help="tables on a branch: latest version, rows, size")
    p.add_argument("store")
    p.add_argument("-b", "--branch", default=None, help="branch, tag or commit id")
    p.set_defaults(run=run_tables)

    p = sub.add_parser("versions", help="every version of a table along a branch")
    p.add_argument("store")
    p.add_argument("table")
    p.add_argument("-b", "--branch", default=None, help="branch, tag or commit id")
    p.set_defaults(run=run_versions)

    p = sub.add_parser("log", help="commits, newest first")
    p.add_argument("store")
    p.add_argument("-b", "--branch", default=None, help="branch, tag or commit id")
    p.add_argument("--table", default=None, help="only commits that changed this table")
    p.add_argument("-n", "--limit", type=int, default=None)
    p.set_defaults(run=run_log)

    p = sub.add_parser(
        "cat",
        help="write a version's exact bytes to stdout (or -o FILE)",
        description="-o FILE is replaced only once every byte was read and checked; a failed "
        "read leaves FILE as it was. Refuses to write to a terminal unless -o -.",
    )
    p.add_argument("store")
    p.add_argument(
        "table",
        metavar="SPEC",
        help="TABLE[@N], REF:TABLE[@N] or @REF/TABLE/vN.parquet (docs/usage.md, Version specs)",
    )
    p.add_argument("-b", "--branch", default=None, help="branch, tag or commit id")
    p.add_argument("--as-of", default=None, help="the version current at this time (ISO 8601)")
    p.add_argument("-o", "--output", default=None, help="FILE, or - for stdout")
    p.set_defaults(run=run_cat)


def run_import(args: argparse.Namespace) -> int:
    if args.file is None:
        if not Path(args.table).is_dir():
            raise UsageError(
                f"udr import STORE TABLE FILE imports one file; {args.table!r} is not a "
                "directory to import every *.parquet of"
            )
        args.paths = [args.table]
        return run_bulk_import(args)
    repo = open_repo(args)
    with TerminalProgress(f"import {args.table}", _size(args.file)).ticking():
        commit = repo.import_file(
            args.table,
            args.file,
            branch=args.branch,
            message=args.message,
            key=args.key,
            allow_schema_change=args.allow_schema_change,
            layout=args.layout,
        )
    if commit is None:
        current = repo.version(args.table, branch=args.branch)
        layout = args.layout or repo.table_policy(args.table, args.branch).layout
        same = "rows" if layout == DEDUP else "bytes"
        print(f"{args.table} unchanged (v{current.version} has the same {same}); nothing committed")
        return 0
    (change,) = commit.changes
    print(
        f"{args.table} v{change.new_version} on {args.branch}: {change.rows} rows, "
        f"commit {commit.id[:12]} (seq {commit.seq})"
    )
    return 0


def run_bulk_import(args: argparse.Namespace) -> int:
    files = table_files(args.paths)
    repo = open_repo(args)
    sizes = {table: _size(str(path)) or 0 for table, path in files.items()}
    message = args.message or f"import {len(files)} table{'s' if len(files) != 1 else ''}"
    with (
        TerminalProgress("bulk import", sum(sizes.values())).ticking() as shown,
        repo.transaction(args.branch, message) as tx,
    ):
        done = 0
        for n, (table, path) in enumerate(files.items(), 1):
            tx.import_file(table, path, key=args.key, allow_schema_change=args.allow_schema_change)
            done += sizes[table]
            shown.update(done, files=n)
    commit = tx.result
    if commit is None:
        print(f"all {len(files)} tables unchanged; nothing committed")
        return 0
    unchanged = len(files) - len(commit.changes)
    print(
        f"{len(commit.changes)} table{'s' if len(commit.changes) != 1 else ''} on "
        f"{args.branch}, {unchanged} unchanged: commit {commit.id[:12]} (seq {commit.seq})"
    )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    files = table_files(args.paths)
    total = sum(_size(str(p)) or 0 for p in files.values())
    with TerminalProgress("verify", total).ticking() as shown:
        results = open_repo(args).verify(files, args.branch, progress=shown.update)
    if args.json:
        for r in results:
            print(json.dumps(r.to_dict()))
    else:
        rows = [
            (r.table, f"v{r.version}" if r.version else "-", r.verdict.upper(), r.file)
            for r in results
        ]
        print_rows(("TABLE", "VERSION", "RESULT", "FILE"), rows)
    bad = [r for r in results if r.verdict != "same"]
    if bad:
        print(f"{len(bad)} of {len(results)} table(s) differ from their files", file=sys.stderr)
        return EXIT_ERROR
    print(f"all {len(results)} table(s) match their files (BLAKE3 of every byte)")
    return 0


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None  # the import says what is wrong with the file


def run_tables(args: argparse.Namespace) -> int:
    rows = [
        (t.name, f"v{t.version}", t.rows, human_bytes(t.size))
        for t in open_repo(args).tables(args.branch)
    ]
    print_rows(("TABLE", "LATEST", "ROWS", "SIZE"), rows)
    return 0


def run_versions(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    infos = repo.table_versions(args.table, args.branch)
    if not infos:
        raise NotFoundError(f"no table named {args.table!r} on {args.branch!r}")
    released = repo.retention.released()
    rows = [
        (
            f"v{v.version}" + (" (expired)" if v.manifest_id in released else ""),
            v.time.strftime("%Y-%m-%d %H:%M:%S"),
            v.rows,
            human_bytes(v.size),
            v.commit_id[:12],
            v.message,
        )
        for v in infos
    ]
    print_rows(("VERSION", "TIME (UTC)", "ROWS", "SIZE", "COMMIT", "MESSAGE"), rows)
    return 0


def run_log(args: argparse.Namespace) -> int:
    for c in open_repo(args).log(args.branch, table=args.table, limit=args.limit):
        changes = ", ".join(
            f"{ch.table} v{ch.old_version or 0}->v{ch.new_version or 'dropped'}" for ch in c.changes
        )
        print(f"{c.id[:12]}  seq {c.seq}  {c.time:%Y-%m-%d %H:%M:%S}  {printable(c.author)}")
        print(f"    {printable(c.message)}")
        if changes:
            print(f"    {printable(changes)}")
    return 0


def run_cat(args: argparse.Namespace) -> int:
    spec = parse_version_spec(args.table)
    if spec.table is None:
        raise UsageError(f"{args.table!r}: name the table, as in t@3 or @main/t/v3.parquet")
    branch = spec.ref or args.branch  # a ref in the spec wins over -b
    as_of = parse_time(args.as_of) if args.as_of else None
    if args.output is None and sys.stdout.isatty():
        raise UsageError(
            "refusing to write Parquet bytes to a terminal: give -o FILE, or -o - to write "
            "them to stdout anyway"
        )
    repo = open_repo(args)
    with repo.open(spec.table, spec.version, branch=branch, as_of=as_of) as src:
        if args.output in (None, "-"):
            shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        else:
            write_file_atomically(src, Path(args.output))
    return 0
