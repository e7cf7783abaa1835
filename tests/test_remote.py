"""Push, fetch, pull and clone against a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stores import every_version_digest

import udrfs
from udrfs import _native
from udrfs.errors import (
    AlreadyExistsError,
    InvalidNameError,
    NonFastForwardError,
    NotFoundError,
    RemoteError,
)
from udrfs.store.backends import open_backend


def _write_versions(repo: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path) -> None:
    """A few tables, two versions of one of them, on main and on a branch."""
    for name in ("airlines", "planes", "weather"):
        repo.import_file(name, nyc_parquet_dir / f"{name}.parquet")
    weather = pq.read_table(nyc_parquet_dir / "weather.parquet")
    changed = tmp_path / "weather2.parquet"
    pq.write_table(weather.slice(0, weather.num_rows - 100), changed)
    repo.import_file("weather", changed, message="drop the last 100 hours")
    repo.create_branch("experiment")
    scores = pa.table({"k": [1, 2, 3], "v": [0.1, 0.2, 0.3]})
    repo.write_table("scores", scores, branch="experiment")


@pytest.fixture
def pushed(
    repo: udrfs.Repo, s3_url: str, nyc_parquet_dir: Path, tmp_path: Path
) -> tuple[udrfs.Repo, str]:
    _write_versions(repo, nyc_parquet_dir, tmp_path)
    repo.add_remote("r2", s3_url)
    repo.push("r2", all=True)
    return repo, s3_url


def test_clone_reads_every_version_byte_exact(
    pushed: tuple[udrfs.Repo, str], tmp_path: Path
) -> None:
    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    assert clone.branches() == repo.branches()
    digests = every_version_digest(clone)
    assert digests == every_version_digest(repo)
    assert len(digests) == 9  # 4 versions on main, the same 4 and scores on experiment
    assert clone.fsck().ok


def test_clone_into_an_empty_directory(pushed: tuple[udrfs.Repo, str], tmp_path: Path) -> None:
    _repo, url = pushed
    target = tmp_path / "empty"
    target.mkdir()
    clone = udrfs.Repo.clone(url, target, branch="main")
    assert list(clone.branches()) == ["main"]
    assert clone.remotes()[0].url == url


def test_pull_brings_new_commits_and_a_push_from_the_clone_comes_back(
    pushed: tuple[udrfs.Repo, str], tmp_path: Path
) -> None:
    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    repo.write_table("scores", pa.table({"k": [1], "v": [1.0]}), message="on main")
    repo.push("r2", ["main"])
    result = clone.pull("origin", "main")
    assert result.updated["main"][1] == repo.head()
    assert clone.read_table("scores").to_pylist() == [{"k": 1, "v": 1.0}]

    clone.write_table("scores", pa.table({"k": [2], "v": [2.0]}), message="from the clone")
    clone.push("origin", ["main"])
    repo.pull("r2", "main")
    assert repo.read_table("scores").to_pylist() == [{"k": 2, "v": 2.0}]
    assert repo.fsck().ok


def test_push_sends_only_what_the_remote_lacks(pushed: tuple[udrfs.Repo, str]) -> None:
    repo, _url = pushed
    again = repo.push("r2", all=True)
    assert again.stats.files == 0 and not again.updated
    repo.write_table("small", pa.table({"x": [1]}))
    result = repo.push("r2")
    # one pack, its index fragment, one manifest, one commit
    assert result.stats.files == 4
    assert result.updated["main"][1] == repo.head()


def test_a_stale_push_is_refused_as_non_fast_forward(
    pushed: tuple[udrfs.Repo, str], tmp_path: Path
) -> None:
    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    clone.write_table("x", pa.table({"a": [1]}))
    clone.push("origin")
    remote_head = clone.head()
    repo.write_table("y", pa.table({"a": [2]}))
    with pytest.raises(NonFastForwardError, match="r2/main moved since you fetched; pull"):
        repo.push("r2")
    assert open_backend(url).refs.get("heads", "main") == remote_head
    with pytest.raises(NonFastForwardError, match="diverged"):
        repo.pull("r2", "main")
    repo.merge("r2/main", into="main")
    repo.push("r2")
    clone.pull("origin", "main")
    assert {t.name for t in clone.tables()} >= {"x", "y"}


def test_force_push_still_goes_through_compare_and_swap(
    pushed: tuple[udrfs.Repo, str], tmp_path: Path
) -> None:
    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    clone.write_table("x", pa.table({"a": [1]}))
    clone.push("origin")
    repo.push("r2", force=True)
    assert open_backend(url).refs.get("heads", "main") == repo.head()


def test_tags_are_create_only(pushed: tuple[udrfs.Repo, str], tmp_path: Path) -> None:
    repo, url = pushed
    repo.create_tag("release", "main")
    repo.push("r2", tags=True)
    assert open_backend(url).refs.get("tags", "release") == repo.head()
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    assert clone.tags() == repo.tags()
    clone.delete_tag("release")
    clone.create_tag("release", "experiment")
    with pytest.raises(AlreadyExistsError, match="tags are never moved"):
        clone.push("origin", tags=True)


def test_push_delete_removes_the_remote_branch(pushed: tuple[udrfs.Repo, str]) -> None:
    repo, url = pushed
    repo.push("r2", delete=["experiment"])
    assert list(open_backend(url).refs.list("heads")) == ["main"]
    assert "r2/experiment" not in repo.store.refs.list("remotes")
    with pytest.raises(NotFoundError, match="no branch 'experiment' on remote r2"):
        repo.push("r2", delete=["experiment"])


def test_fetch_keeps_remote_tracking_refs(pushed: tuple[udrfs.Repo, str], tmp_path: Path) -> None:
    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    repo.write_table("z", pa.table({"a": [1]}), branch="experiment")
    repo.push("r2", ["experiment"])
    result = clone.fetch("origin")
    new = repo.head("experiment")
    assert result.updated == {"origin/experiment": (clone.head("experiment"), new)}
    assert clone.resolve("origin/experiment") == repo.head("experiment")
    assert clone.head("experiment") != repo.head("experiment")  # fetch moves no local branch
    assert clone.fsck().ok


def test_a_push_or_pull_with_nothing_to_do_is_one_request_per_ref(
    pushed: tuple[udrfs.Repo, str], tmp_path: Path
) -> None:
    repo, url = pushed
    again = repo.push("r2", ["main", "experiment"])
    assert again.up_to_date == ["main", "experiment"] and again.requests == 2
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    pulled = clone.pull("origin", "main")
    assert not pulled.updated and pulled.requests == 1


def test_a_directory_is_a_remote_too(
    repo: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_versions(repo, nyc_parquet_dir, tmp_path)
    monkeypatch.chdir(tmp_path)
    repo.add_remote("usb", "usb")  # recorded as an absolute path
    assert repo.remotes()[0].url == str(tmp_path / "usb")
    repo.push("usb", all=True)
    assert udrfs.Repo(tmp_path / "usb").fsck().ok  # the remote is a store in the same layout
    clone = udrfs.Repo.clone(f"file://{tmp_path / 'usb'}", tmp_path / "clone")
    assert every_version_digest(clone) == every_version_digest(repo)


def test_remote_names_cannot_leave_the_store(repo: udrfs.Repo) -> None:
    with pytest.raises(InvalidNameError):
        repo.push("../../elsewhere")


def test_a_single_writer_remote_without_cas_still_pushes_and_clones(
    repo: udrfs.Repo, s3_url: str, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    _write_versions(repo, nyc_parquet_dir, tmp_path)
    config = repo.add_remote("solo", s3_url, cas=False)
    assert not config.cas and not repo.remotes()[0].cas
    repo.push("solo", all=True)
    repo.write_table("more", pa.table({"a": [1]}))
    repo.push("solo")
    clone = udrfs.Repo.clone(s3_url, tmp_path / "clone")
    assert every_version_digest(clone) == every_version_digest(repo)


def test_fetch_forgets_branches_deleted_on_the_remote(
    pushed: tuple[udrfs.Repo, str], tmp_path: Path
) -> None:
    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    repo.push("r2", delete=["experiment"])
    result = clone.fetch("origin")
    assert result.deleted == ["origin/experiment"]
    assert list(clone.store.refs.list("remotes")) == ["origin/main"]
    assert "experiment" in clone.branches()  # the local branch stays


def test_a_pull_finds_the_new_packs_in_the_commits_without_listing(
    pushed: tuple[udrfs.Repo, str], nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    flights = nyc_parquet_dir / "flights.parquet"
    repo.import_file("flights", flights, message="a big new table")
    assert repo.commit(repo.head()).packs  # the commit names its packs
    repo.push("r2")
    pulled = clone.pull("origin", "main")
    assert pulled.updated["main"][1] == repo.head()
    assert pulled.listings == 0 and pulled.stats.files > 0
    with clone.open("flights") as f:
        assert _native.blake3_hex(f.read()) == _native.blake3_hex(flights.read_bytes())
    assert clone.fsck().ok


def test_commits_written_without_packs_are_still_pulled_by_listing(
    pushed: tuple[udrfs.Repo, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from udrfs.catalog.model import Commit

    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    document = Commit.document

    def without_packs(**kwargs: object) -> dict[str, object]:
        doc = document(**kwargs)  # type: ignore[arg-type]
        doc.pop("packs", None)
        return doc

    monkeypatch.setattr(Commit, "document", staticmethod(without_packs))
    repo.write_table("older", pa.table({"a": [1, 2]}), message="as an older udrfs writes it")
    monkeypatch.undo()
    assert repo.commit(repo.head()).packs is None
    repo.push("r2")
    pulled = clone.pull("origin", "main")
    assert pulled.listings == 1
    assert clone.read_table("older").to_pylist() == [{"a": 1}, {"a": 2}]


def test_push_delete_keeps_a_push_that_lands_between_the_read_and_the_delete(
    pushed: tuple[udrfs.Repo, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from udrfs.store.backends.s3 import S3RefStore

    repo, url = pushed
    clone = udrfs.Repo.clone(url, tmp_path / "clone")
    clone.write_table("late", pa.table({"a": [1]}), branch="experiment")
    read = S3RefStore.read
    landed: list[str] = []

    def read_then_a_push_lands(
        self: S3RefStore, kind: str, name: str
    ) -> tuple[str | None, object | None]:
        answer = read(self, kind, name)  # type: ignore[arg-type]
        if name == "experiment" and not landed:
            landed.append(name)
            monkeypatch.setattr(S3RefStore, "read", read)
            clone.push("origin", ["experiment"])  # another machine, after the delete's read
        return answer

    monkeypatch.setattr(S3RefStore, "read", read_then_a_push_lands)
    with pytest.raises(NonFastForwardError, match="r2/experiment moved while it was being deleted"):
        repo.push("r2", delete=["experiment"])
    assert landed
    assert open_backend(url).refs.get("heads", "experiment") == clone.head("experiment")
    repo.fetch("r2")
    assert repo.resolve("r2/experiment") == clone.head("experiment")


def test_cloning_a_remote_with_no_branch_yet_is_refused_and_leaves_nothing(
    repo: udrfs.Repo, s3_url: str, tmp_path: Path
) -> None:
    from udrfs.errors import RemoteError

    # What a first push killed after sending udr.toml and before any ref leaves.
    open_backend(s3_url).blobs.put_if_absent("udr.toml", (repo.path / "udr.toml").read_bytes())
    with pytest.raises(RemoteError, match="holds no branch yet"):
        udrfs.Repo.clone(s3_url, tmp_path / "clone")
    assert not (tmp_path / "clone").exists()


def test_a_store_with_other_chunk_sizes_cannot_share_a_remote_but_its_clone_can(
    repo: udrfs.Repo, tmp_path: Path
) -> None:
    # A store made before new stores had 48 KiB minimum chunks, pushed to a remote.
    old = udrfs.Repo.init(tmp_path / "old")
    manifest = old.path / "udr.toml"
    manifest.write_text(manifest.read_text().replace("chunk_min = 49152", "chunk_min = 16384"))
    old = udrfs.Repo(old.path)
    old.write_table("t", pa.table({"k": [1, 2]}))
    old.add_remote("r2", str(tmp_path / "remote"))
    old.push("r2")
    # A new store is refused at once, naming both sizes and what to do instead.
    with pytest.raises(RemoteError) as refused:
        repo.add_remote("r2", str(tmp_path / "remote"))
    assert "(16384, 65536, 262144) bytes, this store with (49152, 65536, 262144)" in str(
        refused.value
    )
    assert "udr clone" in str(refused.value) and repo.remotes() == []
    # Its clone chunks as the remote does, and its writes go back.
    clone = udrfs.Repo.clone(str(tmp_path / "remote"), tmp_path / "clone")
    assert "chunk_min = 16384" in (clone.path / "udr.toml").read_text()
    clone.write_table("t", pa.table({"k": [1, 2, 3]}))
    clone.push("origin")
    old.pull("r2")
    assert old.read_table("t").num_rows == 3 and old.fsck().ok
