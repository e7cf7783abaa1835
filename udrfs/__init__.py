"""UDR-FS: versioned, deduplicated Parquet tables that mount as a filesystem.

import udrfs
repo = udrfs.Repo.init("./store")
repo.import_file("nyc_master", "master.parquet", message="nightly")
repo.read_table("nyc_master", version=1)
"""

from udrfs.catalog import (
    ChangeEntry,
    ColumnChange,
    Commit,
    TableChange,
    TableInfo,
    TableVersion,
    VersionInfo,
)
from udrfs.catalog.transaction import Transaction, retry_on_conflict
from udrfs.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptObjectError,
    FormatVersionError,
    InternalError,
    InvalidKeyError,
    InvalidNameError,
    KeyNotUniqueError,
    MergeConflictError,
    NonFastForwardError,
    NotFoundError,
    NotParquetError,
    QueryError,
    RemoteError,
    RevertConflictError,
    SchemaChangeError,
    StoreFullError,
    UdrError,
    UsageError,
    VersionExpiredError,
)
from udrfs.parquet.compare import equals
from udrfs.repo import Repo

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "ChangeEntry",
    "ColumnChange",
    "Commit",
    "ConflictError",
    "CorruptObjectError",
    "FormatVersionError",
    "InternalError",
    "InvalidKeyError",
    "InvalidNameError",
    "KeyNotUniqueError",
    "MergeConflictError",
    "NonFastForwardError",
    "NotFoundError",
    "NotParquetError",
    "QueryError",
    "RemoteError",
    "Repo",
    "RevertConflictError",
    "SchemaChangeError",
    "StoreFullError",
    "TableChange",
    "TableInfo",
    "TableVersion",
    "Transaction",
    "UdrError",
    "UsageError",
    "VersionExpiredError",
    "VersionInfo",
    "equals",
    "retry_on_conflict",
]
