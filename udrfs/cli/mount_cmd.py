"""`udr mount` and `udr umount`: the filesystem view of a store (udrfs.fs does the work)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register `mount` and `umount` on the `udr` command's subparsers."""
    mount = subparsers.add_parser(
        "mount",
        help="mount a store: every version of every table on every branch as a file",
        description="Mount STORE (a directory, or s3://BUCKET/PREFIX) at MOUNTPOINT: versions "
        "read-only, writes staged in @BRANCH/.tx/NAME/ and committed through its .control file. "
        "Returns once the mount is usable and keeps serving in the background (unless "
        "--foreground).",
    )
    _arguments_when_used(mount, _mount_arguments)
    mount.set_defaults(run=run_mount)

    umount = subparsers.add_parser("umount", help="unmount a mounted store")
    umount.add_argument("mountpoint", type=Path)
    umount.add_argument(
        "--lazy", "-z", action="store_true", help="detach now even if files are still open"
    )
    umount.set_defaults(run=run_umount)


def _mount_arguments(mount: argparse.ArgumentParser) -> None:
    from udrfs.fs import daemon

    daemon.add_mount_arguments(mount)
    mount.add_argument(
        "--foreground", "-f", action="store_true", help="serve in this process until unmounted"
    )


def _arguments_when_used(
    parser: argparse.ArgumentParser, add: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add a subcommand's arguments only once it is the command being parsed (or asked for
    help): they come from the daemon module, which loads FUSE, and `udr --help` or `udr tables`
    must not pay for that."""
    parse = parser.parse_known_args

    def parse_known_args(
        args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        add(parser)
        setattr(parser, "parse_known_args", parse)  # noqa: B010 (added once)
        return parse(args, namespace)

    setattr(parser, "parse_known_args", parse_known_args)  # noqa: B010 (an instance override)


def run_mount(args: argparse.Namespace) -> int:
    from udrfs.fs import daemon

    options = daemon.options_from_args(args)
    if args.foreground:
        daemon.configure_logging(options.log_file, options.debug)
        daemon.serve(options)
        return 0
    pid = daemon.start_background(options)
    log_file = options.log_file or daemon.default_log_file(options.mountpoint)
    print(f"mounted {options.store} at {options.mountpoint} (pid {pid}, log {log_file})")
    return 0


def run_umount(args: argparse.Namespace) -> int:
    from udrfs.fs import daemon

    daemon.unmount(args.mountpoint, lazy=args.lazy)
    return 0
