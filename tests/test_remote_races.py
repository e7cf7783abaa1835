"""Remotes under concurrent pushers and killed pushes, against a real S3 server."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from s3server import S3Server, running_seaweedfs
from tcpproxy import CuttingProxy, StallingProxy

import udrfs
from udrfs.errors import RemoteError
from udrfs.store.backends import open_backend
from udrfs.store.keys import fragment_key, object_key, pack_key

PUSHER = Path(__file__).with_name("remotepusher.py")


def _pusher(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PUSHER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_stores_pushing_one_branch_exactly_one_wins_each_round(
    repo: udrfs.Repo, s3_url: str, tmp_path: Path
) -> None:
    rounds = 8
    repo.add_remote("r2", s3_url)
    repo.push("r2")
    clones = [udrfs.Repo.clone(s3_url, tmp_path / label) for label in ("a", "b")]
    barriers = tmp_path / "barriers"
    barriers.mkdir()
    procs = [
        _pusher("race", str(c.path), "origin", label, str(rounds), str(barriers))
        for c, label in zip(clones, ("a", "b"), strict=True)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=500)
        assert proc.returncode == 0, err
        outs.append(out.split())
    assert len(outs[0]) == len(outs[1]) == rounds
    for r in range(rounds):
        assert sorted([outs[0][r], outs[1][r]]) == ["lost", "won"], f"round {r}: {outs}"
    # Nothing lost: the remote's history holds every round's commit of both racers.
    repo.pull("r2", "main")
    for label in ("a", "b"):
        versions = repo.versions(label)
        assert [v.version for v in versions] == list(range(1, rounds + 1))
        assert repo.read_table(label).to_pylist() == [{"round": rounds - 1}]
    assert repo.fsck().ok


def _many_packs(repo: udrfs.Repo, tpch_parquet_dir: Path, nyc_parquet_dir: Path, tmp: Path) -> None:
    for path in [
        *sorted(tpch_parquet_dir.glob("*.parquet")),
        *sorted(nyc_parquet_dir.glob("*.parquet")),
    ]:
        repo.import_file(path.stem, path)
    weather = pq.read_table(nyc_parquet_dir / "weather.parquet")
    for n in range(1, 8):
        changed = tmp / f"weather{n}.parquet"
        pq.write_table(weather.slice(n * 500), changed)
        repo.import_file("weather", changed)
    repo.create_branch("side", "main")
    repo.create_tag("v1", "main")


def _remote_keys(url: str) -> set[str]:
    return {b.key for b in open_backend(url).blobs.list("")}


def _needed_keys(repo: udrfs.Repo) -> set[str]:
    root = repo.path
    packs = {p.stem for p in (root / "index").glob("*.idx")}
    objects = {p.name for p in (root / "objects").glob("??/*")}
    return {
        *(pack_key(p) for p in packs),
        *(fragment_key(p) for p in packs),
        *(object_key(o) for o in objects),
    }


def _assert_remote_refs_name_complete_data(url: str, tmp: Path) -> None:
    target = tmp / f"check-{random.getrandbits(32):08x}"
    if not open_backend(url).refs.list("heads"):  # killed before the first ref: names nothing
        with pytest.raises(RemoteError, match="holds no branch yet"):
            udrfs.Repo.clone(url, target)
        assert not target.exists()
        return
    clone = udrfs.Repo.clone(url, target)
    report = clone.fsck()
    assert report.ok, report.problems
    shutil.rmtree(target)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_push_leaves_only_complete_refs_and_a_rerun_sends_only_what_is_missing(
    repo: udrfs.Repo,
    s3_url: str,
    tmp_path: Path,
    tpch_parquet_dir: Path,
    nyc_parquet_dir: Path,
) -> None:
    _many_packs(repo, tpch_parquet_dir, nyc_parquet_dir, tmp_path)
    repo.add_remote("r2", s3_url)
    killed_mid_push = 0
    for _ in range(4):
        # Kill after a random number of files has moved: somewhere inside the push.
        kill_after = random.randrange(1, len(_needed_keys(repo)))
        proc = _pusher("push", str(repo.path), "r2")
        assert proc.stdout is not None
        for n, _line in enumerate(proc.stdout, 1):
            if n >= kill_after:
                proc.send_signal(signal.SIGKILL)
                killed_mid_push += 1
                break
        proc.communicate(timeout=60)
        if open_backend(s3_url).blobs.exists("udr.toml"):
            _assert_remote_refs_name_complete_data(s3_url, tmp_path)
    missing = _needed_keys(repo) - _remote_keys(s3_url)
    result = udrfs.Repo(repo.path).push("r2", all=True)
    assert result.stats.files <= len(missing)
    assert _needed_keys(repo) <= _remote_keys(s3_url)
    clone = udrfs.Repo.clone(s3_url, tmp_path / "final")
    assert clone.branches() == repo.branches() and clone.tags() == repo.tags()
    assert clone.fsck().ok


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_server_stopped_mid_push_gives_a_typed_error_and_a_rerun_completes(
    repo: udrfs.Repo, tmp_path: Path, tpch_parquet_dir: Path, nyc_parquet_dir: Path
) -> None:
    _many_packs(repo, tpch_parquet_dir, nyc_parquet_dir, tmp_path)
    data = tmp_path / "s3"
    data.mkdir()
    with running_seaweedfs(data) as server:
        url = server.url("store")
        repo.add_remote("r2", url)  # the endpoint comes from AWS_ENDPOINT_URL
        proc = _pusher("push", str(repo.path), "r2")
        assert proc.stdout is not None
        stop_after = random.randrange(1, len(_needed_keys(repo)) // 2)
        for n, _line in enumerate(proc.stdout, 1):
            if n >= stop_after:
                server.stop()
                break
        _out, err = proc.communicate(timeout=180)  # bounded retries, never a hang
        assert proc.returncode == 1
        assert "udrfs.errors.RemoteError: cannot" in err, err
    with running_seaweedfs(data) as server:  # the same data, on new ports
        if open_backend(url).refs.list("heads"):
            _assert_remote_refs_name_complete_data(url, tmp_path)
        missing = _needed_keys(repo) - _remote_keys(url)
        result = udrfs.Repo(repo.path).push("r2", all=True)
        assert result.stats.files <= len(missing)
        clone = udrfs.Repo.clone(url, tmp_path / "final")
        assert clone.branches() == repo.branches()
        assert clone.fsck().ok


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_connections_cut_mid_upload_leave_complete_refs_and_a_rerun_completes(
    repo: udrfs.Repo,
    s3_server: S3Server,
    s3_url: str,
    tmp_path: Path,
    tpch_parquet_dir: Path,
    nyc_parquet_dir: Path,
) -> None:
    _many_packs(repo, tpch_parquet_dir, nyc_parquet_dir, tmp_path)
    repo.add_remote("r2", s3_url)
    proxy = CuttingProxy(int(s3_server.endpoint.rsplit(":", 1)[1]), limit=1 << 20)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(PUSHER), "push", str(repo.path), "r2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"},
        )
        _out, err = proc.communicate(timeout=300)
    finally:
        proxy.close()
    assert proxy.cuts > 0
    assert proc.returncode == 1 and "udrfs.errors.RemoteError: cannot write" in err, err
    if open_backend(s3_url).refs.list("heads"):
        _assert_remote_refs_name_complete_data(s3_url, tmp_path)
    missing = _needed_keys(repo) - _remote_keys(s3_url)
    result = udrfs.Repo(repo.path).push("r2", all=True)
    assert result.stats.files <= len(missing)
    clone = udrfs.Repo.clone(s3_url, tmp_path / "final")
    assert clone.branches() == repo.branches() and clone.fsck().ok


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_connections_stalled_mid_upload_time_out_leave_complete_refs_and_a_rerun_completes(
    repo: udrfs.Repo,
    s3_server: S3Server,
    s3_url: str,
    tmp_path: Path,
    tpch_parquet_dir: Path,
    nyc_parquet_dir: Path,
) -> None:
    _many_packs(repo, tpch_parquet_dir, nyc_parquet_dir, tmp_path)
    repo.add_remote("r2", s3_url)
    proxy = StallingProxy(int(s3_server.endpoint.rsplit(":", 1)[1]), limit=1 << 20)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(PUSHER), "push", str(repo.path), "r2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
                "UDR_REMOTE_TIMEOUT": "3",
            },
        )
        # A stalled upload is abandoned after the timeout and bounded retries, never a hang.
        _out, err = proc.communicate(timeout=240)
    finally:
        proxy.close()
    assert proxy.cuts > 0
    assert proc.returncode == 1, err
    assert "udrfs.errors.RemoteError: cannot write" in err and "UDR_REMOTE_TIMEOUT" in err, err
    if open_backend(s3_url).refs.list("heads"):
        _assert_remote_refs_name_complete_data(s3_url, tmp_path)
    missing = _needed_keys(repo) - _remote_keys(s3_url)
    result = udrfs.Repo(repo.path).push("r2", all=True)
    assert result.stats.files <= len(missing)
    clone = udrfs.Repo.clone(s3_url, tmp_path / "final")
    assert clone.branches() == repo.branches() and clone.fsck().ok
