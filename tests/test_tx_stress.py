"""Writers racing through the mount and through the API lose no update: every race is lost
cleanly (a conflict) and retried."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from mounting import mounted, requires_fuse

import udrfs

pytestmark = [pytest.mark.mount, pytest.mark.timeout(300), requires_fuse]

WRITER = Path(__file__).with_name("tx_stress_writer.py")
ROUNDS = 6


def test_concurrent_writers_through_mount_and_api_lose_no_update(tmp_path: Path) -> None:
    repo = udrfs.Repo.init(tmp_path / "store")
    repo.write_table("shared", pa.table({"count": pa.array([0], pa.int64()), "writer": ["-"]}))
    with mounted(repo.path, tmp_path / "mnt") as mount:
        writers = {
            "m1": ["mount", str(mount.path)],
            "m2": ["mount", str(mount.path)],
            "a1": ["api", str(repo.path)],
            "a2": ["api", str(repo.path)],
        }
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        procs = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    str(WRITER),
                    mode,
                    where,
                    name,
                    str(ROUNDS),
                    str(barrier),
                    str(len(writers)),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, (mode, where) in writers.items()
        }
        results = {name: proc.communicate(timeout=240) for name, proc in procs.items()}
    conflicts = 0
    for name, proc in procs.items():
        out, err = results[name]
        assert proc.returncode == 0, f"{name}: {err}"
        assert out.startswith(f"done {ROUNDS} ")
        conflicts += int(out.split()[2])
    # The first commits all raced on one base (the barrier): all but one lost, cleanly.
    assert conflicts >= len(writers) - 1

    fresh = udrfs.Repo(repo.path)
    assert fresh.fsck().ok
    # Every commit added one to `shared`: none was lost to a race.
    assert fresh.read_table("shared").column("count")[0].as_py() == ROUNDS * len(writers)
    for name in writers:
        assert fresh.read_table(f"own_{name}").column("count")[0].as_py() == ROUNDS
    commits = fresh.log("main")
    assert len(commits) == ROUNDS * len(writers) + 2  # + the root and the first `shared`
    conflicts = sum(int(results[n][0].split()[2]) for n in writers)
    print(f"{len(commits) - 2} commits, {conflicts} conflicts lost and retried")
