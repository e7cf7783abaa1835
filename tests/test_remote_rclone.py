"""The rclone recipe of docs/usage.md, run as written against the real S3 server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from s3server import S3Server

import udrfs

USAGE = Path(__file__).parent.parent / "docs" / "usage.md"
COMMITTER = """
import sys, pyarrow as pa, udrfs
from pathlib import Path
repo, stop = udrfs.Repo(sys.argv[1]), Path(sys.argv[2])
n = 0
while not stop.exists() or n < 5:
    repo.write_table(f"t{n % 7}", pa.table({"n": list(range(n, n + 5000))}))
    n += 1
print(n)
"""

pytestmark = pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone not installed")


def recipe(store: Path, dest: str) -> str:
    text = USAGE.read_text()
    pattern = r"<!-- rclone-recipe -->\n```\n(.*?)```\n<!-- /rclone-recipe -->"
    block = re.search(pattern, text, re.S)
    assert block is not None, "the recipe is missing from docs/usage.md"
    return block.group(1).replace("./store", str(store)).replace("r2:bucket/store", dest)


def run_recipe(store: Path, dest: str, server: S3Server) -> list[str]:
    """Run the recipe; the files rclone copied (from its log)."""
    # The server is plain HTTP on loopback: a CA bundle from the environment would only make
    # rclone's S3 client refuse its own transport.
    env = {
        **{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
        "RCLONE_CONFIG_UDRS3_TYPE": "s3",
        "RCLONE_CONFIG_UDRS3_PROVIDER": "Other",
        "RCLONE_CONFIG_UDRS3_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_UDRS3_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_UDRS3_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_UDRS3_REGION": "us-east-1",
        "RCLONE_VERBOSE": "1",
    }
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe(store, dest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return re.findall(r"INFO\s*:\s*(\S+): Copied", proc.stderr)


def _data_files(store: Path) -> set[str]:
    return {
        p.name
        for d in ("packs", "index", "objects")
        for p in (store / d).rglob("*")
        if p.is_file() and not p.name.startswith(".tmp-")
    }


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_rclone_recipe_copy_stays_readable_while_commits_land(
    repo: udrfs.Repo, s3_server: S3Server, s3_url: str, tmp_path: Path
) -> None:
    dest = "udrs3:" + s3_url.removeprefix("s3://")
    stop = tmp_path / "stop"
    committer = subprocess.Popen(
        [sys.executable, "-c", COMMITTER, str(repo.path), str(stop)], stdout=subprocess.PIPE
    )
    try:
        run_recipe(repo.path, dest, s3_server)
    finally:
        stop.touch()
        committer.communicate(timeout=120)
    assert committer.returncode == 0
    clone = udrfs.Repo.clone(s3_url, tmp_path / "clone")
    assert clone.fsck().ok
    assert clone.head() in {c.id for c in repo.log()}  # a commit of the store, whole


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_rclone_recipe_after_a_one_percent_change_copies_only_new_files(
    repo: udrfs.Repo,
    s3_server: S3Server,
    s3_url: str,
    tmp_path: Path,
    nyc_parquet_dir: Path,
) -> None:
    dest = "udrs3:" + s3_url.removeprefix("s3://")
    weather = pq.read_table(nyc_parquet_dir / "weather.parquet")
    weather = weather.append_column("row", pa.array(range(weather.num_rows)))
    repo.write_table("weather", weather, key="row")
    run_recipe(repo.path, dest, s3_server)
    before = _data_files(repo.path)

    # 1% of the rows, spread out: one column changes on every hundredth row.
    changed = np.arange(weather.num_rows) % 100 == 0
    temp = pc.if_else(pa.array(changed), pc.add(weather.column("temp"), 1.0), weather["temp"])
    column = weather.schema.get_field_index("temp")
    repo.write_table("weather", weather.set_column(column, "temp", temp), key="row")
    new = _data_files(repo.path) - before
    assert {n.rsplit(".", 1)[-1] for n in new} >= {"pack", "idx"}

    copied = run_recipe(repo.path, dest, s3_server)
    copied_data = {n.rsplit("/", 1)[-1] for n in copied if not n.startswith(("main", "udr"))}
    assert copied_data == new
    clone = udrfs.Repo.clone(s3_url, tmp_path / "clone")
    assert clone.read_table("weather").equals(repo.read_table("weather"))
