"""Real clients read the exact bytes of every version through the mount."""

# Fixtures imported from mounting.py are redefined as test parameters, as pytest intends.
# ruff: noqa: F811

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mounting import (
    Mount,
    SampleStore,
    mounted,
    requires_fuse,
    sample_mount,  # noqa: F401 - fixture
    sample_store,  # noqa: F401 - fixture
)

from udrfs import _native

pytestmark = [pytest.mark.mount, pytest.mark.timeout(180), requires_fuse]


def versions(store: SampleStore, branch: str = "main") -> list[tuple[str, int, Path]]:
    return sorted((t, v, p) for (b, t, v), p in store.sources.items() if b == branch)


def test_cp_copies_every_version_byte_for_byte(
    sample_mount: Mount, sample_store: SampleStore, tmp_path: Path
) -> None:
    for table, version, source in versions(sample_store):
        copy = tmp_path / f"{table}-v{version}.parquet"
        name = f"v{version}.parquet"
        subprocess.run(["cp", str(sample_mount.at("@main", table, name)), str(copy)], check=True)
        assert _native.blake3_file(str(copy)) == _native.blake3_file(str(source))


def test_rsync_copies_a_table_dir_byte_for_byte(
    sample_mount: Mount, sample_store: SampleStore, tmp_path: Path
) -> None:
    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed")
    dest = tmp_path / "copy"
    subprocess.run(
        ["rsync", "-a", f"{sample_mount.at('@main', 'nyc_master')}/", f"{dest}/"], check=True
    )
    assert os.readlink(dest / "latest.parquet") == "v5.parquet"
    for table, version, source in versions(sample_store):
        if table == "nyc_master":
            copy = dest / f"v{version}.parquet"
            assert _native.blake3_file(str(copy)) == _native.blake3_file(str(source))
            # rsync -a keeps the mtime: the commit time shown by the mount.
            name = f"v{version}.parquet"
            assert copy.stat().st_mtime == sample_mount.at("@main", table, name).stat().st_mtime


def test_pandas_reads_every_version(sample_mount: Mount, sample_store: SampleStore) -> None:
    for table, version, source in versions(sample_store):
        got = pd.read_parquet(sample_mount.at("@main", table, f"v{version}.parquet"))
        pd.testing.assert_frame_equal(got, pd.read_parquet(source))


def test_pyarrow_reads_latest_through_the_symlink(
    sample_mount: Mount, sample_store: SampleStore
) -> None:
    got = pq.read_table(sample_mount.at("@main", "nyc_master", "latest.parquet"))
    assert got.equals(pq.read_table(sample_store.sources[("main", "nyc_master", 5)]))


def test_polars_reads_a_version_and_a_branch(
    sample_mount: Mount, sample_store: SampleStore
) -> None:
    got = pl.read_parquet(sample_mount.at("@main", "compound_1", "v2.parquet"))
    assert got.equals(pl.read_parquet(sample_store.sources[("main", "compound_1", 2)]))
    branch = sample_mount.at("@experiment", "new-scoring", "nyc_master", "latest.parquet")
    source = sample_store.sources[("experiment/new-scoring", "nyc_master", 6)]
    assert pl.read_parquet(branch).equals(pl.read_parquet(source))


def test_duckdb_reads_the_latest_of_every_table_by_glob(
    sample_mount: Mount, sample_store: SampleStore
) -> None:
    pattern = f"{sample_mount.path}/@main/*/latest.parquet"
    [(count,)] = duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()
    expected = sum(
        pq.read_metadata(sample_store.sources[("main", table, last)]).num_rows
        for table, last in (("nyc_master", 5), ("compound_1", 3))
    )
    assert count == expected


def test_version_under_tag_and_commit_id_is_the_same_bytes(
    sample_mount: Mount, sample_store: SampleStore
) -> None:
    first = list(sample_store.catalog().first_parent_history("main"))[-2]
    source = _native.blake3_file(str(sample_store.sources[("main", "nyc_master", 1)]))
    for ref in ("@main", "@v1", f"@{first.id}"):
        path = sample_mount.at(ref, "nyc_master", "v1.parquet")
        assert _native.blake3_file(str(path)) == source


# -- randomized reads --------------------------------------------------------------------


@pytest.fixture(scope="module", params=["auto", "thread", "inline"])
def direct_mount(
    request: pytest.FixtureRequest,
    sample_store: SampleStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Mount]:
    """A copy of the same store (one daemon per store: `sample_mount` serves the original)
    with direct_io, so every read below reaches the daemon, in each of the daemon's read
    modes."""
    root = tmp_path_factory.mktemp(f"direct-{request.param}")
    store = shutil.copytree(sample_store.path, root / "store")
    args = ("--direct-io", "--read-mode", request.param)
    with mounted(store, root / "mnt", *args) as m:
        yield m


@pytest.fixture(scope="module")
def sources(sample_store: SampleStore) -> list[tuple[str, int, bytes]]:
    return [(t, v, p.read_bytes()) for t, v, p in versions(sample_store)]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_reads_through_the_page_cache_equal_the_source_bytes(
    sample_mount: Mount, sources: list[tuple[str, int, bytes]], data: st.DataObject
) -> None:
    _check_random_read(sample_mount, sources, data)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_reads_served_by_the_daemon_equal_the_source_bytes(
    direct_mount: Mount, sources: list[tuple[str, int, bytes]], data: st.DataObject
) -> None:
    _check_random_read(direct_mount, sources, data)


def _check_random_read(
    mount: Mount, sources: list[tuple[str, int, bytes]], data: st.DataObject
) -> None:
    """Reads at a random offset and size of a random version equal the source's bytes."""
    table, version, expected = data.draw(st.sampled_from(sources))
    offset = data.draw(st.integers(0, len(expected) + 100))
    size = data.draw(st.sampled_from([1, 7, 4096, 65536, 131072, 1 << 20]) | st.integers(0, 300000))
    fd = os.open(mount.at("@main", table, f"v{version}.parquet"), os.O_RDONLY)
    try:
        assert os.pread(fd, size, offset) == expected[offset : offset + size]
    finally:
        os.close(fd)
