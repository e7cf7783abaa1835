"""`udr stats`: bytes per table and per branch (catalog/footprint.py; docs/usage.md, "Where
the bytes are"). Expected figures come from a model that walks each root on its own and
counts with sets, and from what `udr gc` really deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udrfs
from udrfs.catalog.ancestry import reachable
from udrfs.store.packs import CHUNK_HEADER, local_packs

RECORD = 36  # bytes per chunk in an encoded chunk list (format.md, "Chunks")


def parquet(path: Path, rows: int) -> Path:
    """A Parquet file of `rows` random 1,000-byte values, stored as written."""
    values = [os.urandom(1000) for _ in range(rows)]
    pq.write_table(pa.table({"b": values}), path, compression="none", use_dictionary=False)
    return path


def chunks_of(repo: udrfs.Repo, manifest_id: str) -> dict[str, int]:
    """Chunk id -> bytes it takes in a pack (header + raw bytes: imports are stored raw)."""
    encoded = repo.manifest(manifest_id).chunks.to_bytes()
    return {
        encoded[i : i + 32].hex(): CHUNK_HEADER
        + int.from_bytes(encoded[i + 32 : i + RECORD], "little")
        for i in range(0, len(encoded), RECORD)
    }


def object_size(repo: udrfs.Repo, object_id: str) -> int:
    return (repo.path / "objects" / object_id[:2] / object_id).stat().st_size


def model(repo: udrfs.Repo) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Each root walked on its own: root -> {chunk or object id: bytes}; and each table ->
    {chunk id: bytes} over the versions any root reaches (no version released here)."""
    roots = {f"heads/{b}": c for b, c in repo.branches().items()}
    roots |= {f"tags/{t}": c for t, c in repo.tags().items()}
    by_root: dict[str, dict[str, int]] = {}
    by_table: dict[str, dict[str, int]] = {}
    for root, head in roots.items():
        items: dict[str, int] = {}
        for commit_id, commit in reachable(repo, [head]).items():
            items[commit_id] = object_size(repo, commit_id)
            for manifest_id in commit.tables.values():
                while manifest_id is not None and manifest_id not in items:
                    items[manifest_id] = object_size(repo, manifest_id)
                    chunks = chunks_of(repo, manifest_id)
                    items.update(chunks)
                    m = repo.manifest(manifest_id)
                    by_table.setdefault(m.table, {}).update(chunks)
                    manifest_id = m.parent
        by_root[root] = items
    return by_root, by_table


def alone(mine: dict[str, int], others: list[dict[str, int]]) -> int:
    return sum(size for key, size in mine.items() if not any(key in o for o in others))


@pytest.fixture
def history(tmp_path: Path) -> udrfs.Repo:
    """main: a v1 = X, a v2 = Y, b v1 = X (the same bytes as a v1); a tag at a v1's commit;
    exp (from main): c v1 = Z and a v3 = W."""
    repo = udrfs.Repo.init(tmp_path / "store")
    x, y, z, w = (
        parquet(tmp_path / f"{n}.parquet", r)
        for n, r in zip("xyzw", (300, 200, 100, 150), strict=True)
    )
    repo.import_file("a", x)
    repo.create_tag("first", "main")
    repo.import_file("a", y)
    repo.import_file("b", x)
    repo.create_branch("exp")
    repo.import_file("c", z, branch="exp")
    repo.import_file("a", w, branch="exp")
    return repo


def test_bytes_per_table_match_a_walk_of_each_table(history: udrfs.Repo) -> None:
    _roots, tables = model(history)
    stats = history.stats()
    assert stats.by_table is not None
    got = {t.table: t for t in stats.by_table}
    assert sorted(got) == ["a", "b", "c"]
    for name, chunks in tables.items():
        others = [c for n, c in tables.items() if n != name]
        t = got[name]
        assert t.stored_bytes == sum(chunks.values())
        assert t.only_bytes == alone(chunks, others)
        assert t.shared_bytes == t.stored_bytes - t.only_bytes
    files = {v.version: v.size for v in history.table_versions("a", "exp")}
    assert (got["a"].versions, got["a"].released) == (3, 0)
    assert got["a"].logical_bytes == files[1] + files[2] + files[3]
    # b v1 is a v1's bytes: everything b holds, a holds too.
    assert got["b"].only_bytes == 0 and got["b"].stored_bytes > 300_000
    assert got["b"].logical_bytes == files[1]


