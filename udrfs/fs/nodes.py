"""What each inode of the mount shows: one node class per kind of entry.

A node is interned by its `key` (fs/namespace.py), so the key says which thing it shows:
the same thing looked up twice is the same inode.
"""

from __future__ import annotations

import os
from collections.abc import Hashable

from udrfs.catalog import VersionInfo
from udrfs.catalog.paths import LATEST, ChangesEntry
from udrfs.fs.catalog_view import RefSpec
from udrfs.fs.tx_directories import StagedFile, TxState

# Versions never change: let the kernel keep their entries and attributes (and, through
# keep_cache, their pages) for an hour.
IMMUTABLE_TIMEOUT = 3600.0
# Anything that moves with a ref is re-checked at least once a second.
MUTABLE_TIMEOUT = 1.0
# Sizes that grow (.changes, .stats) and targets that move (latest) are never cached.
VOLATILE_TIMEOUT = 0.0

# Names only the mount has; the ones shared with udr:// come from catalog/paths.py.
STATS_NAME = b".stats"
TX_NAME = b".tx"
CONTROL_NAME = b".control"
LATEST_NAME = os.fsencode(LATEST)
# Large enough that cp and friends ask for 1 MiB at a time.
BLOCK_SIZE = 1 << 20


class Node:
    """One inode. Subclasses say what it shows; `key` says which one."""

    is_dir = False

    def __init__(self, key: Hashable, parent: Node | None, name: bytes) -> None:
        self.key = key
        self.parent = parent
        self.name = name
        self.inode = 0
        self.lookups = 0

    @property
    def mutable(self) -> bool:
        return True

    def path(self) -> str:
        parts: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(os.fsdecode(node.name))
            node = node.parent
        return "/" + "/".join(reversed(parts))


class RootDir(Node):
    is_dir = True


class RefGroupDir(Node):
    """`@experiment/`: refs named `experiment/...` when no ref is named `experiment`."""

    is_dir = True

    def __init__(self, parent: Node, name: bytes, prefix: str) -> None:
        super().__init__(("group", prefix), parent, name)
        self.prefix = prefix


class RefDir(Node):
    is_dir = True

    def __init__(self, parent: Node, name: bytes, ref: RefSpec) -> None:
        super().__init__(("ref", ref), parent, name)
        self.ref = ref

    @property
    def mutable(self) -> bool:
        return self.ref.mutable


class TableDir(Node):
    is_dir = True

    def __init__(self, parent: RefDir, name: bytes, ref: RefSpec, table: str) -> None:
        super().__init__(("table", ref, table), parent, name)
        self.ref = ref
        self.table = table
        # Version names the kernel may have cached, to invalidate if the ref is rewound.
        self.handed_out: set[bytes] = set()

    @property
    def mutable(self) -> bool:
        return self.ref.mutable


class VersionFile(Node):
    def __init__(self, parent: Node, name: bytes, info: VersionInfo) -> None:
        super().__init__(("version", info.manifest_id, info.commit_id), parent, name)
        self.info = info

    @property
    def mutable(self) -> bool:
        return False


class LatestLink(Node):
    def __init__(self, parent: TableDir) -> None:
        super().__init__(("latest", parent.ref, parent.table), parent, LATEST_NAME)
        self.ref = parent.ref
        self.table = parent.table

    @property
    def mutable(self) -> bool:
        return self.ref.mutable


class ChangesFile(Node):
    """`.changes` or `.changes.txt` of a ref or a table: `log` says which (catalog/paths.py)."""

    def __init__(self, parent: Node, ref: RefSpec, log: ChangesEntry) -> None:
        super().__init__(("changes", ref, log), parent, os.fsencode(log.name))
        self.ref = ref
        self.log = log

    @property
    def mutable(self) -> bool:
        return self.ref.mutable


class StatsFile(Node):
    pass


class TxRootDir(Node):
    """`@branch/.tx/`: the branch's open transactions; `mkdir` opens one."""

    is_dir = True

    def __init__(self, parent: RefDir, branch: str) -> None:
        super().__init__(("txroot", branch), parent, TX_NAME)
        self.branch = branch


class TxDir(Node):
    """`@branch/.tx/<name>/`: one transaction. A new one of the same name is a new inode."""

    is_dir = True

    def __init__(self, parent: TxRootDir, state: TxState) -> None:
        super().__init__(("tx", state.serial), parent, os.fsencode(state.name))
        self.state = state


class StagedFileNode(Node):
    """A file written into a transaction; the same inode while it is rewritten."""

    def __init__(self, parent: TxDir, file: StagedFile) -> None:
        super().__init__(("staged", file.serial), parent, file.name)
        self.state = parent.state
        self.file = file


class ControlFile(Node):
    def __init__(self, parent: TxDir) -> None:
        super().__init__(("control", parent.state.serial), parent, CONTROL_NAME)
        self.state = parent.state


TX_NODES = (TxRootDir, TxDir, StagedFileNode, ControlFile)
