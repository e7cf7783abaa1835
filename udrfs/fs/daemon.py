"""The mount's lifecycle: mount, serve, follow the refs, unmount on a signal or on umount.

`serve` runs the daemon in the calling process until the filesystem is unmounted (by
`udr umount`, fusermount3 -u, SIGTERM or SIGINT). `start_background` starts the same daemon
in a new session and returns once the mount answers requests. `auto_unmount` makes
fusermount3 remove the mount if the daemon dies, so no dead mountpoint is left behind.

The daemon never touches its own mountpoint: a request from the thread that must answer it
deadlocks. Everything it needs about the mount (its device number) comes from
/proc/self/mountinfo.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio

from udrfs import sizes
from udrfs.catalog import Catalog, late_counts
from udrfs.catalog.catalog import is_store_url
from udrfs.catalog.store_options import add_store_options, store_options
from udrfs.catalog.tx_files import process_alive
from udrfs.errors import UdrError, UsageError
from udrfs.fs.assembly import start_operations
from udrfs.fs.catalog_view import CatalogView, RefSpec
from udrfs.fs.namespace import Namespace
from udrfs.fs.operations import UdrOperations
from udrfs.fs.reader import DEFAULT_READ_MODE, READ_MODES, ReadMode
from udrfs.fs.staged_writer import DEFAULT_MAX_FILE_SIZE

log = logging.getLogger(__name__)

# Commits must show within a second: poll the refs (one small file each) 4 times a second.
REF_POLL_INTERVAL = 0.25
# A store read from a remote: each poll is a listing and a conditional GET per ref.
REMOTE_REF_POLL_INTERVAL = 2.0
# 1 MiB readahead requests: the kernel's cap, and 8x fewer round trips than the default.
READ_AHEAD_KB = 1024
START_TIMEOUT = 60.0
_READY = b"ready\n"


class MountError(UdrError):
    """The filesystem could not be mounted or unmounted."""


@dataclass(frozen=True)
class MountOptions:
    store: Path | str  # a directory, or s3://BUCKET/PREFIX read from the remote
    mountpoint: Path
    allow_other: bool = False
    read_mode: ReadMode = DEFAULT_READ_MODE
    direct_io: bool = False
    debug: bool = False
    log_file: Path | None = None
    poll_interval: float = REF_POLL_INTERVAL
    nonempty: bool = False
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    # How a store read from a remote is reached and cached (catalog/store_options.py).
    remote: tuple[tuple[str, str], ...] = ()

    @property
    def is_remote(self) -> bool:
        return isinstance(self.store, str)

    def open_catalog(self) -> Catalog:
        return Catalog(self.store, **dict(self.remote))


def add_mount_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by `udr mount` and the background daemon's own command line."""
    parser.add_argument(
        "store", help="the store directory, or s3://BUCKET/PREFIX to read one from S3/R2"
    )
    parser.add_argument("mountpoint", type=Path, help="an existing empty directory")
    parser.add_argument(
        "--nonempty",
        action="store_true",
        help="mount even if MOUNTPOINT is not empty (its files are hidden while mounted)",
    )
    parser.add_argument(
        "--allow-other",
        action="store_true",
        help="let other users read the mount (needs user_allow_other in /etc/fuse.conf "
        "unless run as root)",
    )
    parser.add_argument(
        "--read-mode",
        choices=READ_MODES,
        default=DEFAULT_READ_MODE,
        help="where version reads run: auto (default: inline while the file's packs are "
        "cached, else a worker thread), thread or inline; see docs/mount.md",
    )
    parser.add_argument(
        "--direct-io",
        action="store_true",
        help="bypass the kernel page cache for versions (for measuring the daemon)",
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=None,
        help="log file (default: stderr "
        "in the foreground, a file under ~/.local/state/udrfs otherwise)",
    )
    parser.add_argument(
        "--max-file-size",
        type=parse_size,
        default=DEFAULT_MAX_FILE_SIZE,
        metavar="SIZE",
        help="the largest file a .tx transaction takes (bytes, or with K, M, G, T; default "
        "64G); a write or truncate past it fails with EFBIG",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"how often the refs are read (default {REF_POLL_INTERVAL:g} s for a directory, "
        f"{REMOTE_REF_POLL_INTERVAL:g} s for a store on S3/R2): new commits show within it",
    )
    parser.add_argument("--debug", action="store_true", help="log every request")
    add_store_options(parser)


