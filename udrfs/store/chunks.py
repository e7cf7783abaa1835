"""Chunks and packs, through the native engine (docs/format.md, "Chunks", "Packs").

This module only adapts the native engine's errors to UDR-FS's typed errors; all chunking,
hashing, packing and range reads happen in Rust with the GIL released. `_translated` is the
one place a native exception becomes a `UdrError`: every call into the engine goes through it,
the constructor included, and `chunk_list` does the same for chunk lists read from manifests.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from udrfs import _native
from udrfs.errors import (
    CorruptObjectError,
    FormatVersionError,
    InternalError,
    NotFoundError,
    UdrError,
)
from udrfs.store.atomic import raise_if_full
from udrfs.store.condemned import CondemnedView
from udrfs.store.format import StoreFormat

ChunkList: TypeAlias = _native.ChunkList
T = TypeVar("T")

# The engine's cache of verified chunk bytes, per open store (docs/mount.md, "Reads"). Every
# read of anything else reads the pack and checks the chunk's BLAKE3 again.
READ_CACHE_ENV = "UDR_READ_CACHE_MIB"
DEFAULT_READ_CACHE_MIB = 64


def read_cache_bytes() -> int:
    """The verified-bytes cache size: `UDR_READ_CACHE_MIB` MiB (0: none), default 64."""
    text = os.environ.get(READ_CACHE_ENV, str(DEFAULT_READ_CACHE_MIB))
    try:
        mib = int(text)
    except ValueError:
        mib = -1
    if mib < 0:
        raise UdrError(
            f"{READ_CACHE_ENV} must be a whole number of MiB (0 or more), not {text!r}; "
            f"set it to a number such as {DEFAULT_READ_CACHE_MIB}, or unset it"
        )
    return mib << 20


def _native_error(exc: Exception, root: Path | None, damaged: Sequence[str]) -> Exception:
    """The UdrError (or OSError with its errno) that reports a native exception."""
    store = str(root) if root is not None else "STORE"
    if isinstance(exc, _native.CorruptChunkError):
        return CorruptObjectError(
            f"{exc}; the store is damaged: `udr fsck {store}` lists the versions this affects "
            f"and `udr fsck --repair {store}` repairs or quarantines what it can"
        )
    if isinstance(exc, _native.ChunkNotFoundError):
        if damaged:
            return CorruptObjectError(
                f"{exc}; the index fragment of pack(s) {', '.join(damaged)} is damaged: "
                f"`udr fsck --repair {store}` rebuilds it from the pack"
            )
        return NotFoundError(
            f"{exc}; the store is incomplete: `udr fsck {store}` says what is missing and "
            f"`udr fsck --repair {store}` rebuilds index fragments from the packs"
        )
    if isinstance(exc, OSError):
        raise_if_full(exc, "the store's packs")
        filename = str(exc.filename or "")
        if root is not None and isinstance(exc, FileNotFoundError) and "/packs/" in filename:
            return CorruptObjectError(
                f"pack file {filename} is missing: `udr fsck {store}` lists the versions this "
                f"affects (restore the file from a copy of the store if there is one)"
            )
        return exc
    if isinstance(exc, ValueError | RuntimeError):
        return InternalError(f"chunk engine: {exc} (this is a bug in udrfs; please report it)")
    return exc


def _translated(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return fn(self, *args, **kwargs)
        except (_native.CorruptChunkError, _native.ChunkNotFoundError, OSError) as exc:
            translated = _native_error(exc, self.root, self.damaged_pack_ids())
            if translated is exc:
                raise  # an OSError that keeps its errno (EROFS, EACCES, ...)
            raise translated from exc
        except (ValueError, RuntimeError) as exc:
            raise _native_error(exc, self.root, ()) from exc

    return wrapper


def chunk_list(encoded: str | bytes) -> _native.ChunkList:
    """A chunk list as a manifest stores it (base64); CorruptObjectError if malformed."""
    try:
        raw = base64.b64decode(encoded, validate=True)
        return _native.ChunkList(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise CorruptObjectError(f"malformed chunk list: {exc}") from None


class ChunkStream:
    """Sequential writes of one file, chunked into packs as they arrive."""

    def __init__(self, native: Any, root: Path | None = None) -> None:
        self._native = native
        self.root = root

    def damaged_pack_ids(self) -> list[str]:
        return []

    @_translated
    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._native.write(data)

    @_translated
    def finish(self) -> _native.ChunkList:
        return self._native.finish()

    def blake3_hex(self) -> str:
        """BLAKE3 of every byte written (valid after `finish`), computed as they arrived."""
        return str(self._native.blake3_hex())

    def abort(self) -> None:
        self._native.abort()


class ChunkStore:
    # How far a sequential reader may be read ahead; 0: the mount's fixed window (local packs
    # are read faster than a larger window would help). Remote stores raise it.
    read_ahead_limit = 0

    @_translated
    def __init__(
        self, root: Path, fmt: StoreFormat, condemned: CondemnedView | None = None
    ) -> None:
        self.root = root
        self._engine: Any = None
        # Packs the collector condemned: the engine never deduplicates against them.
        self.condemned = condemned if condemned is not None else CondemnedView(root)
        self._condemned_generation = 0
        # Damaged index fragments do not stop the engine from opening (`damaged_fragments`).
        try:
            self._engine = _native.ChunkEngine(
                str(root),
                fmt.chunk_min,
                fmt.chunk_avg,
                fmt.chunk_max,
                fmt.pack_target,
                fmt.format_version,  # a store writes packs of its own version
                read_cache_bytes(),
            )
        except (ValueError, OverflowError) as exc:
            raise FormatVersionError(
                f"{root}/udr.toml has chunker parameters this udrfs cannot use: {exc}"
            ) from None

    def refresh_condemned(self) -> None:
        """Before chunks are written: tell the engine which packs are condemned (it writes
        their chunks again) and, when the collector's record changed, forget packs it deleted
        (docs/architecture.md, "Garbage collection")."""
        generation = self.condemned.refresh()
        if generation != self._condemned_generation:
            self._engine.set_condemned(self.condemned.packs())
            self._engine.reload_index()
            self._condemned_generation = generation

    def damaged_pack_ids(self) -> list[str]:
        """Packs whose index fragment the last index load skipped as damaged."""
        if self._engine is None:
            return []
        return [pack for pack, _why in self._engine.damaged_fragments()]

    def damaged_fragments(self) -> dict[str, str]:
        """Pack id -> why its index fragment could not be read."""
        return dict(self._engine.damaged_fragments())

    def pack_of(self, chunk_id: str) -> str | None:
        """The pack whose index fragment lists this chunk, or None."""
        pack = self._engine.pack_of(chunk_id)
        return None if pack is None else str(pack)

    @_translated
    def ingest_file(
        self, path: Path, cut_points: Sequence[int] | None = None, compress: bool = False
    ) -> _native.ChunkList:
        self.refresh_condemned()
        return self._engine.ingest_file(str(path), list(cut_points or []), compress)

    @_translated
    def ingest_file_hashed(
        self, path: Path, cut_points: Sequence[int] | None = None
    ) -> tuple[_native.ChunkList, str]:
        """Ingest a file and return its chunk list and whole-file BLAKE3, in one pass."""
        self.refresh_condemned()
        chunks, digest = self._engine.ingest_file_hashed(str(path), list(cut_points or []), False)
        return chunks, digest

    @_translated
    def ingest_bytes(
        self, data: bytes | memoryview, cut_points: Sequence[int] | None = None
    ) -> _native.ChunkList:
        self.refresh_condemned()
        return self._engine.ingest_bytes(data, list(cut_points or []), False)

    @_translated
    def stream(self) -> ChunkStream:
        self.refresh_condemned()
        return ChunkStream(self._engine.stream(False), self.root)

    @_translated
    def keep(self, chunks: _native.ChunkList) -> int:
        """Write again the chunks of `chunks` that only condemned packs hold (before a commit
        names them: docs/architecture.md, "Garbage collection"); returns how many."""
        self.refresh_condemned()
        return int(self._engine.keep_chunks(chunks))

    @_translated
    def flush(self) -> list[str]:
        """Make every chunk written so far durable (before any object refers to it)."""
        return list(self._engine.flush())

    @_translated
    def copy_chunks(self, chunk_ids: Sequence[str]) -> int:
        """Copy chunks the store holds into new packs (repack), each checked first; durable
        at the next `flush`. Returns the raw bytes copied."""
        return int(self._engine.copy_chunks(list(chunk_ids)))

    @_translated
    def read(self, chunks: _native.ChunkList, offset: int, length: int) -> bytes:
        return bytes(self._engine.read(chunks, offset, length))

    @_translated
    def read_into(self, chunks: _native.ChunkList, offset: int, buf: Any) -> int:
        return int(self._engine.read_into(chunks, offset, buf))

    def read_local_into(self, chunks: _native.ChunkList, offset: int, buf: Any) -> int:
        """Like `read_into`, but of the bytes this machine holds only, up to the first chunk
        that would have to be fetched: it never waits for the network (the mount calls it on
        its event loop). A local store holds every chunk."""
        return self.read_into(chunks, offset, buf)

    @_translated
    def prefetch(self, chunks: _native.ChunkList, offset: int, length: int) -> int:
        """Read ahead: verify the chunks of [offset, offset + length) into the engine's cache
        (at most half of it), so later reads copy them from memory; returns bytes read."""
        return int(self._engine.prefetch(chunks, offset, length))

    @_translated
    def verify_pack(self, pack_id: str) -> int:
        return int(self._engine.verify_pack(pack_id))

    @_translated
    def rebuild_index(self, pack_id: str) -> None:
        """Rewrite a pack's index fragment by scanning the pack (recovery)."""
        self._engine.rebuild_index(pack_id)
        self._engine.reload_index()

    @_translated
    def contains(self, chunk_id: str) -> bool:
        return bool(self._engine.contains(chunk_id))

    @_translated
    def reload_index(self) -> int:
        return int(self._engine.reload_index())

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._engine.stats().items()}
