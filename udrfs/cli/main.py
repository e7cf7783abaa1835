"""The `udr` command. Each command group lives in its own `*_cmd.py` module; this one only
builds the parser, dispatches, and turns errors into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from udrfs.cli import branch_cmd, mount_cmd, query_cmd, remote_cmd, store_cmd, tables_cmd
from udrfs.errors import UdrError

COMMAND_GROUPS = (store_cmd, tables_cmd, branch_cmd, query_cmd, mount_cmd, remote_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="udr",
        description="UDR-FS: versioned, deduplicated Parquet tables that mount as a filesystem.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except UdrError as exc:
        print(f"udr: error: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"udr: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