def parse_size(text: str) -> int:
    """`4096`, `512M`, `64G`, `1T` (powers of 1024) -> bytes (udrfs/sizes.py)."""
    try:
        return sizes.parse_size(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def options_from_args(args: argparse.Namespace) -> MountOptions:
    remote = is_store_url(args.store)
    poll = args.poll_interval
    if poll is None:
        poll = REMOTE_REF_POLL_INTERVAL if remote else REF_POLL_INTERVAL
    if not poll > 0:
        raise UsageError(f"--poll-interval must be above 0 seconds, not {poll:g}")
    given = store_options(args)
    return MountOptions(
        store=args.store if remote else Path(args.store).absolute(),
        poll_interval=poll,
        remote=tuple((k, str(v)) for k, v in given.items() if v is not None),
        mountpoint=args.mountpoint.absolute(),
        allow_other=args.allow_other,
        read_mode=args.read_mode,
        direct_io=args.direct_io,
        debug=args.debug,
        log_file=args.log.absolute() if args.log else None,
        nonempty=args.nonempty,
        max_file_size=args.max_file_size,
    )


def default_log_file(mountpoint: Path) -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(mountpoint).strip("/")) or "root"
    return state / "udrfs" / f"mount-{slug}.log"


class LogLimit(logging.Filter):
    """Keeps a hostile client from flooding the log: a message is cut to `max_chars`, and a
    kind of message (its template and first argument: `refused write ...`) is logged at most
    `burst` times per `window` seconds; the next line logged after a pause says how many
    were left out."""

    def __init__(self, max_chars: int = 2000, burst: int = 20, window: float = 60.0) -> None:
        super().__init__()
        self.max_chars, self.burst, self.window = max_chars, burst, window
        # kind -> [start of its window, lines logged in it, lines left out]
        self._kinds: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        first = str(record.args[0])[:100] if isinstance(record.args, tuple) and record.args else ""
        kind = (str(record.msg)[:200], first)
        now = time.monotonic()
        seen = self._kinds.get(kind)
        if seen is None or now - seen[0] > self.window:
            left_out = int(seen[2]) if seen is not None else 0
            if len(self._kinds) > 10_000:
                self._kinds.clear()
            seen = self._kinds[kind] = [now, 0, 0]
        else:
            left_out = 0
        if seen[1] >= self.burst:
            seen[2] += 1
            return False
        seen[1] += 1
        message = record.getMessage()
        if len(message) > self.max_chars:
            message = f"{message[: self.max_chars]}... ({len(message)} characters)"
        if left_out:
            message = f"{message} ({left_out} more like it left out)"
        record.msg, record.args = message, None
        return True