def test_bytes_per_branch_match_a_walk_of_each_root(history: udrfs.Repo) -> None:
    roots, _tables = model(history)
    stats = history.stats()
    assert stats.by_branch is not None
    got = {b.branch: b for b in stats.by_branch}
    assert sorted(got) == ["exp", "main"]
    for branch, b in got.items():
        mine = roots[f"heads/{branch}"]
        others = [items for root, items in roots.items() if root != f"heads/{branch}"]
        assert b.reachable_bytes == sum(mine.values())
        assert b.only_bytes == alone(mine, others)
    # exp holds all of main's history: main has nothing of its own.
    assert got["main"].only_bytes == 0 and got["main"].freed_bytes == 0
    assert got["exp"].only_bytes > 250_000


def test_deleting_a_branch_and_collecting_frees_what_stats_said(history: udrfs.Repo) -> None:
    before = history.stats()
    assert before.by_branch is not None and before.reclaimable_bytes == 0
    freed = {b.branch: b.freed_bytes for b in before.by_branch}["exp"]
    assert freed > 250_000
    history.delete_branch("exp")
    assert history.stats().reclaimable_bytes == freed
    assert history.gc(grace=0, force=True).deleted == []  # condemns
    assert history.gc(grace=0, force=True).deleted_bytes == freed
    fresh = udrfs.Repo(history.path)
    assert fresh.fsck().ok
    assert fresh.stats().reclaimable_bytes == 0


def test_released_versions_hold_no_bytes(tmp_path: Path) -> None:
    repo = udrfs.Repo.init(tmp_path / "store")
    sizes = []
    for n in range(3):
        repo.import_file("t", parquet(tmp_path / f"{n}.parquet", 100 + n))
        sizes.append(repo.version("t").size)
    repo.expire(keep_last=1)
    stats = repo.stats()
    assert stats.by_table is not None
    (t,) = stats.by_table
    head = repo.branches()["main"]
    kept = chunks_of(repo, repo.commit(head).tables["t"])
    assert (t.versions, t.released, t.logical_bytes) == (1, 2, sizes[2])
    assert t.stored_bytes == t.only_bytes == sum(kept.values())
    # The packs that hold no chunk of a kept version are what gc reclaims (v1's pack also
    # holds the "PAR1" chunk every version starts with: it stays).
    unused = [p for p in local_packs(repo.path) if not set(p.chunks) & set(kept)]
    assert len(unused) == 1
    fragment = repo.path / "index" / f"{unused[0].pack}.idx"
    assert stats.reclaimable_bytes == unused[0].size + fragment.stat().st_size
    (main,) = stats.by_branch or ()
    assert main.only_bytes > t.stored_bytes  # the chunks, and the commits and manifests


def test_a_named_transaction_keeps_its_base_from_counting_as_one_branch_only(
    history: udrfs.Repo,
) -> None:
    tx = history.staging.open("exp", "pending")
    tx.import_file("d", parquet(history.path.parent / "d.parquet", 50))
    history.staging.save(tx)
    stats = history.stats()
    got = {b.branch: b for b in stats.by_branch or ()}
    # exp's head is the transaction's base: deleting exp would not free it.
    assert got["exp"].freed_bytes < 100_000
    assert {t.table for t in stats.by_table or ()} >= {"d"}


def test_stats_on_a_store_it_cannot_read_whole_say_unknown(history: udrfs.Repo) -> None:
    fragment = sorted((history.path / "index").glob("*.idx"))[0]
    fragment.write_bytes(fragment.read_bytes()[:-1])  # damaged: `udr fsck --repair` rebuilds it
    stats = udrfs.Repo(history.path).stats()
    assert stats.reclaimable_bytes is None and stats.by_table is None and stats.by_branch is None
    text = udr("stats", history.path)
    assert "unknown" in text.stdout and "only this table" not in text.stdout


def udr(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )


def test_cli_prints_bytes_per_table_and_branch(history: udrfs.Repo) -> None:
    stats = history.stats()
    doc = json.loads(udr("stats", history.path, "--json").stdout)
    assert doc["by_table"] == [t.to_dict() for t in stats.by_table or ()]
    assert doc["by_branch"] == [b.to_dict() for b in stats.by_branch or ()]
    assert {"table", "only_bytes", "shared_bytes"} <= set(doc["by_table"][0])
    text = udr("stats", history.path).stdout
    assert "only this table" in text and "freed by delete + gc" in text
    assert any(line.split()[:1] == ["exp"] for line in text.splitlines())
