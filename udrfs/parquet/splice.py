"""One Parquet file from row groups encoded apart, byte for byte what one writer writes.

The dedup writer encodes every row group independently of the others (writer.py), so the
groups can be encoded on several threads, each into a one-group file of its own, and joined:
the file's magic, each group's bytes as they are, and one footer whose row groups are the
one-group files' row groups with their offsets moved to where the bytes now sit. pyarrow
writes such a file exactly as it writes the same groups one after another; the tests compare
the two byte for byte.

A footer is a Thrift `FileMetaData` (compact protocol); the native engine decodes each into a
tree that writes back to the same bytes, moves the offsets, renumbers the groups, adds up the
rows and writes the joined footer (native/src/parquet_footer.rs).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from udrfs import _native

MAGIC = b"PAR1"


class FooterError(ValueError):
    """A file whose footer cannot be joined (not Parquet, or not as expected)."""


def footer_of(file: bytes) -> tuple[bytes, int]:
    """A Parquet file's `FileMetaData` bytes and where they start."""
    if len(file) < 12 or file[:4] != MAGIC or file[-4:] != MAGIC:
        raise FooterError("not a Parquet file")
    (length,) = struct.unpack("<I", file[-8:-4])
    start = len(file) - 8 - length
    if start < len(MAGIC):
        raise FooterError("not a Parquet file: its footer length is out of range")
    return file[start:-8], start


class Joiner:
    """Joins one-group files (each written with the same schema and options) into one file,
    as a stream: `MAGIC`, then what `add` returns for each file in order, then `footer()`."""

    def __init__(self) -> None:
        self._footers: list[tuple[bytes, int]] = []
        self._offset = len(MAGIC)  # where the next file's row groups go

    def add(self, file: bytes) -> bytes:
        """The bytes of `file`'s row groups, to be written next; its footer is kept."""
        footer, start = footer_of(file)
        self._footers.append((footer, self._offset - len(MAGIC)))
        self._offset += start - len(MAGIC)
        return file[len(MAGIC) : start]

    def footer(self) -> bytes:
        """The footer of the joined file, with its length and closing magic."""
        if not self._footers:
            raise FooterError("nothing to join")
        try:
            meta = _native.parquet_join_footers(self._footers)
        except ValueError as exc:
            raise FooterError(str(exc)) from None
        return meta + struct.pack("<I", len(meta)) + MAGIC


def join(files: Sequence[bytes]) -> bytes:
    """One Parquet file holding the row groups of `files`, in order (see `Joiner`)."""
    joiner = Joiner()
    body = [joiner.add(file) for file in files]
    return b"".join([MAGIC, *body, joiner.footer()])
