"""Mounting, unmounting, signals, a dying daemon, and other users."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import (
    REPO_ROOT,
    SampleStore,
    force_unmount,
    is_root,
    make_store,
    mount_command,
    mounted,
    requires_fuse,
    stop,
    wait_for,
)

from udrfs import _native

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SampleStore:
    return make_store(tmp_path_factory.mktemp("life"), {"nyc_master": 2}, rows=1000)


@pytest.fixture
def mountpoint() -> Iterator[Path]:
    # Under /tmp with mode 755, so that another user can reach it (pytest's tmp is 700).
    parent = Path(tempfile.mkdtemp(prefix="udr-mnt-"))
    parent.chmod(0o755)
    path = parent / "mnt"
    path.mkdir()
    try:
        yield path
    finally:
        force_unmount(path)
        if not os.path.ismount(path):  # never descend into a live mount
            shutil.rmtree(parent)


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )


def test_udr_mount_returns_once_usable_and_udr_umount_unmounts(
    store: SampleStore, mountpoint: Path, tmp_path: Path
) -> None:
    log = tmp_path / "mount.log"
    mounted_ = udr("mount", str(store.path), str(mountpoint), "--log", str(log))
    assert mounted_.returncode == 0, mounted_.stderr
    try:
        # No waiting: the command returned, so the mount must answer now.
        assert sorted(os.listdir(mountpoint / "@main")) == [
            ".changes",
            ".changes.txt",
            "nyc_master",
        ]
        pid = int(mounted_.stdout.split("pid ")[1].split(",")[0])
        unmounted = udr("umount", str(mountpoint))
        assert unmounted.returncode == 0, unmounted.stderr
        assert not os.path.ismount(mountpoint)
        wait_for(lambda: not _alive(pid), 10.0)
    finally:
        force_unmount(mountpoint)


def test_mount_of_a_missing_store_fails_with_one_line(mountpoint: Path, tmp_path: Path) -> None:
    result = udr("mount", str(tmp_path / "nope"), str(mountpoint), "--log", str(tmp_path / "l"))
    assert result.returncode != 0
    assert "does not exist" in result.stderr
    assert not os.path.ismount(mountpoint)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(store: SampleStore, mountpoint: Path, signum: int) -> None:
    with mounted(store.path, mountpoint) as mount:
        mount.process.send_signal(signum)
        assert mount.process.wait(timeout=10) == 0
        assert not os.path.ismount(mountpoint)
        assert "unmounted" in mount.log_text()


def test_killed_daemon_leaves_no_dead_mountpoint(store: SampleStore, mountpoint: Path) -> None:
    with mounted(store.path, mountpoint) as mount:
        mount.process.kill()
        mount.process.wait()
        # A dead mount is no mountpoint for ismount (stat fails) until fusermount3 removes
        # it; listing it raises ENOTCONN until then.
        wait_for(lambda: os.listdir(mountpoint) == [], 10.0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _as_nobody(*command: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command],
        capture_output=True,
        timeout=60,
    )


@pytest.mark.skipif(not is_root(), reason="switching users needs root")
def test_allow_other_lets_another_user_read(store: SampleStore, mountpoint: Path) -> None:
    source = store.sources[("main", "nyc_master", 2)]
    with mounted(store.path, mountpoint, "--allow-other"):
        read = _as_nobody("cat", str(mountpoint / "@main" / "nyc_master" / "latest.parquet"))
        assert read.returncode == 0, read.stderr
        assert _native.blake3_hex(read.stdout) == _native.blake3_file(str(source))
        listing = _as_nobody("ls", str(mountpoint / "@main" / "nyc_master"))
        assert listing.stdout.split() == [b"latest.parquet", b"v1.parquet", b"v2.parquet"]


@pytest.mark.skipif(not is_root(), reason="switching users needs root")
def test_without_allow_other_another_user_is_kept_out(store: SampleStore, mountpoint: Path) -> None:
    with mounted(store.path, mountpoint):
        read = _as_nobody("ls", str(mountpoint / "@main"))
        assert read.returncode != 0


def test_stopping_a_foreground_mount_twice_is_harmless(
    store: SampleStore, mountpoint: Path, tmp_path: Path
) -> None:
    log = tmp_path / "fg.log"
    process = subprocess.Popen(
        mount_command(store.path, mountpoint, "--foreground", log=log), cwd=REPO_ROOT
    )
    try:
        wait_for(lambda: os.path.ismount(mountpoint) and (mountpoint / "@main").exists(), 30.0)
        stop(process)
        stop(process)
        assert not os.path.ismount(mountpoint)
    finally:
        force_unmount(mountpoint)
        stop(process)
