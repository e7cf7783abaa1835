"""`udr status` (the store at a glance) and `udr show` (one commit and its tables)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import Mount, SampleStore, make_store, mounted, requires_fuse, write_version

import udrfs

pytestmark = pytest.mark.timeout(120)


def udr(*args: object) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def store(tmp_path: Path) -> SampleStore:
    return make_store(tmp_path, {"nyc_master": 2, "compound_1": 1}, rows=3000)


@pytest.fixture
def mount(store: SampleStore, tmp_path: Path) -> Iterator[Mount]:
    with mounted(store.path, tmp_path / "mnt") as m:
        yield m


def test_status_of_a_store_with_no_mount_names_its_branches(store: SampleStore) -> None:
    store.catalog().create_branch("experiment")
    status = json.loads(udr("status", store.path, "--json"))
    assert status["path"] == str(store.path)
    assert status["format_version"] == 2 and status["default_branch"] == "main"
    heads = {b["name"]: b["commit"] for b in status["branches"]}
    assert heads == store.catalog().branches()
    assert status["mount"] is None and status["transactions"] == [] and status["remotes"] == []
    text = udr("status", store.path)
    assert "not mounted" in text and "experiment" in text
    assert store.catalog().head("main")[:12] in text


@pytest.mark.mount
@requires_fuse
def test_status_shows_the_live_mount_and_a_pending_transaction(
    store: SampleStore, mount: Mount, tmp_path: Path
) -> None:
    tx = mount.at("@main", ".tx", "nightly")
    tx.mkdir()
    source = write_version(tmp_path / "m.parquet", "nyc_master", 9, 3000)
    shutil.copyfile(source, tx / "nyc_master.parquet")

    status = json.loads(udr("status", store.path, "--json"))
    assert status["mount"]["mountpoint"] == str(mount.path)
    assert status["mount"]["running"] is True and isinstance(status["mount"]["pid"], int)
    [pending] = status["transactions"]
    assert pending["branch"] == "main" and pending["name"] == "nightly"
    assert pending["tables"] == ["nyc_master"] and pending["status"] == "open"
    assert pending["base"] == store.catalog().head("main")
    text = udr("status", store.path)
    assert f"mount    {mount.path} (daemon pid {status['mount']['pid']})" in text
    assert "nightly" in text and "nyc_master" in text


def test_status_lists_remotes_and_their_tracking_refs(store: SampleStore, tmp_path: Path) -> None:
    repo = udrfs.Repo(store.path)
    repo.add_remote("backup", str(tmp_path / "remote"))
    assert "(not fetched yet)" in udr("status", store.path)
    repo.push("backup", ["main"])
    status = json.loads(udr("status", store.path, "--json"))
    [remote] = status["remotes"]
    assert remote["name"] == "backup" and remote["url"].endswith("/remote")
    assert remote["tracking"] == {"main": repo.head("main")}
    assert f"backup/main {repo.head('main')[:12]}" in udr("status", store.path)


def test_show_prints_a_commit_with_its_tables_versions_and_rows(store: SampleStore) -> None:
    store.commit_version("compound_1", rows=3100)
    catalog = store.catalog()
    head = catalog.commit(catalog.head("main"))
    doc = json.loads(udr("show", store.path, head.id[:10], "--json"))
    assert doc["commit"] == head.id and doc["message"] == "compound_1 v2"
    assert doc["parents"] == list(head.parents)
    tables = {t["table"]: t for t in doc["tables"]}
    assert tables["compound_1"] == {
        "table": "compound_1",
        "version": 2,
        "rows": 3100,
        "size": catalog.manifest(head.tables["compound_1"]).size,
        "changed": True,
    }
    assert tables["nyc_master"]["version"] == 2 and tables["nyc_master"]["changed"] is False
    text = udr("show", store.path, "main")
    assert head.id in text and "compound_1 v2" in text
    assert "2 tables, 1 changed by this commit" in text
    line = next(x for x in text.splitlines() if x.startswith("compound_1 "))
    assert line.split()[:3] == ["compound_1", "v2", "3,100"] and line.endswith("from v1")


def test_show_of_an_unknown_commit_exits_not_found(store: SampleStore) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", "show", str(store.path), "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and proc.stderr.startswith("udr: error: ")


def test_status_after_the_daemon_died_says_not_mounted(store: SampleStore, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    owner = store.path / "staging" / "owner.lock"
    owner.parent.mkdir(parents=True, exist_ok=True)
    owner.write_text(json.dumps({"pid": gone.pid, "mountpoint": str(tmp_path / "mnt")}) + "\n")
    status = json.loads(udr("status", store.path, "--json"))
    assert status["mount"] == {
        "pid": gone.pid,
        "mountpoint": str(tmp_path / "mnt"),
        "running": False,
    }
    assert f"not mounted (last at {tmp_path / 'mnt'}, pid {gone.pid})" in udr("status", store.path)
