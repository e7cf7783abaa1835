"""`expired/<manifest id>.json`: the record of one table version whose data `udr expire`
released (docs/format.md, "Expired versions"). Written once, never rewritten; the policy
that writes them and the check every read makes are in catalog/retention.py."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from udrfs.errors import CorruptObjectError
from udrfs.store.atomic import TEMP_PREFIX
from udrfs.store.objects import is_object_id

EXPIRED_DIR = "expired"


def expired_key(manifest_id: str) -> str:
    """The record's key in a store's layout, locally and on a remote."""
    return f"{EXPIRED_DIR}/{manifest_id}.json"


def format_expired_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ExpiredRecord:
    """`expired/<manifest>.json`: one released table version (docs/format.md)."""

    manifest: str
    table: str
    version: int
    branch: str
    expired: str  # ISO 8601 UTC, seconds
    policy: str  # the command line that released it

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, where: Path) -> ExpiredRecord:
        try:
            doc = json.loads(data)
            record = cls(
                manifest=str(doc["manifest"]),
                table=str(doc["table"]),
                version=int(doc["version"]),
                branch=str(doc["branch"]),
                expired=str(doc["expired"]),
                policy=str(doc["policy"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObjectError(
                f"expiry record {where} is damaged ({type(exc).__name__}: {exc}); `udr fsck "
                "--repair STORE` moves it to lost+found/ (the version then counts as kept)"
            ) from None
        if record.manifest != where.stem:
            raise CorruptObjectError(
                f"expiry record {where} names manifest {record.manifest[:16]}, not the one it "
                "is named for; `udr fsck --repair STORE` moves it to lost+found/"
            )
        return record

    @property
    def expired_on(self) -> str:
        """`2026-12-04 05:50 UTC`: how an error message shows when it was released."""
        try:
            t = datetime.strptime(self.expired, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return self.expired
        return t.strftime("%Y-%m-%d %H:%M UTC")


def is_record_name(name: str) -> bool:
    """A file name in `expired/` that is a record (not a temporary file)."""
    return not name.startswith(TEMP_PREFIX) and name.endswith(".json") and is_object_id(name[:-5])
