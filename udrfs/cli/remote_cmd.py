"""`udr remote`, `udr push`, `udr fetch`, `udr pull`, `udr clone` (library: catalog/remote.py)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from udrfs.cli.output import human_bytes, print_rows
from udrfs.cli.progress import TerminalProgress
from udrfs.errors import NotFoundError
from udrfs.repo import Repo

if TYPE_CHECKING:
    from udrfs.catalog.remote import SyncResult
    from udrfs.store.transfer import Progress, TransferStats


def add_parser(sub: Any) -> None:
    p = sub.add_parser("remote", help="add, list or remove the remotes a store pushes to")
    p.add_argument("store")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="record a remote (checked: reachable, conditional writes)")
    a.add_argument("name")
    a.add_argument("url", help="s3://BUCKET/PREFIX, or a directory")
    a.add_argument(
        "--endpoint", help="S3 endpoint URL (R2: https://ACCOUNT.r2.cloudflarestorage.com)"
    )
    a.add_argument(
        "--no-cas",
        action="store_true",
        help="the server ignores conditional writes and only this machine ever pushes",
    )
    a.add_argument(
        "--profile",
        help="AWS profile (in ~/.aws/credentials, ~/.aws/config) whose keys to use; "
        "the store records its name only",
    )
    a.set_defaults(run=run_remote_add)
    a = actions.add_parser("list", help="list remotes and their URLs")
    a.set_defaults(run=run_remote_list)
    a = actions.add_parser("remove", help="forget a remote (nothing is deleted on it)")
    a.add_argument("name")
    a.set_defaults(run=run_remote_remove)

    p = sub.add_parser("push", help="send branches to a remote: data first, refs last by CAS")
    p.add_argument("store")
    p.add_argument("remote", nargs="?", help="default: the store's only remote, or origin")
    p.add_argument("branches", nargs="*", metavar="BRANCH", help="default: the checked-out branch")
    p.add_argument("--tags", action="store_true", help="also push every tag (never moved)")
    p.add_argument("--all", action="store_true", help="push every branch and tag")
    p.add_argument("--delete", action="append", default=[], metavar="BRANCH")
    p.add_argument("--force", action="store_true", help="overwrite the remote branch (still CAS)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(run=run_push)

    p = sub.add_parser("fetch", help="update remote-tracking refs (r2/main) and their data")
    p.add_argument("store")
    p.add_argument("remote", nargs="?")
    p.add_argument("branches", nargs="*", metavar="BRANCH", help="default: every branch")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_fetch)

    p = sub.add_parser("pull", help="fetch a branch and fast-forward it here")
    p.add_argument("store")
    p.add_argument("remote", nargs="?")
    p.add_argument("branch", nargs="?", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_pull)

    p = sub.add_parser("clone", help="make a new store from a remote one")
    p.add_argument("url", help="s3://BUCKET/PREFIX, or a directory")
    p.add_argument("dir", help="new or empty directory")
    p.add_argument("--endpoint")
    p.add_argument("--branch", help="clone only this branch (default: every branch)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_clone)


def _progress(shown: TerminalProgress) -> Progress | None:
    """Bytes, files and rate on stderr, on a terminal only (cli/progress.py)."""
    if not shown.enabled:
        return None

    def show(stats: TransferStats) -> None:
        shown.update(stats.bytes, files=stats.files)

    return show


def _report(verb: str, result: SyncResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    for ref, (old, new) in result.updated.items():
        before = old[:12] if old else "(new)"
        print(f"{ref}: {before} -> {new[:12]}")
    for ref in result.deleted:
        print(f"{ref}: deleted")
    for ref in result.up_to_date:
        print(f"{ref}: up to date")
    if result.note:
        print(result.note)
    stats = result.stats
    print(f"{verb} {stats.files} files, {human_bytes(stats.bytes)} in {stats.seconds:.1f} s")


def _remote(repo: Repo, name: str | None) -> str:
    if name:
        return name
    names = [c.name for c in repo.remotes()]
    if len(names) == 1:
        return names[0]
    if "origin" in names:
        return "origin"
    raise NotFoundError(
        f"name the remote: this store has {len(names)} remotes ({', '.join(names) or 'none'})"
    )


def run_remote_add(args: argparse.Namespace) -> int:
    config = Repo(args.store).add_remote(
        args.name, args.url, args.endpoint, not args.no_cas, args.profile
    )
    cas = "compare-and-swap checked" if config.cas else "no compare-and-swap: single writer"
    print(f"remote {config.name} at {config.url} ({cas})")
    return 0


def run_remote_list(args: argparse.Namespace) -> int:
    rows = [
        (c.name, c.url, c.endpoint or "-", "yes" if c.cas else "no", c.profile or "-")
        for c in Repo(args.store).remotes()
    ]
    print_rows(("REMOTE", "URL", "ENDPOINT", "CAS", "PROFILE"), rows)
    return 0


def run_remote_remove(args: argparse.Namespace) -> int:
    Repo(args.store).remove_remote(args.name)
    print(f"removed remote {args.name}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    repo = Repo(args.store)
    with TerminalProgress("push") as shown:
        result = repo.push(
            _remote(repo, args.remote),
            args.branches
            or ([] if args.tags or args.all or args.delete else [repo.default_branch]),
            tags=args.tags,
            all=args.all,
            delete=args.delete,
            force=args.force,
            progress=_progress(shown),
        )
    _report("sent", result, args.json)
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    repo = Repo(args.store)
    with TerminalProgress("fetch") as shown:
        result = repo.fetch(_remote(repo, args.remote), args.branches, progress=_progress(shown))
    _report("received", result, args.json)
    return 0


def run_pull(args: argparse.Namespace) -> int:
    repo = Repo(args.store)
    with TerminalProgress("pull") as shown:
        result = repo.pull(_remote(repo, args.remote), args.branch, progress=_progress(shown))
    _report("received", result, args.json)
    return 0


def run_clone(args: argparse.Namespace) -> int:
    stats: list[TransferStats] = []

    with TerminalProgress("clone") as shown:
        progress = _progress(shown)

        def keep(s: TransferStats) -> None:
            stats[:] = [s]
            if progress:
                progress(s)

        repo = Repo.clone(args.url, args.dir, args.endpoint, args.branch, progress=keep)
    summary = {
        "store": str(repo.path),
        "branches": repo.branches(),
        "tags": repo.tags(),
        **(stats[0].to_dict() if stats else {"files": 0, "bytes": 0}),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"cloned {args.url} into {repo.path}: {', '.join(repo.branches()) or 'no branches'}")
    return 0
