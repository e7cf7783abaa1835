"""errno_for and exit codes: one table for every FUSE reply and every CLI exit."""

from __future__ import annotations

import errno

import pytest

from udrfs.errors import (
    EXIT_CONFLICT,
    EXIT_CORRUPT,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_STORE_FULL,
    EXIT_USAGE,
    AlreadyExistsError,
    ConflictError,
    CorruptObjectError,
    InvalidNameError,
    NotFoundError,
    StoreFullError,
    UdrError,
    UsageError,
    errno_for,
    exit_code_for,
)
from udrfs.fs.staged_writer import WriterClosedError
from udrfs.fs.tx_directories import TxError


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (NotFoundError("x"), errno.ENOENT),
        (InvalidNameError("x"), errno.EINVAL),
        (AlreadyExistsError("x"), errno.EEXIST),
        (ConflictError("main", ["t"]), errno.EBUSY),
        (CorruptObjectError("x"), errno.EIO),
        (StoreFullError(errno.ENOSPC, "full"), errno.ENOSPC),
        (OSError(errno.EROFS, "read-only"), errno.EROFS),
        (TxError(errno.EBUSY, "busy"), errno.EBUSY),
        (WriterClosedError("gone"), errno.ESTALE),
        (KeyError("a bug"), errno.EIO),
    ],
)
def test_errno_for_answers_each_failure_with_its_errno(exc: BaseException, code: int) -> None:
    assert errno_for(exc) == code


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UdrError("x"), EXIT_ERROR),
        (UsageError("x"), EXIT_USAGE),
        (InvalidNameError("x"), EXIT_USAGE),
        (NotFoundError("x"), EXIT_NOT_FOUND),
        (ConflictError("main", ["t"]), EXIT_CONFLICT),
        (CorruptObjectError("x"), EXIT_CORRUPT),
        (StoreFullError(errno.ENOSPC, "full"), EXIT_STORE_FULL),
    ],
)
def test_each_error_class_has_its_exit_code(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code
