"""SQL over any version: `repo.query` and `udr query`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udrfs


def scores(n: int, bump: float = 0.0) -> pa.Table:
    return pa.table(
        {
            "bbl": pa.array([1_000_010_000 + i for i in range(n)], pa.int64()),
            "score": pa.array([float(i % 100) + bump for i in range(n)]),
        }
    )


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args], capture_output=True, text=True
    )


def count(repo: udrfs.Repo, sql: str, **kwargs: object) -> int:
    return int(repo.query(sql, **kwargs).column(0)[0].as_py())  # type: ignore[arg-type]


def test_query_reads_the_newest_version_on_the_branch(repo: udrfs.Repo) -> None:
    repo.write_table("nyc_master", scores(10), key="bbl")
    repo.write_table("nyc_master", scores(12), key="bbl")
    assert count(repo, "SELECT count(*) FROM nyc_master") == 12


def test_query_pins_a_table_to_an_old_version(repo: udrfs.Repo) -> None:
    for n in (10, 11, 12):
        repo.write_table("nyc_master", scores(n), key="bbl")
    assert count(repo, "SELECT count(*) FROM nyc_master", versions={"nyc_master": 1}) == 10
    assert count(repo, "SELECT count(*) FROM nyc_master", versions={"nyc_master": 2}) == 11


def test_query_pins_one_table_and_reads_the_others_at_the_snapshot(repo: udrfs.Repo) -> None:
    repo.write_table("a", scores(3), key="bbl")
    repo.write_table("a", scores(5), key="bbl")
    repo.write_table("b", scores(7), key="bbl")
    sql = "SELECT (SELECT count(*) FROM a) AS a, (SELECT count(*) FROM b) AS b"
    assert repo.query(sql, versions={"a": 1}).to_pylist() == [{"a": 3, "b": 7}]


def test_query_as_of_a_time_sees_that_moment(repo: udrfs.Repo) -> None:
    repo.write_table("t", scores(4))
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    repo.write_table("t", scores(9))
    assert count(repo, "SELECT count(*) FROM t", as_of=middle) == 4
    assert count(repo, "SELECT count(*) FROM t") == 9


def test_query_on_a_branch_sees_only_that_branch(repo: udrfs.Repo) -> None:
    repo.write_table("scores", scores(10), key="bbl")
    repo.create_branch("experiment/new-weights")
    repo.write_table("scores", scores(10, bump=1.0), key="bbl", branch="experiment/new-weights")
    sql = "SELECT avg(score) FROM scores"
    main = repo.query(sql, branch="main").column(0)[0].as_py()
    exp = repo.query(sql, branch="experiment/new-weights").column(0)[0].as_py()
    assert exp == pytest.approx(main + 1.0)


def test_query_sees_a_new_commit_on_the_next_call(repo: udrfs.Repo) -> None:
    repo.write_table("t", scores(2))
    assert count(repo, "SELECT count(*) FROM t") == 2
    repo.write_table("t", scores(3))
    assert count(repo, "SELECT count(*) FROM t") == 3


def test_repeating_a_query_over_unchanged_versions_registers_nothing_new(
    repo: udrfs.Repo,
) -> None:
    repo.write_table("t", scores(5), key="bbl")
    repo.write_table("u", scores(6), key="bbl")
    sql = "SELECT count(*) FROM t JOIN u USING (bbl)"
    repo.query(sql)
    created = repo.engine.views_created
    for _ in range(3):
        assert count(repo, sql) == 5
    assert repo.engine.views_created == created
    repo.query(sql, versions={"t": 1})  # same version: still nothing new
    assert repo.engine.views_created == created


def test_repeating_a_query_reads_nothing_again(repo: udrfs.Repo) -> None:
    repo.write_table("t", scores(20_000), key="bbl")
    sql = "SELECT avg(score) FROM t WHERE bbl % 7 = 0"
    first = repo.query(sql)
    read = repo.engine.bytes_read
    assert read > 0
    assert repo.query(sql).equals(first)
    assert repo.engine.bytes_read == read


def test_tables_the_query_does_not_name_are_not_registered(repo: udrfs.Repo) -> None:
    for name in ("a", "b", "c"):
        repo.write_table(name, scores(2))
    repo.query("SELECT count(*) FROM a")
    assert repo.engine.views_created == 1


def test_threads_query_different_versions_of_one_table_at_once(repo: udrfs.Repo) -> None:
    for n in (100, 200):
        repo.write_table("t", scores(n), key="bbl")
    results: dict[int, list[int]] = {1: [], 2: []}

    def ask(version: int) -> None:
        for _ in range(10):
            results[version].append(count(repo, "SELECT count(*) FROM t", versions={"t": version}))

    threads = [threading.Thread(target=ask, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {1: [100] * 10, 2: [200] * 10}


def test_a_table_name_not_in_the_store_is_a_query_error(repo: udrfs.Repo) -> None:
    repo.write_table("t", scores(2))
    with pytest.raises(udrfs.QueryError, match="nope") as caught:
        repo.query("SELECT * FROM nope")
    assert isinstance(caught.value.__cause__, duckdb.CatalogException)


def test_pinning_a_version_that_does_not_exist_says_which_exist(repo: udrfs.Repo) -> None:
    repo.write_table("t", scores(2))
    with pytest.raises(udrfs.NotFoundError, match=r"versions 1\.\.1"):
        repo.query("SELECT * FROM t", versions={"t": 7})


def test_a_table_dropped_on_the_snapshot_is_not_served_from_an_old_view(
    repo: udrfs.Repo,
) -> None:
    repo.write_table("t", scores(2))
    assert count(repo, "SELECT count(*) FROM t") == 2
    with repo.transaction() as tx:
        tx.drop_table("t")
    with pytest.raises(udrfs.QueryError, match="t"):
        repo.query("SELECT count(*) FROM t")


def test_tpch_query_answers_as_duckdb_does_on_the_files(
    repo: udrfs.Repo, tpch_parquet_dir: Path
) -> None:
    for name in ("lineitem", "orders"):
        repo.import_file(name, tpch_parquet_dir / f"{name}.parquet")
    sql = """
        SELECT o_orderpriority, count(*) AS n, sum(l_extendedprice) AS revenue
        FROM orders JOIN lineitem ON l_orderkey = o_orderkey
        WHERE l_shipdate > DATE '1995-03-15'
        GROUP BY o_orderpriority ORDER BY o_orderpriority
    """
    ours = repo.query(sql)
    direct = duckdb.connect()
    for name in ("lineitem", "orders"):
        path = str(tpch_parquet_dir / f"{name}.parquet").replace("'", "''")
        direct.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    assert ours.to_pylist() == direct.sql(sql).to_arrow_table().to_pylist()


def test_parcel_history_reads_one_row_from_each_version(repo: udrfs.Repo) -> None:
    for bump in (0.0, 1.0, 2.0):
        repo.write_table("nyc_master", scores(50, bump), key="bbl")

    def parcel_history(bbl: int, versions: list[int]) -> list[float]:
        out = []
        for v in versions:
            row = repo.query(
                f"SELECT score FROM nyc_master WHERE bbl = {bbl}", versions={"nyc_master": v}
            ).to_pylist()
            out.append(row[0]["score"])
        return out

    assert parcel_history(1_000_010_007, [1, 2, 3]) == [7.0, 8.0, 9.0]


def test_query_takes_parameters(repo: udrfs.Repo) -> None:
    repo.write_table("t", scores(10))
    assert count(repo, "SELECT count(*) FROM t WHERE score < ?", params=[5]) == 5


def test_cli_query_prints_rows_and_writes_parquet(repo: udrfs.Repo, tmp_path: Path) -> None:
    repo.write_table("t", scores(3), key="bbl")
    repo.write_table("t", scores(4), key="bbl")
    store = str(repo.path)
    shown = udr("query", store, "SELECT count(*) AS n FROM t", "--version", "t=1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["n", "3"]
    out = tmp_path / "out.parquet"
    written = udr("query", store, "SELECT * FROM t", "-o", str(out))
    assert written.returncode == 0, written.stderr
    assert pq.read_table(out).num_rows == 4
    as_csv = udr("query", store, "SELECT bbl FROM t ORDER BY bbl LIMIT 1", "--format", "csv")
    assert as_csv.stdout.splitlines() == ['"bbl"', "1000010000"]


def test_cli_query_with_a_bad_version_pin_fails_with_one_line(repo: udrfs.Repo) -> None:
    repo.write_table("t", scores(3))
    proc = udr("query", str(repo.path), "SELECT 1", "--version", "t")
    assert proc.returncode == 2  # usage
    assert proc.stderr.startswith("udr: error: --version")


def test_a_latest_path_written_into_the_sql_follows_new_commits(repo: udrfs.Repo) -> None:
    repo.write_table("t", scores(2))
    sql = "SELECT count(*) FROM read_parquet('udr://@main/t/latest.parquet')"
    assert count(repo, sql) == 2
    repo.write_table("t", scores(5))
    assert count(repo, sql) == 5
