"""Named points in the commit protocol and the collector where a test can kill this process
with SIGKILL, or hold it.

Set UDRFS_CRASHPOINT=<name> in a process's environment and it kills itself when it reaches
that point, exactly as `kill -9` would. This is how the tests prove that a crash at any step
leaves the branch at the commit before or after, never between, and the store consistent.

Set UDRFS_PAUSEPOINT=<name> and UDRFS_PAUSEFILE=<path> and the process, on reaching that
point, creates `<path>.reached` and waits until `<path>` exists: a test holds a writer
between two steps (for instance while a collector runs) and then lets it go on.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "UDRFS_CRASHPOINT"
PAUSE_ENV = "UDRFS_PAUSEPOINT"
PAUSE_FILE_ENV = "UDRFS_PAUSEFILE"

POINTS = (
    "after-ingest",  # chunks written to the open pack, nothing flushed
    "before-commit",  # every table of the transaction staged, its commit not begun
    "after-flush",  # packs and index fragments durable, no manifest yet
    "after-manifests",  # manifests written, no commit object
    "after-commit-object",  # commit object written, ref not moved
    "after-ref",  # ref moved: the commit is durable
)
# After the commit point: late row counts computed, their record not written
# (catalog/late_counts.py).
LATE_POINTS = ("before-counts-record",)
# The collector's steps (catalog/gc.py).
GC_POINTS = (
    "gc-after-record",  # the record of condemned files written, nothing deleted
    "gc-after-objects",  # unreferenced objects deleted
    "gc-after-fragment",  # the first condemned pack's index fragment deleted, not the pack
    "gc-after-packs",  # condemned packs and their fragments deleted
    "gc-after-files",  # temporary and spill files deleted, the record not yet rewritten
)
# On a remote (catalog/gc_storage.py): a condemned file checked unchanged, not yet deleted.
REMOTE_GC_POINTS = ("gc-checked",)


def crashpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_ENV) == name and os.environ.get(PAUSE_FILE_ENV):
        release = Path(os.environ[PAUSE_FILE_ENV])
        Path(f"{release}.reached").touch()
        while not release.exists():
            time.sleep(0.02)
