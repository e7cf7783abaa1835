"""The path grammar shared by the mount and udr:// (catalog/paths.py), without a store."""

from __future__ import annotations

import pytest

from udrfs.catalog import paths
from udrfs.catalog.paths import Ref, RefGroup

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_a_branch_wins_over_a_tag_of_the_same_name() -> None:
    children = paths.ref_children({"main": A}, {"main": B, "v1": C})
    assert children == {"main": Ref("branch", "main", A), "v1": Ref("tag", "v1", C)}


def test_a_ref_wins_over_a_group_of_either_kind() -> None:
    assert paths.ref_children({"a": A}, {"a/b": B}) == {"a": Ref("branch", "a", A)}
    assert paths.ref_children({"a/b": A}, {"a": B}) == {"a": Ref("tag", "a", B)}


def test_refs_with_a_slash_nest_one_level_at_a_time() -> None:
    branches = {"experiment/new-scoring": A, "experiment/deep/x": B, "main": C}
    top = paths.ref_children(branches, {})
    assert top == {"experiment": RefGroup("experiment/"), "main": Ref("branch", "main", C)}
    below = paths.ref_children(branches, {}, "experiment/")
    assert below == {
        "new-scoring": Ref("branch", "experiment/new-scoring", A),
        "deep": RefGroup("experiment/deep/"),
    }
    assert paths.ref_children(branches, {}, "nothing/") == {}


def test_children_come_in_the_order_of_the_full_ref_names() -> None:
    # '-' sorts before '/', so the ref a-b comes before the group a.
    assert list(paths.ref_children({"a/c": A, "a-b": B, "b": C}, {})) == ["a-b", "a", "b"]


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("v1.parquet", 1),
        ("v42.parquet", 42),
        ("v" + "9" * 18 + ".parquet", 10**18 - 1),
        ("v0.parquet", None),
        ("v01.parquet", None),
        ("v" + "1" * 19 + ".parquet", None),
        ("v1.parquet.tmp", None),
        ("latest.parquet", None),
        ("v١.parquet", None),  # a non-ASCII digit
    ],
)
def test_version_file_names(name: str, number: int | None) -> None:
    assert paths.parse_version_file(name) == number
    if number is not None:
        assert paths.version_file_name(number) == name


def test_commit_ids_are_64_lowercase_hex() -> None:
    assert paths.is_commit_id(A)
    assert not paths.is_commit_id(A.upper())
    assert not paths.is_commit_id(A[:-1])
    assert not paths.is_commit_id("main")
