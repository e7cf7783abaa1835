"""The schema-evolution check of a write (a column may change type or go only when asked)
and the columns a commit changed, as its change log records them.

Types are compared as logical types: dictionary encoding (a pandas categorical, whose index
width follows its number of categories) and 32- or 64-bit offsets of strings and binaries are
how the values are stored, not what they are. An added column is a normal new version.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from udrfs.catalog.model import ColumnChange, TableVersion
from udrfs.errors import SchemaChangeError

_DICTIONARY = re.compile(r"^dictionary<values=(.*), indices=\w+, ordered=[01]>$")
REMOVED = "(removed)"  # the new type of a column that is gone
_WIDE = {"large_string": "string", "large_utf8": "string", "large_binary": "binary"}


def logical_type(arrow_type: str) -> str:
    """An Arrow type string with its storage details taken out."""
    if match := _DICTIONARY.match(arrow_type):
        arrow_type = match.group(1)
    return _WIDE.get(arrow_type, arrow_type)


def column_changes(
    before: Sequence[dict[str, str]], after: Sequence[dict[str, str]]
) -> tuple[ColumnChange, ...]:
    """The columns of `after` that are new or have another logical type than in `before`
    (in `after`'s order), then the columns of `before` not in `after`."""
    old = {c["name"]: logical_type(c["type"]) for c in before}
    new = {c["name"]: logical_type(c["type"]) for c in after}
    changed = [ColumnChange(n, old.get(n), t) for n, t in new.items() if old.get(n) != t]
    return tuple(changed) + tuple(ColumnChange(n, t, None) for n, t in old.items() if n not in new)


def check_schema_change(
    table: str, old: TableVersion | None, schema: Sequence[dict[str, str]], allowed: bool
) -> None:
    """SchemaChangeError if a column of `old` has another logical type in `schema`, or is not
    in it."""
    if old is None or allowed:
        return
    changed = [
        (c.column, c.before, c.after or REMOVED)
        for c in column_changes(old.schema, schema)
        if c.before is not None
    ]
    if changed:
        raise SchemaChangeError(table, old.version, changed)
