"""The catalog: commits, table versions, branches and tags, transactions and the change log."""

from udrfs.catalog.catalog import Catalog
from udrfs.catalog.model import (
    ChangeEntry,
    ColumnChange,
    Commit,
    TableChange,
    TableInfo,
    TablePolicy,
    TableVersion,
    VersionInfo,
)
from udrfs.catalog.transaction import Transaction

__all__ = [
    "Catalog",
    "ChangeEntry",
    "ColumnChange",
    "Commit",
    "TableChange",
    "TableInfo",
    "TablePolicy",
    "TableVersion",
    "Transaction",
    "VersionInfo",
]
