"""The one in-memory cache of the package: bounded, least recently used first out.

Every cache of immutable records (decoded objects, manifests, version lists, row-group
layouts, resolved `udr://` paths, the daemon's view) is an `LruCache`; docs/architecture.md,
"Caches", lists them with their bounds.

Contract:

- *Bounds.* At most `max_entries` entries and, with `max_bytes`, at most that many bytes as
  counted by `weigh(value)`, an estimate of what the value holds in memory. After every `put`
  both bounds hold: the least recently used entries are dropped until they do. A value that
  weighs more than `max_bytes` on its own is not kept at all.
- *Recency.* `get` and `put` make an entry the most recently used; `peek` does not.
- *Threads.* Every method may be called from any thread. One lock guards the entries; it is
  never held while a caller's code runs (`weigh` runs before the lock is taken, `load` in
  `get_or_load` runs outside it), so two threads missing the same key may both load it and the
  later `put` wins. That is harmless for what is cached here: values are immutable and equal
  for equal keys.
- *Values.* `None` is not a cacheable value: `get` returns None for a miss.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

KiB = 1024
MiB = 1024 * KiB


class LruCache(Generic[K, V]):
    """A thread-safe LRU map bounded by entry count and optionally by estimated bytes."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int | None = None,
        weigh: Callable[[V], int] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("an LruCache holds at least one entry")
        if (max_bytes is None) != (weigh is None):
            raise ValueError("a byte budget needs a weigh function, and the other way round")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._weigh = weigh
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    @property
    def bytes(self) -> int:
        """The summed weight of the entries held (0 without a byte budget)."""
        return self._bytes

    def get(self, key: K) -> V | None:
        """The value under `key` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return item[0]

    def peek(self, key: K) -> V | None:
        """The value under `key` without touching its recency or the counters."""
        with self._lock:
            item = self._items.get(key)
        return None if item is None else item[0]

    def put(self, key: K, value: V) -> None:
        """Keep `value` under `key` as the most recently used entry, then evict to the bounds."""
        weight = self._weigh(value) if self._weigh is not None else 0
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if self.max_bytes is not None and weight > self.max_bytes:
                self.evictions += 1
                return
            self._items[key] = (value, weight)
            self._bytes += weight
            while len(self._items) > self.max_entries or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
                self.evictions += 1

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, or `load()`'s, which is then kept. `load` runs without the lock."""
        value = self.get(key)
        if value is None:
            value = load()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
