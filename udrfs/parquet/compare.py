"""`udrfs.equals`: does a table read back from a store hold the same data as the original?

`DataFrame.equals` answers a narrower question (same dtypes, same index, same row order), so a
check written as `original.equals(repo.query(...).to_pandas())` is False for data that came
back whole: DuckDB returns a categorical column as strings and a pandas index as an ordinary
column, and `write_table(..., key=...)` stores rows in key order. This compares what the data
is, not how it is held: the same column names and logical types, the same values, row for row
(in key order when a key is given). docs/usage.md, "Checking a migration", has the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pyarrow loads on the first comparison, not with `import udrfs`
    import pyarrow as pa

_INDEX_PREFIX = "__index_level_"


def equals(original: Any, stored: Any, key: Sequence[str] | str | None = None) -> bool:
    """True when `original` and `stored` (each a pandas DataFrame or an Arrow table) hold the
    same data: the same columns by name (in any order) with the same logical types (a
    categorical equals its values; `large_string` equals `string`), and equal values row for
    row. A named pandas index counts as columns of its names, an unnamed one (row numbers) not
    at all. With `key`, rows are compared in key order (as `write_table(..., key=...)` stores
    them); without it, in the order given. Nulls equal nulls; a float NaN from pandas is null.
    """
    left, right = _normal(original), _normal(stored)
    if sorted(left.column_names) != sorted(right.column_names):
        return False
    right = right.select(left.column_names)
    if key is not None:
        columns = [key] if isinstance(key, str) else list(key)
        if not set(columns) <= set(left.column_names):
            return False
        order: list[tuple[str, Literal["ascending", "descending"]]]
        order = [(c, "ascending") for c in columns]
        left, right = left.sort_by(order), right.sort_by(order)
    return bool(left.equals(right))


def _normal(data: Any) -> pa.Table:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    else:
        table = pa.Table.from_pandas(data, preserve_index=None)
        table = table.drop_columns([n for n in table.column_names if n.startswith(_INDEX_PREFIX)])
    fields = [pa.field(f.name, _logical(f.type)) for f in table.schema]
    return table.cast(pa.schema(fields)).replace_schema_metadata(None).combine_chunks()


def _logical(arrow_type: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_large_string(arrow_type):
        return pa.string()
    if pa.types.is_large_binary(arrow_type):
        return pa.binary()
    return arrow_type
