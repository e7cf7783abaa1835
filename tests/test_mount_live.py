"""Commits made by another process show up in the mount within a second; open readers keep
the version they opened."""

from __future__ import annotations

import json
import os
import select
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest
from mounting import Mount, SampleStore, make_store, mounted, requires_fuse, wait_for

import udrfs
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


@contextmanager
def following(path: Path) -> Iterator[Callable[[], str]]:
    """`tail -f PATH`, past the lines it has now; yields a function that returns the next
    line it prints (failing if it prints none within 2 s)."""
    existing = len(_lines(path))
    tail = subprocess.Popen(
        ["tail", "-n", "+1", "-f", str(path)], stdout=subprocess.PIPE, text=True
    )
    assert tail.stdout is not None
    stdout = tail.stdout

    def next_line() -> str:
        ready, _, _ = select.select([stdout], [], [], 2.0)
        assert ready, f"tail -f {path.name} printed nothing within 2 s of the commit"
        return stdout.readline()

    try:
        for _ in range(existing):
            stdout.readline()
        yield next_line
    finally:
        tail.kill()
        tail.wait()


def test_tail_f_prints_new_change_lines_as_commits_land(mount: Mount, store: SampleStore) -> None:
    with following(mount.at("@main", ".changes")) as next_line:
        for expected_version in (3, 4):
            store.commit_version("nyc_master", rows=4000 + expected_version)
            line = json.loads(next_line())
            assert line["tables"][0]["new_version"] == expected_version


def test_tail_f_of_changes_txt_prints_each_commit_as_one_text_line(
    mount: Mount, store: SampleStore
) -> None:
    with following(mount.at("@main", ".changes.txt")) as next_line:
        for expected_version in (3, 4):
            store.commit_version("nyc_master", rows=4000 + expected_version)
            entry = store.catalog().changes("main")[-1]
            line = next_line()
            assert line == entry.to_text_line() + "\n"
            assert line.startswith(f"seq {entry.seq} ")
            assert f"nyc_master v{expected_version - 1}→v{expected_version} " in line
            assert line.rstrip("\n").endswith("; 1 table unchanged")


def test_a_78_table_commit_adds_one_line_to_changes_txt(mount: Mount, store: SampleStore) -> None:
    text_log, json_log = mount.at("@main", ".changes.txt"), mount.at("@main", ".changes")
    before = len(_lines(text_log))
    with udrfs.Repo(store.path).transaction(message="nightly load") as tx:
        for i in range(78):
            tx.write_table(f"t{i:02d}", pa.table({"id": [i, i + 1]}), key="id")
    wait_for(lambda: len(_lines(json_log)) == before + 1, 2.0)
    lines = _lines(text_log)
    assert len(lines) == before + 1
    assert lines[-1].startswith(f"seq {before + 1} ")
    assert "nightly load: t00 new v1 +2, t01 new v1 +2, t02 new v1 +2, +75 more" in lines[-1]
    assert lines[-1].endswith("; 2 tables unchanged")
    assert _lines(mount.at("@main", "t42", ".changes.txt")) == [
        f"seq {before + 1} {lines[-1].split()[2]} {lines[-1].split()[3]} nightly load: "
        "t42 new v1 +2"
    ]


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
