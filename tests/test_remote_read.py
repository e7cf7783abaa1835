"""Reading a store straight from S3 (`udrfs.Repo("s3://...")`, `udr COMMAND s3://...`)
against a real S3 server (SeaweedFS on loopback): every read API, byte-exact; the local cache
(bounded, shared by processes, checked on every read); a server that goes away."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3server import S3Server
from stores import every_version_digest, tmpfs
from tcpproxy import SwitchableProxy

import udrfs
from udrfs import _native
from udrfs.errors import NotLocalError, RemoteError
from udrfs.store.chunk_cache import SEGMENT_MAGIC
from udrfs.store.remote_chunks import MAX_RANGE, RemoteChunkStore

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Pushed:
    repo: udrfs.Repo  # the store that pushed (a local directory)
    url: str


def write_history(repo: udrfs.Repo, nyc_parquet_dir: Path, work: Path) -> None:
    """Four tables on main (flights: 5 MB, many chunks), a second version of weather, and a
    branch with a table of its own."""
    for name in ("airlines", "planes", "weather", "flights"):
        repo.import_file(name, nyc_parquet_dir / f"{name}.parquet")
    weather = pq.read_table(nyc_parquet_dir / "weather.parquet")
    changed = work / "weather2.parquet"
    pq.write_table(weather.slice(0, weather.num_rows - 100), changed)
    repo.import_file("weather", changed, message="drop the last 100 hours")
    repo.create_branch("experiment")
    repo.write_table("scores", pa.table({"k": [1, 2, 3], "v": [0.1, 0.2, 0.3]}), key="k",
                     branch="experiment")  # fmt: skip


def push_history(s3_server: S3Server, nyc_parquet_dir: Path, root: Path) -> Pushed:
    """`write_history` in a new store under `root`, every branch pushed to a new prefix."""
    repo = udrfs.Repo.init(root / "store")
    write_history(repo, nyc_parquet_dir, root)
    url = s3_server.url(f"{root.name}-{random.getrandbits(32):08x}")
    repo.add_remote("origin", url)
    repo.push("origin", all=True)
    return Pushed(repo, url)


@pytest.fixture(scope="module")
def pushed(
    s3_server: S3Server, nyc_parquet_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Pushed:
    """A store pushed once for the module's readers (which never write to it)."""
    return push_history(s3_server, nyc_parquet_dir, tmp_path_factory.mktemp("remote-read"))


@pytest.fixture
def small(repo: udrfs.Repo, s3_url: str, nyc_parquet_dir: Path) -> Pushed:
    """A store of one table pushed for one test, which may push more to it."""
    repo.import_file("planes", nyc_parquet_dir / "planes.parquet")
    repo.add_remote("origin", s3_url)
    repo.push("origin")
    return Pushed(repo, s3_url)


def test_every_version_reads_byte_exact_from_the_remote(pushed: Pushed, tmp_path: Path) -> None:
    remote = udrfs.Repo(pushed.url, cache_dir=tmp_path / "cache")
    found = every_version_digest(remote)
    assert found == every_version_digest(pushed.repo)
    assert len(found) == 11  # 5 versions on main; the same and scores on experiment
    assert remote.read_table("flights").equals(pushed.repo.read_table("flights"))
    assert not list((tmp_path / "cache").rglob("*.pack"))  # chunks, never whole packs


def test_every_read_api_answers_as_on_the_local_store(pushed: Pushed, tmp_path: Path) -> None:
    local, remote = pushed.repo, udrfs.Repo(pushed.url, cache_dir=tmp_path / "cache")
    assert remote.branches() == local.branches()
    assert remote.tables() == local.tables()
    assert remote.versions("weather") == local.versions("weather")
    assert [c.id for c in remote.log()] == [c.id for c in local.log()]
    assert remote.changes(since=2) == local.changes(since=2)
    assert remote.commit(local.head()[:12]).id == local.head()  # a short id: one listing
    sql = "select origin, count(*) n from flights group by origin order by origin"
    assert remote.query(sql).equals(local.query(sql))
    diff = remote.diff("weather", 1, 2)
    assert diff.counts == local.diff("weather", 1, 2).counts
    assert (diff.added.num_rows, diff.removed.num_rows) == (0, 100)
    assert remote.diff_refs("main", "experiment") == local.diff_refs("main", "experiment")
    via_udr = pd.read_parquet(
        "udr://@experiment/scores/v1.parquet",
        storage_options={"store": pushed.url, "cache_dir": str(tmp_path / "cache")},
    )
    assert via_udr.equals(local.read_table("scores", branch="experiment").to_pandas())


