"""The format manifest `udr.toml` at the store root (docs/format.md, "udr.toml")."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from udrfs.errors import FormatVersionError, NotFoundError

if TYPE_CHECKING:
    from udrfs.store.backends.base import BlobStore

FORMAT_NAME = "udr-store"
# A new store's version. Version 2 names packs by their chunk headers, where version 1 hashed
# every byte of a pack for its name (docs/format.md, "Format versions"); a store keeps the
# version its udr.toml names until `udr upgrade`, and writes packs of that version.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_NAME = "udr.toml"


@dataclass(frozen=True)
class StoreFormat:
    format_version: int = FORMAT_VERSION
    hash: str = "blake3"
    chunker: str = "fastcdc-2020"
    # A new store's chunk sizes; a store keeps the ones its udr.toml names. The minimum was
    # 16 KiB in stores made before 2026-12-05: 48 KiB cuts and hashes 1.5x faster (FastCDC
    # skips the first `chunk_min` bytes of every chunk) with the same new bytes for every
    # edit measured (architecture.md, "Decision: 48 KiB minimum chunks").
    chunk_min: int = 48 * 1024
    chunk_avg: int = 64 * 1024
    chunk_max: int = 256 * 1024
    pack_target: int = 32 * 1024 * 1024
    created: str = ""

    def to_toml(self) -> str:
        created = self.created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f'format = "{FORMAT_NAME}"\n'
            f"format_version = {self.format_version}\n"
            f'hash = "{self.hash}"\n'
            f'chunker = "{self.chunker}"\n'
            f"chunk_min = {self.chunk_min}\n"
            f"chunk_avg = {self.chunk_avg}\n"
            f"chunk_max = {self.chunk_max}\n"
            f"pack_target = {self.pack_target}\n"
            f'created = "{created}"\n'
        )


def read_format(root: Path) -> StoreFormat:
    """Read and check the store's format manifest; refuse what this code cannot read."""
    path = root / MANIFEST_NAME
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(
            f"{root} is not a UDR store (no {MANIFEST_NAME}); create one with `udr init {root}`"
        ) from None
    return parse_format(text, root, path)


def parse_format(data: bytes, root: Path | str, path: Path | str) -> StoreFormat:
    """Check a format manifest's text (from a local store or a remote)."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FormatVersionError(f"{path} is not a readable store manifest: {exc}") from None
    if raw.get("format") != FORMAT_NAME:
        raise FormatVersionError(
            f"{path} is not a UDR store manifest (format={raw.get('format')!r})"
        )
    version = raw.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise FormatVersionError(
            f"{root} uses store format version {version!r}; this udrfs reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}. Use a udrfs release that supports "
            f"version {version!r}."
        )
    assert isinstance(version, int)
    if raw.get("hash") != "blake3" or raw.get("chunker") != "fastcdc-2020":
        raise FormatVersionError(
            f"{root} uses hash {raw.get('hash')!r} and chunker {raw.get('chunker')!r}; "
            "this udrfs supports blake3 with fastcdc-2020 only"
        )
    return StoreFormat(
        format_version=version,
        chunk_min=_integer(raw, "chunk_min", path),
        chunk_avg=_integer(raw, "chunk_avg", path),
        chunk_max=_integer(raw, "chunk_max", path),
        pack_target=_integer(raw, "pack_target", path),
        created=str(raw.get("created", "")),
    )


def fetch_format(blobs: BlobStore) -> tuple[StoreFormat, bytes]:
    """The udr.toml of the store at a remote, checked, and its bytes (NotFoundError when the
    remote has none)."""
    data = blobs.get(MANIFEST_NAME)
    return parse_format(data, blobs.url, f"{blobs.url}/{MANIFEST_NAME}"), data


def upgraded(fmt: StoreFormat) -> StoreFormat:
    """The manifest of `fmt`'s store at the newest format version (`udr upgrade`): the same
    chunking and creation time, so only the version changes. Packs already written keep
    their own version, which every reader of the new one reads."""
    return replace(fmt, format_version=FORMAT_VERSION)


def _integer(raw: dict[str, object], key: str, path: Path | str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise FormatVersionError(
            f"{path} is not a readable store manifest: {key} must be a positive integer, "
            f"not {value!r}"
        )
    return value