def configure_logging(log_file: Path | None, debug: bool) -> None:
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not debug:
        handler.addFilter(LogLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # e.g. a ClockJumpWarning of a commit made through .control
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        # pyfuse3 logs each failed reply; our own handlers already log what matters.
        logging.getLogger("pyfuse3").setLevel(logging.WARNING)


def _check_mountpoint(options: MountOptions) -> None:
    mountpoint = options.mountpoint
    if not mountpoint.is_dir():
        raise MountError(f"mountpoint {mountpoint} is not a directory; create it first")
    if os.path.ismount(mountpoint):
        raise MountError(f"{mountpoint} is already a mountpoint; unmount it first")
    # Not mounted yet: resolving and listing it here are not requests to the daemon.
    where = mountpoint.resolve()
    if isinstance(options.store, Path):  # a store on a remote cannot be hidden by the mount
        store = options.store.resolve()
        if where == store or store in where.parents:
            # The daemon's own reads of the store would come back to it through the mount.
            raise MountError(
                f"cannot mount {store} inside itself ({mountpoint}); mount it elsewhere"
            )
        if where in store.parents:
            raise MountError(
                f"cannot mount {store} at {mountpoint}: the mount would hide the store; "
                "mount it elsewhere"
            )
    if not options.nonempty and any(os.scandir(mountpoint)):
        raise MountError(
            f"mountpoint {mountpoint} is not empty; use an empty directory, or --nonempty "
            "to hide its files while mounted"
        )


def _claim_store(catalog: Catalog, options: MountOptions, mountpoint: Path) -> int:
    """One daemon per store: two would each hold their own view of a `.tx` transaction. The
    claim lasts as long as this process (the kernel drops it even after `kill -9`)."""
    holder = {"pid": os.getpid(), "mountpoint": str(mountpoint)}
    fd = catalog.staging.claim(holder)
    if fd is None:
        other = catalog.staging.owner()
        at, pid = other.get("mountpoint", "another mountpoint"), other.get("pid", "unknown")
        raise MountError(
            f"{options.store} is already mounted at {at} by pid {pid}; one mount per store "
            f"(udr umount {at} first)"
        )
    return fd


def _fuse_options(options: MountOptions) -> set[str]:
    fuse = set(pyfuse3.default_options)  # default_permissions: the kernel checks modes
    fuse |= {"fsname=udrfs", "subtype=udr", "auto_unmount", "noatime"}
    if options.allow_other:
        fuse.add("allow_other")
    if options.debug:
        fuse.add("debug")
    return fuse


def mount_device(mountpoint: Path) -> str | None:
    """The mount's `major:minor`, from /proc/self/mountinfo (never by stat of the mount).

    `mountpoint` must already be resolved: resolving it now would stat the mount itself.
    """
    wanted = str(mountpoint)
    found = None
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            path = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
            if path == wanted:
                found = fields[2]  # the last one wins: mounts stack
    return found


def raise_read_ahead(mountpoint: Path, kb: int = READ_AHEAD_KB) -> bool:
    device = mount_device(mountpoint)
    if device is None:
        return False
    try:
        Path(f"/sys/class/bdi/{device}/read_ahead_kb").write_text(f"{kb}\n")
    except OSError as exc:
        # Only root may; without it reads come in the default 128 KiB requests.
        log.info("could not set read_ahead_kb of %s to %d: %s", mountpoint, kb, exc)
        return False
    return True


async def follow_refs(view: CatalogView, ns: Namespace, interval: float) -> None:
    """Poll the refs; when a ref is rewound, drop the version names the kernel cached.

    Compared with what this loop saw last, not with what one refresh changed: a commit through
    `.control` refreshes the view too, and its move must still be checked here.
    """
    seen_heads, seen_tags = dict(view.heads), dict(view.tags)
    while True:
        try:
            await view.refresh()
            heads, tags = dict(view.heads), dict(view.tags)
            for branch in seen_heads.keys() | heads.keys():
                old, new = seen_heads.get(branch), heads.get(branch)
                if old == new or (old and new and await _moved_forward(view, new, old)):
                    continue  # moved forward: existing versions stay what they were
                _invalidate_versions(ns, RefSpec("branch", branch))
            for tag in seen_tags.keys() & tags.keys():
                if seen_tags[tag] != tags[tag]:
                    _invalidate_versions(ns, RefSpec("tag", tag))
            for tag in seen_tags.keys() - tags.keys():
                _invalidate_versions(ns, RefSpec("tag", tag))
            seen_heads, seen_tags = heads, tags
        except Exception:
            log.exception("reading the refs failed; retrying")
        await trio.sleep(interval)


async def _load_index(catalog: Catalog) -> None:
    """A store on a remote: fetch its index fragments now, not on the first read."""
    try:
        await trio.to_thread.run_sync(catalog.load_index)
    except Exception as exc:  # the first read tries again and reports what fails
        log.warning("could not read the remote's index yet: %s", exc)


async def _moved_forward(view: CatalogView, new: str, old: str) -> bool:
    """Whether `new` descends from `old`; not if the history between cannot be read (the
    versions are then dropped from the kernel's cache, which is always safe)."""
    try:
        return await view.is_descendant(new, old)
    except UdrError:
        return False


def _invalidate_versions(ns: Namespace, ref: RefSpec) -> None:
    for table_dir in ns.table_dirs(ref):
        for name in table_dir.handed_out:
            # The async variant: the blocking one deadlocks if a request is in flight.
            pyfuse3.invalidate_entry_async(table_dir.inode, name, ignore_enoent=True)
        table_dir.handed_out.clear()


async def _watch_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("%s received: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


async def _when_initialized(
    operations: UdrOperations,
    mountpoint: Path,
    options: MountOptions,
    on_ready: Callable[[], None] | None,
) -> None:
    await operations.initialized.wait()
    # The kernel sets the readahead from the INIT reply, which is written by now: only a
    # value written after it sticks.
    raise_read_ahead(mountpoint)
    log.info(
        "mounted %s at %s (pid %d, read mode %s)",
        options.store,
        mountpoint,
        os.getpid(),
        options.read_mode,
    )
    if on_ready is not None:
        on_ready()


def serve(options: MountOptions, on_ready: Callable[[], None] | None = None) -> None:
    """Mount the store and answer requests until the filesystem is unmounted."""
    _check_mountpoint(options)
    # Resolved before mounting: afterwards any stat of the mountpoint is a request to us.
    mountpoint = options.mountpoint.resolve()
    catalog = options.open_catalog()
    # An unmount must not wait for row counts still being computed: the next reader of the
    # change log computes them (docs/architecture.md, "Row counts").
    late_counts.worker.finish_at_exit = False
    # The claim guards the store's `.tx` transactions (of a store on a remote: this cache
    # directory's, which stage on this machine).
    claim = _claim_store(catalog, options, mountpoint)
    try:
        _serve(options, catalog, mountpoint, on_ready)
    finally:
        os.close(claim)


def _serve(
    options: MountOptions,
    catalog: Catalog,
    mountpoint: Path,
    on_ready: Callable[[], None] | None,
) -> None:
    async def main() -> None:
        mounted = False
        try:
            async with trio.open_nursery() as nursery:
                operations = await start_operations(
                    catalog,
                    nursery,
                    mountpoint=str(mountpoint),
                    read_mode=options.read_mode,
                    max_file_size=options.max_file_size,
                    direct_io=options.direct_io,
                )
                pyfuse3.init(operations, str(mountpoint), _fuse_options(options))
                mounted = True
                ns = operations.ns
                nursery.start_soon(follow_refs, ns.view, ns, options.poll_interval)
                if catalog.is_remote:
                    nursery.start_soon(_load_index, catalog)
                nursery.start_soon(_watch_signals)
                nursery.start_soon(_when_initialized, operations, mountpoint, options, on_ready)
                await pyfuse3.main()
                nursery.cancel_scope.cancel()
        finally:
            if mounted:
                pyfuse3.close(unmount=True)
                log.info("unmounted %s", options.mountpoint)

    trio.run(main)


def start_background(options: MountOptions) -> int:
    """Start the daemon in its own session; return its pid once the mount is usable."""
    _check_mountpoint(options)
    log_file = options.log_file or default_log_file(options.mountpoint)
    read_end, write_end = os.pipe()
    argv = [
        sys.executable,
        "-m",
        "udrfs.fs.daemon",
        str(options.store),
        str(options.mountpoint),
        "--read-mode",
        options.read_mode,
        "--log",
        str(log_file),
        "--ready-fd",
        str(write_end),
    ]
    argv += ["--allow-other"] if options.allow_other else []
    argv += ["--nonempty"] if options.nonempty else []
    argv += ["--max-file-size", str(options.max_file_size)]
    argv += ["--poll-interval", repr(options.poll_interval)]
    for name, value in options.remote:
        argv += [f"--{name.replace('_', '-')}", value]
    argv += ["--direct-io"] if options.direct_io else []
    argv += ["--debug"] if options.debug else []
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # The daemon outlives this process: its stderr (crashes included) goes to the log too.
    with open(os.devnull, "rb") as stdin, open(log_file, "ab") as stderr:
        process = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=(write_end,),
            start_new_session=True,
        )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        message = ready.readline()  # one line once ready or failed; EOF if the daemon died
    if message == _READY:
        return process.pid
    try:
        code = process.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    reason = message.decode(errors="replace").strip() or f"the daemon exited with code {code}"
    raise MountError(
        f"mounting {options.store} at {options.mountpoint} failed: {reason} (log: {log_file})"
    )


def unmount(mountpoint: Path, lazy: bool = False, timeout: float = 10.0) -> None:
    """Unmount and wait for the daemon serving the mount to exit."""
    mountpoint = mountpoint.absolute()
    if not os.path.ismount(mountpoint):
        raise MountError(f"{mountpoint} is not mounted")
    pid = _daemon_pid(mountpoint)
    command = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [str(mountpoint)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise MountError(
            f"unmounting {mountpoint} failed: {done.stderr.strip()} "
            "(is a process still using it? `udr umount --lazy` detaches it)"
        )
    deadline = time.monotonic() + timeout
    while pid is not None and process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _daemon_pid(mountpoint: Path) -> int | None:
    import json

    try:
        return int(json.loads((mountpoint / ".stats").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """The daemon's own entry point (`python -m udrfs.fs.daemon`), in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m udrfs.fs.daemon")
    add_mount_arguments(parser)
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    options = options_from_args(args)
    configure_logging(options.log_file, options.debug)
    ready_fd: int | None = args.ready_fd
    if ready_fd is not None:
        # Not into fusermount3 (auto_unmount keeps it running): the starter reads to EOF.
        os.set_inheritable(ready_fd, False)

    def report_ready() -> None:
        nonlocal ready_fd
        if ready_fd is not None:
            os.write(ready_fd, _READY)
            os.close(ready_fd)
            ready_fd = None

    try:
        serve(options, report_ready)
    except (UdrError, OSError, RuntimeError) as exc:
        log.error("mount failed: %s", exc)
        if ready_fd is not None:
            os.write(ready_fd, f"{exc}\n".encode())
        else:
            print(f"udr mount: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
