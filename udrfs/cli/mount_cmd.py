"""`udr mount` and `udr umount`: the filesystem view of a store (udrfs.fs does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from udrfs.fs import daemon


def add_parser(subparsers: Any) -> None:
    """Register `mount` and `umount` on the `udr` command's subparsers."""
    mount = subparsers.add_parser(
        "mount",
        help="mount a store: every version of every table on every branch as a file",
        description="Mount STORE at MOUNTPOINT read-only. Returns once the mount is usable "
        "and keeps serving in the background (unless --foreground).",
    )
    daemon.add_mount_arguments(mount)
    mount.add_argument(
        "--foreground", "-f", action="store_true", help="serve in this process until unmounted"
    )
    mount.set_defaults(run=run_mount)

    umount = subparsers.add_parser("umount", help="unmount a mounted store")
    umount.add_argument("mountpoint", type=Path)
    umount.add_argument(
        "--lazy", "-z", action="store_true", help="detach now even if files are still open"
    )
    umount.set_defaults(run=run_umount)


def run_mount(args: argparse.Namespace) -> int:
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
    daemon.unmount(args.mountpoint, lazy=args.lazy)
    return 0