def test_a_commit_pushed_by_another_store_is_seen_without_reopening(
    small: Pushed, tmp_path: Path, nyc_parquet_dir: Path
) -> None:
    remote = udrfs.Repo(small.url, cache_dir=tmp_path / "cache")
    assert [t.name for t in remote.tables()] == ["planes"]
    small.repo.import_file("airlines", nyc_parquet_dir / "airlines.parquet")
    small.repo.push("origin")
    assert remote.head() == small.repo.head()
    assert remote.read_table("airlines").equals(small.repo.read_table("airlines"))


def test_immutable_metadata_is_fetched_once_and_a_ref_read_again(
    pushed: Pushed, tmp_path: Path
) -> None:
    udrfs.Repo(pushed.url, cache_dir=tmp_path / "cache").tables()
    again = udrfs.Repo(pushed.url, cache_dir=tmp_path / "cache")
    assert again.tables() == pushed.repo.tables()
    # udr.toml, the commit and the manifests come from the cache: one GET, of refs/heads/main.
    assert again.store.blobs.requests == 1


def test_a_cold_read_fetches_neighbouring_chunks_in_few_ranged_gets(
    pushed: Pushed, tmp_path: Path
) -> None:
    remote = udrfs.Repo(pushed.url, cache_dir=tmp_path / "cache")
    manifest = remote.version("flights")
    with remote.open("flights") as f:
        assert _native.blake3_hex(f.read()) == manifest.blake3
    fetches = remote.store.chunks.stats()["remote_fetches"]
    assert manifest.chunks.count > 40
    assert fetches <= manifest.size // MAX_RANGE + 2
    assert remote.store.cache.drain(timeout=30)
    warm = udrfs.Repo(pushed.url, cache_dir=tmp_path / "cache")
    assert warm.read_table("flights").equals(remote.read_table("flights"))
    assert warm.store.chunks.stats()["remote_fetches"] == 0


