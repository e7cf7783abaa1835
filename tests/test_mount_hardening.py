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
        assert sorted(os.listdir(mount.at("@main"))) == [
            ".changes",
            ".changes.txt",
            "compound_1",
            "nyc_master",
        ]


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
    (store.path / "refs" / "heads" / "binary").write_bytes(b"\xff\xfe\x00garbage\n")
    with mounted(store.path, tmp_path / "mnt") as mount:
        listing = sh(f"ls {mount.path}")
        assert listing.returncode == 0
        assert listing.stdout.split() == ["@good", "@main"]
        assert sorted(os.listdir(mount.at("@good"))) == [
            ".changes",
            ".changes.txt",
            "compound_1",
            "nyc_master",
        ]
        for name in ("@bad", "@gone", "@binary"):
            with pytest.raises(OSError) as raised:
                os.listdir(mount.at(name))
            assert raised.value.errno == errno.EIO
        os.listdir(mount.path)  # asked again: logged once all the same
        log = mount.log_text()
    assert sum("branch bad" in line for line in log.splitlines()) == 1
    assert sum("branch gone" in line for line in log.splitlines()) == 1
    assert sum("branch binary" in line for line in log.splitlines()) == 1


def test_a_damaged_old_commit_leaves_later_versions_readable(
    store: SampleStore, tmp_path: Path
) -> None:
    catalog = store.catalog()
    history = list(
        catalog.first_parent_history("main")
    )  # newest first: v2 of nyc_master, ..., the root
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


def test_a_damaged_latest_version_is_eio_not_an_older_one(
    store: SampleStore, tmp_path: Path
) -> None:
    catalog = store.catalog()
    manifest = catalog.commit(catalog.head("main")).tables["nyc_master"]
    path = catalog.store.objects.path(manifest)
    path.chmod(0o644)
    path.write_bytes(b"\x00" * 16 + path.read_bytes()[16:])
    with mounted(store.path, tmp_path / "mnt") as mount:
        table = mount.at("@main", "nyc_master")
        assert (table / "v1.parquet").read_bytes() == store.sources[
            ("main", "nyc_master", 1)
        ].read_bytes()
        with pytest.raises(OSError) as raised:
            (table / "latest.parquet").read_bytes()
        assert raised.value.errno == errno.EIO
        assert "v2.parquet" not in os.listdir(table)
        log = mount.log_text()
    assert sum(manifest in line for line in log.splitlines()) == 1


# -- bounded inputs ---------------------------------------------------------------------------

# The daemon's memory bound while hostile writes run (docs/mount.md, "Bounded inputs").
MEMORY_BOUND = 512 << 20


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak RSS) of process `pid`, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) << 10
    return fields


def test_writes_past_the_size_limit_fail_with_efbig_at_once(
    store: SampleStore, tmp_path: Path
) -> None:
    with mounted(store.path, tmp_path / "mnt") as mount:
        tx = mount.at("@main", ".tx", "huge")
        tx.mkdir()
        target = tx / "nyc_master.parquet"
        truncated = sh(f"truncate -s 1T {target}")
        assert truncated.returncode != 0 and "File too large" in truncated.stderr
        seeked = sh(f"printf x | dd of={target} bs=1 seek=1T conv=notrunc status=none")
        assert seeked.returncode != 0 and "File too large" in seeked.stderr
        with open(target, "r+b") as f, pytest.raises(OSError) as raised:
            f.truncate(65 << 30)
        assert raised.value.errno == errno.EFBIG
        # Nothing is left half-written: the transaction still commits.
        (target).unlink()
        assert sh(f"echo commit > {tx / '.control'}").returncode == 0
        assert "refused truncate" in mount.log_text()


def test_a_sparse_file_is_staged_without_materialising_its_holes(
    store: SampleStore, tmp_path: Path
) -> None:
    with mounted(store.path, tmp_path / "mnt", "--max-file-size", "2G") as mount:
        tx = mount.at("@main", ".tx", "sparse")
        tx.mkdir()
        target = tx / "nyc_master.parquet"
        assert sh(f"truncate -s 2G {target}").returncode == 0
        assert sh(f"truncate -s 2049M {target}").returncode != 0  # past the limit
        assert (
            sh(f"printf tail | dd of={target} bs=1 seek=1G conv=notrunc status=none").returncode
            == 0
        )
        text = (tx / ".control").read_text()
        assert "invalid nyc_master.parquet" in text  # read back, not Parquet
        assert os.stat(target).st_size == 2 << 30
        with open(target, "rb") as f:
            f.seek(1 << 30)
            assert f.read(4) == b"tail"
        with open(target, "r+b") as f:  # reopened and written: copied to a spill file
            f.write(b"head")
            f.flush()
            os.fsync(f.fileno())
            spills = list((store.path / "staging" / "spill").iterdir())
            assert len(spills) == 1
            assert spills[0].stat().st_size == 2 << 30
            assert spills[0].stat().st_blocks * 512 < 16 << 20  # its holes stayed holes
        assert memory_of(mount.process.pid)["VmHWM"] < MEMORY_BOUND


def test_an_overlong_control_line_fails_at_once_and_the_log_stays_small(
    store: SampleStore, tmp_path: Path
) -> None:
    with mounted(store.path, tmp_path / "mnt") as mount:
        tx = mount.at("@main", ".tx", "long")
        tx.mkdir()
        flood = sh(f"head -c 512M /dev/zero | tr '\\0' a > {tx / '.control'}")
        assert flood.returncode != 0 and "Invalid argument" in flood.stderr
        assert mount.log.stat().st_size < 64 << 10
        assert (tx / ".control").read_text().splitlines()[0] == "open"
        assert sh(f"echo 'commit fine' > {tx / '.control'}").returncode == 0


