"""A deterministic generator of a parcel table shaped like NYC PLUTO, and its edits.

The base table has one row per tax lot and 38 columns (strings, integers,
floats, dates, booleans, with nulls), keyed by ``bbl`` (borough * 10**9 +
block * 10**4 + lot), in key order. Every attribute of a lot is a pure
function of its key and a salt (a splitmix64 hash), so a lot generated for a
later version looks like its neighbours and the same call always returns the
same table. Block-level attributes (street, zip, zoning, position) are shared
by the lots of a block, which gives the columns the runs a real parcel table
has and Parquet compresses.

The scenario functions build the versions that benchmarks/bench_dedup.py
stores one after another:

1. ``localized``: 2,000 contiguous lots deleted, 2,000 new lots on one new
   block, a rezoning of 1,000 contiguous lots (one column);
2. ``append``: 1% new lots whose keys sort after every existing key;
3. ``identical``: the same table again;
4. ``scattered``: one column (``assesstot``) changed on 1% of the lots,
   spread uniformly.

Usage: ``python tools/parcels.py OUT.parquet --rows N``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROWS = 856_000
KEY = "bbl"
SCATTERED_COLUMN = "assesstot"
LOCALIZED_COLUMN = "zonedist1"

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# Lots per borough in PLUTO (Manhattan, Bronx, Brooklyn, Queens, Staten Island).
_BOROUGH_LOTS = np.array([42_500, 89_500, 277_000, 324_000, 123_000])
_BOROUGH_CODES = ["MN", "BX", "BK", "QN", "SI"]
_BOROUGH_CENTERS = [
    (40.78, -73.97),
    (40.84, -73.88),
    (40.65, -73.95),
    (40.71, -73.82),
    (40.58, -74.15),
]
_ZIP_BASES = [10001, 10451, 11201, 11354, 10301]
# fmt: off
_ZONES = [
    "R1-2", "R3-1", "R3-2", "R4", "R4-1", "R5", "R5B", "R6", "R6A", "R6B", "R7-1", "R7A", "R8",
    "R8B", "R10", "C1-9", "C4-4", "C5-3", "C6-4", "M1-1", "M1-2", "M2-1", "M3-1", "PARK",
]
_OVERLAYS = ["C1-1", "C1-2", "C1-3", "C1-4", "C2-2", "C2-3", "C2-4"]
_BLDG_CLASSES = [
    "A1", "A2", "A5", "A9", "B1", "B2", "B3", "B9", "C0", "C1", "C2", "C3", "C6", "D1", "D4",
    "E1", "F5", "G0", "G2", "K1", "K4", "M1", "O4", "R4", "S1", "S2", "V0", "V1", "W2", "Z9",
]
_LAND_USES = ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"]
_OWNER_TYPES = ["C", "M", "O", "P", "X"]
_STREET_WORDS = [
    "MAIN", "PARK", "OAK", "MAPLE", "CEDAR", "ELM", "WASHINGTON", "LINCOLN", "JEFFERSON",
    "MADISON", "FULTON", "ATLANTIC", "FLATBUSH", "BROADWAY", "JAMAICA", "NOSTRAND", "UTICA",
    "LIBERTY", "GRAND", "CHURCH", "BEDFORD", "HILLSIDE", "NORTHERN", "QUEENS", "VICTORY",
    "RICHMOND", "HYLAN", "FOREST", "SPRING", "UNION", "MYRTLE", "DEKALB", "GATES", "HALSEY",
    "BERGEN", "DEAN", "PACIFIC", "WARREN", "BALTIC", "DOUGLASS",
]
_STREET_SUFFIXES = ["STREET", "AVENUE", "PLACE", "ROAD", "BOULEVARD", "COURT", "LANE", "DRIVE"]
_SURNAMES = [
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT",
    "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER", "HALL",
    "RIVERA", "CAMPBELL", "MITCHELL", "CARTER", "ROBERTS", "CHEN", "WANG", "LI", "ZHANG", "LIU",
    "COHEN", "GOLDBERG", "ROSSI", "RUSSO", "ESPOSITO", "KOWALSKI", "NOWAK", "OBRIEN", "MURPHY",
    "KELLY",
]
_GIVEN = [
    "JOHN", "MARY", "JOSE", "MARIA", "DAVID", "LINDA", "JAMES", "ANNA", "MICHAEL", "ROSA",
    "ROBERT", "SUSAN", "WEI", "MEI", "AHMED", "FATIMA", "IVAN", "OLGA", "LUIS", "CARMEN",
    "PAUL", "GRACE", "SAM", "RUTH", "KEVIN", "HELEN", "ANGEL", "SARAH", "JUAN", "ESTHER",
]
_ENTITY_SUFFIXES = ["LLC", "REALTY LLC", "HOLDINGS LLC", "PROPERTIES INC", "ASSOCIATES", "CORP"]
_PUBLIC_OWNERS = [
    "NYC DEPARTMENT OF PARKS", "NYC HOUSING AUTHORITY", "DCAS", "NYC DOT",
    "NYC DEPARTMENT OF EDUCATION", "MTA",
]
# fmt: on


def parcels(rows: int = ROWS) -> pa.Table:
    """The base parcel table: ``rows`` lots in key order."""
    return lots(_base_keys(rows))


def lots(keys: I64) -> pa.Table:
    """The full rows of the lots with these ``bbl`` keys (a pure function of the keys)."""
    keys = np.asarray(keys, dtype=np.int64)
    borough = keys // 1_000_000_000
    block = (keys // 10_000) % 100_000
    lot = keys % 10_000
    b = borough - 1
    block_id = borough * 100_000 + block  # identifies a block across boroughs

    def pick(choices: Sequence[str], ids: I64, salt: int) -> pa.Array:
        return pa.array(choices).take(_hash(ids, salt) % np.uint64(len(choices)))

    def maybe(values: pa.Array, ids: I64, salt: int, share_null: float) -> pa.Array:
        return pc.if_else(pa.array(_uniform(ids, salt) < share_null), None, values)

    u = _uniform
    street = _join(pick(_STREET_WORDS, block_id, 1), pick(_STREET_SUFFIXES, block_id, 2))
    house = pc.cast(pa.array(lot * 2 + (_hash(block_id, 3) % 200).astype(np.int64)), pa.string())
    address = _join(house, street)

    owner_person = _join(pick(_SURNAMES, keys, 10), pick(_GIVEN, keys, 11))
    owner_entity = _join(
        pc.cast(pa.array((_hash(keys, 12) % 3000).astype(np.int64)), pa.string()),
        street,
        pick(_ENTITY_SUFFIXES, keys, 13),
    )
    owner_roll = u(keys, 14)
    ownername = pc.if_else(
        pa.array(owner_roll < 0.55),
        owner_person,
        pc.if_else(pa.array(owner_roll < 0.95), owner_entity, pick(_PUBLIC_OWNERS, keys, 15)),
    )

    lotarea = np.round(np.exp(7.6 + 0.7 * _normal(keys, 20))).astype(np.int64)
    far = np.round(0.3 + 3.0 * u(block_id, 21) * u(keys, 22), 2)
    bldgarea = np.round(lotarea * far).astype(np.int64)
    res_share = np.where(u(block_id, 23) < 0.7, 0.8 + 0.2 * u(keys, 24), 0.3 * u(keys, 24))
    resarea = np.round(bldgarea * res_share).astype(np.int64)
    comarea = bldgarea - resarea
    numfloors = np.round(np.maximum(1.0, far * 2.0 + 2.0 * u(keys, 25)) * 2.0) / 2.0
    unitsres = (resarea // 900).astype(np.int32)
    unitstotal = unitsres + (comarea // 2500).astype(np.int32)
    lotfront = np.round(15.0 + 60.0 * u(keys, 26) ** 2, 2)
    lotdepth = np.round(lotarea / lotfront, 2)
    land_rate = 8.0 + 40.0 * u(block_id, 27)
    assessland = np.round(lotarea * land_rate * (0.9 + 0.2 * u(keys, 28)))
    assesstot = np.round(assessland + bldgarea * land_rate * 1.5 * (0.8 + 0.4 * u(keys, 29)))
    exempttot = np.where(u(keys, 30) < 0.12, assesstot, 0.0)
    yearbuilt = np.where(
        u(keys, 31) < 0.04, 0, 1899 + (u(block_id, 32) * 80 + u(keys, 33) * 45).astype(np.int64)
    ).astype(np.int16)

    center_lat = np.array([c[0] for c in _BOROUGH_CENTERS])[b]
    center_lon = np.array([c[1] for c in _BOROUGH_CENTERS])[b]
    # Blocks sit on a grid in block-number order, so neighbouring keys are neighbours on the map.
    latitude = np.round(center_lat + (block // 150 - 60) * 0.0011 + u(keys, 40) * 0.0008, 7)
    longitude = np.round(center_lon + (block % 150 - 75) * 0.0013 + u(keys, 41) * 0.0009, 7)

    sale_days = (u(keys, 50) * 20_000).astype(np.int32)  # 1970 .. 2024
    columns: dict[str, pa.Array] = {
        "bbl": pa.array(keys),
        "borough": pa.array(_BOROUGH_CODES).take(b),
        "block": pa.array(block.astype(np.int32)),
        "lot": pa.array(lot.astype(np.int16)),
        "cd": pa.array((borough * 100 + 1 + block // 1500 % 18).astype(np.int16)),
        "ct2010": pc.cast(pa.array(1 + block // 40 % 1200 * 2), pa.string()),
        "zipcode": pa.array((np.array(_ZIP_BASES)[b] + block // 700 % 60).astype(np.int32)),
        "address": address,
        "zonedist1": pick(_ZONES, block_id // 4, 60),
        "zonedist2": maybe(pick(_ZONES, block_id, 61), block_id, 62, 0.9),
        "overlay1": maybe(pick(_OVERLAYS, block_id, 63), keys, 64, 0.85),
        "bldgclass": pick(_BLDG_CLASSES, keys, 65),
        "landuse": maybe(pick(_LAND_USES, keys, 66), keys, 67, 0.01),
        "ownertype": maybe(pick(_OWNER_TYPES, keys, 68), keys, 69, 0.8),
        "ownername": ownername,
        "lotarea": pa.array(lotarea),
        "bldgarea": pa.array(bldgarea),
        "resarea": pa.array(resarea),
        "comarea": pa.array(comarea),
        "numbldgs": pa.array((1 + (u(keys, 70) < 0.1) * (_hash(keys, 71) % 4)).astype(np.int16)),
        "numfloors": pa.array(numfloors),
        "unitsres": pa.array(unitsres),
        "unitstotal": pa.array(unitstotal),
        "lotfront": pa.array(lotfront),
        "lotdepth": pa.array(lotdepth),
        "assessland": pa.array(assessland),
        "assesstot": pa.array(assesstot),
        "exempttot": pa.array(exempttot),
        "yearbuilt": pa.array(yearbuilt),
        "builtfar": pa.array(far),
        "latitude": pa.array(latitude),
        "longitude": pa.array(longitude),
        "lastsaledate": maybe(pa.array(sale_days, pa.date32()), keys, 51, 0.2),
        "irrlotcode": pa.array(u(keys, 80) < 0.1),
        "splitzone": pa.array(u(block_id, 81) < 0.05),
        "flood_score": pa.array(np.round(u(block_id, 90) * 0.6 + u(keys, 91) * 0.4, 4)),
        "heat_score": pa.array(np.round(u(block_id, 92), 3)),
        "transit_score": pa.array(np.round(u(block_id // 3, 93) * 100.0, 1)),
    }
    return pa.table(columns)


def localized(table: pa.Table, seed: int = 2) -> pa.Table:
    """Delete 2,000 contiguous lots, add 2,000 lots on one new block, rezone 1,000 lots.

    Each edit is in its own part of the key order (about 30%, 60% and 85% in).
    """
    n = table.num_rows
    size = min(2_000, n // 10)
    keys = table.column(KEY).to_numpy()
    rng = np.random.default_rng(seed)
    start = int(n * 0.3) + int(rng.integers(0, size))
    kept = pa.concat_tables([table.slice(0, start), table.slice(start + size)])

    new = lots(_new_block_keys(keys, int(n * 0.6), size))
    kept_keys = kept.column(KEY).to_numpy()
    at = int(np.searchsorted(kept_keys, new.column(KEY).to_numpy()[0]))
    merged = pa.concat_tables([kept.slice(0, at), new, kept.slice(at)])

    edit = size // 2
    first = int(n * 0.85) + int(rng.integers(0, edit))
    column = merged.column(LOCALIZED_COLUMN).combine_chunks()
    rezoned = pa.concat_arrays(
        [column.slice(0, first), pa.array(["R7D"] * edit), column.slice(first + edit)]
    )
    return _replace(merged, LOCALIZED_COLUMN, rezoned)


def append(table: pa.Table, fraction: float = 0.01) -> pa.Table:
    """Add ``fraction`` new lots whose keys sort after every existing key.

    New lots here are on new Staten Island blocks numbered past the highest
    one, so they land at the end of key order: the case of a table whose new
    rows carry increasing keys (new ids, new dates), where only the tail of a
    key-sorted file changes.
    """
    keys = table.column(KEY).to_numpy()
    count = max(1, int(table.num_rows * fraction))
    last_block = (int(keys.max()) // 10_000) % 100_000
    borough = int(keys.max()) // 1_000_000_000
    new_keys = _block_lots(borough, last_block + 1, count, salt=7)
    return pa.concat_tables([table, lots(new_keys)])


def identical(table: pa.Table) -> pa.Table:
    """The same table again (a pipeline that rewrote unchanged data)."""
    return table


def scattered(table: pa.Table, fraction: float = 0.01, seed: int = 5) -> pa.Table:
    """Change ``assesstot`` on ``fraction`` of the lots, chosen uniformly (a re-assessment)."""
    n = table.num_rows
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=max(1, int(n * fraction)), replace=False))
    values = table.column(SCATTERED_COLUMN).to_numpy().copy()
    values[rows] = np.round(values[rows] * rng.uniform(1.01, 1.15, size=len(rows)))
    return _replace(table, SCATTERED_COLUMN, pa.array(values))


def _join(*parts: pa.Array) -> pa.Array:
    """Join string arrays element-wise with a space between."""
    joined: pa.Array = pc.call_function("binary_join_element_wise", [*parts, " "])
    return joined


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index), values)


def _base_keys(rows: int) -> I64:
    counts = np.floor(_BOROUGH_LOTS / _BOROUGH_LOTS.sum() * rows).astype(np.int64)
    counts[3] += rows - counts.sum()  # rounding remainder to the largest borough
    rng = np.random.default_rng(1)
    parts = []
    for borough, count in enumerate(counts, start=1):
        # Lots per block vary a lot (mean ~24); block numbers leave gaps, as real ones do.
        sizes = np.maximum(1, rng.geometric(1 / 24, size=int(count // 10 + 10)))
        sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), count)) + 1]
        sizes[-1] -= int(sizes.sum() - count)
        blocks = np.cumsum(rng.integers(1, 3, size=len(sizes)))
        parts.append(_lots_on_blocks(borough, blocks, sizes, rng))
    return np.concatenate(parts)


def _lots_on_blocks(borough: int, blocks: I64, sizes: I64, rng: np.random.Generator) -> I64:
    block = np.repeat(blocks, sizes)
    gaps = 1 + (rng.random(len(block)) < 0.15) * rng.integers(1, 6, size=len(block))
    running = np.cumsum(gaps)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    lot = running - np.concatenate([[0], running])[starts]  # cumsum restarted per block
    return (borough * 1_000_000_000 + block * 10_000 + lot).astype(np.int64)


def _block_lots(borough: int, first_block: int, count: int, salt: int) -> I64:
    """``count`` new lots on consecutive new blocks from ``first_block``, ~40 a block."""
    rng = np.random.default_rng(salt)
    sizes = np.full(count // 40 + 1, 40, dtype=np.int64)
    sizes[-1] = count - 40 * (len(sizes) - 1)
    sizes = sizes[sizes > 0]
    blocks = first_block + np.arange(len(sizes), dtype=np.int64)
    return _lots_on_blocks(borough, blocks, sizes, rng)


def _new_block_keys(keys: I64, near: int, count: int) -> I64:
    """``count`` lots on one unused block number, in the first gap at or after row ``near``."""
    blocks = keys // 10_000  # borough * 10**5 + block
    unique = np.unique(blocks[near:])
    gap = int(np.flatnonzero(np.diff(unique) > 1)[0])
    new_block = int(unique[gap]) + 1
    borough, block = divmod(new_block, 100_000)
    lot = np.arange(1, count + 1, dtype=np.int64)  # a new development: lots 1..count
    return borough * 1_000_000_000 + block * 10_000 + lot


def _hash(ids: I64, salt: int) -> U64:
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(ids: I64, salt: int) -> F64:
    return (_hash(ids, salt) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _normal(ids: I64, salt: int) -> F64:
    u1 = np.maximum(_uniform(ids, salt), 1e-12)
    u2 = _uniform(ids, salt + 1_000)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="Parquet file to write")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"lots (default {ROWS})")
    args = parser.parse_args(argv)
    table = parcels(args.rows)
    pq.write_table(table, args.out, compression="zstd")
    print(f"wrote {table.num_rows} rows, {table.num_columns} columns to {args.out}")


if __name__ == "__main__":
    main()
