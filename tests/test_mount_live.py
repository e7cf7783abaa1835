"""Commits made by another process show up in the mount within a second; open readers keep
the version they opened."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import Mount, SampleStore, make_store, mounted, requires_fuse, wait_for

from udrfs import _native

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]


@pytest.fixture
def store(tmp_path: Path) -> SampleStore:
    return make_store(tmp_path, {"nyc_master": 2, "compound_1": 1}, rows=4000)


@pytest.fixture
def mount(store: SampleStore, tmp_path: Path) -> Iterator[Mount]:
    with mounted(store.path, tmp_path / "mnt") as m:
        yield m


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_commit_appears_within_one_second(mount: Mount, store: SampleStore) -> None:
    table = mount.at("@main", "nyc_master")
    assert os.readlink(table / "latest.parquet") == "v2.parquet"
    branch_log = len(_lines(mount.at("@main", ".changes")))
    table_log = len(_lines(table / ".changes"))

    store.commit_version("nyc_master", rows=4100)  # this process, not the daemon

    waited = max(
        wait_for(lambda: (table / "v3.parquet").exists(), 2.0),
        wait_for(lambda: os.readlink(table / "latest.parquet") == "v3.parquet", 2.0),
        wait_for(lambda: len(_lines(mount.at("@main", ".changes"))) == branch_log + 1, 2.0),
        wait_for(lambda: len(_lines(table / ".changes")) == table_log + 1, 2.0),
    )
    assert waited < 1.0, f"the commit took {waited:.2f} s to show"
    assert "v3.parquet" in os.listdir(table)
    source = store.sources[("main", "nyc_master", 3)]
    assert _native.blake3_file(str(table / "latest.parquet")) == _native.blake3_file(str(source))
    line = json.loads(_lines(table / ".changes")[-1])
    assert line["tables"][0]["new_version"] == 3
    assert line["branch"] == "main"


def test_tail_f_prints_new_change_lines_as_commits_land(mount: Mount, store: SampleStore) -> None:
    changes = mount.at("@main", ".changes")
    existing = len(_lines(changes))
    tail = subprocess.Popen(
        ["tail", "-n", "+1", "-f", str(changes)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert tail.stdout is not None
        for _ in range(existing):
            tail.stdout.readline()
        for expected_version in (3, 4):
            store.commit_version("nyc_master", rows=4000 + expected_version)
            start = time.monotonic()
            ready, _, _ = select.select([tail.stdout], [], [], 2.0)
            assert ready, "tail -f printed nothing within 2 s of the commit"
            line = json.loads(tail.stdout.readline())
            assert time.monotonic() - start < 2.0
            assert line["tables"][0]["new_version"] == expected_version
    finally:
        tail.kill()
        tail.wait()


def test_tail_f_of_changes_txt_prints_a_text_line_per_commit(
    mount: Mount, store: SampleStore
) -> None:
    changes = mount.at("@main", ".changes.txt")
    assert ".changes.txt" in os.listdir(mount.at("@main"))
    assert ".changes.txt" in os.listdir(mount.at("@main", "nyc_master"))
    existing = _lines(changes)
    assert existing == [e.to_text_line() for e in store.catalog().changes("main")]
    before = os.stat(changes).st_size
    tail = subprocess.Popen(
        ["tail", "-n", "+1", "-f", str(changes)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert tail.stdout is not None
        for _ in existing:
            tail.stdout.readline()
        store.commit_version("nyc_master", rows=4003)
        ready, _, _ = select.select([tail.stdout], [], [], 2.0)
        assert ready, "tail -f printed nothing within 2 s of the commit"
        line = tail.stdout.readline()
        assert line.startswith(f"seq {len(existing) + 1} ") and "nyc_master v2→v3" in line
        assert line.rstrip("\n").endswith("; 1 table unchanged")
    finally:
        tail.kill()
        tail.wait()
    assert os.stat(changes).st_size > before
    assert _lines(mount.at("@main", "nyc_master", ".changes.txt"))[-1].endswith(
        "nyc_master v2→v3 4,000→4,003 rows"
    )


def test_size_of_change_log_grows_with_each_commit(mount: Mount, store: SampleStore) -> None:
    changes = mount.at("@main", ".changes")
    before = os.stat(changes).st_size
    store.commit_version("compound_1")
    wait_for(lambda: os.stat(changes).st_size > before, 2.0)
    assert os.stat(changes).st_size == len(changes.read_bytes())


def test_reader_keeps_old_version_while_commit_lands(mount: Mount, store: SampleStore) -> None:
    old = store.sources[("main", "nyc_master", 2)].read_bytes()
    latest = mount.at("@main", "nyc_master", "latest.parquet")
    with (
        open(latest, "rb") as reader,
        open(mount.at("@main", "nyc_master", "v1.parquet"), "rb") as v1,
    ):
        first_half = reader.read(len(old) // 2)
        for _ in range(2):
            store.commit_version("nyc_master", rows=9000)
        wait_for(lambda: os.readlink(latest) == "v4.parquet", 2.0)
        assert first_half + reader.read() == old
        assert v1.read() == store.sources[("main", "nyc_master", 1)].read_bytes()
    assert latest.read_bytes() == store.sources[("main", "nyc_master", 4)].read_bytes()


def test_new_branch_appears_and_deleted_branch_goes(mount: Mount, store: SampleStore) -> None:
    catalog = store.catalog()
    catalog.create_branch("fix/typo", "main")
    waited = wait_for(lambda: mount.at("@fix", "typo", "nyc_master", "v2.parquet").exists(), 2.0)
    assert waited < 1.0
    catalog.delete_branch("fix/typo")
    wait_for(lambda: not mount.at("@fix").exists(), 3.0)
    assert "@fix" not in os.listdir(mount.path)


def test_branches_diverge_with_their_own_version_numbers(mount: Mount, store: SampleStore) -> None:
    store.catalog().create_branch("exp", "main")
    store.commit_version("nyc_master", rows=100, branch="exp")
    store.commit_version("nyc_master", rows=200, branch="main")
    exp = mount.at("@exp", "nyc_master", "v3.parquet")
    main = mount.at("@main", "nyc_master", "v3.parquet")
    wait_for(lambda: exp.exists() and main.exists(), 2.0)
    assert exp.read_bytes() == store.sources[("exp", "nyc_master", 3)].read_bytes()
    assert main.read_bytes() == store.sources[("main", "nyc_master", 3)].read_bytes()
    assert exp.read_bytes() != main.read_bytes()


def test_rewound_branch_shows_its_new_versions(mount: Mount, store: SampleStore) -> None:
    catalog = store.catalog()
    base = catalog.resolve("main")
    catalog.create_branch("redo", base)
    store.commit_version("nyc_master", rows=111, branch="redo")
    old_v3 = mount.at("@redo", "nyc_master", "v3.parquet")
    wait_for(old_v3.exists, 2.0)
    first = old_v3.read_bytes()  # the kernel now caches this name (immutable: 1 hour)
    # Rewind: the branch is re-created at its base, and a different v3 is committed.
    catalog.delete_branch("redo")
    catalog.create_branch("redo", base)
    store.commit_version("nyc_master", rows=222, branch="redo")
    expected = store.sources[("redo", "nyc_master", 3)].read_bytes()
    assert expected != first
    wait_for(lambda: old_v3.read_bytes() == expected, 3.0)
