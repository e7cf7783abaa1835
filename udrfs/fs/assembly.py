"""The one way to build the mount's request handlers: the parts, wired inside a nursery.

The daemon calls `start_operations` inside its nursery before it mounts, and tests of the
handlers (tests/test_fs_ops.py) call it inside theirs without a kernel. Every part that
starts background work (the version reader's prefetches, the `.tx` writers' drains) is given
the nursery when it is built, so no part exists half wired.
"""

from __future__ import annotations

import trio

from udrfs.catalog import Catalog
from udrfs.fs.catalog_view import CatalogView
from udrfs.fs.changes import ChangeLogs
from udrfs.fs.namespace import Namespace
from udrfs.fs.operations import UdrOperations
from udrfs.fs.reader import DEFAULT_READ_MODE, ReadMode, VersionReader
from udrfs.fs.staged_writer import DEFAULT_MAX_FILE_SIZE
from udrfs.fs.stats import MountStats
from udrfs.fs.tx_directories import Transactions


async def start_operations(
    catalog: Catalog,
    nursery: trio.Nursery,
    *,
    mountpoint: str,
    read_mode: ReadMode = DEFAULT_READ_MODE,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    direct_io: bool = False,
) -> UdrOperations:
    """The handlers of a mount of `catalog` at `mountpoint`, ready for the first request:
    the refs are read (`@main` exists at once) and spill files of earlier daemons removed.
    Their background tasks run in `nursery`, which must outlive every request."""
    view = CatalogView(catalog)
    stats = MountStats()
    changelogs = ChangeLogs(view)
    store = str(catalog.path)

    async def render_stats() -> bytes:
        stats.inodes = len(ns)
        engine = await view.engine_stats()
        return stats.render(engine, view.cache.hits, view.cache.misses, mountpoint, store)

    transactions = Transactions(catalog, view, nursery, max_file_size)
    ns = Namespace(view, changelogs, render_stats, transactions)
    reader = VersionReader(catalog, read_mode, nursery)
    operations = UdrOperations(ns, reader, stats, direct_io=direct_io)
    await view.refresh()
    await transactions.start()
    return operations
