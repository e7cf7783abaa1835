"""The mount's `@NAME/` resolves through the one resolver (catalog/paths.py `pick`): short
commit ids work, ambiguous ones and invalid names are ENOENT, no ref hijacks a commit id."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import Mount, mounted, requires_fuse, write_version
from test_resolve import colliding_commits

from udrfs.catalog import Catalog

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120), requires_fuse]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resolve")
    catalog = Catalog.init(root / "store")
    for version in (1, 2):
        catalog.import_file("t", write_version(root / f"t{version}.parquet", "t", version, 100))
    return root / "store"


@pytest.fixture(scope="module")
def mount(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    with mounted(store, tmp_path_factory.mktemp("mnt") / "mnt") as m:
        yield m


def first(store: Path) -> str:
    return list(Catalog(store).first_parent_history("main"))[-2].id


def enoent(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ENOENT
    return False


def test_a_short_commit_id_is_a_directory_of_that_commit(mount: Mount, store: Path) -> None:
    old = first(store)
    for digits in (8, 12):
        target = os.readlink(mount.at(f"@{old[:digits]}", "t", "latest.parquet"))
        assert target == "v1.parquet"
        assert os.listdir(mount.at(f"@{old[:digits]}", "t")) != []
    assert f"@{old[:12]}" not in os.listdir(mount.path)
    assert enoent(mount.at(f"@{old[:7]}"))


def test_an_ambiguous_short_id_is_enoent(mount: Mount, store: Path) -> None:
    a, b = colliding_commits(Catalog(store))
    assert enoent(mount.at(f"@{a[:8]}"))
    assert os.path.isdir(mount.at(f"@{a}")) and os.path.isdir(mount.at(f"@{b}"))


def test_a_ref_named_like_a_commit_id_does_not_hijack_it(mount: Mount, store: Path) -> None:
    catalog = Catalog(store)
    old = first(store)
    (store / "refs" / "heads" / old).write_text(catalog.head() + "\n")
    assert os.readlink(mount.at(f"@{old}", "t", "latest.parquet")) == "v1.parquet"


@pytest.mark.parametrize("name", ["@..", "@../udr.toml", "@.tmp-x", "@a..b", "@-x"])
def test_invalid_ref_names_are_enoent(mount: Mount, name: str) -> None:
    assert enoent(mount.path / name)
