"""Store format versions (docs/format.md, "Format versions"): a store made by an earlier
release (version 1, packs named by the hash of all their bytes) is read and written as it
is, `udr upgrade` raises it to version 2 (packs named by their chunk headers) without
rewriting a pack, and no store or remote receives packs its version's readers cannot read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import udrfs
from udrfs import _native
from udrfs.errors import FormatVersionError, RemoteError
from udrfs.store.backends import open_backend


def udr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udrfs.cli.main", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )


def version_1_store(path: Path) -> udrfs.Repo:
    """A store as a release before version 2 made it: udr.toml says version 1, and no pack
    has been written yet (a new store holds only its root commit)."""
    udrfs.Repo.init(path)
    manifest = path / "udr.toml"
    text = manifest.read_text()
    assert "format_version = 2\n" in text and not list(path.glob("packs/??/*.pack"))
    manifest.write_text(text.replace("format_version = 2\n", "format_version = 1\n"))
    return udrfs.Repo(path)


def pushed_version_1_store(path: Path, url: str, seed: int) -> udrfs.Repo:
    """A version 1 store holding table `t` of `seed`, pushed to `url` as remote `r2`."""
    repo = version_1_store(path)
    repo.write_table("t", table(seed))
    repo.add_remote("r2", url)
    repo.push("r2")
    return repo


def pack_magics(path: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes()[:8] for p in path.glob("packs/??/*.pack")}


def table(seed: int) -> pa.Table:
    rows = 50_000
    return pa.table({"id": pa.array(range(seed, seed + rows)), "v": pa.array([seed] * rows)})


def test_a_version_1_store_writes_version_1_packs_until_upgraded_and_reads_both(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    repo = version_1_store(path)
    repo.write_table("t", table(1))
    old = pack_magics(path)
    assert old and set(old.values()) == {b"UDRPACK1"}
    for pack_id in old:  # named by every byte, as before
        data = (path / "packs" / pack_id[:2] / f"{pack_id}.pack").read_bytes()
        assert _native.blake3_hex(data) == pack_id
    assert udrfs.Repo(path).store.format.format_version == 1

    out = udr("upgrade", str(path))
    assert out.returncode == 0 and "from format version 1 to 2" in out.stdout, out.stderr
    again = udr("upgrade", str(path))
    assert again.returncode == 0 and "already at format version 2" in again.stdout

    repo = udrfs.Repo(path)
    assert repo.store.format.format_version == 2
    repo.write_table("t", table(2))
    new = {k: v for k, v in pack_magics(path).items() if k not in old}
    assert new and set(new.values()) == {b"UDRPACK2"}
    assert pack_magics(path).items() >= old.items(), "no pack was rewritten"
    assert repo.read_table("t", version=1).equals(table(1))
    assert repo.read_table("t", version=2).equals(table(2))
    report = repo.fsck()
    assert report.ok, report


def test_a_damaged_version_2_pack_is_found_by_fsck(tmp_path: Path) -> None:
    repo = udrfs.Repo.init(tmp_path / "s")
    repo.write_table("t", table(3))
    (pack,) = (tmp_path / "s").glob("packs/??/*.pack")
    data = bytearray(pack.read_bytes())
    data[8 + 44 + 100] ^= 0x01  # inside the first chunk's stored bytes, not a header
    pack.write_bytes(bytes(data))
    report = repo.fsck()
    assert not report.ok
    assert pack.stem in str(report)


def test_a_store_of_version_2_does_not_push_to_a_version_1_remote_until_it_is_upgraded(
    tmp_path: Path, s3_url: str
) -> None:
    old = pushed_version_1_store(tmp_path / "old", s3_url, 4)
    assert b"format_version = 1" in open_backend(s3_url).blobs.get("udr.toml")

    # A clone keeps the remote's version; upgraded on its own, it may not push there.
    new = udrfs.Repo.clone(s3_url, tmp_path / "new")
    assert new.store.format.format_version == 1
    assert udr("upgrade", str(new.path)).returncode == 0
    new = udrfs.Repo(new.path)
    assert new.read_table("t").equals(table(4))  # its version 1 packs
    new.write_table("u", table(5))
    assert b"UDRPACK2" in pack_magics(new.path).values()
    with pytest.raises(RemoteError, match=r"format version 1 .*udr upgrade"):
        new.push("origin")

    # The old store does not take version 2 packs either, once the remote has some.
    out = udr("upgrade", s3_url, "--endpoint", os.environ["AWS_ENDPOINT_URL"])
    assert out.returncode == 0 and "from format version 1 to 2" in out.stdout, out.stderr
    new.push("origin")
    with pytest.raises(FormatVersionError, match="udr upgrade"):
        old.pull("r2", "main")
    assert old.read_table("t").equals(table(4))
    assert old.fsck().ok
    assert udr("upgrade", str(old.path)).returncode == 0
    udrfs.Repo(old.path).pull("r2", "main")
    assert udrfs.Repo(old.path).read_table("u").equals(table(5))


def test_a_store_read_from_a_remote_writes_the_version_the_remote_has_now(
    tmp_path: Path, s3_url: str
) -> None:
    pushed_version_1_store(tmp_path / "old", s3_url, 7)
    cache = tmp_path / "cache"
    before = udrfs.Repo(s3_url, cache_dir=cache)
    assert before.read_table("t").equals(table(7))  # its cache now holds udr.toml: version 1

    # Upgraded from elsewhere; a handle on the same cache directory writes version 2 packs.
    out = udr("upgrade", s3_url, "--endpoint", os.environ["AWS_ENDPOINT_URL"])
    assert out.returncode == 0, out.stderr
    blobs = open_backend(s3_url).blobs
    packs_before = {b.key for b in blobs.list("packs/")}
    udrfs.Repo(s3_url, cache_dir=cache).write_table("u", table(8))
    new = [b.key for b in blobs.list("packs/") if b.key not in packs_before]
    assert new and {bytes(blobs.get_range(key, 0, 8)) for key in new} == {b"UDRPACK2"}
    assert b"format_version = 2" in (next(cache.glob("stores/*")) / "udr.toml").read_bytes()

    # The handle opened before the upgrade reads both, and writes version 2 as well.
    before.write_table("w", table(9))
    assert before.read_table("u").equals(table(8)) and before.read_table("t").equals(table(7))

    # A remote whose udr.toml now describes another store is not written to.
    manifest = blobs.get("udr.toml")
    blobs.put("udr.toml", bytes(manifest).replace(b"chunk_min = 49152", b"chunk_min = 16384"))
    heads = {b.key: b.etag for b in blobs.list("refs/")}
    assert heads
    with pytest.raises(FormatVersionError, match=r"remove .* and open the store again"):
        udrfs.Repo(s3_url, cache_dir=cache).write_table("x", table(10))
    assert {b.key: b.etag for b in blobs.list("refs/")} == heads
