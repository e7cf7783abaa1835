"""What a store's packs hold, read from their index fragments (docs/format.md, "Index
fragments"): the one parser of fragments on the Python side (the engine has its own)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from udrfs import _native
from udrfs.errors import CorruptObjectError
from udrfs.store.keys import pack_key
from udrfs.store.objects import is_object_id

FRAGMENT_MAGIC = b"UDRIDX01"
FRAGMENT_HEAD = 48  # magic, pack id, entry count
FRAGMENT_ENTRY = 52  # id, offset, stored length, raw length, codec, reserved
_TRAILER = 32
# The header before each chunk's bytes in a pack (docs/format.md, "Packs").
CHUNK_HEADER = 44


def check_pack(data: bytes, pack_id: str, where: str, remedy: str) -> int:
    """The format version of pack `pack_id` (1 or 2; docs/format.md, "Packs"), after checking
    each of its chunks and its name. CorruptObjectError otherwise, saying what does not match
    in the pack at `where` and, last, what to do (`remedy`)."""
    try:
        return _native.check_pack(data, pack_id, f"{pack_id} on {where}")
    except _native.CorruptChunkError as exc:
        raise CorruptObjectError(f"{exc}; {remedy}") from None


def check_fragment(data: bytes, pack_id: str, where: str) -> int:
    """The number of entries of an index fragment, after checking its magic, checksum, pack
    id and length (CorruptObjectError saying which failed). Entries start at
    `FRAGMENT_HEAD`, `FRAGMENT_ENTRY` bytes each."""

    def bad(why: str) -> CorruptObjectError:
        return CorruptObjectError(
            f"index fragment {pack_id} on {where} is damaged ({why}); `udr fsck --repair` "
            "rebuilds it from its pack"
        )

    if len(data) < FRAGMENT_HEAD + _TRAILER or data[:8] != FRAGMENT_MAGIC:
        raise bad("bad magic or truncated")
    if _native.blake3_hex(data[:-_TRAILER]) != data[-_TRAILER:].hex():
        raise bad("checksum mismatch")
    if data[8:40].hex() != pack_id:
        raise bad("it describes another pack")
    (count,) = struct.unpack_from("<Q", data, 40)
    if FRAGMENT_HEAD + count * FRAGMENT_ENTRY + _TRAILER != len(data):
        raise bad("entry count does not match the file length")
    return int(count)


def fragment_entries(data: bytes, pack_id: str, where: str) -> dict[str, int]:
    """Chunk id -> stored length of each chunk a (checked) index fragment lists."""
    end = FRAGMENT_HEAD + check_fragment(data, pack_id, where) * FRAGMENT_ENTRY
    return {
        data[o : o + 32].hex(): struct.unpack_from("<I", data, o + 40)[0]
        for o in range(FRAGMENT_HEAD, end, FRAGMENT_ENTRY)
    }


@dataclass(frozen=True)
class PackContents:
    """One local pack: its file's size and mtime, and its chunks' stored lengths."""

    pack: str
    size: int
    mtime: float
    chunks: dict[str, int]


def local_packs(root: Path) -> list[PackContents]:
    """Every pack of the store at `root` that has an index fragment, oldest first. A fragment
    or pack that cannot be read raises (callers act on the whole picture or not at all),
    except one a collector deleted since the listing: it removes the fragment first, then
    the pack (format.md, "Garbage collection"), so a fragment gone by the time it is read,
    or a pack gone together with its fragment, is left out."""
    out = []
    for fragment in (root / "index").glob("*.idx"):
        pack_id = fragment.stem
        if not is_object_id(pack_id):
            continue
        try:
            data = fragment.read_bytes()
        except FileNotFoundError:
            continue  # deleted since the listing
        try:
            st = (root / pack_key(pack_id)).stat()
        except FileNotFoundError as exc:
            if not fragment.exists():
                continue  # the fragment, then the pack, deleted since the listing
            raise CorruptObjectError(
                f"{exc.filename} is missing: `udr fsck {root}` says what this affects"
            ) from None
        entries = fragment_entries(data, pack_id, str(root))
        out.append(PackContents(pack_id, st.st_size, st.st_mtime, entries))
    return sorted(out, key=lambda p: (p.mtime, p.pack))
