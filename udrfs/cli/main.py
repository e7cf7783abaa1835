"""The `udr` command. Each command group lives in its own `*_cmd.py` module; this one only
builds the parser, dispatches, and turns every failure into one line on stderr and an exit
code per kind of failure (udrfs/errors.py, docs/usage.md "Exit codes")."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version

from udrfs.cli import (
    branch_cmd,
    checkout_cmd,
    gc_cmd,
    mount_cmd,
    query_cmd,
    remote_cmd,
    retention_cmd,
    status_cmd,
    store_cmd,
    stores,
    table_cmd,
    tables_cmd,
    undo_cmd,
)
from udrfs.cli.output import printable
from udrfs.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_STORE_FULL,
    UdrError,
    exit_code_for,
)

COMMAND_GROUPS = (
    store_cmd,
    gc_cmd,
    tables_cmd,
    table_cmd,
    branch_cmd,
    query_cmd,
    mount_cmd,
    remote_cmd,
    retention_cmd,
    status_cmd,
    checkout_cmd,
    undo_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="udr",
        description="UDR-FS: versioned, deduplicated Parquet tables that mount as a filesystem.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict, 5 damaged store, "
        "6 store full, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"udr {version('udrfs')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(sub)
    stores.add_to_commands(sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits 2 here
    code = _run(args)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _broken_pipe()
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        checkout_cmd.fill_default_branch(args)
        result = args.run(args)
    except UdrError as exc:
        return _fail(str(exc), exit_code_for(exc))
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            return _broken_pipe()
        what = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
        code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_ERROR
        return _fail(what, EXIT_STORE_FULL if exc.errno in _FULL else code)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, and how to see the traceback
        if os.environ.get("UDR_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (a bug in udrfs; UDR_DEBUG=1 shows "
            "the traceback to report)",
            EXIT_ERROR,
        )
    return int(result or 0)


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _fail(message: str, code: int) -> int:
    """Print `udr: error: MESSAGE` as one line (control characters escaped)."""
    line = " ".join(message.split("\n"))
    print(f"udr: error: {printable(line)}", file=sys.stderr)
    return code


def _broken_pipe() -> int:
    # The reader went away (`udr log | head`): not an error. Point stdout at /dev/null so the
    # interpreter's final flush does not complain.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
