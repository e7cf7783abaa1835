"""One resolver decides what a name means where a commit is expected (catalog/paths.py `pick`):
full commit id, then branch, then tag, then a unique short id of 8+ hex digits; ambiguity is
refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udrfs
from udrfs import _native
from udrfs.catalog import Catalog, paths
from udrfs.catalog.model import Commit
from udrfs.cli.main import main as udr_main
from udrfs.errors import AmbiguousRefError, InvalidNameError, NotFoundError
from udrfs.query.fsspec import UdrFileSystem
from udrfs.store.objects import canonical_json


@pytest.fixture
def nightly(repo: udrfs.Repo) -> udrfs.Repo:
    repo.write_table("t", pa.table({"a": [1, 2]}), message="night 1")
    repo.write_table("t", pa.table({"a": [1, 2, 3]}), message="night 2")
    return repo


def first_commit(repo: udrfs.Repo) -> str:
    return repo.log()[-2].id  # "night 1" (the last is the store's root commit)


def colliding_commits(repo: Catalog) -> tuple[str, str]:
    """Write two real commits whose ids share their first 8 hex digits (a birthday search
    over commit messages: about 2^16 hashes, deterministic)."""
    head = repo.commit(repo.head())

    def doc(i: int) -> dict[str, object]:
        return Commit.document(
            parents=[head.id],
            branch="main",
            seq=head.seq + 1,
            time=datetime(2026, 1, 1, tzinfo=UTC),
            author="test",
            message=f"candidate {i}",
            tables=head.tables,
            changes=[],
        )

    seen: dict[str, int] = {}
    i = 0
    while True:
        prefix = _native.blake3_hex(canonical_json(doc(i)))[:8]
        if prefix in seen:
            return repo.store.objects.put(doc(seen[prefix])), repo.store.objects.put(doc(i))
        seen[prefix] = i
        i += 1


# ---- short ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [8, 12, 40, 64])
def test_a_unique_prefix_of_8_or_more_digits_names_its_commit(
    nightly: udrfs.Repo, digits: int
) -> None:
    old = first_commit(nightly)
    assert nightly.resolve(old[:digits]) == old
    assert nightly.read_table("t", branch=old[:digits]).num_rows == 2
    assert [v.version for v in nightly.versions("t", branch=old[:digits])] == [1]
    assert [t.name for t in nightly.tables(old[:digits])] == ["t"]


def test_a_prefix_shorter_than_8_digits_is_no_commit(nightly: udrfs.Repo) -> None:
    with pytest.raises(NotFoundError):
        nightly.resolve(first_commit(nightly)[:7])


def test_branches_and_tags_start_from_a_short_id(nightly: udrfs.Repo) -> None:
    old = first_commit(nightly)
    assert nightly.create_branch("from-old", from_=old[:12]) == old
    assert nightly.create_tag("v1", old[:10]) == old


def test_cli_accepts_the_12_digits_udr_log_prints(
    nightly: udrfs.Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = str(nightly.path)
    assert udr_main(["log", store]) == 0
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "seq" in line]
    short = printed[1]  # night 1
    assert len(short) == 12
    out = tmp_path / "old.parquet"
    assert udr_main(["cat", store, "t", "-b", short, "-o", str(out)]) == 0
    assert pq.read_table(out).num_rows == 2
    assert udr_main(["versions", store, "t", "-b", short]) == 0
    assert udr_main(["branch", store, "create", "b", "--from", short]) == 0
    assert nightly.head("b") == first_commit(nightly)
    assert udr_main(["diff", store, f"{short}..main"]) == 0


def test_udr_paths_accept_a_short_id(nightly: udrfs.Repo) -> None:
    old = first_commit(nightly)
    fs = UdrFileSystem(store=str(nightly.path))
    with fs.open(f"@{old[:12]}/t/latest.parquet") as f:
        assert pq.read_table(f).num_rows == 2
    assert fs.info(f"@{old[:8]}")["type"] == "directory"


def test_two_commits_sharing_a_prefix_are_ambiguous_and_named(nightly: udrfs.Repo) -> None:
    a, b = colliding_commits(nightly)
    assert a[:8] == b[:8] and a != b
    with pytest.raises(AmbiguousRefError) as caught:
        nightly.resolve(a[:8])
    assert "ambiguous" in str(caught.value)
    assert a in str(caught.value) and b in str(caught.value)
    assert set(caught.value.candidates) == {f"commit {a}", f"commit {b}"}
    # One more distinguishing digit (or the full id) names each one.
    n = next(i for i in range(8, 64) if a[i] != b[i]) + 1
    assert nightly.resolve(a[:n]) == a and nightly.resolve(b) == b


def test_cli_says_ambiguous_in_one_line(
    nightly: udrfs.Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = colliding_commits(nightly)
    assert udr_main(["tables", str(nightly.path), "-b", a[:8]]) != 0
    err = capsys.readouterr().err
    assert "ambiguous" in err and err.count("\n") == 1


def test_a_table_manifest_is_not_taken_for_a_commit(nightly: udrfs.Repo) -> None:
    manifest_id = nightly.commit(nightly.head()).tables["t"]
    with pytest.raises(NotFoundError):
        nightly.resolve(manifest_id[:12])
    with pytest.raises(NotFoundError):
        nightly.resolve(manifest_id)


# ---- branches named like commits ------------------------------------------------------------


def test_a_branch_cannot_be_created_under_a_commit_id(nightly: udrfs.Repo) -> None:
    old = first_commit(nightly)
    for name in (old, old[:12], old[:8]):
        with pytest.raises(InvalidNameError):
            nightly.create_branch(name, from_="main")
    assert nightly.resolve(old[:12]) == old


def test_a_ref_file_named_like_a_commit_id_does_not_hijack_it(
    nightly: udrfs.Repo, tmp_path: Path
) -> None:
    # As an older version of the store allowed: a branch named like an old commit, pointing
    # at the head.
    old, head = first_commit(nightly), nightly.head()
    (nightly.path / "refs" / "heads" / old).write_text(head + "\n")
    assert nightly.resolve(old) == old
    assert nightly.read_table("t", branch=old).num_rows == 2
    out = tmp_path / "cat.parquet"
    assert udr_main(["cat", str(nightly.path), "t", "-b", old, "-o", str(out)]) == 0
    assert pq.read_table(out).num_rows == 2


def test_a_hex_branch_that_became_a_commit_prefix_is_ambiguous(nightly: udrfs.Repo) -> None:
    # The branch was made before a commit whose id begins with its name existed.
    old = first_commit(nightly)
    (nightly.path / "refs" / "heads" / old[:8]).write_text(nightly.head() + "\n")
    with pytest.raises(AmbiguousRefError) as caught:
        nightly.resolve(old[:8])
    assert f"branch {old[:8]}" in caught.value.candidates
    assert f"commit {old}" in caught.value.candidates


def test_a_branch_wins_over_a_tag_of_the_same_name(nightly: udrfs.Repo) -> None:
    nightly.create_tag("x", first_commit(nightly))
    nightly.create_branch("x")
    assert nightly.resolve("x") == nightly.head()


def test_a_hex_name_that_begins_no_commit_is_a_branch(nightly: udrfs.Repo) -> None:
    taken = {c.id[:8] for c in nightly.log()}
    name = next(f"{i:08x}" for i in range(1 << 20) if f"{i:08x}" not in taken)
    nightly.create_branch(name, from_=first_commit(nightly))
    assert nightly.resolve(name) == first_commit(nightly)


# ---- the rule itself, without a store ----------------------------------------------------------

A, B = "ab" * 32, "ab" * 4 + "cd" * 28


def test_pick_follows_the_documented_order() -> None:
    branch = paths.Ref("branch", "x", B)
    assert paths.pick(A, branch, [A]) == paths.Ref("commit", A, A)  # 1. a full id
    assert paths.pick("x", branch, []) == branch  # 2. a ref
    assert paths.pick(A[:12], None, [A]) == paths.Ref("commit", A, A)  # 3. a short id
    with pytest.raises(AmbiguousRefError):
        paths.pick(A[:8], paths.Ref("tag", A[:8], B), [A])
    with pytest.raises(AmbiguousRefError):
        paths.pick(A[:8], paths.RefGroup(A[:8] + "/"), [A])
    with pytest.raises(AmbiguousRefError):
        paths.pick(A[:8], None, [A, B])
    with pytest.raises(NotFoundError):
        paths.pick(A, None, [])
    with pytest.raises(NotFoundError):
        paths.pick("nothing", None, [])


def test_only_8_to_64_lowercase_hex_digits_may_name_a_commit() -> None:
    assert paths.may_name_commit(A[:8]) and paths.may_name_commit(A)
    assert not paths.may_name_commit(A[:7])
    assert not paths.may_name_commit(A.upper()[:12])
    assert not paths.may_name_commit(A + "0")


def test_commit_by_id_takes_a_short_id_too(nightly: udrfs.Repo) -> None:
    old = first_commit(nightly)
    assert nightly.commit(old[:12]).id == old
    with pytest.raises(NotFoundError):
        nightly.commit(old[:7])
