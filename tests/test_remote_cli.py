"""`udr remote/push/fetch/pull/clone` and their answers to bad input, on a real S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from s3server import ACCESS_KEY, SECRET_KEY, S3Server, free_ports

from udrfs.store.backends import open_backend


def udr(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"udr {' '.join(args)} failed: {proc.stderr}")
    return proc


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str, code: int = 1) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("udr: error: ") and "\n" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture
def store(tmp_path: Path, nyc_parquet_dir: Path) -> str:
    path = str(tmp_path / "store")
    udr("init", path)
    udr("import", path, "weather", str(nyc_parquet_dir / "weather.parquet"))
    return path


def _local_state(store: str) -> dict[str, object]:
    """What a failed remote command must leave unchanged."""
    root = Path(store)
    return {
        "files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()),
        "remotes": udr("remote", store, "list").stdout,
    }


def test_push_clone_pull_round_trip(store: str, s3_url: str, tmp_path: Path) -> None:
    out = udr("remote", store, "add", "r2", s3_url).stdout
    assert "compare-and-swap checked" in out
    assert s3_url in udr("remote", store, "list").stdout
    summary = json.loads(udr("push", store, "--json").stdout)
    assert summary["remote"] == "r2" and "main" in summary["updated"] and summary["files"] == 5
    again = json.loads(udr("push", store, "r2", "main", "--json").stdout)
    assert again["up_to_date"] == ["main"] and again["files"] == 0

    clone = str(tmp_path / "clone")
    assert "cloned" in udr("clone", s3_url, clone).stdout
    assert "weather" in udr("tables", clone).stdout
    assert udr("fsck", clone).returncode == 0
    pulled = json.loads(udr("pull", clone, "--json").stdout)
    assert "main" in pulled["up_to_date"] and not pulled["updated"]
    fetched = json.loads(udr("fetch", clone, "origin", "--json").stdout)
    assert fetched["up_to_date"] == ["origin/main"]
    udr("remote", store, "remove", "r2")
    assert "r2" not in udr("remote", store, "list").stdout


def test_remote_add_profile_pushes_with_the_profile_keys_and_lists_its_name(
    store: str, s3_url: str, tmp_path: Path
) -> None:
    aws = tmp_path / "home" / ".aws"
    aws.mkdir(parents=True)
    (aws / "credentials").write_text(
        f"[nightly]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    env = {
        "HOME": str(tmp_path / "home"),
        "AWS_ACCESS_KEY_ID": "wrong-key",
        "AWS_SECRET_ACCESS_KEY": "wrong-secret",
    }
    udr("remote", store, "add", "r2", s3_url, "--profile", "nightly", env=env)
    assert "nightly" in udr("remote", store, "list").stdout.splitlines()[1]
    assert json.loads(udr("push", store, "--json", env=env).stdout)["updated"]


def test_unknown_remote_is_named(store: str) -> None:
    before = _local_state(store)
    one_line_error(udr("push", store, "nope", check=False), "no remote named 'nope'", code=3)
    assert _local_state(store) == before


@pytest.mark.parametrize("url", ["ftp://bucket/x", "s3:///no-bucket"])
def test_malformed_url_is_refused(store: str, url: str) -> None:
    before = _local_state(store)
    one_line_error(udr("remote", store, "add", "r2", url, check=False), url)
    assert _local_state(store) == before


def test_wrong_credentials_are_named(store: str, s3_url: str) -> None:
    before = _local_state(store)
    proc = udr(
        "remote", store, "add", "r2", s3_url, check=False, env={"AWS_SECRET_ACCESS_KEY": "wrong"}
    )
    one_line_error(proc, "refused the credentials", "AWS_SECRET_ACCESS_KEY")
    assert _local_state(store) == before


def test_missing_bucket_is_named(store: str, s3_server: S3Server) -> None:
    before = _local_state(store)
    proc = udr("remote", store, "add", "r2", "s3://no-such-bucket/x", check=False)
    one_line_error(proc, "bucket 'no-such-bucket' does not exist")
    assert _local_state(store) == before


def test_server_down_is_named(store: str, s3_server: S3Server, tmp_path: Path) -> None:
    before = _local_state(store)
    endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"
    proc = udr("remote", store, "add", "r2", "s3://udrtest/x", "--endpoint", endpoint, check=False)
    one_line_error(proc, endpoint)
    assert _local_state(store) == before
    proc = udr("clone", "s3://udrtest/x", str(tmp_path / "c"), "--endpoint", endpoint, check=False)
    one_line_error(proc, endpoint)
    assert not (tmp_path / "c").exists()


def test_remote_of_another_format_version_is_refused(s3_url: str, tmp_path: Path) -> None:
    open_backend(s3_url).blobs.put_if_absent(
        "udr.toml", b'format = "udr-store"\nformat_version = 9\nhash = "blake3"\n'
    )
    proc = udr("clone", s3_url, str(tmp_path / "c"), check=False)
    one_line_error(proc, "format version 9")
    assert not (tmp_path / "c").exists()


def test_a_location_that_is_not_a_store_is_refused(store: str, s3_url: str, tmp_path: Path) -> None:
    open_backend(s3_url).blobs.put_if_absent("holiday.jpg", b"\xff\xd8")
    before = _local_state(store)
    one_line_error(udr("remote", store, "add", "r2", s3_url, check=False), "is not a UDR store")
    assert _local_state(store) == before
    one_line_error(udr("clone", s3_url, str(tmp_path / "c"), check=False), "is not a UDR store")
    assert not (tmp_path / "c").exists()


class _CarelessS3(BaseHTTPRequestHandler):
    """An S3 front-end that accepts every PUT and ignores If-None-Match / If-Match."""

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("ETag", '"1"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if "list-type=2" in self.path:  # an empty bucket
            body = b'<?xml version="1.0"?><ListBucketResult><KeyCount>0</KeyCount>'
            body += b"<IsTruncated>false</IsTruncated></ListBucketResult>"
            self.send_response(200)
        else:
            body = b'<?xml version="1.0"?><Error><Code>NoSuchKey</Code></Error>'
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'<?xml version="1.0"?><DeleteResult></DeleteResult>'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def careless_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CarelessS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_remote_that_ignores_conditional_writes_is_refused(
    store: str, careless_endpoint: str
) -> None:
    before = _local_state(store)
    args = ("remote", store, "add", "r2", "s3://b/x", "--endpoint", careless_endpoint)
    proc = udr(*args, check=False)
    one_line_error(proc, "If-None-Match: *", "412", "--no-cas")
    assert _local_state(store) == before
    out = udr(*args, "--no-cas")
    assert "single writer" in out.stdout
