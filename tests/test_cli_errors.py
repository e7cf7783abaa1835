"""The `udr` command's error boundary: one line `udr: error: ...`, an exit code per error class,
no traceback, and nothing a store holds can rewrite the terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import udrfs
from udrfs.errors import (
    EXIT_CONFLICT,
    EXIT_CORRUPT,
    EXIT_ERROR,
    EXIT_USAGE,
    CorruptObjectError,
    InternalError,
    UdrError,
)

pytestmark = pytest.mark.timeout(120)


def udr(*args: object, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *map(str, args)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


def assert_one_error_line(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("udr: error: "), proc.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def store(repo: udrfs.Repo) -> udrfs.Repo:
    repo.write_table(
        "t", pa.table({"k": list(range(20_000)), "v": [f"v{i}" for i in range(20_000)]})
    )
    return repo


def test_version_flag_prints_the_version() -> None:
    proc = udr("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"udr {udrfs.__version__}"


def test_bad_sql_is_one_line_and_a_usage_exit(store: udrfs.Repo) -> None:
    assert_one_error_line(udr("query", store.path, "SELEC nonsense FROM t"), EXIT_USAGE, "SQL")


def test_init_on_a_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    assert_one_error_line(udr("init", path), EXIT_ERROR, "is a file")


def test_a_non_ascii_ref_file_is_one_line_naming_the_repair(store: udrfs.Repo) -> None:
    (store.path / "refs/heads/main").write_bytes("é\n".encode())
    assert_one_error_line(udr("tables", store.path), EXIT_CORRUPT, "udr fsck --repair")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda text: re.sub(r"chunk_min = \d+", 'chunk_min = "x"', text), "chunk_min"),
        (lambda text: text.replace("chunk_avg = 65536\n", ""), "chunk_avg"),
        (lambda text: re.sub(r"chunk_min = \d+", "chunk_min = 999999999", text), "chunk"),
        (lambda text: text + "[[[", "udr.toml"),
    ],
)
def test_a_bad_store_manifest_is_one_line(store: udrfs.Repo, edit: object, words: str) -> None:
    toml = store.path / "udr.toml"
    toml.write_text(edit(toml.read_text()))  # type: ignore[operator]
    assert_one_error_line(udr("tables", store.path), EXIT_ERROR, words)


def test_merge_with_conflicts_exits_nonzero_when_its_output_is_piped(repo: udrfs.Repo) -> None:
    repo.write_table("t", pa.table({"k": [1, 2], "v": [0, 0]}), key="k")
    repo.create_branch("exp")
    repo.write_table("t", pa.table({"k": [1, 2], "v": [1, 0]}), key="k")
    repo.write_table("t", pa.table({"k": [1, 2], "v": [2, 0]}), key="k", branch="exp")
    closed = subprocess.Popen(
        [sys.executable, "-m", "udrfs.cli.main", "merge", str(repo.path), "exp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert closed.stdout is not None and closed.stderr is not None
    closed.stdout.close()  # the reader went away, as with `| head -0`
    err = closed.stderr.read().decode()
    assert closed.wait(60) == EXIT_CONFLICT, err
    assert "Traceback" not in err and "conflict" in err
    piped = udr("merge", repo.path, "exp")
    assert piped.returncode == EXIT_CONFLICT and "CONFLICT t" in piped.stdout


def test_log_escapes_control_characters_in_messages_and_authors(repo: udrfs.Repo) -> None:
    os.environ["UDR_AUTHOR"] = "eve\x1b[2J"
    try:
        repo.write_table("t", pa.table({"a": [1]}), message="fake\n0123456789ab  seq 9\x1b[31m")
    finally:
        del os.environ["UDR_AUTHOR"]
    out = udr("log", repo.path).stdout
    assert "\x1b" not in out
    assert "fake\\n0123456789ab  seq 9\\x1b[31m" in out and "eve\\x1b[2J" in out
    branches = udr("branch", repo.path, "list").stdout
    assert "\x1b" not in branches and "\n0123456789ab" not in branches


def test_cat_to_a_file_keeps_the_old_file_when_a_read_fails(
    store: udrfs.Repo, tmp_path: Path
) -> None:
    (pack,) = store.path.glob("packs/??/*.pack")
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    out = tmp_path / "out" / "t.parquet"
    out.parent.mkdir()
    out.write_bytes(b"yesterday's file")
    assert_one_error_line(udr("cat", store.path, "t", "-o", out), EXIT_CORRUPT, "udr fsck")
    assert out.read_bytes() == b"yesterday's file"
    assert sorted(p.name for p in out.parent.iterdir()) == ["t.parquet"]


def test_cat_to_a_file_writes_the_exact_bytes(store: udrfs.Repo, tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    out.write_bytes(b"old")
    assert udr("cat", store.path, "t", "-o", out).returncode == 0
    with store.open("t") as f:
        assert out.read_bytes() == f.read()


def test_cat_refuses_a_terminal_unless_told_with_dash_o_dash(store: udrfs.Repo) -> None:
    leader, follower = pty.openpty()
    try:
        refused = udr("cat", store.path, "t", stdout=follower)
        assert_one_error_line(refused, EXIT_USAGE, "terminal", "-o -")
        dashed = subprocess.run(
            [sys.executable, "-m", "udrfs.cli.main", "cat", str(store.path), "t", "-o", "-"],
            capture_output=True,
            timeout=60,
        )
        assert dashed.returncode == 0 and dashed.stdout.startswith(b"PAR1")
    finally:
        os.close(leader)
        os.close(follower)


def test_umount_of_a_plain_directory_is_one_line(tmp_path: Path) -> None:
    proc = udr("umount", tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.startswith("udr: error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_a_malformed_chunk_list_in_a_manifest_is_a_corrupt_object_error(store: udrfs.Repo) -> None:
    manifest = store.manifest(store.commit(store.head()).tables["t"])
    doc = store.store.objects.get(manifest.id)
    with pytest.raises(CorruptObjectError, match="malformed"):
        udrfs.TableVersion.from_document(manifest.id, {**doc, "chunks": "AAAA"})
    with pytest.raises(CorruptObjectError, match="malformed"):
        udrfs.TableVersion.from_document(manifest.id, {k: v for k, v in doc.items() if k != "rows"})


def test_native_argument_errors_are_udr_errors(store: udrfs.Repo) -> None:
    with pytest.raises(InternalError) as caught:
        store.store.chunks.verify_pack("not-a-pack-id")
    assert isinstance(caught.value, UdrError)
