"""Named points in the commit protocol where a test can kill this process with SIGKILL.

Set UDRFS_CRASHPOINT=<name> in a writer's environment and the process kills itself when it
reaches that point, exactly as `kill -9` would. This is how the tests prove that a crash at any
step leaves the branch at the commit before or after, never between.
"""

from __future__ import annotations

import os
import signal

ENV = "UDRFS_CRASHPOINT"

POINTS = (
    "after-ingest",  # chunks written to the open pack, nothing flushed
    "after-flush",  # packs and index fragments durable, no manifest yet
    "after-manifests",  # manifests written, no commit object
    "after-commit-object",  # commit object written, ref not moved
    "after-ref",  # ref moved: the commit is durable
)
# After the commit point: late row counts computed, their record not written
# (catalog/late_counts.py).
LATE_POINTS = ("before-counts-record",)


def crashpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