@pytest.mark.parametrize("ending", ["\\n", ""])
def test_a_multi_line_commit_message_commits_once_with_its_first_line(
    store: SampleStore, tmp_path: Path, ending: str
) -> None:
    """The shell writes each line separately: the commit runs at the first, and the other
    lines are taken as the rest of its message, never as an error after it landed."""
    before = store.catalog().head("main")
    with mounted(store.path, tmp_path / "mnt") as mount:
        tx = mount.at("@main", ".tx", "lines")
        tx.mkdir()
        source = store.sources[("main", "nyc_master", 1)]
        (tx / "compound_1.parquet").write_bytes(source.read_bytes())
        done = sh(f"printf 'commit first line\\nsecond line{ending}' > {tx / '.control'}")
        assert done.returncode == 0, done.stderr
        landed = store.catalog().head("main")
        assert (tx / ".control").read_text().splitlines()[0] == f"committed {landed}"
    commit = store.catalog().commit(landed)
    assert commit.message == "first line" and tuple(commit.parents) == (before,)


def test_a_write_with_a_line_that_is_no_command_runs_none_of_it(
    store: SampleStore, tmp_path: Path
) -> None:
    before = store.catalog().head("main")
    with mounted(store.path, tmp_path / "mnt") as mount:
        tx = mount.at("@main", ".tx", "mixed")
        tx.mkdir()
        source = store.sources[("main", "nyc_master", 1)]
        (tx / "compound_1.parquet").write_bytes(source.read_bytes())
        fd = os.open(tx / ".control", os.O_WRONLY)
        try:
            with pytest.raises(OSError) as raised:
                os.write(fd, b"drop nyc_master\nplease\ncommit now\n")
        finally:
            os.close(fd)
        assert raised.value.errno == errno.EINVAL
        assert store.catalog().head("main") == before
        text = (tx / ".control").read_text()
        assert "unknown command 'please'" in text and "drop nyc_master" not in text
        assert sh(f"echo 'commit now' > {tx / '.control'}").returncode == 0
    assert store.catalog().commit(store.catalog().head("main")).message == "now"


def test_repeated_refusals_are_logged_a_bounded_number_of_times(
    store: SampleStore, tmp_path: Path
) -> None:
    with mounted(store.path, tmp_path / "mnt") as mount:
        tx = mount.at("@main", ".tx", "noisy")
        tx.mkdir()
        for i in range(200):
            with pytest.raises(OSError):
                (tx / f"notes{i}.txt").write_bytes(b"x")
        lines = [line for line in mount.log_text().splitlines() if "refused create" in line]
        assert 1 <= len(lines) <= 25


def test_daemon_memory_stays_bounded_under_hostile_writes(
    store: SampleStore, tmp_path: Path
) -> None:
    """Every hostile write of the trial at once; prints the daemon's peak memory."""
    with mounted(store.path, tmp_path / "mnt", "--max-file-size", "4G") as mount:
        idle = memory_of(mount.process.pid)["VmRSS"]
        tx = mount.at("@main", ".tx", "hostile")
        tx.mkdir()
        hostile = [
            f"truncate -s 1T {tx / 'a.parquet'}",
            f"printf x | dd of={tx / 'b.parquet'} bs=1 seek=1T status=none",
            f"truncate -s 4G {tx / 'c.parquet'}",
            f"printf x | dd of={tx / 'd.parquet'} bs=1 seek=4095M status=none",
            f"head -c 512M /dev/zero | tr '\\0' a > {tx / '.control'}",
            f"printf x | dd of={tx / 'c.parquet'} bs=1 conv=notrunc status=none",  # reopened
            # A Parquet file whose footer claims 3 GiB.
            f"{sys.executable} -c \"f = open('{tx / 'e.parquet'}', 'wb'); f.write(b'PAR1'); "
            f"f.seek((4 << 30) - 8); f.write((3 << 30).to_bytes(4, 'little') + b'PAR1')\"",
        ]
        for command in hostile:
            sh(command)
        (tx / ".control").read_text()  # every file staged
        assert sorted(os.listdir(mount.at("@main"))) == [
            ".changes",
            ".changes.txt",
            "compound_1",
            "nyc_master",
        ]
        peak = memory_of(mount.process.pid)["VmHWM"]
    print(
        f"daemon memory: idle {idle / 2**20:.0f} MiB, peak under hostile writes "
        f"{peak / 2**20:.0f} MiB (bound {MEMORY_BOUND / 2**20:.0f} MiB)"
    )
    assert peak < MEMORY_BOUND


def test_a_ref_turned_to_garbage_while_mounted_does_not_stop_the_others(
    store: SampleStore, tmp_path: Path
) -> None:
    store.catalog().create_branch("good", "main")
    with mounted(store.path, tmp_path / "mnt") as mount:
        assert "@good" in os.listdir(mount.path)
        # Swapped in whole: written in place, the ref is empty for a moment, which reads as
        # a deleted branch (gone from the listing, nothing to log).
        garbage = store.path / "refs" / "heads" / ".garbage"
        garbage.write_text("garbage\n")
        garbage.replace(store.path / "refs" / "heads" / "good")
        wait_for(lambda: "@good" not in os.listdir(mount.path), 5.0)
        version = store.commit_version("nyc_master")
        wait_for(lambda: mount.at("@main", "nyc_master", f"v{version}.parquet").exists(), 5.0)
        log = mount.log_text()
    assert "reading the refs failed" not in log
    assert sum("branch good" in line for line in log.splitlines()) == 1
