"""A store directory: format manifest, packs, objects, refs (docs/format.md)."""

from __future__ import annotations

import os
from pathlib import Path

from udrfs.errors import AlreadyExistsError, NotFoundError, NotLocalError
from udrfs.store.atomic import fsync_dir, write_atomic
from udrfs.store.chunks import ChunkStore
from udrfs.store.condemned import CondemnedView
from udrfs.store.counts import CountRecords
from udrfs.store.format import MANIFEST_NAME, StoreFormat, read_format
from udrfs.store.objects import ObjectStore
from udrfs.store.refnames import check_ref_name, is_valid_ref_name
from udrfs.store.refs import LocalRefStore, RefStore

_SUBDIRS = ("packs", "index", "objects", "refs/heads", "refs/tags", "staging", "locks")
HEAD_NAME = "HEAD"  # the store's default branch (docs/format.md, "HEAD")


class Store:
    """Opens a store and hands out its parts. Holds no table or commit logic."""

    # A store read and written straight on a remote (store/remote_store.py).
    is_remote = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        if not self.root.is_dir():
            raise NotFoundError(
                f"store {self.root} does not exist; create it with `udr init {self.root}`"
            )
        self.format = read_format(self.root)
        # The collector's record, read by writers (store/condemned.py).
        self.condemned = CondemnedView(self.root)
        self.objects = ObjectStore(self.root / "objects", self.condemned)
        self.counts = CountRecords(self.root)
        self.refs: RefStore = LocalRefStore(self.root / "refs", self.root / "locks")
        self.chunks = ChunkStore(self.root, self.format, self.condemned)
        self.staging_dir = self.root / "staging"

    @classmethod
    def init(cls, root: str | os.PathLike[str], fmt: StoreFormat | None = None) -> Store:
        path = Path(root).absolute()
        if (path / MANIFEST_NAME).exists():
            raise AlreadyExistsError(f"{path} is already a UDR store")
        if path.exists() and not path.is_dir():
            raise AlreadyExistsError(f"{path} is a file; give a new or empty directory")
        if path.exists() and any(path.iterdir()):
            raise AlreadyExistsError(
                f"{path} exists and is not empty; give a new or empty directory"
            )
        path.mkdir(parents=True, exist_ok=True)
        for sub in _SUBDIRS:
            (path / sub).mkdir(parents=True, exist_ok=True)
        # The manifest goes last: a directory without it is not a store yet.
        write_atomic(path / MANIFEST_NAME, (fmt or StoreFormat()).to_toml().encode())
        fsync_dir(path)
        return cls(path)

    @property
    def location(self) -> str:
        """Where the store is, as a user names it: its directory, or a remote's URL."""
        return str(self.root)

    @property
    def local_refs(self) -> LocalRefStore:
        """The ref files themselves, for what checks and repairs them (fsck)."""
        if not isinstance(self.refs, LocalRefStore):
            raise NotLocalError(self.location, "`udr fsck`")
        return self.refs

    def default_branch(self) -> str | None:
        """The branch named by `HEAD` (None when the file is absent, empty or damaged)."""
        return read_head(self.root)

    def set_default_branch(self, name: str) -> None:
        """Write `HEAD` (the caller checked that the branch exists)."""
        write_atomic(self.root / HEAD_NAME, f"{check_ref_name(name, 'branch')}\n".encode("ascii"))


def read_head(root: str | os.PathLike[str]) -> str | None:
    """The branch `HEAD` names, read without opening the store (None: absent, empty, not a
    valid branch name, or no such branch)."""
    path = Path(root)
    try:
        text = (path / HEAD_NAME).read_bytes().decode("ascii", "replace").strip()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    if not is_valid_ref_name(text):
        return None
    return text if LocalRefStore(path / "refs", path / "locks").get("heads", text) else None
