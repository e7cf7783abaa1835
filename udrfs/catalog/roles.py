"""Role interfaces: what a part asks of the read model, where it cannot name `History`.

`History` (catalog/history.py) satisfies each. A part that `History` itself builds on
(ancestry.py, late_counts.py) names one of these instead, so that no module is both imported
by `History` and importing it.
"""

from __future__ import annotations

from typing import Protocol

from udrfs.catalog.model import Commit, TableVersion


class Commits(Protocol):
    """Anything that reads a commit by id (the read model)."""

    def commit(self, commit_id: str) -> Commit: ...


class Objects(Commits, Protocol):
    """Anything that reads commits and table-version manifests by id (the read model)."""

    def manifest(self, manifest_id: str) -> TableVersion: ...
