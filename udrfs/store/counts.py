"""Late row-count records: `counts/xx/<commit id>` (docs/format.md, "Row-count records").

A commit whose row counts were not computed before its commit point lists the tables they
are missing for; the counts are computed afterwards and written here, once, named by the
commit's id. A record is a pure function of its commit (exact counts of two versions the
commit names), so whoever computes it writes the same content; it is never rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zstandard

from udrfs.errors import CorruptObjectError
from udrfs.store.atomic import write_atomic
from udrfs.store.keys import hashed_path
from udrfs.store.objects import canonical_json, is_object_id

COUNTS_DIR = "counts"
RECORD_KIND = "row_counts"


def counts_key(commit_id: str) -> str:
    """A record's path relative to the store (and its key on a remote)."""
    return hashed_path(Path(COUNTS_DIR), commit_id).as_posix()


def encode_record(doc: dict[str, Any]) -> bytes:
    """Canonical JSON, zstd with its content checksum (the name is not a hash of the bytes,
    so the frame's checksum is what catches damage)."""
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(canonical_json(doc))


def decode_record(commit_id: str, stored: bytes, where: str) -> dict[str, Any]:
    """The record's document, checked: CorruptObjectError if damaged or not this commit's."""
    try:
        doc = json.loads(zstandard.ZstdDecompressor().decompress(stored))
    except (zstandard.ZstdError, ValueError) as exc:
        raise CorruptObjectError(
            f"row-count record {where} is damaged ({exc}); `udr fsck --repair` removes it "
            "and the counts are computed again"
        ) from None
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != RECORD_KIND
        or doc.get("commit") != commit_id
        or not isinstance(doc.get("tables"), dict)
    ):
        raise CorruptObjectError(
            f"row-count record {where} is not the record of commit {commit_id}; "
            "`udr fsck --repair` removes it and the counts are computed again"
        )
    return doc


class CountRecords:
    """The store's `counts/` directory: read and create-once write of records."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = root / COUNTS_DIR

    def path(self, commit_id: str) -> Path:
        return hashed_path(self.directory, commit_id)

    def exists(self, commit_id: str) -> bool:
        return self.path(commit_id).exists()

    def get(self, commit_id: str) -> dict[str, Any] | None:
        """The record of `commit_id`, or None when it is not written (yet)."""
        if not is_object_id(commit_id):
            return None
        path = self.path(commit_id)
        try:
            stored = path.read_bytes()
        except FileNotFoundError:
            return None
        return decode_record(commit_id, stored, str(path))

    def get_bytes(self, commit_id: str) -> bytes | None:
        try:
            return self.path(commit_id).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, commit_id: str, tables: dict[str, dict[str, int] | None]) -> dict[str, Any]:
        """Write the record unless it exists; the document (as stored) either way."""
        doc = {"kind": RECORD_KIND, "format": 1, "commit": commit_id, "tables": tables}
        self.install(commit_id, encode_record(doc))
        return doc

    def install(self, commit_id: str, stored: bytes) -> None:
        """Write a record's bytes (checked by the caller) unless one exists."""
        path = self.path(commit_id)
        if not path.exists():
            write_atomic(path, stored)
