"""Where each chunk lies in a remote store's packs: its index fragments, read in Python.

The native engine reads fragments of a local store; a store read from a remote needs the same
answer (chunk id -> pack, offset, stored length, raw length, codec) to send ranged GETs. The
fragments (docs/format.md, "Index fragments") are parsed with numpy into one table sorted by
chunk id, not a Python object per chunk: 52 bytes per chunk plus an 8-byte sort key.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from udrfs.store.packs import FRAGMENT_HEAD, check_fragment

ENTRY = np.dtype(
    [
        ("id", "V32"),
        ("offset", "<u8"),
        ("stored", "<u4"),
        ("raw", "<u4"),
        ("codec", "u1"),
        ("reserved", "V3"),
    ]
)
# A chunk list (docs/format.md, "Chunks"): 32-byte id, raw length u32.
CHUNK_LIST_ENTRY = np.dtype([("id", "V32"), ("raw", "<u4")])


@dataclass(frozen=True)
class ChunkLocation:
    """Where a chunk's stored bytes are: `packs/xx/<pack>.pack`, [offset, offset + stored)."""

    chunk_id: str
    pack: str
    offset: int
    stored: int
    raw: int
    codec: int


def parse_fragment(pack_id: str, data: bytes, where: str) -> np.ndarray:
    """The entries of one index fragment; CorruptObjectError if it fails its checks."""
    count = check_fragment(data, pack_id, where)
    return np.frombuffer(data, dtype=ENTRY, count=count, offset=FRAGMENT_HEAD)


def sort_keys(ids: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each 32-byte id as a big-endian integer (the table's sort key)."""
    return np.frombuffer(ids.tobytes(), dtype=">u8").reshape(-1, 4)[:, 0].astype(np.uint64)


class PackIndex:
    """Every chunk of the fragments added so far, looked up by id. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._packs: list[str] = []
        self._pack_numbers: dict[str, int] = {}
        self._pending: list[tuple[int, np.ndarray]] = []
        self._entries = np.zeros(0, dtype=ENTRY)
        self._pack_of = np.zeros(0, dtype=np.int32)
        self._keys = np.zeros(0, dtype=np.uint64)

    def __contains__(self, pack_id: str) -> bool:
        return pack_id in self._pack_numbers

    @property
    def packs(self) -> list[str]:
        return [p for p in self._packs if p in self._pack_numbers]

    def add(self, pack_id: str, entries: np.ndarray) -> None:
        with self._lock:
            if pack_id in self._pack_numbers:
                return
            self._pack_numbers[pack_id] = len(self._packs)
            self._packs.append(pack_id)
            self._pending.append((self._pack_numbers[pack_id], entries))

    def discard(self, pack_ids: set[str]) -> None:
        """Forget packs (the collector deleted them): their chunks are found in the others."""
        self._merged()
        with self._lock:
            gone = [self._pack_numbers.pop(p) for p in pack_ids if p in self._pack_numbers]
            if not gone:
                return
            keep = ~np.isin(self._pack_of, np.array(gone, dtype=np.int32))
            self._entries, self._pack_of, self._keys = (
                self._entries[keep],
                self._pack_of[keep],
                self._keys[keep],
            )

    def _merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            if self._pending:
                parts = [self._entries, *(e for _n, e in self._pending)]
                owners = [self._pack_of, *(np.full(len(e), n, np.int32) for n, e in self._pending)]
                entries = np.concatenate(parts)
                pack_of = np.concatenate(owners)
                keys = sort_keys(entries["id"])
                order = np.argsort(keys, kind="stable")
                self._entries, self._pack_of, self._keys = (
                    entries[order],
                    pack_of[order],
                    keys[order],
                )
                self._pending = []
            return self._entries, self._pack_of, self._keys

    def lookup(self, ids: list[bytes]) -> list[ChunkLocation | None]:
        """The location of each chunk id (32 bytes), None for ids no fragment lists."""
        entries, pack_of, keys = self._merged()
        if not ids:
            return []
        wanted = np.frombuffer(b"".join(ids), dtype=">u8").reshape(-1, 4)[:, 0].astype(np.uint64)
        first = np.searchsorted(keys, wanted, side="left")
        out: list[ChunkLocation | None] = []
        for chunk_id, pos in zip(ids, first.tolist(), strict=True):
            found = None
            key = int.from_bytes(chunk_id[:8], "big")
            # Several ids may share their first 8 bytes: look at each of them.
            while pos < len(keys) and int(keys[pos]) == key:
                entry = entries[pos]
                if entry["id"].tobytes() == chunk_id:
                    found = ChunkLocation(
                        chunk_id.hex(),
                        self._packs[int(pack_of[pos])],
                        int(entry["offset"]),
                        int(entry["stored"]),
                        int(entry["raw"]),
                        int(entry["codec"]),
                    )
                    break
                pos += 1
            out.append(found)
        return out

    def stats(self) -> dict[str, int]:
        entries, _pack_of, _keys = self._merged()
        return {
            "packs": len(self._packs),
            "chunks": len(entries),
            "raw_bytes": int(entries["raw"].sum()) if len(entries) else 0,
        }
