"""The storage interfaces behind remotes, on a local directory and on a real S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from udrfs.errors import AlreadyExistsError, NotFoundError, RemoteError
from udrfs.store.backends import Backend, open_backend
from udrfs.store.refs import update_ref

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return open_backend(str(tmp_path / "remote"))
    return open_backend(request.getfixturevalue("s3_url"))


def test_put_if_absent_writes_once_and_reads_back(backend: Backend) -> None:
    assert backend.blobs.put_if_absent("objects/ab/x", b"first")
    assert not backend.blobs.put_if_absent("objects/ab/x", b"second")
    assert backend.blobs.get("objects/ab/x") == b"first"
    assert backend.blobs.get_range("objects/ab/x", 1, 3) == b"irs"


def test_large_files_upload_whole(backend: Backend) -> None:
    data = bytes(range(256)) * (40 * 1024)  # 10 MiB: a multipart upload on S3
    assert backend.blobs.put_if_absent("packs/ab/big.pack", data)
    assert not backend.blobs.put_if_absent("packs/ab/big.pack", data)
    assert backend.blobs.get("packs/ab/big.pack") == data


def test_stat_and_list_under_a_prefix(backend: Backend) -> None:
    backend.blobs.put_if_absent("index/1.idx", b"12345")
    backend.blobs.put_if_absent("index/2.idx", b"1")
    backend.blobs.put_if_absent("indexes/3.idx", b"1")
    info = backend.blobs.stat("index/1.idx")
    assert info is not None and info.size == 5 and info.mtime > 0
    assert backend.blobs.stat("index/none.idx") is None
    assert [b.key for b in backend.blobs.list("index/")] == ["index/1.idx", "index/2.idx"]


def test_missing_file_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFoundError):
        backend.blobs.get("objects/00/missing")


def test_ref_compare_and_swap_refuses_a_stale_token(backend: Backend) -> None:
    refs = backend.refs
    assert refs.read("heads", "main") == (None, None)
    refs.create("heads", "main", A)
    with pytest.raises(AlreadyExistsError):
        refs.create("heads", "main", B)
    value, token = refs.read("heads", "main")
    assert value == A
    assert refs.compare_and_swap("heads", "main", token, B)
    assert not refs.compare_and_swap("heads", "main", token, C)
    assert refs.get("heads", "main") == B
    assert refs.list("heads") == {"main": B}
    refs.delete("heads", "main")
    assert refs.list("heads") == {}


def test_update_ref_retries_after_a_lost_race(backend: Backend) -> None:
    refs = backend.refs
    refs.create("heads", "main", A)
    seen: list[str | None] = []

    def prepare(current: str | None) -> str:
        seen.append(current)
        if len(seen) == 1:  # someone else moves the ref between our read and our swap
            refs.cas("heads", "main", A, B)
        return C

    assert update_ref(refs, "heads", "main", prepare) == C
    assert seen == [A, B]
    assert refs.get("heads", "main") == C


def test_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(RemoteError, match="ftp://host/x"):
        open_backend("ftp://host/x")


def test_polling_an_unchanged_ref_reports_no_change(backend: Backend) -> None:
    refs = backend.refs
    refs.create("heads", "main", A)
    value, token = refs.read("heads", "main")
    assert value == A
    assert refs.read_if_changed("heads", "main", token) is None
    refs.compare_and_swap("heads", "main", token, B)
    changed = refs.read_if_changed("heads", "main", token)
    assert changed is not None and changed[0] == B
    assert refs.read_if_changed("heads", "main", changed[1]) is None


def test_delete_if_unchanged_keeps_a_ref_that_moved_since_the_read(backend: Backend) -> None:
    backend.refs.create("heads", "gone", A)
    _value, token = backend.refs.read("heads", "gone")
    assert backend.refs.cas("heads", "gone", A, B)  # a push lands after the read
    assert not backend.refs.delete_if_unchanged("heads", "gone", token)
    assert backend.refs.get("heads", "gone") == B
    _value, token = backend.refs.read("heads", "gone")
    assert backend.refs.delete_if_unchanged("heads", "gone", token)
    assert backend.refs.get("heads", "gone") is None


def test_a_ref_being_deleted_reads_as_absent_and_is_created_only_after_the_delete(
    s3_url: str,
) -> None:
    from udrfs.store.backends.s3 import TOMBSTONE

    refs = open_backend(s3_url).refs
    refs.create("heads", "x", A)
    _value, token = refs.read("heads", "x")
    # The first step of a delete, as an interrupted `push --delete` leaves it.
    assert refs.compare_and_swap("heads", "x", token, TOMBSTONE)
    assert refs.read("heads", "x") == (None, None) and refs.list("heads") == {}
    assert not refs.compare_and_swap("heads", "x", None, B)  # a push waits for the delete
    refs.delete("heads", "x")  # a second `push --delete` finishes it
    assert refs.compare_and_swap("heads", "x", None, B)
    assert refs.get("heads", "x") == B


def test_a_bad_remote_timeout_is_refused_naming_the_variable(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UDR_REMOTE_TIMEOUT", "soon")
    with pytest.raises(RemoteError, match="UDR_REMOTE_TIMEOUT must be a number of seconds"):
        open_backend(s3_url)