def test_a_random_read_fetches_only_the_chunks_it_needs(pushed: Pushed, tmp_path: Path) -> None:
    remote = udrfs.Repo(pushed.url, cache_dir=tmp_path / "cache")
    manifest = remote.version("flights")
    with remote.open("flights") as f, pushed.repo.open("flights") as g:
        f.seek(manifest.size // 2)
        g.seek(manifest.size // 2)
        assert f.read(4096) == g.read(4096)
    assert remote.store.chunks.stats()["remote_bytes"] <= 2 * 256 * 1024 + 4096


def test_the_cache_stays_within_its_bound_after_reading_three_times_its_size(
    pushed: Pushed, tmp_path: Path
) -> None:
    remote = udrfs.Repo(pushed.url, cache_dir=tmp_path / "cache", cache_size="1M")
    assert remote.version("flights").size > 3 * (1 << 20)
    assert every_version_digest(remote) == every_version_digest(pushed.repo)
    cache = remote.store.cache
    assert cache.drain(timeout=30)  # chunks are written behind the reads
    assert 0 < cache.size() <= 1 << 20
    assert cache.evicted > 0


def test_a_warm_read_is_served_natively_from_the_disk_cache(pushed: Pushed, tmp_path: Path) -> None:
    """A handle opened on a filled cache reads every chunk through the native reader of the
    cache's segments: no GET, and no chunk read from disk in Python."""
    cache_dir = tmp_path / "cache"
    first = udrfs.Repo(pushed.url, cache_dir=cache_dir)
    want = first.open("flights").read()
    assert first.store.cache.drain(timeout=30)
    repo = udrfs.Repo(pushed.url, cache_dir=cache_dir)  # nothing in memory yet
    chunks = repo.store.chunks
    assert isinstance(chunks, RemoteChunkStore)
    manifest = repo.catalog.version("flights")
    assert chunks.read(manifest.chunks, 0, 1 << 20) == want[: 1 << 20]
    # Read ahead into the native reader's memory, then read from there.
    assert chunks.prefetch(manifest.chunks, 1 << 20, 4 << 20) == 0  # nothing to fetch
    assert chunks.read(manifest.chunks, 1 << 20, len(want)) == want[1 << 20 :]
    stats = chunks.stats()
    assert (stats["remote_fetches"], stats["disk_cache_hits"]) == (0, 0)
    assert repo.store.cache.files.stats()["chunks"] >= len(set(manifest.chunks.ids()))
    assert repo.store.cache.prefetch(manifest.chunks, 0, 4 << 20) > 0  # read from segments


def test_a_reader_that_starts_in_chunks_held_in_memory_reads_the_rest_natively(
    pushed: Pushed, tmp_path: Path
) -> None:
    """A read that starts in chunks just fetched (held in memory, verified) copies those and
    reads what follows from the disk cache natively: a sequential reader that once took the
    Python path (which keeps the chunk it shares with the next read in memory) does not stay
    on it."""
    cache_dir = tmp_path / "cache"
    first = udrfs.Repo(pushed.url, cache_dir=cache_dir)
    want = first.open("flights").read()
    assert first.store.cache.drain(timeout=30)
    repo = udrfs.Repo(pushed.url, cache_dir=cache_dir)
    chunks = repo.store.chunks
    assert isinstance(chunks, RemoteChunkStore)
    manifest = repo.catalog.version("flights")
    head = manifest.chunks.ids()[0]
    size = manifest.chunks.to_bytes()[32:36]  # the first chunk's length (u32 LE)
    length = int.from_bytes(size, "little")
    chunks.memory.put(bytes.fromhex(head), want[:length])
    piece = 1 << 20
    got = b"".join(chunks.read(manifest.chunks, at, piece) for at in range(0, len(want), piece))
    assert got == want
    stats = chunks.stats()
    assert (stats["remote_fetches"], stats["disk_cache_hits"]) == (0, 0)


@pytest.mark.parametrize("damage", ["chunk bytes", "header"])
def test_a_damaged_cached_segment_is_detected_and_fetched_again(
    pushed: Pushed, tmp_path: Path, damage: str
) -> None:
    cache_dir = tmp_path / "cache"
    want = pushed.repo.open("planes").read()
    first = udrfs.Repo(pushed.url, cache_dir=cache_dir)
    assert first.open("planes").read() == want
    assert first.store.cache.drain(timeout=30)
    segments = sorted((cache_dir / "segments").iterdir())
    assert segments
    damaged = segments[0]
    data = bytearray(damaged.read_bytes())
    # The last byte of the last chunk, or a byte of the first chunk id in the header.
    data[-1 if damage == "chunk bytes" else len(SEGMENT_MAGIC) + 4] ^= 0xFF
    damaged.write_bytes(data)
    fresh = udrfs.Repo(pushed.url, cache_dir=cache_dir)  # nothing in memory yet
    assert fresh.open("planes").read() == want
    assert fresh.store.cache.damaged == 1
    assert fresh.store.cache.drain(timeout=30)
    assert not damaged.exists() or damaged.read_bytes() != data  # removed, maybe kept anew
    again = udrfs.Repo(pushed.url, cache_dir=cache_dir)  # reads what was kept again
    assert again.open("planes").read() == want
    assert again.store.chunks.stats()["remote_fetches"] == 0
    assert again.store.cache.damaged == 0


def test_a_cache_directory_deleted_while_in_use_is_made_again(
    pushed: Pushed, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    remote = udrfs.Repo(pushed.url, cache_dir=cache_dir)
    assert remote.open("planes").read() == pushed.repo.open("planes").read()
    assert remote.store.cache.drain(timeout=30)
    shutil.rmtree(cache_dir)
    remote.store.chunks.memory.clear()
    remote.store.objects.cache.clear()
    remote.catalog.history.manifest_cache.clear()
    assert every_version_digest(remote) == every_version_digest(pushed.repo)
    assert remote.store.cache.drain(timeout=30)
    assert list((cache_dir / "segments").iterdir())


def test_a_cache_on_a_full_disk_still_reads_every_version_byte_exact(
    pushed: Pushed, tmp_path: Path
) -> None:
    """The cache's disk (a 3 MiB tmpfs) holds less than one version: chunks that do not fit
    are not kept, and every version still reads byte-exact."""
    with tmpfs(tmp_path / "small", "3m") as small:
        remote = udrfs.Repo(pushed.url, cache_dir=small)
        assert remote.version("flights").size > 3 << 20
        assert every_version_digest(remote) == every_version_digest(pushed.repo)
        assert remote.store.cache.drain(timeout=30)
        assert remote.store.cache.evicted > 0  # the disk's free space, not the bound, acted
        again = udrfs.Repo(pushed.url, cache_dir=small)  # reads what the disk kept, checked
        assert every_version_digest(again) == every_version_digest(pushed.repo)
        assert again.store.cache.drain(timeout=30)


def test_processes_sharing_one_cache_read_the_same_bytes(pushed: Pushed, tmp_path: Path) -> None:
    script = (
        "import json, sys, udrfs; from udrfs import _native\n"
        "r = udrfs.Repo(sys.argv[1], cache_dir=sys.argv[2], cache_size='2M')\n"
        "out = {}\n"
        "for t in r.tables():\n"
        "    for v in r.versions(t.name):\n"
        "        data = r.open(t.name, v.version).read()\n"
        "        out[f'{t.name}@{v.version}'] = _native.blake3_hex(data)\n"
        "print(json.dumps(out))\n"
    )
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", script, pushed.url, str(tmp_path / "cache")],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in readers]
    assert all(p.returncode == 0 for p in readers)
    want = {
        f"{t}@{v}": d for (b, t, v), d in every_version_digest(pushed.repo).items() if b == "main"
    }
    assert results == [want] * 3
    assert not list((tmp_path / "cache" / "segments").glob(".tmp-*"))


def test_what_works_on_a_local_store_only_is_refused_with_what_to_do(
    small: Pushed, tmp_path: Path
) -> None:
    remote = udrfs.Repo(small.url, cache_dir=tmp_path / "cache")
    with pytest.raises(NotLocalError, match=r"clone it \(`udr clone s3://"):
        remote.fsck()
    with pytest.raises(NotLocalError, match="`udr checkout` works on a store in a directory"):
        remote.set_default_branch("main")
    with pytest.raises(udrfs.errors.UsageError, match="created in a directory"):
        udrfs.Repo.init(small.url)
    assert remote.head() == small.repo.head()
    assert small.repo.fsck().ok


def _udr(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_commands_take_a_store_url_with_an_endpoint(
    pushed: Pushed, s3_server: S3Server, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    where = ["--endpoint", s3_server.endpoint, "--cache-dir", str(tmp_path / "cache")]
    tables = _udr("tables", pushed.url, *where, env=env)
    assert tables.returncode == 0, tables.stderr
    assert [line.split()[0] for line in tables.stdout.splitlines()[1:]] == [
        "airlines",
        "flights",
        "planes",
        "weather",
    ]
    branches = _udr("branch", pushed.url, "list", *where, env=env)
    assert "experiment" in branches.stdout
    out = tmp_path / "weather.parquet"
    cat = _udr("cat", pushed.url, "weather@1", "-o", str(out), *where, env=env)
    assert cat.returncode == 0, cat.stderr
    assert out.read_bytes() == pushed.repo.open("weather", 1).read()
    refused = _udr("fsck", pushed.url, *where, env=env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "`udr fsck` works on a store in a" in refused.stderr


@pytest.fixture
def proxy(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> SwitchableProxy:
    """The test server behind a proxy that can stop it (refused connections) and start it
    again on the same port; requests give up after a short timeout."""
    monkeypatch.setenv("UDR_REMOTE_TIMEOUT", "5")
    p = SwitchableProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    yield p
    p.down()


@pytest.mark.timeout(180)
def test_a_server_that_stops_during_a_cold_read_is_an_error_then_reads_recover(
    pushed: Pushed, proxy: SwitchableProxy, tmp_path: Path
) -> None:
    remote = udrfs.Repo(pushed.url, endpoint=proxy.endpoint, cache_dir=tmp_path / "cache")
    manifest = remote.version("flights")
    proxy.die_after(1 << 20)
    start = time.monotonic()
    with pytest.raises(RemoteError, match="cannot read packs/"), remote.open("flights") as f:
        f.read()
    assert time.monotonic() - start < 120  # bounded retries, never a hang
    proxy.up()
    with remote.open("flights") as f:
        assert _native.blake3_hex(f.read()) == manifest.blake3


@pytest.mark.timeout(180)
def test_cached_versions_stay_readable_while_the_server_is_down(
    pushed: Pushed, proxy: SwitchableProxy, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    first = udrfs.Repo(pushed.url, endpoint=proxy.endpoint, cache_dir=cache_dir)
    first.tables()  # the head's commit and manifests are now cached
    planes = first.open("planes").read()
    assert first.store.cache.drain(timeout=30)
    proxy.down()
    offline = udrfs.Repo(pushed.url, endpoint=proxy.endpoint, cache_dir=cache_dir)
    assert offline.open("planes").read() == planes == pushed.repo.open("planes").read()
    assert [t.name for t in offline.tables()] == ["airlines", "flights", "planes", "weather"]
    with pytest.raises(RemoteError):
        offline.open("airlines").read()
    proxy.up()
    assert offline.open("airlines").read() == pushed.repo.open("airlines").read()


def test_a_bad_store_url_or_cache_size_is_a_one_line_error(
    s3_server: S3Server, s3_url: str, tmp_path: Path
) -> None:
    env = dict(os.environ)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    cases = [
        (["tables", s3_url, *cache], 3, "is not a UDR store (no udr.toml there)"),
        (["tables", "s3:///prefix", *cache], 1, "names no bucket"),
        (["tables", s3_url, *cache, "--cache-size", "lots"], 2, "'lots' is not a size"),
    ]
    for args, code, message in cases:
        done = _udr(*args, env=env)
        assert done.returncode == code, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not list((tmp_path / "cache").rglob("*"))  # nothing kept of a non-store
