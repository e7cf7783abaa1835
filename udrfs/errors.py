"""Typed errors. Every message tells the user what happened and what to do next.

This module is the one error boundary (docs/architecture.md, "Errors"): every failure that
reaches a user is a `UdrError`; `exit_code` is what the `udr` command exits with and
`errno_for` is the errno every FUSE request answers with.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

# Exit codes of the `udr` command, one per kind of failure (docs/usage.md, "Exit codes").
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_CORRUPT = 5
EXIT_STORE_FULL = 6
EXIT_INTERRUPTED = 130


class UdrError(Exception):
    """Base class of every error UDR-FS raises on purpose."""

    exit_code: int = EXIT_ERROR


class UsageError(UdrError, ValueError):
    """An argument that can never work (a malformed version, time or range): fix the command."""

    exit_code = EXIT_USAGE


class NotFoundError(UdrError, LookupError):
    """A store, table, version, branch, tag, commit or file does not exist."""

    exit_code = EXIT_NOT_FOUND


class InvalidNameError(UdrError, ValueError):
    """A table, branch or tag name is not allowed."""

    exit_code = EXIT_USAGE


class AlreadyExistsError(UdrError):
    """Something that must be new (a store, branch or tag) already exists."""


class NotParquetError(UdrError, ValueError):
    """A file given as a table is not a valid Parquet file."""

    exit_code = EXIT_USAGE


class FormatVersionError(UdrError):
    """The store was written in a format version this code does not know."""


class CorruptObjectError(UdrError):
    """Stored bytes do not match their hash, or a stored file is damaged."""

    exit_code = EXIT_CORRUPT


class StoreFullError(UdrError, OSError):
    """The disk filled up during a write; nothing was committed."""

    exit_code = EXIT_STORE_FULL


class QueryError(UdrError):
    """SQL that the query engine refused (syntax, unknown column, type mismatch)."""

    exit_code = EXIT_USAGE


class InternalError(UdrError):
    """A bug in UDR-FS, not in the store or the command: please report it with the message."""


class ConflictError(UdrError):
    """A commit lost a race: tables it writes changed on the branch since it began."""

    exit_code = EXIT_CONFLICT

    def __init__(self, branch: str, tables: Iterable[str]) -> None:
        self.branch = branch
        self.tables = tuple(sorted(tables))
        names = ", ".join(self.tables)
        super().__init__(
            f"conflict: {names} changed on {branch} since this transaction began; re-read and retry"
        )


class RevertConflictError(ConflictError):
    """A revert would undo tables that later commits changed again."""

    def __init__(self, commit: str, branch: str, tables: Iterable[str]) -> None:
        self.commit = commit
        self.branch = branch
        self.tables = tuple(sorted(tables))
        UdrError.__init__(
            self,
            f"cannot revert {commit[:12]} on {branch}: later commits changed "
            f"{', '.join(self.tables)} again; revert those commits first (newest first), or "
            f"force it (`--force`, force=True) to put back the versions from before "
            f"{commit[:12]}, which also undoes the later changes to those tables",
        )


class MergeConflictError(UdrError):
    """A merge found changes that cannot be combined; nothing was applied."""

    exit_code = EXIT_CONFLICT

    def __init__(
        self,
        source: str,
        target: str,
        conflicts: list[dict[str, object]],
        total: int | None = None,
        tables: list[str] | None = None,
        file: os.PathLike[str] | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.conflicts = conflicts  # the first ones, by table and key
        self.total = len(conflicts) if total is None else total  # all of them
        self.tables = tables if tables is not None else sorted({str(c["table"]) for c in conflicts})
        self.file = file  # every conflict, one JSON line each, when one was asked for
        shown = (
            f"; all of them are in {os.fspath(file)}"
            if file is not None
            else (
                f"; the first {len(conflicts)} are listed (pass conflicts_file= or "
                "--conflicts-out FILE for all)"
                if len(conflicts) < self.total
                else ""
            )
        )
        super().__init__(
            f"merge of {source} into {target} has {self.total} conflict(s) in "
            f"{', '.join(self.tables)}; nothing was applied{shown}; strategy='ours' or "
            "'theirs' (`--strategy`) settles them"
        )


class InvalidKeyError(UdrError, ValueError):
    """A key declared for a table cannot be its key: a column is missing, or values repeat
    or are null (refused when the table is written, not when it is later diffed or merged)."""


class InvalidLayoutError(UsageError):
    """A table layout that does not exist (the layouts are `exact` and `dedup`), or a zstd
    level the dedup writer cannot use."""


class KeyNotUniqueError(UdrError, ValueError):
    """Rows were to be matched by a key, but the key does not identify rows."""

    exit_code = EXIT_USAGE

    def __init__(self, table: str, version: int, key: tuple[str, ...]) -> None:
        self.table = table
        self.version = version
        self.key = key
        super().__init__(
            f"key ({', '.join(key)}) does not identify rows of {table} v{version}: some rows "
            "share a key value; give a key that is unique (key=[...] or --key)"
        )


class SchemaChangeError(UdrError, ValueError):
    """A write would change the type of a column the table's current version has, or drop
    it."""

    exit_code = EXIT_USAGE

    def __init__(self, table: str, version: int, retyped: Iterable[tuple[str, str, str]]) -> None:
        self.table = table
        self.version = version
        self.retyped = tuple(retyped)
        shown = ", ".join(f"{name} {old} -> {new}" for name, old, new in self.retyped[:5])
        more = f" and {len(self.retyped) - 5} more" if len(self.retyped) > 5 else ""
        super().__init__(
            f"writing {table} would change columns of v{version}: {shown}{more}; cast the "
            "data back or keep the columns, or pass allow_schema_change=True "
            "(`--allow-schema-change`) if the change is meant"
        )


class RemoteError(UdrError):
    """A remote cannot be used: unreachable, refused credentials, no bucket, not a store."""


class GcInterruptedError(RemoteError):
    """A write to a remote needs a file that a collector run, which stopped or runs too long,
    was deleting: nothing was written (docs/architecture.md, "Garbage collection")."""


class NotLocalError(UsageError):
    """Asked of a store on a remote (`Repo("s3://...")`), an operation on a local store's own
    files: checking its packs (`udr fsck`) or its checked-out branch (`udr checkout`)."""

    def __init__(self, url: str, what: str) -> None:
        super().__init__(
            f"{what} works on a store in a directory, not on {url}: clone it "
            f"(`udr clone {url} DIR`) and run it there"
        )


class NonFastForwardError(UdrError):
    """A push would overwrite commits on the remote, or a pull would lose local commits."""

    exit_code = EXIT_CONFLICT


class AmbiguousRefError(NotFoundError):
    """A name or short commit id given for a commit names more than one thing."""

    def __init__(self, name: str, candidates: Iterable[str]) -> None:
        self.name = name
        self.candidates = tuple(candidates)
        hint = "give more digits of the commit id you mean (a full id has 64)"
        if not all(c.startswith("commit ") for c in self.candidates):
            hint += "; for the branch or tag, give its head commit (`udr branch list`, `udr tag`)"
        super().__init__(f"{name!r} is ambiguous: it names {', '.join(self.candidates)}; {hint}")


class VersionExpiredError(NotFoundError):
    """A table version whose data a retention policy released (`udr expire`): its commit and
    manifest stay in the history, its bytes are gone or about to go."""

    def __init__(
        self, table: str, version: int, expired: str, policy: str, store: str = "STORE"
    ) -> None:
        self.table = table
        self.version = version
        self.expired = expired
        self.policy = policy
        super().__init__(
            f"v{version} of {table} was expired on {expired} by `{policy}`; its data is no "
            f"longer kept (`udr versions {store} {table}` lists the versions that are)"
        )


class ClockJumpWarning(UserWarning):
    """A commit's time is far from the clock of the machine writing after it (see
    docs/architecture.md, "Commit times and as_of")."""


# The errno a FUSE request answers with, by class, most specific first. An exception that
# carries its own errno (OSError, StoreFullError, the mount's TxError) answers with it.
_ERRNO_BY_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (NotFoundError, errno.ENOENT),
    (InvalidNameError, errno.EINVAL),
    (UsageError, errno.EINVAL),
    (NotParquetError, errno.EINVAL),
    (AlreadyExistsError, errno.EEXIST),
    (ConflictError, errno.EBUSY),
    (MergeConflictError, errno.EBUSY),
    (CorruptObjectError, errno.EIO),
)


def errno_for(exc: BaseException) -> int:
    """The errno that reports `exc` to a FUSE client (EIO for anything unexpected)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    for cls, number in _ERRNO_BY_CLASS:
        if isinstance(exc, cls):
            return number
    return errno.EIO


def exit_code_for(exc: BaseException) -> int:
    """The `udr` command's exit status for a failure (docs/usage.md, "Exit codes")."""
    if isinstance(exc, UdrError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_ERROR
