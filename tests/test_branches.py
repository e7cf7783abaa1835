"""Branches and tags: pointers to commits, made and removed by `udr branch` / `udr tag`."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest
from stores import pack_bytes

import udrfs


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


def store_bytes(repo: udrfs.Repo, part: str) -> int:
    return sum(p.stat().st_size for p in (repo.path / part).rglob("*") if p.is_file())


@pytest.fixture
def nightly(repo: udrfs.Repo) -> udrfs.Repo:
    repo.write_table("t", pa.table({"a": [1, 2]}), message="night 1")
    repo.write_table("t", pa.table({"a": [1, 2, 3]}), message="night 2")
    return repo


def test_a_hundred_branches_add_no_pack_or_object_bytes(nightly: udrfs.Repo) -> None:
    packs, objects = pack_bytes(nightly), store_bytes(nightly, "objects")
    for i in range(100):
        nightly.create_branch(f"trial/{i}")
    assert len(nightly.branches()) == 101
    assert (pack_bytes(nightly), store_bytes(nightly, "objects")) == (packs, objects)
    # Each branch is one ref file holding a commit id.
    assert store_bytes(nightly, "refs/heads/trial") == 100 * 65


def test_a_branch_starts_at_its_source_and_then_moves_alone(nightly: udrfs.Repo) -> None:
    nightly.create_branch("exp")
    assert nightly.head("exp") == nightly.head("main")
    nightly.write_table("t", pa.table({"a": [9]}), branch="exp")
    assert nightly.read_table("t").num_rows == 3
    assert nightly.read_table("t", branch="exp").num_rows == 1


@pytest.mark.parametrize("source", ["tag", "commit", "branch"])
def test_a_branch_can_start_at_a_tag_a_commit_or_a_branch(nightly: udrfs.Repo, source: str) -> None:
    first = nightly.log("main")[-2].id  # the commit of night 1
    nightly.create_tag("night-1", first)
    nightly.create_branch("old", from_=first)
    ref = {"tag": "night-1", "commit": first, "branch": "old"}[source]
    nightly.create_branch("replay", from_=ref)
    assert nightly.head("replay") == first
    assert nightly.read_table("t", branch="replay").num_rows == 2


def test_deleting_a_branch_keeps_what_other_refs_reach(nightly: udrfs.Repo) -> None:
    nightly.create_branch("exp")
    nightly.delete_branch("exp")
    assert "exp" not in nightly.branches()
    assert nightly.read_table("t").num_rows == 3
    with pytest.raises(udrfs.NotFoundError):
        nightly.head("exp")


def test_main_cannot_be_deleted(nightly: udrfs.Repo) -> None:
    with pytest.raises(udrfs.UdrError, match="main"):
        nightly.delete_branch("main")


def test_a_branch_name_is_taken_once(nightly: udrfs.Repo) -> None:
    nightly.create_branch("exp")
    with pytest.raises(udrfs.AlreadyExistsError):
        nightly.create_branch("exp")


def test_tags_name_commits_and_list(nightly: udrfs.Repo) -> None:
    commit = nightly.create_tag("release-1")
    nightly.write_table("t", pa.table({"a": [0]}))
    assert nightly.tags() == {"release-1": commit}
    assert nightly.read_table("t", branch="release-1").num_rows == 3


def test_cli_branch_create_list_delete(nightly: udrfs.Repo) -> None:
    store = str(nightly.path)
    made = udr("branch", store, "create", "experiment/new-scoring")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("branch experiment/new-scoring at ")
    listed = udr("branch", store, "list").stdout.splitlines()
    names = [line.removeprefix("*").split()[0] for line in listed]
    assert names == ["BRANCH", "experiment/new-scoring", "main"]
    assert listed[2].startswith("* main")  # the checked-out branch
    assert "night 2" in listed[1]
    gone = udr("branch", store, "delete", "experiment/new-scoring")
    assert gone.returncode == 0 and "deleted branch" in gone.stdout
    assert len(udr("branch", store, "list").stdout.splitlines()) == 2


def test_cli_branch_from_a_ref(nightly: udrfs.Repo) -> None:
    first = nightly.log("main")[-2].id
    proc = udr("branch", str(nightly.path), "create", "old", "--from", first[:64])
    assert proc.returncode == 0, proc.stderr
    assert nightly.head("old") == first


def test_cli_tag_creates_lists_and_deletes(nightly: udrfs.Repo) -> None:
    store = str(nightly.path)
    made = udr("tag", store, "v1", "main")
    assert made.returncode == 0 and made.stdout.startswith("tag v1 at ")
    assert udr("tag", store, "--list").stdout.split()[2] == "v1"
    assert udr("tag", store, "v1", "--delete").returncode == 0
    assert nightly.tags() == {}


def test_cli_branch_errors_are_one_line(nightly: udrfs.Repo) -> None:
    proc = udr("branch", str(nightly.path), "create", "bad..name")
    assert proc.returncode == 2  # usage
    assert proc.stderr.count("\n") == 1 and "not a valid branch name" in proc.stderr
    missing = udr("branch", str(nightly.path), "create", "x", "--from", "nowhere")
    assert missing.returncode == 3 and "not a branch, tag or commit id" in missing.stderr
