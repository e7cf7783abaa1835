"""What a store's packs hold, read from their index fragments (docs/format.md, "Index
fragments"): the one parser of fragments on the Python side (the engine has its own)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from udrfs import _native
from udrfs.errors import CorruptObjectError
from udrfs.store.objects import hashed_path, is_object_id

FRAGMENT_MAGIC = b"UDRIDX01"
_FRAGMENT_HEAD = 48  # magic, pack id, entry count
_FRAGMENT_ENTRY = 52  # id, offset, stored length, raw length, codec, reserved
_TRAILER = 32
# The header before each chunk's bytes in a pack (docs/format.md, "Packs").
CHUNK_HEADER = 44


def pack_key(pack_id: str) -> str:
    return hashed_path(Path("packs"), pack_id, ".pack").as_posix()


def fragment_key(pack_id: str) -> str:
    return f"index/{pack_id}.idx"


def fragment_entries(data: bytes, pack_id: str, where: str) -> dict[str, int]:
    """Chunk id -> stored length of each chunk an index fragment lists, after checking the
    fragment's magic, pack id, trailer and length (CorruptObjectError saying which failed)."""

    def bad(why: str) -> CorruptObjectError:
        return CorruptObjectError(
            f"index fragment {pack_id} on {where} is damaged ({why}); `udr fsck --repair` "
            "rebuilds it from its pack"
        )

    if len(data) < _FRAGMENT_HEAD + _TRAILER or data[:8] != FRAGMENT_MAGIC:
        raise bad("bad magic or truncated")
    if _native.blake3_hex(data[:-_TRAILER]) != data[-_TRAILER:].hex():
        raise bad("checksum mismatch")
    if data[8:40].hex() != pack_id:
        raise bad("it describes another pack")
    (count,) = struct.unpack_from("<Q", data, 40)
    end = _FRAGMENT_HEAD + count * _FRAGMENT_ENTRY
    if end + _TRAILER != len(data):
        raise bad("entry count does not match the file length")
    return {
        data[o : o + 32].hex(): struct.unpack_from("<I", data, o + 40)[0]
        for o in range(_FRAGMENT_HEAD, end, _FRAGMENT_ENTRY)
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
