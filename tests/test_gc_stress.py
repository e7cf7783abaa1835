"""`udr gc` and `udr repack` in a loop with a short grace period beside writers (API
processes committing, aborting, killed mid-import; commits through the mount's `.tx`), a
mount reading every version and an interrupted `.tx` copy; then every version any ref
reaches reads byte-exact and fsck is clean (docs/architecture.md, "Garbage collection",
"Repack")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mounting import mounted
from mounting import requires_fuse as needs_fuse

import udrfs
from udrfs import _native
from udrfs.catalog.crashpoints import ENV

pytestmark = [pytest.mark.mount, pytest.mark.timeout(240), needs_fuse]

GRACE = 1.0
DURATION = 25.0
TESTS = Path(__file__).parent

# Commits versions of table argv[2] until argv[3] seconds have passed; every third round
# stages a version and aborts it (its chunks become garbage).
WRITER = """
import sys, time
import pyarrow as pa
import udrfs
repo, name, until = udrfs.Repo(sys.argv[1]), sys.argv[2], time.time() + float(sys.argv[3])
n = 0
while time.time() < until:
    n += 1
    rows = 20_000 + (n * 7919) % 5000
    data = pa.table({"k": range(rows), "v": [n * 31 + i % 97 for i in range(rows)]})
    if n % 3 == 0:
        with repo.transaction() as tx:
            tx.write_table(name, data)
            tx.abort()
        repo.flush_chunks()
    else:
        repo.write_table(name, data, key="k")
