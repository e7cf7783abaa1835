"""The options that say how to reach a store read straight from a remote, on every command
line that names a store (`udr COMMAND s3://BUCKET/PREFIX ...`, the mount's daemon): one
definition, so the commands cannot drift apart (docs/usage.md, "A store on S3/R2")."""

from __future__ import annotations

import argparse
from typing import Any

OPTIONS = ("endpoint", "profile", "cache_dir", "cache_size")


def add_store_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("a store on S3/R2 (STORE given as s3://BUCKET/PREFIX)")
    group.add_argument(
        "--endpoint", default=None, help="the S3 service's URL (R2, MinIO, ...; default AWS S3)"
    )
    group.add_argument(
        "--profile",
        default=None,
        help="AWS profile (~/.aws) whose keys to use (default: the AWS_* variables)",
    )
    group.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="where what was read is kept (default $UDR_CACHE_DIR or ~/.cache/udrfs)",
    )
    group.add_argument(
        "--cache-size",
        default=None,
        metavar="SIZE",
        help="bound of the chunk cache, e.g. 20G (default 20G)",
    )


def store_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `Catalog`/`Repo` that the options above gave."""
    return {name: getattr(args, name, None) for name in OPTIONS}
