"""The path grammar shared by the mount and udr:// (catalog/paths.py), without a store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from udrfs.catalog import ChangeEntry, TableChange, paths
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


# ---- the namespace model: what a directory lists and what a name resolves to --------------


def test_the_top_lists_refs_by_the_name_shown_with_the_ref_mark() -> None:
    # By full name experiment-x sorts before experiment/a; by the name shown, after.
    listing = paths.list_refs({"main": "c1", "experiment/a": "c2", "experiment-x": "c3"}, {})
    assert [name for name, _ in listing] == ["@experiment", "@experiment-x", "@main"]
    assert listing[0][1] == paths.GroupEntry("experiment/")
    assert listing[2][1] == paths.RefEntry(Ref("branch", "main", "c1"))


def test_a_group_lists_its_refs_without_the_mark() -> None:
    listing = paths.list_refs({"experiment/a": "c2"}, {"experiment/t": "c4"}, "experiment/")
    assert [name for name, _ in listing] == ["a", "t"]
    assert paths.lookup_ref("t", {}, {"experiment/t": "c4"}, "experiment/") == paths.RefEntry(
        Ref("tag", "experiment/t", "c4")
    )
    assert paths.lookup_ref("zzz", {}, {}, "experiment/") is None


def test_a_ref_lists_its_head_tables_in_order_and_its_change_logs_last() -> None:
    assert paths.list_ref({"u", "t"}) == [
        ("t", paths.TableEntry("t")),
        ("u", paths.TableEntry("u")),
        (".changes", paths.ChangesEntry(None)),
        (".changes.txt", paths.ChangesEntry(None, text=True)),
    ]


def test_a_table_dropped_at_the_head_does_not_resolve() -> None:
    assert paths.lookup_in_ref("gone", {"t"}) is None
    assert paths.lookup_in_ref("t", {"t"}) == paths.TableEntry("t")
    assert paths.lookup_in_ref(".changes", set()) == paths.ChangesEntry(None)
    assert paths.lookup_in_ref(".changes.txt", set()) == paths.ChangesEntry(None, text=True)


def test_each_change_log_renders_its_own_form_of_an_entry() -> None:
    entry = ChangeEntry(
        seq=7,
        commit="c" * 64,
        time=datetime(2026, 12, 3, 2, 0, tzinfo=UTC),
        branch="main",
        message="nightly",
        author="etl",
        tables=(TableChange("t", 1, 2, rows=5, rows_before=4),),
        unchanged=76,
    )
    assert paths.ChangesEntry(None).render(entry) == entry.to_json_line().encode() + b"\n"
    text = paths.ChangesEntry(None, text=True).render(entry)
    assert text == entry.to_text_line().encode() + b"\n"
    assert text.startswith(b"seq 7 2026-12-03 02:00 nightly: t v1\xe2\x86\x92v2")


def test_a_table_lists_versions_by_number_then_latest_then_its_change_log() -> None:
    versions = {10: "m10", 2: "m2", 1: "m1"}
    listing = paths.list_table("t", versions, "m10")
    assert [name for name, _ in listing] == [
        "v1.parquet",
        "v2.parquet",
        "v10.parquet",
        "latest.parquet",
        ".changes",
        ".changes.txt",
    ]
    latest = listing[3][1]
    assert latest == paths.LatestEntry("t", "m10", paths.VersionEntry("t", 10, "m10"))


def test_latest_is_the_newest_version_holding_the_head_manifest() -> None:
    # A revert makes v3 hold v1's bytes again: latest is v3, never v1.
    entry = paths.lookup_in_table("t", "latest.parquet", {1: "m1", 2: "m2", 3: "m1"}, "m1")
    assert isinstance(entry, paths.LatestEntry)
    assert entry.target == paths.VersionEntry("t", 3, "m1")


def test_latest_of_an_unreadable_head_version_is_left_out_never_an_older_one() -> None:
    listing = paths.list_table("t", {1: "m1"}, "m2")  # v2 (the head's) cannot be read
    assert [name for name, _ in listing] == ["v1.parquet", ".changes", ".changes.txt"]
    entry = paths.lookup_in_table("t", "latest.parquet", {1: "m1"}, "m2")
    assert entry == paths.LatestEntry("t", "m2", None)


@pytest.mark.parametrize("name", ["v3.parquet", "v01.parquet", "v0.parquet", "x", "latest"])
def test_names_that_are_no_version_of_the_table_do_not_resolve(name: str) -> None:
    assert paths.lookup_in_table("t", name, {1: "m1", 2: "m2"}, "m2") is None
