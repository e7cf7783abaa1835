"""How every command opens the store it names: a directory, or `s3://BUCKET/PREFIX` read
straight from the remote (with --endpoint, --profile, --cache-dir, --cache-size)."""

from __future__ import annotations

import argparse

from udrfs.catalog.store_options import add_store_options, store_options
from udrfs.repo import Repo

# Commands whose STORE is a local store by nature (they create it, or sync it with a remote
# whose own options they take); `mount` adds the options itself (fs/daemon.py).
LOCAL_ONLY = frozenset({"init", "remote", "push", "fetch", "pull", "clone", "mount", "umount"})


def open_repo(args: argparse.Namespace) -> Repo:
    """The store `args.store` names, opened with the remote-store options given."""
    return Repo(args.store, **store_options(args))


def add_to_commands(commands: dict[str, argparse.ArgumentParser]) -> None:
    """Give every command that takes a STORE the remote-store options (on the innermost
    parser, so they may follow the action: `udr branch STORE list --endpoint URL`)."""
    for name, parser in commands.items():
        if name not in LOCAL_ONLY:
            _add_to_leaves(parser, takes_store=False)


def _add_to_leaves(parser: argparse.ArgumentParser, takes_store: bool) -> None:
    takes_store = takes_store or any(a.dest == "store" for a in parser._actions)
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested:
        if takes_store:
            add_store_options(parser)
        return
    for action in nested:
        for child in dict.fromkeys(action.choices.values()):
            _add_to_leaves(child, takes_store)
