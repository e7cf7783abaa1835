"""Named AWS profiles: keys, region and endpoint from `~/.aws/credentials` and `~/.aws/config`.

obstore reads the standard AWS_* environment variables itself but not these two INI files,
so the few keys a profile holds for an S3-compatible store are read here (docs/usage.md,
"Remotes"). A store records at most a profile's name, never what it holds.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from udrfs.errors import RemoteError

# INI key -> obstore S3 config key
_KEYS = {
    "aws_access_key_id": "access_key_id",
    "aws_secret_access_key": "secret_access_key",
    "aws_session_token": "session_token",
    "region": "region",
    "endpoint_url": "endpoint",
}


def _files() -> tuple[Path, Path]:
    home = Path.home()
    credentials = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials"
    config = os.environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config"
    return Path(credentials), Path(config)


def _section(path: Path, section: str) -> dict[str, str] | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise RemoteError(f"cannot read AWS profiles from {path}: {exc}") from None
    return dict(parser[section]) if parser.has_section(section) else None


def profile_settings(name: str) -> dict[str, str]:
    """obstore S3 settings from profile `name`: keys from the credentials file (else the config
    file), region and endpoint from the config file (else the credentials file)."""
    credentials_file, config_file = _files()
    in_credentials = _section(credentials_file, name)
    in_config = _section(config_file, name if name == "default" else f"profile {name}")
    if in_credentials is None and in_config is None:
        raise RemoteError(
            f"no AWS profile {name!r} in {credentials_file} or {config_file}; add it there "
            "(aws_access_key_id, aws_secret_access_key) or give another profile"
        )
    merged = {**(in_credentials or {}), **(in_config or {})}
    for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        if in_credentials and key in in_credentials:
            merged[key] = in_credentials[key]
    if not merged.get("aws_access_key_id") or not merged.get("aws_secret_access_key"):
        raise RemoteError(
            f"AWS profile {name!r} holds no aws_access_key_id and aws_secret_access_key "
            f"(in {credentials_file}); udrfs reads keys only, not single sign-on or roles"
        )
    return {_KEYS[k]: v.strip() for k, v in merged.items() if k in _KEYS and v.strip()}


def chosen_profile(recorded: str | None) -> str | None:
    """The profile to read: the remote's recorded one, else AWS_PROFILE unless keys are in the
    environment, else `default` when the files give it keys; None: the environment alone."""
    if recorded:
        return recorded
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return None
    if os.environ.get("AWS_PROFILE"):
        return os.environ["AWS_PROFILE"]
    # An implicit `default` only when it holds keys: otherwise obstore's own sources (instance
    # metadata, web identity) stay in charge.
    credentials_file, config_file = _files()
    for path, section in ((credentials_file, "default"), (config_file, "default")):
        if (_section(path, section) or {}).get("aws_access_key_id"):
            return "default"
    return None
