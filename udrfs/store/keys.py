"""Where a store's content-named files live, relative to its root; the same keys name them on
a remote (docs/format.md, "Layout"). The one place a content hash becomes a path."""

from __future__ import annotations

from pathlib import Path


def hashed_path(directory: Path, object_id: str, suffix: str = "") -> Path:
    """`dir/xx/<id><suffix>`: the fan-out every content-named file uses."""
    return directory / object_id[:2] / f"{object_id}{suffix}"


def object_key(object_id: str) -> str:
    return hashed_path(Path("objects"), object_id).as_posix()


def pack_key(pack_id: str) -> str:
    return hashed_path(Path("packs"), pack_id, ".pack").as_posix()


def fragment_key(pack_id: str) -> str:
    """Index fragments are not fanned out: `index/<pack id>.idx`."""
    return f"index/{pack_id}.idx"
