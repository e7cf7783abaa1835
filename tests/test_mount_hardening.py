"""The daemon under hostile use: one daemon per store, bounded inputs, commit outcomes that
survive the daemon, and damage that stays local (docs/mount.md)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mounting import (
    REPO_ROOT,
    SampleStore,
    force_unmount,
    make_store,
    mounted,
    requires_fuse,
    wait_for,
)

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]


@pytest.fixture
def store(tmp_path: Path) -> SampleStore:
    return make_store(tmp_path, {"nyc_master": 2, "compound_1": 1}, rows=1000)


def udr(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=timeout,
    )


def refused_mount(
    store: Path, mountpoint: Path, log: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`udr mount` that is expected to fail; a mount it made anyway is taken down."""
    result = udr("mount", str(store), str(mountpoint), "--log", str(log), *args, timeout=30)
    if result.returncode == 0:
        force_unmount(mountpoint)
        pid = int(result.stdout.split("pid ")[1].split(",")[0])
        os.kill(pid, signal.SIGKILL)
    return result


def sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)


# -- one daemon per store ---------------------------------------------------------------------


def test_second_mount_of_a_store_fails_naming_the_first(store: SampleStore, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    with mounted(store.path, tmp_path / "first") as mount:
        result = refused_mount(store.path, second, tmp_path / "2.log")
        assert result.returncode != 0
        assert str(mount.path) in result.stderr
        assert f"pid {mount.process.pid}" in result.stderr
        assert not os.path.ismount(second)
        assert sorted(os.listdir(mount.at("@main"))) == [".changes", "compound_1", "nyc_master"]


def test_store_can_be_mounted_again_after_its_daemon_is_killed(
    store: SampleStore, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    with mounted(store.path, mountpoint) as mount:
        mount.process.send_signal(signal.SIGKILL)
        mount.process.wait()
        wait_for(lambda: os.listdir(mountpoint) == [], 10.0)  # ENOTCONN until removed
    with mounted(store.path, mountpoint) as mount:
        assert "nyc_master" in os.listdir(mount.at("@main"))


def test_mount_on_a_nonempty_directory_needs_nonempty(store: SampleStore, tmp_path: Path) -> None:
    mountpoint = tmp_path / "busy"
    mountpoint.mkdir()
    (mountpoint / "keep.txt").write_text("mine\n")
    result = refused_mount(store.path, mountpoint, tmp_path / "l")
    assert result.returncode != 0
    assert "not empty" in result.stderr and "--nonempty" in result.stderr
    assert not os.path.ismount(mountpoint)
    with mounted(store.path, mountpoint, "--nonempty") as mount:
        assert "@main" in os.listdir(mount.path)
    assert (mountpoint / "keep.txt").read_text() == "mine\n"


@pytest.mark.timeout(60)
def test_mount_inside_the_store_is_refused(store: SampleStore, tmp_path: Path) -> None:
    inside = store.path / "mnt"
    inside.mkdir()
    result = refused_mount(store.path, inside, tmp_path / "l")
    assert result.returncode != 0
    assert "inside itself" in result.stderr
    assert not os.path.ismount(inside)


# -- damage stays local ----------------------------------------------------------------------


def test_a_garbage_ref_is_left_out_and_the_others_still_list(
    store: SampleStore, tmp_path: Path
) -> None:
    store.catalog().create_branch("good", "main")
    (store.path / "refs" / "heads" / "bad").write_text("garbage\n")
    (store.path / "refs" / "heads" / "gone").write_text("0" * 64 + "\n")
    with mounted(store.path, tmp_path / "mnt") as mount:
        listing = sh(f"ls {mount.path}")
        assert listing.returncode == 0
        assert listing.stdout.split() == ["@good", "@main"]
        assert sorted(os.listdir(mount.at("@good"))) == [".changes", "compound_1", "nyc_master"]
        for name in ("@bad", "@gone"):
            with pytest.raises(OSError) as raised:
                os.listdir(mount.at(name))
            assert raised.value.errno == errno.EIO
        os.listdir(mount.path)  # asked again: logged once all the same
        log = mount.log_text()
    assert sum("branch bad" in line for line in log.splitlines()) == 1
    assert sum("branch gone" in line for line in log.splitlines()) == 1


def test_a_damaged_old_commit_leaves_later_versions_readable(
    store: SampleStore, tmp_path: Path
) -> None:
    catalog = store.catalog()
    history = list(catalog.history("main"))  # newest first: v2 of nyc_master, ..., the root
    damaged = history[-2]  # the first commit: version 1 of nyc_master
    path = catalog.store.objects.path(damaged.id)
    path.chmod(0o644)
    path.write_bytes(b"\x00" * 16 + path.read_bytes()[16:])
    with mounted(store.path, tmp_path / "mnt") as mount:
        for table, version in (("nyc_master", 2), ("compound_1", 1)):
            latest = mount.at("@main", table, "latest.parquet")
            source = store.sources[("main", table, version)]
            assert latest.read_bytes() == source.read_bytes()
            assert f"v{version}.parquet" in os.listdir(mount.at("@main", table))
        assert "v1.parquet" not in os.listdir(mount.at("@main", "nyc_master"))
        log = mount.log_text()
    assert sum(damaged.id in line for line in log.splitlines()) == 1