"""

# Writes one large version and is killed (UDRFS_CRASHPOINT) before its commit.
KILLED = """
import os, sys
import pyarrow as pa
import udrfs
rows = 200_000
udrfs.Repo(sys.argv[1]).write_table("big", pa.table({"k": range(rows), "r": os.urandom(rows)}))
"""


def every_version(store: Path) -> dict[tuple[str, str, int], str]:
    """(ref, table, version) -> BLAKE3, for every version any branch or tag reaches."""
    repo = udrfs.Repo(store)
    out = {}
    refs = {**repo.branches(), **repo.tags()}
    for ref in refs:
        for t in repo.tables(ref):
            for v in repo.table_versions(t.name, ref):
                out[(ref, t.name, v.version)] = repo.version(t.name, v.version, branch=ref).blake3
    return out


def tx_file(path: Path, n: int) -> bytes:
    """Version n of the table committed through the mount: its first half the same in every
    version (shared chunks), its second half new."""
    rows = 4000
    data = pa.table(
        {
            "k": range(rows),
            "v": [i * 7 if i < rows // 2 else n * 1_000_003 + i for i in range(rows)],
        }
    )
    pq.write_table(data, path, compression="none", row_group_size=rows // 2)
    return path.read_bytes()


@pytest.mark.slow
def test_gc_and_repack_in_a_loop_beside_writers_a_mount_and_crashes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    repo = udrfs.Repo.init(store)
    assert (
        subprocess.run(
            [sys.executable, str(TESTS / "crashwriter.py"), str(store), "1"], capture_output=True
        ).returncode
        == 0
    )
    stop = threading.Event()
    errors: list[str] = []
    stats = {"reads": 0, "deleted": 0, "runs": 0, "kills": 0, "repacked": 0, "tx": 0}
    committed: list[bytes] = []  # the bytes of each version committed through `.tx`

    def collector() -> None:
        while not stop.is_set():
            try:
                result = udrfs.Repo(store).gc(grace=GRACE, force=True)
                stats["runs"] += 1
                stats["deleted"] += len(result.deleted)
            except Exception as exc:
                errors.append(f"gc: {exc!r}")
            time.sleep(0.2)

    def repacker() -> None:
        while not stop.is_set():
            try:
                result = udrfs.Repo(store).repack(max_unused=0.05)
                stats["repacked"] += len(result.rewritten)
            except Exception as exc:
                errors.append(f"repack: {exc!r}")
            time.sleep(0.3)

    def tx_writer(mountpoint: Path) -> None:
        """Commits versions of table `m` through `.tx`: copy a file in, `commit`, remove."""
        source = tmp_path / "m.parquet"
        n = 0
        while not stop.is_set():
            n += 1
            tx = mountpoint / "@main" / ".tx" / f"night{n}"
            try:
                tx.mkdir()
                data = tx_file(source, n)
                (tx / "m.parquet").write_bytes(data)
                (tx / ".control").write_text(f"commit night {n}\n")
                status = (tx / ".control").read_text().splitlines()[0]
                if not status.startswith("committed "):
                    errors.append(f".tx night{n}: {status}")
                    return
                committed.append(data)
                subprocess.run(["rm", "-r", str(tx)], check=True)
                stats["tx"] += 1
            except (OSError, subprocess.CalledProcessError) as exc:
                errors.append(f".tx night{n}: {exc!r}")
                return
            time.sleep(0.2)

    def reader(mountpoint: Path) -> None:
        catalog = udrfs.Repo(store)
        while not stop.is_set():
            for table in ("a", "t0", "t1", "m"):
                folder = mountpoint / "@main" / table
                try:
                    names = sorted(os.listdir(folder))
                except FileNotFoundError:
                    continue
                for name in names:
                    if not (name.startswith("v") and name.endswith(".parquet")):
                        continue
                    number = int(name[1:-8])
                    try:
                        data = (folder / name).read_bytes()
                        expected = catalog.version(table, number).blake3
                    except OSError as exc:
                        errors.append(f"read {table}/{name}: {exc!r}")
                        continue
                    if _native.blake3_hex(data) != expected:
                        errors.append(f"read {table}/{name}: wrong bytes")
                    stats["reads"] += 1
                    if stop.is_set():
                        return

    def killer() -> None:
        while not stop.wait(3.0):
            point = ("after-flush", "after-manifests", "after-commit-object")[stats["kills"] % 3]
            run = subprocess.run(
                [sys.executable, "-c", KILLED, str(store)],
                env={**os.environ, ENV: point},
                capture_output=True,
            )
            if run.returncode != -signal.SIGKILL:
                errors.append(f"killed writer: exit {run.returncode} {run.stderr[-300:]!r}")
            stats["kills"] += 1

    with mounted(store, tmp_path / "mnt") as mount:
        # An interrupted copy into a .tx directory, then the transaction removed.
        tx = mount.at("@main", ".tx", "broken")
        tx.mkdir()
        source = tmp_path / "source.bin"
        source.write_bytes(os.urandom(8 << 20))
        with open(source, "rb") as src, open(tx / "x.parquet", "wb") as dst:
            dst.write(src.read(5 << 20))  # cp cut off after 5 MiB: never a valid file
        subprocess.run(["rm", "-r", str(tx)], check=True)
        writers = [
            subprocess.Popen([sys.executable, "-c", WRITER, str(store), f"t{i}", str(DURATION)])
            for i in range(2)
        ]
        threads = [
            threading.Thread(target=collector),
            threading.Thread(target=repacker),
            threading.Thread(target=reader, args=(mount.path,)),
            threading.Thread(target=tx_writer, args=(mount.path,)),
            threading.Thread(target=killer),
        ]
        for t in threads:
            t.start()
        try:
            for w in writers:
                assert w.wait(DURATION + 60) == 0
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        # Everything the mount serves still reads byte-exact after the loop.
        for (ref, table, number), digest in every_version(store).items():
            if ref == "main":
                data = mount.at("@main", table, f"v{number}.parquet").read_bytes()
                assert _native.blake3_hex(data) == digest
        # What went in through `.tx` comes out byte for byte, every version of it.
        for number, data in enumerate(committed, start=1):
            assert mount.at("@main", "m", f"v{number}.parquet").read_bytes() == data
    assert errors == [], "\n".join(errors)
    assert stats["reads"] > 0 and stats["runs"] > 3 and stats["deleted"] > 0, stats
    assert stats["repacked"] > 0 and stats["tx"] > 3, stats
    fresh = udrfs.Repo(store)
    report = fresh.fsck()
    assert report.ok, report.problems
    for (ref, table, number), digest in every_version(store).items():
        m = fresh.version(table, number, branch=ref)
        assert _native.blake3_hex(fresh.read(m, 0, m.size)) == m.blake3 == digest
    assert repo.path == store


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def test_gc_returns_the_store_to_its_size_after_a_broken_tx_copy_and_a_killed_import(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    repo = udrfs.Repo.init(store)
    rows = 1_000_000  # ~8 MB, so that directories (4 KiB each in `du`) weigh little
    repo.write_table("base", pa.table({"k": range(rows), "r": os.urandom(rows * 8)[::8]}))
    before = du(store)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 << 20))
    with mounted(store, tmp_path / "mnt") as mount:
        tx = mount.at("@main", ".tx", "copy")
        tx.mkdir()
        cp = subprocess.Popen(["cp", str(source), str(tx / "big.parquet")])
        deadline = time.monotonic() + 30
        while not (tx / "big.parquet").exists() or (tx / "big.parquet").stat().st_size < 4 << 20:
            assert time.monotonic() < deadline and cp.poll() is None
            time.sleep(0.01)
        cp.send_signal(signal.SIGKILL)  # the copy is cut off
        cp.wait()
        subprocess.run(["rm", "-r", str(tx)], check=True)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(store)],
        env={**os.environ, ENV: "after-flush"},
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL
    grown = du(store)
    assert grown > before + (4 << 20)
    time.sleep(GRACE + 0.05)
    assert udrfs.Repo(store).gc(grace=GRACE, force=True).deleted == []
    time.sleep(GRACE + 0.05)
    result = udrfs.Repo(store).gc(grace=GRACE, force=True)
    assert result.deleted_bytes >= grown - before - (256 << 10)
    after = du(store)
    assert after <= before * 1.03, (before, grown, after)
    fresh = udrfs.Repo(store)
    assert fresh.fsck().ok
    assert fresh.read_table("base").num_rows == rows
