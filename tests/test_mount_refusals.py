"""The mount is read-only: every change is refused with EROFS and logged in one line."""

# Fixtures imported from mounting.py are redefined as test parameters, as pytest intends.
# ruff: noqa: F811

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from mounting import (
    Mount,
    is_root,
    requires_fuse,
    sample_mount,  # noqa: F401 - fixture
    sample_store,  # noqa: F401 - fixture
    wait_for,
)

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]

REFUSED = (errno.EROFS, errno.EPERM)


def _refusal(action: Callable[[], object]) -> int:
    with pytest.raises(OSError) as raised:
        action()
    return raised.value.errno or 0


def _open(path: Path, mode: str) -> None:
    with open(path, mode):
        pass


def _version(mount: Mount) -> Path:
    return mount.at("@main", "nyc_master", "v1.parquet")


@pytest.mark.skipif(not is_root(), reason="as another user the kernel refuses first (EACCES)")
def test_writing_to_a_version_is_refused(sample_mount: Mount) -> None:
    assert _refusal(lambda: _open(_version(sample_mount), "r+b")) in REFUSED
    assert _refusal(lambda: _open(_version(sample_mount), "ab")) in REFUSED
    assert _refusal(lambda: _open(_version(sample_mount), "wb")) in REFUSED


def test_rm_of_a_version_is_refused(sample_mount: Mount) -> None:
    assert _refusal(lambda: os.unlink(_version(sample_mount))) in REFUSED
    assert _version(sample_mount).exists()


def test_mv_of_a_version_is_refused(sample_mount: Mount) -> None:
    target = sample_mount.at("@main", "nyc_master", "renamed.parquet")
    assert _refusal(lambda: os.rename(_version(sample_mount), target)) in REFUSED


def test_mkdir_in_a_table_dir_is_refused(sample_mount: Mount) -> None:
    new_dir = sample_mount.at("@main", "nyc_master", "new")
    assert _refusal(lambda: os.mkdir(new_dir)) in REFUSED


def test_creating_a_file_is_refused(sample_mount: Mount) -> None:
    new_file = sample_mount.at("@main", "nyc_master", "v9.parquet")
    assert _refusal(lambda: _open(new_file, "wb")) in REFUSED
    assert _refusal(lambda: os.symlink("v1.parquet", new_file)) in REFUSED


def test_rmdir_of_a_table_is_refused(sample_mount: Mount) -> None:
    assert _refusal(lambda: os.rmdir(sample_mount.at("@main", "compound_1"))) in REFUSED


@pytest.mark.skipif(not is_root(), reason="as another user the kernel refuses first (EPERM)")
def test_touch_and_chmod_are_refused(sample_mount: Mount) -> None:
    assert _refusal(lambda: os.utime(_version(sample_mount))) in REFUSED
    assert _refusal(lambda: os.chmod(_version(sample_mount), 0o644)) in REFUSED


def test_each_refusal_is_logged_in_one_readable_line(sample_mount: Mount) -> None:
    target = sample_mount.at("@main", "compound_1", "v1.parquet")
    subprocess.run(["rm", "-f", str(target)], capture_output=True)
    wanted = "refused unlink /@main/compound_1/v1.parquet: the mount is read-only (EROFS)"
    wait_for(lambda: wanted in sample_mount.log_text(), 2.0)
    line = next(line for line in sample_mount.log_text().splitlines() if wanted in line)
    assert line.endswith(wanted)
