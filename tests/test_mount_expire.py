"""The mount and retention: expired versions are not listed, reading one answers ENOENT and
logs why; a repack running under a mount leaves every read intact."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mounting import SampleStore, make_store, mounted, requires_fuse, wait_for

import udrfs
from udrfs import _native

pytestmark = [pytest.mark.mount, pytest.mark.timeout(180), requires_fuse]


@pytest.fixture
def store(tmp_path: Path) -> SampleStore:
    return make_store(tmp_path, {"t": 5, "u": 4}, rows=4000)


def test_expired_versions_are_not_listed_and_reading_one_says_why(
    store: SampleStore, tmp_path: Path
) -> None:
    with mounted(store.path, tmp_path / "mnt") as mount:
        table = mount.at("@main", "t")
        v1 = table / "v1.parquet"
        assert v1.stat().st_size > 0  # the kernel now caches its entry
        udrfs.Repo(store.path).expire(keep_last=2)
        # Looked up before the expire: the open is refused.
        with pytest.raises(OSError) as caught:
            v1.open("rb")
        assert caught.value.errno == errno.ENOENT
        assert sorted(os.listdir(table)) == [
            ".changes",
            ".changes.txt",
            "latest.parquet",
            "v4.parquet",
            "v5.parquet",
        ]
        with pytest.raises(FileNotFoundError):
            (table / "v2.parquet").stat()
        wait_for(lambda: "v2 of t was expired on " in mount.log_text(), timeout=10)
        assert "by `udr expire --keep-last 2`" in mount.log_text()
        assert "v1 of t was expired on " in mount.log_text()
        source = store.sources[("main", "t", 5)]
        data = (table / "v5.parquet").read_bytes()
        assert _native.blake3_hex(data) == _native.blake3_file(str(source))
    assert udrfs.Repo(store.path).fsck().ok


def test_a_mount_keeps_reading_while_repack_runs(store: SampleStore, tmp_path: Path) -> None:
    udrfs.Repo(store.path).expire(keep_last=2)
    last = {"t": 5, "u": 4}
    kept = [(t, v, p) for (_, t, v), p in store.sources.items() if v > last[t] - 2]
    errors: list[BaseException] = []
    rounds = [0]
    stop = threading.Event()
    # Every read reaches the daemon and its packs: no kernel page cache, no verified cache.
    env = {**os.environ, "UDR_READ_CACHE_MIB": "0"}
    with mounted(store.path, tmp_path / "mnt", "--direct-io", env=env) as mount:

        def read_forever() -> None:
            try:
                while not stop.is_set():
                    for table, version, source in kept:
                        data = mount.at("@main", table, f"v{version}.parquet").read_bytes()
                        assert _native.blake3_hex(data) == _native.blake3_file(str(source))
                    rounds[0] += 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        reader = threading.Thread(target=read_forever)
        reader.start()
        try:
            wait_for(lambda: errors or rounds[0] >= 1, timeout=30)
            done = subprocess.run(
                [sys.executable, "-m", "udrfs.cli.main", "repack", str(store.path), "--json"],
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
            after = rounds[0]
            wait_for(lambda: errors or rounds[0] >= after + 2, timeout=30)
            # Then what a collector does: the rewritten packs go while the mount reads on.
            for pack in json.loads(done.stdout)["rewritten"]:
                (store.path / "packs" / pack[:2] / f"{pack}.pack").unlink()
                (store.path / "index" / f"{pack}.idx").unlink()
            after = rounds[0]
            wait_for(lambda: errors or rounds[0] >= after + 2, timeout=30)
        finally:
            stop.set()
            reader.join()
        assert not errors, errors
        assert '"new_packs": []' not in done.stdout
    assert udrfs.Repo(store.path).fsck().ok
