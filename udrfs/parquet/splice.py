"""One Parquet file from row groups encoded apart, byte for byte what one writer writes.

The dedup writer encodes every row group independently of the others (writer.py), so the
groups can be encoded on several threads, each into a one-group file of its own, and joined:
the file's magic, each group's bytes as they are, and one footer whose row groups are the
one-group files' row groups with their offsets moved to where the bytes now sit. pyarrow
writes such a file exactly as it writes the same groups one after another; the tests compare
the two byte for byte.

A footer is a Thrift `FileMetaData` in the compact protocol. This module decodes it into a
tree of `Field`s that keeps every field, in order and with its type, so that writing the tree
back gives the same bytes; only the offsets, the group ordinals and the row count change.
Field ids are those of parquet.thrift.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

MAGIC = b"PAR1"

# Compact-protocol type codes.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY = 1, 2, 3, 4, 5, 6, 7, 8
_LIST, _SET, _MAP, _STRUCT = 9, 10, 11, 12
_INTS = (_BYTE, _I16, _I32, _I64)

# parquet.thrift field ids of what joining changes.
_FILE_NUM_ROWS, _FILE_ROW_GROUPS = 3, 4
_GROUP_COLUMNS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 5, 7
_CHUNK_FILE_OFFSET, _CHUNK_META = 2, 3
_CHUNK_OFFSETS = (_CHUNK_FILE_OFFSET, 4, 6)  # file offset, offset index, column index
# ColumnMetaData: data page, index page, dictionary page, bloom filter offsets.
_META_OFFSETS = (9, 10, 11, 14)


class FooterError(ValueError):
    """A footer this module cannot read (not Parquet's compact Thrift, or not as expected)."""


@dataclass(frozen=True)
class Field:
    id: int
    type: int
    value: Any  # int, bytes (binary, double), bool, list of Field (struct), _List


@dataclass(frozen=True)
class _List:
    type: int  # of the elements
    items: list[Any]
    container: int = _LIST  # or _SET


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise FooterError("footer ends inside a value")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FooterError("footer ends inside a value")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise FooterError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> Any:
        if kind in _INTS:
            return self.byte() if kind == _BYTE else self.zigzag()
        if kind == _BINARY:
            return self.take(self.varint())
        if kind == _DOUBLE:
            return self.take(8)
        if kind == _STRUCT:
            return self.struct()
        if kind in (_LIST, _SET):
            header = self.byte()
            size = header >> 4
            if size == 15:
                size = self.varint()
            element = header & 0x0F
            if element in (_TRUE, _FALSE):
                return _List(element, [self.byte() for _ in range(size)], kind)
            return _List(element, [self.value(element) for _ in range(size)], kind)
        raise FooterError(f"unexpected Thrift type {kind}")

    def struct(self) -> list[Field]:
        fields: list[Field] = []
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            kind = header & 0x0F
            delta = header >> 4
            field_id = last + delta if delta else self.zigzag()
            if kind in (_TRUE, _FALSE):
                fields.append(Field(field_id, kind, kind == _TRUE))
            else:
                fields.append(Field(field_id, kind, self.value(kind)))
            last = field_id


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def varint(self, n: int) -> None:
        while n >= 0x80:
            self.out.append((n & 0x7F) | 0x80)
            n >>= 7
        self.out.append(n)

    def zigzag(self, n: int) -> None:
        self.varint((n << 1) ^ (n >> 63))

    def value(self, kind: int, value: Any) -> None:
        if kind == _BYTE:
            self.out.append(value)
        elif kind in _INTS:
            self.zigzag(value)
        elif kind == _BINARY:
            self.varint(len(value))
            self.out += value
        elif kind == _DOUBLE:
            self.out += value
        elif kind == _STRUCT:
            self.struct(value)
        elif kind in (_LIST, _SET):
            size = len(value.items)
            if size < 15:
                self.out.append(size << 4 | value.type)
            else:
                self.out.append(0xF0 | value.type)
                self.varint(size)
            for item in value.items:
                if value.type in (_TRUE, _FALSE):
                    self.out.append(item)
                else:
                    self.value(value.type, item)
        else:
            raise FooterError(f"unexpected Thrift type {kind}")

    def struct(self, fields: Sequence[Field]) -> None:
        last = 0
        for f in fields:
            kind = f.type
            if kind in (_TRUE, _FALSE):
                kind = _TRUE if f.value else _FALSE
            if 0 < f.id - last <= 15:
                self.out.append((f.id - last) << 4 | kind)
            else:
                self.out.append(kind)
                self.zigzag(f.id)
            if f.type not in (_TRUE, _FALSE):
                self.value(f.type, f.value)
            last = f.id
        self.out.append(0)


def read_footer(file: bytes) -> tuple[list[Field], int]:
    """A Parquet file's `FileMetaData` and where it starts."""
    if len(file) < 12 or file[:4] != MAGIC or file[-4:] != MAGIC:
        raise FooterError("not a Parquet file")
    (length,) = struct.unpack("<I", file[-8:-4])
    start = len(file) - 8 - length
    if start < 4:
        raise FooterError("footer length out of range")
    reader = _Reader(file[start:-8])
    meta = reader.struct()
    if reader.pos != length:
        raise FooterError("footer has trailing bytes")
    return meta, start


def _get(fields: Sequence[Field], field_id: int) -> Field | None:
    return next((f for f in fields if f.id == field_id), None)


def _with(fields: list[Field], field_id: int, value: Any) -> list[Field]:
    """`fields` with the value of `field_id` (which it has) replaced, in its place."""
    if _get(fields, field_id) is None:
        raise FooterError(f"footer struct without field {field_id}")
    return [replace(f, value=value) if f.id == field_id else f for f in fields]


def _moved(fields: list[Field], ids: Sequence[int], shift: int) -> list[Field]:
    return [
        replace(f, value=f.value + shift) if f.id in ids and f.type == _I64 and f.value else f
        for f in fields
    ]


def _moved_group(group: list[Field], shift: int, ordinal: int) -> list[Field]:
    """A row group of a one-group file, as the `ordinal`-th group `shift` bytes further on."""
    columns = _get(group, _GROUP_COLUMNS)
    if columns is None or not isinstance(columns.value, _List):
        raise FooterError("row group without columns")
    moved_columns = []
    for chunk in columns.value.items:
        chunk = _moved(chunk, _CHUNK_OFFSETS, shift)
        meta = _get(chunk, _CHUNK_META)
        if meta is not None:
            chunk = _with(chunk, _CHUNK_META, _moved(meta.value, _META_OFFSETS, shift))
        moved_columns.append(chunk)
    out = _with(group, _GROUP_COLUMNS, replace(columns.value, items=moved_columns))
    out = _moved(out, (_GROUP_FILE_OFFSET,), shift)
    if _get(out, _GROUP_ORDINAL) is not None:
        out = _with(out, _GROUP_ORDINAL, ordinal)
    return out


class Joiner:
    """Joins one-group files (each written with the same schema and options) into one file,
    as a stream: `MAGIC`, then what `add` returns for each file in order, then `footer()`."""

    def __init__(self) -> None:
        self._meta: list[Field] | None = None
        self._groups: list[list[Field]] = []
        self._rows = 0
        self._offset = len(MAGIC)  # where the next file's row group goes

    def add(self, file: bytes) -> bytes:
        """The bytes of `file`'s row groups, to be written next; its footer is noted."""
        meta, start = read_footer(file)
        listed = _get(meta, _FILE_ROW_GROUPS)
        num_rows = _get(meta, _FILE_NUM_ROWS)
        if listed is None or num_rows is None or not isinstance(listed.value, _List):
            raise FooterError("footer without row groups")
        shift = self._offset - len(MAGIC)
        for group in listed.value.items:
            self._groups.append(_moved_group(group, shift, len(self._groups)))
        self._rows += num_rows.value
        self._meta = meta
        self._offset += start - len(MAGIC)
        return file[len(MAGIC) : start]

    def footer(self) -> bytes:
        """The footer of the joined file, with its length and closing magic."""
        if self._meta is None:
            raise FooterError("nothing to join")
        listed = _get(self._meta, _FILE_ROW_GROUPS)
        assert listed is not None
        meta = _with(self._meta, _FILE_ROW_GROUPS, replace(listed.value, items=self._groups))
        meta = _with(meta, _FILE_NUM_ROWS, self._rows)
        writer = _Writer()
        writer.struct(meta)
        return bytes(writer.out) + struct.pack("<I", len(writer.out)) + MAGIC


def join(files: Sequence[bytes]) -> bytes:
    """One Parquet file holding the row groups of `files`, in order (see `Joiner`)."""
    joiner = Joiner()
    body = [joiner.add(file) for file in files]
    return b"".join([MAGIC, *body, joiner.footer()])
