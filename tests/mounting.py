"""Fixtures and helpers for tests that mount a store for real.

The daemon always runs in a subprocess (`udr mount --foreground`): touching a FUSE mount
from the process that serves it deadlocks. `mounted` waits until the mount answers
(`@main` can be stat'ed) and, whatever happens in the test, unmounts (`fusermount3 -u -z`)
and stops the daemon. Tests that use it carry `@pytest.mark.mount` and a timeout, so a hung
mount fails the test instead of the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from udrfs.catalog import Catalog

MOUNT_TIMEOUT = 60.0
REPO_ROOT = Path(__file__).resolve().parent.parent

requires_fuse = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
    reason="needs /dev/fuse and fusermount3 (apt-get install fuse3)",
)


def is_root() -> bool:
    return os.geteuid() == 0


def write_version(path: Path, table: str, version: int, rows: int) -> Path:
    """A deterministic Parquet file: the same arguments always give the same bytes."""
    ids = pa.array(range(version * 7, version * 7 + rows), pa.int64())
    data = pa.table(
        {
            "id": ids,
            "value": pa.array([(i * 2654435761) % 1000003 / 7.0 for i in range(rows)]),
            "name": pa.array([f"{table}-{version}-{i % 977}" for i in range(rows)]),
            "version": pa.array([version] * rows, pa.int32()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path, row_group_size=max(1, rows // 4), compression="zstd")
    return path


@dataclass
class SampleStore:
    """A store plus the source file of every version it holds, to compare bytes with."""

    path: Path
    # (branch, table, version) -> the Parquet file imported as that version
    sources: dict[tuple[str, str, int], Path] = field(default_factory=dict)
    work: Path = Path()

    def catalog(self) -> Catalog:
        return Catalog(self.path)

    def commit_version(self, table: str, rows: int = 2000, branch: str = "main") -> int:
        """Import the next version of `table` on `branch`; return its version number."""
        catalog = self.catalog()
        version = len(catalog.table_versions(table, branch)) + 1
        source = write_version(
            self.work / branch / f"{table}-v{version}.parquet", table, version, rows
        )
        commit = catalog.import_file(table, source, branch=branch, message=f"{table} v{version}")
        assert commit is not None
        self.sources[(branch, table, version)] = source
        return version


def make_store(root: Path, versions: dict[str, int], rows: int = 2000) -> SampleStore:
    """A store at root/store holding `versions[table]` versions of each table on main."""
    store = SampleStore(root / "store", work=root / "sources")
    Catalog.init(store.path)
    for table, count in versions.items():
        for _ in range(count):
            store.commit_version(table, rows)
    return store


@dataclass
class Mount:
    path: Path
    store: Path
    log: Path
    process: subprocess.Popen[bytes]

    def at(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def mount_command(store: Path, mountpoint: Path, *args: str, log: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "udrfs.cli.main", "mount", str(store), str(mountpoint)]
    return command + (["--log", str(log)] if log else []) + list(args)


def wait_until_mounted(
    mountpoint: Path,
    process: subprocess.Popen[bytes] | None,
    log: Path,
    timeout: float = MOUNT_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise AssertionError(f"the daemon exited with {process.returncode}:\n{text}")
        if os.path.ismount(mountpoint):
            with contextlib.suppress(OSError):
                os.stat(mountpoint / "@main")
                return
        time.sleep(0.02)
    raise AssertionError(f"{mountpoint} was not mounted within {timeout} s")


def force_unmount(mountpoint: Path) -> None:
    """Whatever state the mount is in, leave the directory unmounted."""
    subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True)
    if os.path.ismount(mountpoint) and is_root():
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def mounted(
    store: Path, mountpoint: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Mount]:
    """Serve `store` at `mountpoint` in a foreground daemon for the duration of the block.

    The daemon's stderr is appended to `<mountpoint>.stderr`, so a remount keeps the earlier
    daemon's output for a failing test to show.
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    log = mountpoint.parent / f"{mountpoint.name}.log"
    stderr = open(log.with_suffix(".stderr"), "ab")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(
        mount_command(store, mountpoint, "--foreground", *args, log=log),
        stdin=subprocess.DEVNULL,
        stdout=stderr,
        stderr=stderr,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        wait_until_mounted(mountpoint, process, log)
        yield Mount(mountpoint, store, log, process)
    finally:
        force_unmount(mountpoint)
        stop(process)
        stderr.close()


def wait_for(predicate: object, timeout: float, interval: float = 0.01) -> float:
    """Seconds until `predicate()` held; AssertionError after `timeout`."""
    start = time.monotonic()
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> SampleStore:
    """Tables `nyc_master` (5 versions) and `compound_1` (3) on main; a tag `v1` at the
    first commit; a branch `experiment/new-scoring` with one more version of nyc_master."""
    root = tmp_path_factory.mktemp("sample")
    # 20,000 rows: ~0.4 MB files of several chunks each, so reads cross chunk boundaries.
    store = make_store(root, {"nyc_master": 3, "compound_1": 3}, rows=20000)
    for _ in range(2):
        store.commit_version("nyc_master", rows=20000)
    catalog = store.catalog()
    first = list(catalog.first_parent_history("main"))[-2]  # the last one is the store's empty root
    catalog.create_tag("v1", first.id)
    catalog.create_branch("experiment/new-scoring", "main")
    for (_, table, version), source in list(store.sources.items()):
        store.sources[("experiment/new-scoring", table, version)] = source
    store.commit_version("nyc_master", rows=2500, branch="experiment/new-scoring")
    return store


@pytest.fixture(scope="module")
def sample_mount(
    sample_store: SampleStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mount]:
    with mounted(sample_store.path, tmp_path_factory.mktemp("mnt") / "mnt") as mount:
        yield mount
