"""`udr expire`: which versions keep their data, and what reading a released one says."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from mounting import SampleStore, make_store, write_version

import udrfs
from udrfs.errors import EXIT_NOT_FOUND, EXIT_USAGE
from udrfs.query.fsspec import UdrFileSystem
from udrfs.store.expired import ExpiredRecord


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


@pytest.fixture
def store(tmp_path: Path) -> SampleStore:
    """`t` with 6 versions and `u` with 2 on main."""
    return make_store(tmp_path, {"t": 6, "u": 2}, rows=3000)


def released(repo: udrfs.Repo, table: str) -> list[int]:
    gone = repo.retention.released()
    return [v.version for v in repo.versions(table) if v.manifest_id in gone]


def test_keep_last_releases_older_versions_of_each_table(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    result = repo.expire(keep_last=2)
    assert [(r.table, r.version) for r in result.released] == [("t", n) for n in (1, 2, 3, 4)]
    assert released(repo, "t") == [1, 2, 3, 4]
    assert released(repo, "u") == []
    assert result.kept == 4 and result.reclaimable_bytes > 0
    record_file = store.path / "expired" / f"{result.released[0].manifest}.json"
    record = json.loads(record_file.read_text())
    assert record["table"] == "t" and record["version"] == 1 and record["branch"] == "main"
    assert record["policy"] == "udr expire --keep-last 2" and record["expired"].endswith("Z")
    assert repo.fsck().ok


def test_history_stays_after_expire(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    commits = [c.id for c in repo.log()]
    repo.expire(keep_last=1)
    assert [c.id for c in repo.log()] == commits
    assert [v.version for v in repo.versions("t")] == [1, 2, 3, 4, 5, 6]


def test_reading_an_expired_version_names_the_date_and_policy(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    repo.expire(keep_last=2)
    with pytest.raises(udrfs.VersionExpiredError) as caught:
        repo.read_table("t", version=3)
    text = str(caught.value)
    assert text.startswith("v3 of t was expired on 20") and "by `udr expire --keep-last 2`" in text
    assert "missing" not in text
    with pytest.raises(udrfs.VersionExpiredError):
        repo.open("t", version=1)
    with pytest.raises(udrfs.VersionExpiredError):
        repo.query("select count(*) from t", versions={"t": 2})
    as_of = repo.versions("t")[1].time  # t v2 was current then
    with pytest.raises(udrfs.VersionExpiredError):
        repo.query("select count(*) from t", as_of=as_of)
    with pytest.raises(udrfs.VersionExpiredError):
        repo.read_table("t", as_of=as_of)
    assert repo.read_table("t", version=5).num_rows == 3000  # kept
    assert repo.read_table("t").num_rows == 3000


def test_keep_within_keeps_every_version_current_in_the_window(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    history = repo.versions("t")
    # A window that starts just before v4 was replaced by v5: v4 was current in it.
    replaced = history[4].time
    from udrfs.catalog.retention import ExpirePolicy, expire

    now = replaced + timedelta(hours=1)
    window = timedelta(hours=1, microseconds=1)  # starts 1 µs before v5 replaced v4
    result = expire(
        repo.store,
        repo.catalog.history,
        repo.retention,
        ExpirePolicy(keep_within=window),
        now=now,
    )
    assert [r.version for r in result.released if r.table == "t"] == [1, 2, 3]


def test_heads_and_tags_keep_their_versions(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    first = repo.log()[-2]  # after the store's root commit: t v1
    repo.create_tag("v1", first.id)
    repo.create_branch("old", repo.log()[5].id)  # holds t v3
    result = repo.expire(keep_last=0)
    gone = {(r.table, r.version) for r in result.released}
    assert ("t", 1) not in gone and ("t", 3) not in gone
    assert ("t", 2) in gone and ("t", 6) not in gone and ("u", 2) not in gone
    assert repo.read_table("t", branch="v1").num_rows == 3000
    assert repo.read_table("t", branch="old").num_rows == 3000


def test_dry_run_changes_nothing(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    result = repo.expire(keep_last=1, dry_run=True)
    assert len(result.released) == 6 and result.reclaimable_bytes > 0
    assert not (store.path / "expired").exists()
    assert repo.read_table("t", version=1).num_rows == 3000
    assert repo.expire(keep_last=1).reclaimable_bytes == result.reclaimable_bytes


def test_expire_twice_releases_nothing_new(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    first = repo.expire(keep_last=3)
    again = repo.expire(keep_last=3)
    assert again.released == [] and again.already_expired == len(first.released)


def test_shared_chunks_of_kept_versions_are_not_counted_reclaimable(tmp_path: Path) -> None:
    repo = udrfs.Repo.init(tmp_path / "s")
    data = pa.table({"id": list(range(50_000)), "v": [1.0] * 50_000})
    repo.write_table("t", data, key="id")
    repo.write_table("t", data.append_column("w", pa.array([2] * 50_000)), key="id")
    repo.write_table("t", data, key="id", allow_schema_change=True)  # v3: the bytes of v1 again
    result = repo.expire(keep_last=1)
    assert [r.version for r in result.released] == [1, 2]
    v1 = repo.manifest(result.released[0].manifest)
    shared = set(v1.chunks.ids()) & set(repo.version("t").chunks.ids())
    assert shared == set(v1.chunks.ids())
    v2 = repo.manifest(result.released[1].manifest)
    only_v2 = {c for c in v2.chunks.ids()} - shared
    assert 0 < result.reclaimable_bytes <= v2.size and only_v2


def test_fsck_is_clean_when_released_chunks_are_gone(tmp_path: Path) -> None:
    repo = udrfs.Repo.init(tmp_path / "s")
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        ids = np.arange(20_000) + seed * 100_000  # no column shared between the versions
        repo.write_table("t", pa.table({"id": ids, "v": rng.random(20_000)}))
    repo.expire(keep_last=1)
    # What repack and a collector do: v2's chunks move to a new pack, the old packs go.
    result = repo.repack()
    assert result.rewritten and result.new_packs
    for pack in result.rewritten:
        (repo.path / "packs" / pack[:2] / f"{pack}.pack").unlink()
        (repo.path / "index" / f"{pack}.idx").unlink()
    fresh = udrfs.Repo(repo.path)
    report = fresh.fsck()
    assert report.ok, report.problems
    with pytest.raises(udrfs.VersionExpiredError):
        fresh.read_table("t", version=1)
    assert fresh.read_table("t").num_rows == 20_000


def test_fsck_names_a_damaged_expiry_record_and_repair_moves_it(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    repo.expire(keep_last=5)
    (record,) = (store.path / "expired").glob("*.json")
    record.write_text("{not json")
    report = repo.fsck()
    assert not report.ok and "expired/" in report.problems[0]
    report = repo.fsck(repair=True)
    assert report.ok and not record.exists()
    assert repo.read_table("t", version=1).num_rows == 3000  # its data was still there


def test_revert_diff_merge_and_new_refs_refuse_expired_versions(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    repo.create_branch("side", repo.log()[2].id)  # before t v6 (t v5): kept as a head
    repo.expire(keep_last=1)
    t_commits = repo.log(table="t")
    with pytest.raises(udrfs.VersionExpiredError, match="v1 of t was expired"):
        repo.revert(t_commits[-2].id, force=True)  # undoing t v2 would bring back v1
    with pytest.raises(udrfs.VersionExpiredError):
        repo.diff("t", 1, 6, key="id")
    with pytest.raises(udrfs.VersionExpiredError):
        repo.create_branch("again", t_commits[-1].id)
    with pytest.raises(udrfs.VersionExpiredError):
        repo.reset("side", t_commits[-1].id, force=True)
    assert repo.fsck().ok


def test_cli_expire_and_cat_exit_codes(store: SampleStore, tmp_path: Path) -> None:
    done = udr("expire", str(store.path), "--keep-last", "2", "--dry-run")
    assert done.returncode == 0 and "would release 4 version(s)" in done.stdout
    assert not (store.path / "expired").exists()
    done = udr("expire", str(store.path), "--keep-last", "2", "--json")
    assert done.returncode == 0 and len(json.loads(done.stdout)["released"]) == 4
    done = udr("cat", str(store.path), "t@1", "-o", str(tmp_path / "out.parquet"))
    assert done.returncode == EXIT_NOT_FOUND
    assert done.stderr.startswith("udr: error: v1 of t was expired on ")
    assert "by `udr expire --keep-last 2`" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "out.parquet").exists()
    versions = udr("versions", str(store.path), "t").stdout
    assert "v1 (expired)" in versions and "v5 (expired)" not in versions
    log = udr("log", str(store.path)).stdout
    assert log.count("seq ") == 9  # the root commit and 8 imports
    assert udr("fsck", str(store.path)).returncode == 0


def test_cli_refuses_an_expire_without_a_policy(store: SampleStore) -> None:
    done = udr("expire", str(store.path))
    assert done.returncode == EXIT_USAGE and "--keep-last" in done.stderr
    done = udr("expire", str(store.path), "--keep-within", "soon")
    assert done.returncode == EXIT_USAGE and "not a duration" in done.stderr
    assert not (store.path / "expired").exists()
    assert udr("fsck", str(store.path)).returncode == 0


def test_udr_urls_hide_expired_versions_and_refuse_them(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    repo.expire(keep_last=2)
    fs = UdrFileSystem(store=str(store.path))
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("@main/t", detail=False))
    assert names == [".changes", ".changes.txt", "latest.parquet", "v5.parquet", "v6.parquet"]
    with pytest.raises(FileNotFoundError, match="v2 of t was expired"):
        fs.open("@main/t/v2.parquet").read()


def test_a_record_is_immutable_once_written(store: SampleStore) -> None:
    repo = udrfs.Repo(store.path)
    (first,) = repo.expire(keep_last=5).released
    record = ExpiredRecord(first.manifest, "t", 1, "main", "2000-01-01T00:00:00Z", "other")
    assert not repo.retention.write(record)
    assert repo.retention.record(first.manifest).policy == "udr expire --keep-last 5"  # type: ignore[union-attr]


def test_source_files_are_untouched(store: SampleStore, tmp_path: Path) -> None:
    # The sample versions are deterministic: a re-import of an expired version's bytes is a
    # new version whose data is kept.
    repo = udrfs.Repo(store.path)
    repo.expire(keep_last=1)
    source = write_version(tmp_path / "again.parquet", "t", 1, 3000)
    commit = repo.import_file("t", source)
    assert commit is not None
    assert repo.read_table("t").num_rows == 3000
    assert repo.fsck().ok
