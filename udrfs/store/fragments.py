"""Reading index fragments in Python, for the collector: the chunk ids a pack holds
(docs/format.md, "Index fragments"). The chunk engine reads them for everything else."""

from __future__ import annotations

from pathlib import Path

from udrfs import _native
from udrfs.errors import CorruptObjectError

MAGIC = b"UDRIDX01"
HEADER = 48
ENTRY = 52
TRAILER = 32


def fragment_chunk_ids(path: Path, pack_id: str) -> list[bytes]:
    """The 32-byte ids of the chunks in pack `pack_id`, from its fragment at `path`.
    A fragment that fails any check of format.md is a CorruptObjectError; OSError passes."""
    data = path.read_bytes()

    def bad(why: str) -> CorruptObjectError:
        return CorruptObjectError(
            f"index fragment {path} is damaged ({why}); `udr fsck --repair` rebuilds it from "
            "its pack"
        )

    if not data.startswith(MAGIC) or len(data) < HEADER + TRAILER:
        raise bad("bad magic or truncated")
    body, trailer = data[:-TRAILER], data[-TRAILER:]
    if _native.blake3_hex(body) != trailer.hex():
        raise bad("checksum mismatch")
    if body[8:40].hex() != pack_id:
        raise bad("it describes another pack")
    count = int.from_bytes(body[40:48], "little")
    if len(body) - HEADER != count * ENTRY:
        raise bad("entry count does not match the file length")
    return [body[i : i + 32] for i in range(HEADER, len(body), ENTRY)]
