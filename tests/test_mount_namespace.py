"""The mount's names: refs, tables, versions, latest, change logs, and what does not exist."""

# Fixtures imported from mounting.py are redefined as test parameters, as pytest intends.
# ruff: noqa: F811

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mounting import (
    Mount,
    SampleStore,
    is_root,
    mounted,
    requires_fuse,
    sample_mount,  # noqa: F401 - fixture
    sample_store,  # noqa: F401 - fixture
    write_version,
)

from udrfs.catalog import Catalog

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]

BRANCH = "experiment/new-scoring"


def ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def test_root_lists_branches_tags_and_stats(sample_mount: Mount) -> None:
    assert sorted(os.listdir(sample_mount.path)) == [".stats", "@experiment", "@main", "@v1"]


def test_branch_dir_lists_tables_and_its_change_log(sample_mount: Mount) -> None:
    assert sorted(os.listdir(sample_mount.at("@main"))) == [
        ".changes",
        ".changes.txt",
        "compound_1",
        "nyc_master",
    ]


def test_table_dir_lists_every_version_latest_and_change_log(sample_mount: Mount) -> None:
    names = os.listdir(sample_mount.at("@main", "nyc_master"))
    assert sorted(names) == sorted(
        [f"v{n}.parquet" for n in range(1, 6)] + ["latest.parquet", ".changes", ".changes.txt"]
    )


def test_versions_have_exact_sizes_and_commit_times(
    sample_mount: Mount, sample_store: SampleStore
) -> None:
    catalog = sample_store.catalog()
    for table, count in (("nyc_master", 5), ("compound_1", 3)):
        infos = catalog.table_versions(table, "main")
        assert len(infos) == count
        for info in infos:
            st = os.stat(sample_mount.at("@main", table, f"v{info.version}.parquet"))
            assert st.st_size == info.size
            assert st.st_mtime_ns == ns(info.time)
            assert st.st_mode & 0o777 == 0o444


