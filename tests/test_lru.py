"""The one cache type (udrfs/lru.py): bounds, eviction order, thread safety."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from udrfs import _native
from udrfs.catalog import Catalog, Commit, TableChange, TableVersion
from udrfs.catalog.model import now_utc
from udrfs.lru import LruCache


def test_least_recently_used_entry_is_evicted_first() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert "b" not in cache
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    assert len(cache) == 2
    assert cache.evictions == 1


def test_peek_leaves_recency_and_counters_alone() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.peek("a") == 1
    cache.put("c", 3)
    assert "a" not in cache
    assert (cache.hits, cache.misses) == (0, 0)


def test_byte_budget_evicts_until_the_weights_fit() -> None:
    cache: LruCache[str, bytes] = LruCache(100, max_bytes=10, weigh=len)
    cache.put("a", b"xxxx")
    cache.put("b", b"xxxx")
    assert cache.bytes == 8
    cache.put("c", b"xxxxxx")
    assert "a" not in cache
    assert cache.bytes == 10
    cache.put("d", b"x")
    assert "b" not in cache
    assert cache.bytes == 7
    assert len(cache) == 2


def test_a_value_heavier_than_the_whole_budget_is_not_kept() -> None:
    cache: LruCache[str, bytes] = LruCache(100, max_bytes=10, weigh=len)
    cache.put("small", b"x")
    cache.put("huge", b"x" * 11)
    assert "huge" not in cache
    assert cache.get("small") == b"x"
    assert cache.bytes == 1


def test_replacing_a_key_counts_its_new_weight_only() -> None:
    cache: LruCache[str, bytes] = LruCache(100, max_bytes=100, weigh=len)
    cache.put("a", b"x" * 50)
    cache.put("a", b"x" * 10)
    assert cache.bytes == 10
    assert len(cache) == 1


def test_get_or_load_loads_a_missing_key_once() -> None:
    cache: LruCache[str, str] = LruCache(4)
    loads: list[str] = []

    def load() -> str:
        loads.append("a")
        return "value"

    assert cache.get_or_load("a", load) == "value"
    assert cache.get_or_load("a", load) == "value"
    assert loads == ["a"]
    assert (cache.hits, cache.misses) == (1, 1)


def test_falsy_values_are_cached() -> None:
    cache: LruCache[str, object] = LruCache(4)
    cache.put("empty", ())
    cache.put("no", False)
    assert cache.get("empty") == ()
    assert cache.get("no") is False
    assert cache.hits == 2


def test_clear_drops_entries_and_their_weight() -> None:
    cache: LruCache[str, bytes] = LruCache(4, max_bytes=100, weigh=len)
    cache.put("a", b"xyz")
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0 and cache.get("a") is None


def test_bounds_hold_under_concurrent_use() -> None:
    cache: LruCache[int, bytes] = LruCache(50, max_bytes=2_000, weigh=len)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(5_000):
                key = (i * 7 + seed) % 200
                if cache.get(key) is None:
                    cache.put(key, b"x" * (key % 90))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 50
    assert cache.bytes <= 2_000
    held = [cache.peek(k) for k in range(200) if k in cache]
    assert cache.bytes == sum(len(v) for v in held if v is not None)
    assert cache.evictions > 0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_entries": 0}, {"max_entries": 4, "max_bytes": 10}, {"max_entries": 4, "weigh": len}],
)
def test_a_cache_without_a_coherent_bound_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LruCache(**kwargs)  # type: ignore[arg-type]


# ---- the caches built from it stay within their bounds ------------------------------------


def _long_history(tmp_path: Path, commits: int, tables: int, chunks_per_version: int) -> str:
    """A store whose branch `long` has `commits` commits, each a new version of one of
    `tables` tables with a long chunk list. Written as objects directly (the catalog only
    reads them here), which is far cheaper than chunking real files."""
    catalog = Catalog.init(tmp_path / "store")
    objects = catalog.store.objects
    entry = bytes(range(32)) + (65536).to_bytes(4, "little")
    chunk_list = _native.ChunkList(entry * chunks_per_version)
    head = catalog.head()
    latest: dict[str, tuple[int, str]] = {}
    start = now_utc()
    for seq in range(1, commits + 1):
        table = f"t{seq % tables}"
        number, parent = latest.get(table, (0, None))
        manifest = objects.put(
            TableVersion.document(
                table=table,
                version=number + 1,
                parent=parent,
                size=65536 * chunks_per_version,
                blake3=f"{seq:064x}",
                chunks=chunk_list,
                rows=seq,
                schema=[{"name": "a", "type": "int64"}],
                key=None,
                columns=[],
            )
        )
        latest[table] = (number + 1, manifest)
        head = objects.put(
            Commit.document(
                parents=[head],
                branch="long",
                seq=seq,
                time=start + timedelta(microseconds=seq),
                author="test",
                message=f"commit {seq}",
                tables={name: m for name, (_, m) in latest.items()},
                changes=[TableChange(table, number or None, number + 1, seq)],
            )
        )
    catalog.create_branch("long", head)
    return head


def test_a_long_lived_catalog_keeps_its_caches_within_their_bounds(tmp_path: Path) -> None:
    # 300 versions of 4,096 chunks each (about 44 MB decoded): more than the manifest cache
    # may hold; 16 tables over 300 commits.
    commits, tables = 300, 16
    head = _long_history(tmp_path, commits, tables, chunks_per_version=4096)
    catalog = Catalog(tmp_path / "store")
    for n in range(tables):
        infos = catalog.table_versions(f"t{n}", "long")
        assert [i.version for i in infos] == list(range(1, len(infos) + 1))
        assert len(infos) == len(range(n or tables, commits + 1, tables))
    asked = list(catalog.first_parent_history(head))[::25]
    for commit in asked:
        for n in range(tables):
            catalog.table_versions(f"t{n}", commit.id)
    caches = {
        "objects": catalog.store.objects.cache,
        "manifests": catalog.history.manifest_cache,
        "versions": catalog.history.versions_cache,
    }
    for name, cache in caches.items():
        assert len(cache) <= cache.max_entries, name
        assert cache.max_bytes is not None and cache.bytes <= cache.max_bytes, name
    # Every manifest was read, more than may be kept: the oldest went.
    assert catalog.history.manifest_cache.evictions > 0
    # A manifest is kept once, decoded; its document is not kept beside it.
    assert len(catalog.store.objects.cache) <= commits + 1
    # Version lists are kept where the table changed and where they were asked for, not at
    # every commit of the history for every table.
    assert len(catalog.history.versions_cache) <= commits + tables * (len(asked) + 1)
    # What was dropped is read again when asked for.
    fresh = Catalog(tmp_path / "store")
    for n in range(tables):
        assert catalog.table_versions(f"t{n}", "long") == fresh.table_versions(f"t{n}", "long")
    assert catalog.version("t1", 1, "long") == fresh.version("t1", 1, "long")
