"""Expiry records travel with the data (real S3 server on loopback): a remote learns what a
store released, and a fetch or clone does not download data only released versions need."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import udrfs
from udrfs import _native
from udrfs.store.backends import open_backend


def three_versions(repo: udrfs.Repo) -> None:
    """`t` v1..v3 with no bytes in common."""
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        ids = np.arange(30_000) + seed * 1_000_000
        repo.write_table("t", pa.table({"id": ids, "v": rng.random(30_000)}))


def digest(repo: udrfs.Repo, version: int) -> str:
    with repo.open("t", version) as f:
        return _native.blake3_hex(f.read())


def remote_records(url: str) -> set[str]:
    return {b.key for b in open_backend(url).blobs.list("expired/")}


def test_a_push_sends_the_records_and_a_clone_skips_released_data(
    repo: udrfs.Repo, s3_url: str, tmp_path: Path
) -> None:
    three_versions(repo)
    repo.add_remote("r2", s3_url)
    repo.push("r2")
    released = repo.expire(keep_last=1).released
    assert [r.version for r in released] == [1, 2]
    # Nothing new to commit: the push still tells the remote what was released.
    result = repo.push("r2")
    assert result.up_to_date == ["main"]
    assert remote_records(s3_url) == {f"expired/{r.manifest}.json" for r in released}
    requests = repo.push("r2").requests
    assert requests == 1  # sent once: a push with nothing to do reads one ref again
    clone = udrfs.Repo.clone(s3_url, tmp_path / "clone")
    assert clone.retention.ids() == {r.manifest for r in released}
    with pytest.raises(udrfs.VersionExpiredError, match="v1 of t was expired"):
        clone.read_table("t", version=1)
    assert digest(clone, 3) == digest(repo, 3)
    assert clone.fsck().ok
    # The clone downloaded only the packs v3 needs (packs move whole: v3 shares a chunk
    # with v1's pack), not v2's.
    needed = {repo.store.chunks.pack_of(c) for c in repo.version("t").chunks.ids()}
    clone_packs = {p.stem for p in clone.path.glob("packs/??/*.pack")}
    assert clone_packs == needed and len(needed) < len(list(repo.path.glob("packs/??/*.pack")))
    assert [v.version for v in clone.versions("t")] == [1, 2, 3]  # history is all there


def test_a_push_after_the_data_was_collected_sends_only_what_is_kept(
    repo: udrfs.Repo, s3_url: str, tmp_path: Path
) -> None:
    three_versions(repo)
    repo.expire(keep_last=1)
    plan = repo.repack()
    for pack in plan.rewritten:  # what a collector does
        (repo.path / "packs" / pack[:2] / f"{pack}.pack").unlink()
        (repo.path / "index" / f"{pack}.idx").unlink()
    fresh = udrfs.Repo(repo.path)
    fresh.add_remote("r2", s3_url)
    fresh.push("r2")
    clone = udrfs.Repo.clone(s3_url, tmp_path / "clone")
    assert digest(clone, 3) == digest(fresh, 3)
    with pytest.raises(udrfs.VersionExpiredError):
        clone.read_table("t", version=2)
    assert clone.fsck().ok and udrfs.Repo(repo.path).fsck().ok


def test_a_store_read_from_the_remote_says_a_version_was_expired(
    repo: udrfs.Repo, s3_url: str, tmp_path: Path
) -> None:
    """Read straight from the remote (no clone), a released version is refused with its
    record's words, as locally; never as a chunk in no index fragment."""
    three_versions(repo)
    repo.add_remote("r2", s3_url)
    released = repo.expire(keep_last=1).released
    repo.push("r2")
    remote = udrfs.Repo(s3_url, cache_dir=tmp_path / "cache")
    expired = r"v1 of t was expired on .* by `udr expire"
    with pytest.raises(udrfs.VersionExpiredError, match=expired):
        remote.read_table("t", version=1)
    assert remote.retention.released() == {r.manifest for r in released}
    assert digest(remote, 3) == digest(repo, 3)
    # Fetched once into the cache directory (records are immutable).
    assert len(list((tmp_path / "cache").rglob(f"{released[0].manifest}.json"))) == 1