def test_ls_l_shows_the_sizes(sample_mount: Mount, sample_store: SampleStore) -> None:
    listing = subprocess.run(
        ["ls", "-l", str(sample_mount.at("@main", "nyc_master"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sizes = {line.split()[-1]: int(line.split()[4]) for line in listing.splitlines()[1:]}
    for version in range(1, 6):
        source = sample_store.sources[("main", "nyc_master", version)]
        assert sizes[f"v{version}.parquet"] == source.stat().st_size


def test_latest_is_a_symlink_to_the_newest_version(sample_mount: Mount) -> None:
    latest = sample_mount.at("@main", "nyc_master", "latest.parquet")
    assert latest.is_symlink()
    assert os.readlink(latest) == "v5.parquet"
    assert latest.resolve() == sample_mount.at("@main", "nyc_master", "v5.parquet")
    assert os.readlink(sample_mount.at("@main", "compound_1", "latest.parquet")) == "v3.parquet"


def test_branch_with_slash_nests_under_its_first_component(sample_mount: Mount) -> None:
    assert os.listdir(sample_mount.at("@experiment")) == ["new-scoring"]
    table = sample_mount.at("@experiment", "new-scoring", "nyc_master")
    assert "v6.parquet" in os.listdir(table)
    assert os.readlink(table / "latest.parquet") == "v6.parquet"
    assert not sample_mount.at("@main", "nyc_master", "v6.parquet").exists()


def test_tag_dir_shows_the_tagged_commit(sample_mount: Mount) -> None:
    assert sorted(os.listdir(sample_mount.at("@v1"))) == [".changes", ".changes.txt", "nyc_master"]
    assert sorted(os.listdir(sample_mount.at("@v1", "nyc_master"))) == [
        ".changes",
        ".changes.txt",
        "latest.parquet",
        "v1.parquet",
    ]


def test_commit_id_resolves_but_is_not_listed(
    sample_mount: Mount, sample_store: SampleStore
) -> None:
    catalog = sample_store.catalog()
    first = list(catalog.first_parent_history("main"))[-2]
    commit_dir = sample_mount.at(f"@{first.id}")
    assert f"@{first.id}" not in os.listdir(sample_mount.path)
    assert os.listdir(commit_dir / "nyc_master") != []
    assert os.readlink(commit_dir / "nyc_master" / "latest.parquet") == "v1.parquet"


@pytest.mark.parametrize(
    "parts",
    [
        ("@nope",),
        ("@main", "nope"),
        ("@main", "nyc_master", "v99.parquet"),
        ("@main", "nyc_master", "v0.parquet"),
        ("@main", "nyc_master", "v01.parquet"),
        ("@main", "nyc_master", "v1"),
        ("nope",),
        ("@" + "0" * 64,),
        ("@experiment", "nope"),
    ],
)
def test_unknown_names_are_enoent(sample_mount: Mount, parts: tuple[str, ...]) -> None:
    with pytest.raises(OSError) as raised:
        os.stat(sample_mount.at(*parts))
    assert raised.value.errno == errno.ENOENT


def test_change_logs_are_json_lines_from_the_catalog(
    sample_mount: Mount, sample_store: SampleStore
) -> None:
    catalog = sample_store.catalog()
    expected = "".join(e.to_json_line() + "\n" for e in catalog.changes("main"))
    assert sample_mount.at("@main", ".changes").read_text() == expected
    per_table = "".join(
        e.to_json_line() + "\n" for e in catalog.changes("main", table="compound_1")
    )
    assert sample_mount.at("@main", "compound_1", ".changes").read_text() == per_table
    assert os.stat(sample_mount.at("@main", ".changes")).st_size == len(expected.encode())


def test_changes_txt_is_one_line_for_people_per_commit(
    sample_mount: Mount, sample_store: SampleStore
) -> None:
    catalog = sample_store.catalog()
    for parts, table in ((("@main",), None), (("@main", "compound_1"), "compound_1")):
        expected = "".join(e.to_text_line() + "\n" for e in catalog.changes("main", table=table))
        path = sample_mount.at(*parts, ".changes.txt")
        assert path.read_text() == expected
        assert os.stat(path).st_size == len(expected.encode())
    assert sample_mount.at("@main", ".changes.txt").read_text().startswith("seq 1 ")


def test_stats_file_shows_live_counters(sample_mount: Mount) -> None:
    import json

    before = json.loads(sample_mount.at(".stats").read_text())
    sample_mount.at("@main", "nyc_master", "v1.parquet").read_bytes()
    after = json.loads(sample_mount.at(".stats").read_text())
    for key in ("requests", "bytes_served", "open_files", "cache_hits", "chunk_reads"):
        assert key in after
    assert after["requests"] > before["requests"]
    assert after["bytes_served"] >= before["bytes_served"]
    assert after["open_files"] == 1  # .stats itself, while it is being read
    assert after["pid"] == sample_mount.process.pid or after["pid"] > 0


# -- large directories -------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 tables in one commit and one table with 1,000 versions."""
    root = tmp_path_factory.mktemp("wide")
    catalog = Catalog.init(root / "store")
    small = write_version(root / "small.parquet", "t", 1, 10)
    with catalog.transaction("main", "1000 tables") as tx:
        for i in range(1000):
            tx.import_file(f"table_{i:04d}", small)
    for version in range(1, 1001):
        # Tiny distinct files: each import is a new version.
        source = write_version(root / "deep" / f"v{version}.parquet", "deep", version, 3)
        catalog.import_file("deep", source, message=f"deep v{version}")
    return root / "store"


@pytest.fixture(scope="module")
def wide_mount(wide_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    with mounted(wide_store, tmp_path_factory.mktemp("wide-mnt") / "mnt") as mount:
        yield mount


def _timed_ls(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    out = subprocess.run(["ls", "-l", str(path)], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, len(out.stdout.splitlines()) - 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_thousand_tables_list_in_well_under_a_second(wide_mount: Mount) -> None:
    first, count = _timed_ls(wide_mount.at("@main"))
    assert count == 1001  # 1,000 tables and deep (ls -l hides .changes)
    assert first < 0.5, f"the first ls -l of 1,000 tables took {first:.3f} s"
    again, _ = _timed_ls(wide_mount.at("@main"))
    assert again < 0.3, f"ls -l of 1,000 tables took {again:.3f} s"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_thousand_versions_list_in_well_under_a_second(wide_mount: Mount) -> None:
    # The first listing waits for the catalog to read 1,000 manifests (its table_versions);
    # from then on the daemon answers from memory.
    first, count = _timed_ls(wide_mount.at("@main", "deep"))
    assert count == 1001  # 1,000 versions and latest.parquet
    assert first < 5.0, f"the first ls -l of 1,000 versions took {first:.3f} s"
    again, _ = _timed_ls(wide_mount.at("@main", "deep"))
    assert again < 0.3, f"ls -l of 1,000 versions took {again:.3f} s"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not is_root(), reason="dropping the kernel's caches needs root")
def test_forgotten_inodes_leave_the_inode_table(wide_mount: Mount) -> None:
    import json

    os.listdir(wide_mount.at("@main", "deep"))
    subprocess.run(["ls", "-l", str(wide_mount.at("@main", "deep"))], capture_output=True)
    held = json.loads(wide_mount.at(".stats").read_text())["inodes"]
    assert held > 1000
    # Dropping dentries and inodes makes the kernel send FORGET for every one of them.
    Path("/proc/sys/vm/drop_caches").write_text("2\n")
    time.sleep(0.5)
    after = json.loads(wide_mount.at(".stats").read_text())["inodes"]
    assert after < 50, f"{after} inodes still held after the kernel forgot them"
