"""Files written through `.tx` into a dedup-layout table: stored in the dedup writer's layout
(same rows, schema and values; other bytes), and a file whose rows did not change is not a new
version (docs/mount.md, "Dedup tables")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mounting import Mount, mounted, requires_fuse
from stores import pack_bytes
from test_layout import parcel_rows

import udrfs
from udrfs import _native
from udrfs.catalog.model import DEFAULT_ZSTD_LEVEL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import parcels

pytestmark = [pytest.mark.mount, pytest.mark.timeout(180), requires_fuse]


@pytest.fixture
def repo(tmp_path: Path) -> udrfs.Repo:
    repo = udrfs.Repo.init(tmp_path / "store")
    repo.set_table("planes", key="tailnum", layout="dedup")
    repo.set_table("parcels", key="bbl", layout="dedup")
    return repo


@pytest.fixture
def mount(repo: udrfs.Repo, tmp_path: Path) -> Iterator[Mount]:
    with mounted(repo.path, tmp_path / "mnt") as m:
        yield m


def commit(tx: Path, message: str = "night") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"echo 'commit {message}' > {tx / '.control'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def status(tx: Path) -> str:
    return (tx / ".control").read_text().splitlines()[0]


def open_tx(mount: Mount, name: str) -> Path:
    tx = mount.at("@main", ".tx", name)
    tx.mkdir()
    return tx


def test_a_tx_commit_of_a_dedup_table_round_trips_rows_exactly(
    mount: Mount, repo: udrfs.Repo, nyc_parquet_dir: Path, tmp_path: Path
) -> None:
    planes = pd.read_parquet(nyc_parquet_dir / "planes.parquet")
    planes = planes.sort_values("tailnum").reset_index(drop=True)
    tx = open_tx(mount, "first")
    planes.to_parquet(tx / "planes.parquet")  # pandas, through the mount
    pq.write_table(parcel_rows(), tx / "parcels.parquet")  # pyarrow: nested, decimal
    planes.to_parquet(tmp_path / "planes.parquet")  # the same writes, outside
    pq.write_table(parcel_rows(), tmp_path / "parcels.parquet")

    done = commit(tx)

    assert done.returncode == 0, done.stderr
    assert status(tx).startswith("committed ")
    for table in ("planes", "parcels"):
        written = tmp_path / f"{table}.parquet"
        stored = mount.at("@main", table, "v1.parquet")
        assert _native.blake3_file(str(stored)) != _native.blake3_file(str(written))
        got, want = pq.read_table(stored), pq.read_table(written)
        assert got.schema.equals(want.schema, check_metadata=True)  # pandas metadata too
        assert got.equals(want)
    pd.testing.assert_frame_equal(
        pd.read_parquet(mount.at("@main", "planes", "v1.parquet")), planes
    )
    # The first versions, rewritten at a new table's zstd level, recorded it.
    assert repo.table_policy("planes").zstd_level == DEFAULT_ZSTD_LEVEL
    assert repo.table_policy("parcels").zstd_level == DEFAULT_ZSTD_LEVEL
    assert repo.fsck().findings == []


def test_an_unchanged_reexport_through_tx_is_not_a_new_version(
    mount: Mount, repo: udrfs.Repo, nyc_parquet_dir: Path
) -> None:
    planes = pd.read_parquet(nyc_parquet_dir / "planes.parquet")
    tx = open_tx(mount, "night1")
    planes.to_parquet(tx / "planes.parquet")
    assert commit(tx).returncode == 0
    before = pack_bytes(repo)
    # The next night: the same rows in another order and encoding, and one other table.
    tx = open_tx(mount, "night2")
    planes.sample(frac=1.0, random_state=3).reset_index(drop=True).to_parquet(
        tx / "planes.parquet", compression="gzip"
    )
    pd.DataFrame({"k": [1, 2]}).to_parquet(tx / "other.parquet")

    assert commit(tx, "night 2").returncode == 0

    head = repo.commit(repo.head())
    assert [c.table for c in head.changes] == ["other"]
    assert [v.version for v in repo.versions("planes")] == [1]
    last = json.loads(mount.at("@main", ".changes").read_text().splitlines()[-1])
    assert [t["table"] for t in last["tables"]] == ["other"]
    assert pack_bytes(repo) - before < 64 << 10  # "other" and two small objects
    assert repo.fsck().findings == []


def test_a_one_percent_edit_through_tx_stores_about_what_write_table_does(
    mount: Mount, repo: udrfs.Repo, tmp_path: Path
) -> None:
    night1 = parcels.parcels(60_000)
    night2 = parcels.scattered(night1, fraction=0.01)
    by_writer = udrfs.Repo.init(tmp_path / "by_writer")
    grown = {}
    for n, table in enumerate((night1, night2), 1):
        frame = table.to_pandas()
        tx = open_tx(mount, f"night{n}")
        before = pack_bytes(repo), pack_bytes(by_writer)
        frame.to_parquet(tx / "parcels.parquet")
        assert commit(tx).returncode == 0
        by_writer.write_table("parcels", frame, key="bbl")
        grown[n] = (pack_bytes(repo) - before[0], pack_bytes(by_writer) - before[1])

    through_tx, through_writer = grown[2]
    assert through_tx <= 1.2 * through_writer + (64 << 10), grown
    assert through_tx < grown[1][0] / 5  # the edit is not a rewrite of the table
    pd.testing.assert_frame_equal(repo.read_table("parcels").to_pandas(), night2.to_pandas())


def test_a_file_without_the_tables_key_fails_the_commit(mount: Mount, repo: udrfs.Repo) -> None:
    before = repo.head()
    tx = open_tx(mount, "nokey")
    pq.write_table(pa.table({"id": [1, 2]}), tx / "parcels.parquet")

    done = commit(tx)

    assert done.returncode != 0
    line = status(tx)
    assert line.startswith("invalid: ") and "key column(s) bbl not in the file" in line, line
    assert repo.head() == before and repo.fsck().findings == []


def test_a_repeated_key_in_a_dedup_table_fails_the_commit(mount: Mount, repo: udrfs.Repo) -> None:
    before = repo.head()
    tx = open_tx(mount, "dupes")
    rows = parcels.parcels(100)
    rows = pa.concat_tables([rows, rows.slice(0, 3)])
    pq.write_table(rows, tx / "parcels.parquet")

    done = commit(tx)

    assert done.returncode != 0
    line = status(tx)
    assert line.startswith("invalid: ") and "key (bbl) repeats" in line, line
    # The file reads back as written; fixing it lets the commit through.
    assert pq.read_table(tx / "parcels.parquet").num_rows == 103
    pq.write_table(parcels.parcels(100), tx / "parcels.parquet")
    assert commit(tx).returncode == 0
    assert repo.read_table("parcels").equals(parcels.parcels(100))
    assert repo.head() != before and repo.fsck().findings == []


def test_an_exact_table_through_tx_keeps_its_bytes(mount: Mount, repo: udrfs.Repo) -> None:
    table = pa.table({"k": np.arange(5000), "v": np.arange(5000) * 2})
    tx = open_tx(mount, "exact")
    pq.write_table(table, tx / "plain.parquet")
    written = _native.blake3_file(str(tx / "plain.parquet"))
    assert commit(tx).returncode == 0
    assert _native.blake3_file(str(mount.at("@main", "plain", "v1.parquet"))) == written


def test_a_file_renamed_onto_a_dedup_table_is_rewritten(
    mount: Mount, repo: udrfs.Repo, tmp_path: Path
) -> None:
    rows = parcels.parcels(3000)
    shuffled = rows.take(np.random.default_rng(2).permutation(rows.num_rows))
    tx = open_tx(mount, "renamed")
    # DuckDB's overwrite: a temporary name (an exact table: streamed), then a rename.
    pq.write_table(shuffled, tx / "tmp_parcels.parquet")
    (tx / "tmp_parcels.parquet").rename(tx / "parcels.parquet")
    pq.write_table(pa.table({"id": [1]}), tx / "tmp_bad.parquet")
    (tx / "tmp_bad.parquet").rename(tx / "planes.parquet")  # no tailnum: refused at commit

    assert commit(tx).returncode != 0
    assert "key column(s) tailnum not in the file" in status(tx)
    (tx / "planes.parquet").unlink()
    assert commit(tx).returncode == 0

    assert repo.read_table("parcels").equals(rows)  # stored in key order
    assert repo.version("parcels").key == ("bbl",)
    assert repo.fsck().findings == []
