"""Which table names a store accepts."""

from __future__ import annotations

import re

from udrfs.errors import InvalidNameError

_TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


def check_table_name(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name) or name.endswith(".parquet"):
        raise InvalidNameError(
            f"{name!r} is not a valid table name: use letters, digits, '_', '.', '-' "
            "(not starting with '.' or '-', no '/', no .parquet suffix)"
        )
    return name
