"""The mount and udr:// show one namespace: the same store walked through both gives the same
names in the same order, the same sizes, bytes and latest targets, and the same missing paths.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest
from mounting import Mount, mounted, requires_fuse

import udrfs
from udrfs.fs.nodes import STATS_NAME

pytestmark = [pytest.mark.mount, pytest.mark.timeout(180), requires_fuse]


@dataclass(frozen=True)
class Store:
    path: Path
    before_drop: str  # a commit id at which the dropped table still exists


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """main: t v1..v3, u v1, gone v1 (dropped at the head); tag first at t v1; branches
    experiment/a (t v4) and experiment/b, and experiment-x, which sorts between them by full
    name but after the group `experiment` by the name shown; e v1..v3 on main, v1 expired
    (neither lists it)."""
    repo = udrfs.Repo.init(tmp_path_factory.mktemp("conformance") / "store")
    repo.write_table("t", pa.table({"k": [1, 2, 3]}), key="k")
    repo.create_tag("first")
    repo.write_table("t", pa.table({"k": [1, 2, 3, 4]}), key="k")
    repo.write_table("u", pa.table({"x": ["a", "b"]}))
    repo.write_table("gone", pa.table({"g": [1.5]}))
    before_drop = repo.head("main")
    with repo.transaction("main", "drop gone") as tx:
        tx.drop_table("gone")
    repo.write_table("t", pa.table({"k": [1, 2, 3, 4, 5]}), key="k")
    repo.create_branch("experiment/a")
    repo.write_table("t", pa.table({"k": [9]}), key="k", branch="experiment/a")
    repo.create_branch("experiment/b")
    repo.create_branch("experiment-x")
    for n in (1, 2, 3):
        repo.write_table("e", pa.table({"e": list(range(n))}))
    assert [(r.table, r.version) for r in repo.expire(keep_last=2).released] == [("e", 1)]
    return Store(repo.path, before_drop)


@pytest.fixture(scope="module")
def mount(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    with mounted(store.path, tmp_path_factory.mktemp("mnt") / "mnt") as m:
        yield m


@pytest.fixture(scope="module")
def fs(store: Store) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("udr", store=str(store.path), skip_instance_cache=True)


@dataclass(frozen=True)
class Seen:
    """One path as a client shows it: its listing if a directory, else size and digest."""

    listing: tuple[str, ...] | None = None
    size: int | None = None
    sha256: str | None = None
    latest_target: str | None = None


def walk_mount(root: Path, rel: str) -> dict[str, Seen]:
    path = root / rel if rel else root
    out: dict[str, Seen] = {}
    if path.is_dir():
        names = [n for n in os.listdir(path) if not (rel == "" and n == os.fsdecode(STATS_NAME))]
        out[rel] = Seen(listing=tuple(names))
        for name in names:
            out.update(walk_mount(root, f"{rel}/{name}" if rel else name))
        return out
    data = path.read_bytes()
    target = os.readlink(path) if path.is_symlink() else None
    out[rel] = Seen(None, path.stat().st_size, hashlib.sha256(data).hexdigest(), target)
    return out


def walk_fsspec(fs: fsspec.AbstractFileSystem, rel: str) -> dict[str, Seen]:
    info = fs.info(rel)
    out: dict[str, Seen] = {}
    if info["type"] == "directory":
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(rel, detail=True)]
        out[rel] = Seen(listing=tuple(names))
        for name in names:
            out.update(walk_fsspec(fs, f"{rel}/{name}" if rel else name))
        return out
    data = fs.cat_file(rel)
    sha = hashlib.sha256(data).hexdigest()
    out[rel] = Seen(None, info["size"], sha, info.get("destination"))
    return out


def test_both_clients_walk_to_the_same_tree(mount: Mount, fs: fsspec.AbstractFileSystem) -> None:
    seen_mount = walk_mount(mount.path, "")
    seen_fsspec = walk_fsspec(fs, "")
    assert seen_mount[""].listing == ("@experiment", "@experiment-x", "@first", "@main")
    assert seen_mount["@main"].listing == ("e", "t", "u", ".changes", ".changes.txt")
    assert seen_mount["@main/e"].listing == (
        "v2.parquet",
        "v3.parquet",
        "latest.parquet",
        ".changes",
        ".changes.txt",
    )
    assert seen_mount["@main/t/latest.parquet"].latest_target == "v3.parquet"
    assert seen_mount["@experiment/a/t/latest.parquet"].latest_target == "v4.parquet"
    assert list(seen_fsspec) == list(seen_mount)  # the same paths, met in the same order
    assert seen_fsspec == seen_mount


def test_both_clients_show_the_same_change_logs_for_people(
    mount: Mount, fs: fsspec.AbstractFileSystem, store: Store
) -> None:
    repo = udrfs.Repo(store.path)
    for rel, table in (("@main/.changes.txt", None), ("@main/t/.changes.txt", "t")):
        text = mount.at(rel).read_text()
        assert text.splitlines() == [e.to_text_line() for e in repo.changes("main", table=table)]
        assert fs.cat_file(rel).decode() == text
    assert "gone v1 removed" in mount.at("@main/.changes.txt").read_text()
    assert fs.cat_file(f"@{store.before_drop}/gone/.changes.txt") == (
        mount.at(f"@{store.before_drop}", "gone", ".changes.txt").read_bytes()
    )


def test_a_commit_id_shows_the_same_tree_in_both(
    mount: Mount, fs: fsspec.AbstractFileSystem, store: Store
) -> None:
    rel = f"@{store.before_drop}"
    seen_mount = walk_mount(mount.path, rel)
    assert seen_mount[rel].listing == ("gone", "t", "u", ".changes", ".changes.txt")
    assert walk_fsspec(fs, rel) == seen_mount


@pytest.mark.parametrize(
    "rel",
    [
        "@main/gone",  # dropped at the head: only older commits show it
        "@main/gone/v1.parquet",
        "@main/gone/latest.parquet",
        "@main/t/v4.parquet",
        "@main/t/v01.parquet",
        "@main/t/v0.parquet",
        "@main/nope",
        "@nobranch",
        "@experiment/zzz",
        "@experiment/a/nope/v1.parquet",
        "@first/t/v2.parquet",
        "@main/gone/.changes.txt",
        "@main/.changes.json",
        "@main/e/v1.parquet",  # expired
        "main",
    ],
)
def test_the_same_paths_are_missing_in_both(
    mount: Mount, fs: fsspec.AbstractFileSystem, rel: str
) -> None:
    with pytest.raises(FileNotFoundError):
        os.stat(mount.at(rel))
    with pytest.raises(FileNotFoundError):
        fs.info(rel)
