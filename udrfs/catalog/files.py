"""Stored bytes (a table version, or a staged file) as a seekable, read-only binary file."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from udrfs.catalog.model import TableVersion
from udrfs.store.chunks import ChunkList, ChunkStore

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq


class ChunkFile(io.RawIOBase):
    """The bytes of a chunk list, read from packs on demand (no copy on disk)."""

    def __init__(self, chunks: ChunkStore, chunk_list: ChunkList, name: str) -> None:
        super().__init__()
        self._chunks = chunks
        self._list = chunk_list
        self.name = name
        self._pos = 0

    @property
    def size(self) -> int:
        return int(self._list.size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(buffer).cast("B")
        n = self._chunks.read_into(self._list, self._pos, view)
        self._pos += n
        return n

    def readall(self) -> bytes:
        data = self._chunks.read(self._list, self._pos, max(self.size - self._pos, 0))
        self._pos += len(data)
        return data

    def parquet(self) -> pq.ParquetFile:
        """This version as a pyarrow ParquetFile (reads only what is asked for)."""
        import pyarrow.parquet as pq

        return pq.ParquetFile(cast(BinaryIO, self))

    def read_arrow(self, columns: list[str] | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(cast(BinaryIO, self), columns=columns)


class VersionFile(ChunkFile):
    """The exact bytes of one table version."""

    def __init__(self, chunks: ChunkStore, version: TableVersion) -> None:
        super().__init__(chunks, version.chunks, f"{version.table}/v{version.version}.parquet")
        self.version = version
