"""Checking a store against the files it was filled from (`udr verify`): each table's version
on a branch against a Parquet file, by the BLAKE3 of all their bytes (docs/usage.md,
"Importing and verifying a directory")."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from udrfs import _native
from udrfs.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.catalog.retention import Retention

Verdict = Literal["same", "different", "not in store"]


@dataclass(frozen=True)
class VerifiedTable:
    """One file checked against its table's version on the branch."""

    table: str
    file: str
    verdict: Verdict
    version: int | None  # the table's version on the branch (None: no such table)
    file_blake3: str
    stored_blake3: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_files(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Path]:
    """Table name -> file, for the files given and the *.parquet files of the directories
    given (a table is named by its file name without `.parquet`)."""
    files: dict[str, Path] = {}
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(given.glob("*.parquet"))
            if not found:
                raise NotFoundError(f"{given}: the directory holds no *.parquet file")
        elif given.exists():
            found = [given]
        else:
            raise NotFoundError(f"{given}: no such file or directory")
        for path in found:
            table = path.name.removesuffix(".parquet")
            if table in files and files[table] != path:
                raise UsageError(
                    f"{files[table]} and {path} would both be table {table!r}: give one "
                    "of them on its own"
                )
            files[table] = path
    return files


def verify_files(
    history: History,
    retention: Retention,
    files: Mapping[str, str | os.PathLike[str]],
    branch: str,
    progress: Callable[[int], None] | None = None,
) -> list[VerifiedTable]:
    """Each file against the latest version of its table on `branch`, in table order.
    `progress` is told the bytes hashed so far."""
    tables = {t.name: t for t in history.tables(branch)}
    out = []
    hashed = 0
    for table, path in sorted(files.items()):
        digest = _native.blake3_file(os.fspath(path))
        hashed += os.stat(path).st_size
        if progress is not None:
            progress(hashed)
        info = tables.get(table)
        if info is None:
            out.append(VerifiedTable(table, str(path), "not in store", None, digest, None))
            continue
        stored = retention.check_readable(history.find_version(table, branch=branch))
        verdict: Verdict = "same" if stored.blake3 == digest else "different"
        out.append(VerifiedTable(table, str(path), verdict, stored.version, digest, stored.blake3))
    return out
