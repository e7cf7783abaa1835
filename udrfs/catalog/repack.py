"""`udr repack`: rewrite packs that are mostly unused, and merge small ones.

A pack is immutable, so the bytes of chunks no live version needs (an expired version, an
aborted transaction) stay in it until the whole pack can go. Repack copies the live chunks of
such packs into new packs (new index fragments), in the order the live versions use them, and
deletes nothing: each old pack then holds only chunks that a newer pack also holds, which is
what makes it reclaimable by the collector (docs/architecture.md, "Repack"). Readers keep
working throughout: they read the old packs until a collector removes them.

Liveness is the collector's (catalog/liveness.py, `find_live`); which pack keeps a chunk held by
several is decided by `keepers` (the newest holder), the collector's rule. A store on S3/R2 is
repacked by the same code: its refs, expiry records, condemned record and packs are read
through the collector's storage interface (catalog/gc_storage.py), and its chunk store copies
by reading each chunk from the remote and uploading the new packs at the flush
(store/remote_chunks.py, `copy_chunks`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from udrfs.catalog.gc import storage_of
from udrfs.catalog.gc_storage import GcStorage, LocalGcStorage
from udrfs.catalog.liveness import UnsafeToCollect, find_live
from udrfs.errors import UdrError, UsageError
from udrfs.store.keys import pack_key
from udrfs.store.packs import CHUNK_HEADER, PackContents, fragment_entries, local_packs

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.store import Store

DEFAULT_MAX_UNUSED = 0.05
# A pack below this share of the store's pack target is small: two or more are merged.
SMALL_PACK_SHARE = 0.5
_PACK_MAGIC = 8


@dataclass
class RepackResult:
    """What a repack did (or, with `dry_run`, would do)."""

    dry_run: bool
    live_packs_before: int  # packs that keep some live chunk (the collector keeps these)
    live_packs_after: int
    rewritten: list[str] = field(default_factory=list)  # packs now reclaimable by gc
    new_packs: list[str] = field(default_factory=list)
    copied_bytes: int = 0  # raw bytes of the live chunks copied
    reclaimable_bytes: int = 0  # size of the rewritten packs
    left_for_later: int = 0  # packs over the threshold that --max-bytes left alone

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def keepers(packs: Iterable[PackContents], live: Iterable[str]) -> dict[str, str]:
    """Live chunk id -> the pack that keeps it: of the packs holding it, the newest, and of
    packs as new the lowest id (the collector's order; it may free the others). Live chunks
    in no pack are left out."""
    holder: dict[str, str] = {}
    live_ids = set(live)
    for pack in sorted(packs, key=lambda p: (-p.mtime, p.pack)):  # best first
        for chunk_id in pack.chunks:
            if chunk_id in live_ids:
                holder.setdefault(chunk_id, pack.pack)
    return holder


def stored_packs(storage: GcStorage) -> list[PackContents]:
    """Every pack with an index fragment, oldest first: a local store's (`local_packs`), or
    the packs a remote lists, with their sizes and LastModified, each one's chunks from its
    fragment (fetched and checked). Any listing or read error raises."""
    if isinstance(storage, LocalGcStorage):
        return local_packs(storage.root)
    files = storage.list_files()
    fragments = sorted(
        k for k, f in files.items() if f.kind == "index" and pack_key(k[6:-4]) in files
    )
    out = []
    for key, data in storage.read_fragments(fragments):
        pack = key[6:-4]
        listed = files[pack_key(pack)]
        try:
            entries = fragment_entries(data, pack, storage.where)
        except UdrError as exc:
            raise UnsafeToCollect(f"{exc}; nothing was copied") from None
        out.append(PackContents(pack, listed.size, listed.mtime, entries))
    return sorted(out, key=lambda p: (p.mtime, p.pack))


def repack(
    store: Store,
    history: History,
    max_unused: float = DEFAULT_MAX_UNUSED,
    max_bytes: int | None = None,
    dry_run: bool = False,
) -> RepackResult:
    if not 0 <= max_unused < 1:
        raise UsageError(f"--max-unused must be a share from 0% to below 100%, not {max_unused}")
    if max_bytes is not None and max_bytes <= 0:
        raise UsageError(f"--max-bytes must be positive, not {max_bytes}")
    storage = storage_of(store)
    live = find_live(store, history, storage.read_expired(), read_refs=storage.read_refs)
    # After the walk: every chunk it found is in a fragment written before the root naming
    # it (a writer flushes, then saves its transaction or moves its ref), so the engine
    # knows where each chunk to copy is.
    store.chunks.reload_index()
    # A pack the collector condemned keeps nothing: it is about to go (catalog/gc.py).
    condemned = storage.read_record()
    packs = [p for p in stored_packs(storage) if pack_key(p.pack) not in condemned]
    keeper = keepers(packs, live.chunks)
    kept_by: dict[str, list[str]] = {}
    for chunk_id, pack_id in keeper.items():
        kept_by.setdefault(pack_id, []).append(chunk_id)
    needed = [p for p in packs if p.pack in kept_by]
    result = RepackResult(dry_run, len(needed), len(needed))

    def used(pack: PackContents) -> int:
        return _PACK_MAGIC + sum(pack.chunks[c] + CHUNK_HEADER for c in kept_by[pack.pack])

    wasteful = sorted(
        (p for p in needed if 1 - used(p) / max(p.size, 1) > max_unused),
        key=lambda p: used(p) / max(p.size, 1),
    )
    small_limit = store.format.pack_target * SMALL_PACK_SHARE
    small = [p for p in needed if p.size < small_limit and p not in wasteful]
    if len(small) + sum(p.size < small_limit for p in wasteful) < 2:
        small = []  # a lone small pack would only be copied to another small pack
    chosen: list[PackContents] = []
    budget = max_bytes
    for pack in [*wasteful, *small]:
        cost = used(pack)
        if budget is not None and cost > budget:
            result.left_for_later += 1
            continue
        chosen.append(pack)
        if budget is not None:
            budget -= cost
    if len(chosen) == 1 and chosen[0] in small:
        chosen = []  # nothing to merge it with within the budget
    chosen_ids = {p.pack for p in chosen}
    result.rewritten = sorted(chosen_ids)
    result.reclaimable_bytes = sum(p.size for p in chosen)
    # The chunks to copy, in the order live versions use them (heads first).
    todo = [c for c in live.chunks if keeper.get(c) in chosen_ids]
    result.copied_bytes = sum(live.chunks[c] for c in todo)
    if dry_run or not todo:
        if not todo:
            result.rewritten, result.reclaimable_bytes = [], 0
        result.live_packs_after = (
            len(needed) - len(result.rewritten) + _packs_for(store, chosen, kept_by)
        )
        return result
    batch: list[str] = []
    batch_bytes = 0
    for chunk_id in todo:
        batch.append(chunk_id)
        batch_bytes += live.chunks[chunk_id]
        if batch_bytes >= store.format.pack_target:
            store.chunks.copy_chunks(batch)
            batch, batch_bytes = [], 0
    if batch:
        store.chunks.copy_chunks(batch)
    result.new_packs = sorted(store.chunks.flush())
    # A copy can come out byte-identical to a pack it read (same chunks, same order), under
    # the same name: that pack is kept, not reclaimable.
    result.rewritten = [p for p in result.rewritten if p not in result.new_packs]
    result.reclaimable_bytes = sum(p.size for p in chosen if p.pack in result.rewritten)
    result.live_packs_after = len(needed) - len(chosen) + len(result.new_packs)
    return result


def _packs_for(store: Store, chosen: list[PackContents], kept_by: dict[str, list[str]]) -> int:
    """How many packs the live chunks of `chosen` fill (an estimate for a dry run)."""
    total = sum(p.chunks[c] + CHUNK_HEADER for p in chosen for c in kept_by[p.pack])
    target = store.format.pack_target
    return -(-total // target) if total else 0
