"""`udrfs.Repo`: the Python API over one store.

The catalog does the versioning; this class adds what needs the query layer (SQL, row-level
diffs and merges, subscriptions) so that the catalog itself stays free of DuckDB.
"""

from __future__ import annotations

from udrfs.catalog import Catalog


class Repo(Catalog):
    """A UDR store: `Repo.init(path)` creates one, `Repo(path)` opens one."""
