"""Ref names: one validator (git's check-ref-format rules) stands between a name and the disk."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import udrfs
from udrfs.cli.main import main as udr_main
from udrfs.errors import AlreadyExistsError, InvalidNameError, NotFoundError, UdrError
from udrfs.store.refnames import check_ref_name, is_valid_ref_name


@pytest.fixture
def nightly(repo: udrfs.Repo) -> udrfs.Repo:
    repo.write_table("t", pa.table({"a": [1, 2]}), message="night 1")
    return repo


# ---- the holes, reproduced -----------------------------------------------------------------


def test_cli_branch_delete_cannot_reach_the_store_manifest(
    nightly: udrfs.Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = nightly.path / "udr.toml"
    assert udr_main(["branch", str(nightly.path), "delete", "../../udr.toml"]) != 0
    assert manifest.is_file()
    assert "not a valid branch name" in capsys.readouterr().err


def test_delete_branch_of_an_absolute_path_deletes_nothing(
    nightly: udrfs.Repo, tmp_path: Path
) -> None:
    victim = tmp_path / "outside" / "deep" / "file"
    victim.parent.mkdir(parents=True)
    victim.write_text("0" * 64 + "\n")
    with pytest.raises(InvalidNameError):
        nightly.delete_branch(str(victim))
    assert victim.read_text() == "0" * 64 + "\n"


def test_delete_tag_of_a_relative_escape_deletes_nothing(nightly: udrfs.Repo) -> None:
    with pytest.raises(InvalidNameError):
        nightly.delete_tag("../heads/main")
    assert "main" in nightly.branches()


def test_write_table_cannot_move_a_tag_through_a_branch_name(nightly: udrfs.Repo) -> None:
    nightly.create_tag("v1")
    before = nightly.tags()["v1"]
    with pytest.raises(InvalidNameError):
        nightly.write_table("t", pa.table({"a": [9]}), branch="../tags/v1")
    assert nightly.tags()["v1"] == before


def test_cli_branch_option_does_not_print_a_file_it_names(
    nightly: udrfs.Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-CONTENT\n")
    assert udr_main(["cat", str(nightly.path), "t", "-b", str(secret)]) != 0
    err = capsys.readouterr().err
    assert "TOPSECRET" not in err
    assert err.count("\n") == 1


def test_reading_refs_through_an_escape_finds_nothing(nightly: udrfs.Repo) -> None:
    with pytest.raises(UdrError):
        nightly.tables(branch="../heads/main")
    with pytest.raises(UdrError):
        nightly.head("../heads/main")


def test_fast_forward_refuses_an_invalid_name(nightly: udrfs.Repo) -> None:
    head = nightly.head()
    with pytest.raises(InvalidNameError):
        nightly.fast_forward("../tags/x", head, head)
    assert not (nightly.path / "refs" / "tags" / "x").exists()


def test_named_transactions_refuse_an_invalid_branch(nightly: udrfs.Repo) -> None:
    victim = nightly.path / "staging" / "victim.json"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("{}")
    with pytest.raises(InvalidNameError):
        nightly.staging.discard("..", "victim")
    assert victim.exists()


# ---- the rules -----------------------------------------------------------------------------

VALID = [
    "main",
    "experiment/new-scoring",
    "r2/main",
    "v1.0",
    "a_b",
    "release-2026.12",
    "20261203",
    "x" * 200,
    "A" * 63,
]

INVALID = [
    "",
    "..",
    "a..b",
    "/a",
    "a/",
    "a//b",
    "-a",
    "a/-b",
    ".a",
    "a/.b",
    "a.lock",
    "a.lock/b",
    "a.",
    "a b",
    "a\tb",
    "a\x00b",
    "a\x7fb",
    "a~1",
    "a^1",
    "a:b",
    "a?",
    "a*",
    "a[1]",
    "a\\b",
    "a@{1}",
    "@",
    "x" * 201,
    "0123456789abcdef" * 4,
    "A" * 64,
    ("0123456789abcdef" * 4) + "/x",
    "é",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_ref_names(name: str) -> None:
    assert check_ref_name(name) == name
    assert is_valid_ref_name(name)


@pytest.mark.parametrize("name", INVALID)
def test_invalid_ref_names(name: str) -> None:
    with pytest.raises(InvalidNameError) as caught:
        check_ref_name(name, "tag")
    assert "not a valid tag name" in str(caught.value)
    assert not is_valid_ref_name(name)


@pytest.mark.parametrize("name", INVALID)
def test_no_invalid_name_becomes_a_branch_or_tag(nightly: udrfs.Repo, name: str) -> None:
    with pytest.raises(InvalidNameError):
        nightly.create_branch(name)
    with pytest.raises(InvalidNameError):
        nightly.create_tag(name)
    assert set(nightly.branches()) == {"main"} and nightly.tags() == {}


def test_a_branch_may_not_be_named_like_a_commit_prefix(nightly: udrfs.Repo) -> None:
    head = nightly.head()
    for name in (head, head[:12], head[:8]):
        with pytest.raises(InvalidNameError) as caught:
            nightly.create_branch(name)
        assert "commit" in str(caught.value)
        with pytest.raises(InvalidNameError):
            nightly.create_tag(name)
    with pytest.raises(InvalidNameError):
        nightly.create_branch(head[:8] + "/sub")


def test_a_short_hex_name_that_is_no_commit_prefix_is_a_fine_branch(nightly: udrfs.Repo) -> None:
    taken = {c.id[:7] for c in nightly.log()}
    name = next(f"{i:07x}" for i in range(1 << 20) if f"{i:07x}" not in taken)
    nightly.create_branch(name)
    assert nightly.head(name) == nightly.head()


def test_lock_files_and_refs_cannot_clash(nightly: udrfs.Repo) -> None:
    # The lock of branch `a` is locks/heads/a.lock: no ref can be named so, nor have a
    # component so named, so no lock path is ever another ref's path or parent directory.
    nightly.create_branch("a")
    for name in ("a.lock", "a.lock/b"):
        with pytest.raises(InvalidNameError):
            nightly.create_branch(name)


def test_refs_with_invalid_names_on_disk_are_not_listed(nightly: udrfs.Repo) -> None:
    head = nightly.head()
    (nightly.path / "refs" / "heads" / ".hidden").write_text(head + "\n")
    (nightly.path / "refs" / "heads" / "bad name").write_text(head + "\n")
    assert set(nightly.branches()) == {"main"}


def test_deleting_a_nested_branch_prunes_only_inside_refs(nightly: udrfs.Repo) -> None:
    nightly.create_branch("team/alice/trial")
    nightly.delete_branch("team/alice/trial")
    assert (nightly.path / "refs" / "heads").is_dir()
    assert not (nightly.path / "refs" / "heads" / "team").exists()
    with pytest.raises(NotFoundError):
        nightly.delete_branch("team/alice/trial")


def test_existing_branch_names_still_clash_as_before(nightly: udrfs.Repo) -> None:
    nightly.create_branch("a/b")
    with pytest.raises(AlreadyExistsError):
        nightly.create_branch("a")


def test_a_table_name_cannot_end_in_a_newline(nightly: udrfs.Repo) -> None:
    # `$` in a regular expression also matches before a final newline.
    with pytest.raises(InvalidNameError):
        nightly.write_table("t\n", pa.table({"a": [1]}))
    with pytest.raises(InvalidNameError):
        nightly.staging.open("main", "tx\n")
    assert [t.name for t in nightly.tables()] == ["t"]
