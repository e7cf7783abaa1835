"""The remotes a store records: `STORE/remotes/NAME.json` and what is known to be there.

The record holds a remote's URL and options, never a secret (docs/format.md, "Remotes"), and
the pack ids known to be on the remote, which only save requests: losing them costs a few
HEADs on the next push.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from udrfs.errors import InvalidNameError, NotFoundError
from udrfs.store.atomic import write_atomic
from udrfs.store.backends import Backend, open_backend
from udrfs.store.objects import is_object_id
from udrfs.store.refnames import check_ref_name

if TYPE_CHECKING:
    from udrfs.store import Store

REMOTES_DIR = "remotes"


@dataclass(frozen=True)
class RemoteConfig:
    """What a store records about a remote: never a secret."""

    name: str
    url: str
    endpoint: str | None = None
    cas: bool = True
    profile: str | None = None  # an AWS profile's name (its keys stay in ~/.aws)

    def open(self) -> Backend:
        return open_backend(self.url, self.endpoint, self.cas, self.profile)


def check_remote_name(name: str) -> str:
    if "/" in name:
        raise InvalidNameError(f"{name!r} is not a valid remote name: it may not contain '/'")
    return check_ref_name(name, "remote")


class Remotes:
    """`STORE/remotes/NAME.json` (URL and options) and `NAME.packs` (packs known there)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.directory = store.root / REMOTES_DIR

    def get(self, name: str) -> RemoteConfig:
        path = self.directory / f"{check_remote_name(name)}.json"
        try:
            doc = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            known = ", ".join(c.name for c in self.list()) or "none"
            raise NotFoundError(
                f"no remote named {name!r} (remotes: {known}); add one with "
                f"`udr remote add {self.store.root} {name} URL`"
            ) from None
        return RemoteConfig(**doc)

    def list(self) -> list[RemoteConfig]:
        if not self.directory.is_dir():
            return []
        return [self.get(p.stem) for p in sorted(self.directory.glob("*.json"))]

    def save(self, config: RemoteConfig) -> None:
        data = json.dumps(asdict(config), indent=1, sort_keys=True).encode()
        write_atomic(self.directory / f"{config.name}.json", data)

    def remove(self, name: str) -> None:
        self.get(name)
        for ref in self.store.refs.list("remotes"):
            if ref.startswith(f"{name}/"):
                self.store.refs.delete("remotes", ref)
        (self.directory / f"{name}.packs").unlink(missing_ok=True)
        (self.directory / f"{name}.toml").unlink(missing_ok=True)
        (self.directory / f"{name}.expired").unlink(missing_ok=True)
        (self.directory / f"{name}.json").unlink()

    def known_packs(self, name: str) -> set[str]:
        return self._known(name, "packs")

    def record_packs(self, name: str, pack_ids: Iterable[str]) -> None:
        """Remember packs that are on the remote (appended; a lost record only costs a HEAD)."""
        self._record(name, "packs", pack_ids)

    def known_expired(self, name: str) -> set[str]:
        """Manifests whose `expired/` records are known to be on the remote."""
        return self._known(name, "expired")

    def record_expired(self, name: str, manifest_ids: Iterable[str]) -> None:
        self._record(name, "expired", manifest_ids)

    def _known(self, name: str, kind: str) -> set[str]:
        try:
            lines = (self.directory / f"{name}.{kind}").read_text("ascii").split()
        except FileNotFoundError:
            return set()
        return {line for line in lines if is_object_id(line)}  # a torn last line is skipped

    def _record(self, name: str, kind: str, ids: Iterable[str]) -> None:
        text = "".join(f"{i}\n" for i in ids)
        if text:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / f"{name}.{kind}", "a", encoding="ascii") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
