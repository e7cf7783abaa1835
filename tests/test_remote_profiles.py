"""Credentials from a named AWS profile (~/.aws/credentials, ~/.aws/config), against a real
S3 server: the store records the profile's name, never its keys."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from s3server import ACCESS_KEY, SECRET_KEY, S3Server

import udrfs
from udrfs.errors import RemoteError
from udrfs.store.backends import open_backend


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> Path:
    """A HOME whose ~/.aws holds profile `udrtest` for the test server; the environment's own
    keys are wrong, so only the profile can reach the server."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        f"[udrtest]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    (home / ".aws" / "config").write_text(
        f"[profile udrtest]\nregion = us-east-1\nendpoint_url = {s3_server.endpoint}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    return home


def test_a_remote_added_with_a_profile_uses_its_keys_and_records_only_its_name(
    repo: udrfs.Repo, s3_url: str, aws_home: Path
) -> None:
    repo.write_table("t", pa.table({"a": [1, 2, 3]}))
    config = repo.add_remote("r2", s3_url, profile="udrtest")
    assert config.profile == "udrtest" and repo.remotes()[0].profile == "udrtest"
    repo.push("r2")
    recorded = b"".join(p.read_bytes() for p in (repo.store.root / "remotes").iterdir())
    assert SECRET_KEY.encode() not in recorded and ACCESS_KEY.encode() not in recorded
    assert open_backend(s3_url, profile="udrtest").refs.get("heads", "main") == repo.head()
    assert not repo.pull("r2", "main").updated


def test_aws_profile_names_the_profile_when_no_keys_are_in_the_environment(
    repo: udrfs.Repo, s3_url: str, aws_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_PROFILE", "udrtest")
    repo.write_table("t", pa.table({"a": [1]}))
    assert repo.add_remote("r2", s3_url).profile is None
    repo.push("r2")
    clone = udrfs.Repo.clone(s3_url, tmp_path / "clone")
    assert clone.read_table("t").to_pylist() == [{"a": 1}]


def test_an_unknown_profile_is_named_and_nothing_is_recorded(
    repo: udrfs.Repo, s3_url: str, aws_home: Path
) -> None:
    with pytest.raises(RemoteError, match=r"no AWS profile 'nope' in .*credentials"):
        repo.add_remote("r2", s3_url, profile="nope")
    assert repo.remotes() == []


def test_wrong_keys_in_the_environment_are_refused_naming_what_to_set(
    repo: udrfs.Repo, s3_url: str, aws_home: Path
) -> None:
    with pytest.raises(RemoteError, match=r"refused the credentials.*AWS_PROFILE"):
        repo.add_remote("r2", s3_url)


def test_the_default_profile_is_used_when_the_environment_holds_no_keys(
    repo: udrfs.Repo, s3_url: str, aws_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = aws_home / ".aws" / "credentials"
    credentials.write_text(credentials.read_text().replace("[udrtest]", "[default]"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    repo.write_table("t", pa.table({"a": [1]}))
    repo.add_remote("r2", s3_url)
    assert repo.push("r2").updated["main"][1] == repo.head()
