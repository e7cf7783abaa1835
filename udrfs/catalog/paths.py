"""The path grammar both clients show over a store: the mount (fs/) and `udr://` (query/fsspec.py).

```
@<ref>/                    a branch or tag; `@experiment/new-scoring/` for a ref with '/'
@<64-hex commit id>/       any commit: resolves, never listed
  .changes                 the ref's change log
  <table>/
    vN.parquet             version N along the ref's history
    latest.parquet         the version the ref's head holds
    .changes               the table's change log
```

Pure functions over names and the branch and tag maps (`Catalog.branches()`, `.tags()`), so
the two clients cannot drift apart on what a name means. They work in `str`; the mount
converts to and from its `bytes` names at its edge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from udrfs.store.objects import is_object_id

REF_MARK = "@"
LATEST = "latest.parquet"
CHANGES = ".changes"

# At most 18 digits so that every version number fits an int64; no leading zero so that each
# version has exactly one name.
_VERSION_FILE = re.compile(r"v([1-9][0-9]{0,17})\.parquet")
_COMMIT_ID = re.compile(r"[0-9a-f]{64}")


def version_file_name(number: int) -> str:
    return f"v{number}.parquet"


def parse_version_file(name: str) -> int | None:
    """N for `vN.parquet`, None for any other name."""
    match = _VERSION_FILE.fullmatch(name)
    return int(match[1]) if match else None


def is_commit_id(name: str) -> bool:
    return is_object_id(name)


@dataclass(frozen=True)
class Ref:
    """A branch or tag shown at one level: `name` is its full name, `commit_id` its head."""

    kind: Literal["branch", "tag"]
    name: str
    commit_id: str


@dataclass(frozen=True)
class RefGroup:
    """A plain directory holding the refs whose names start with `prefix` (ends in '/')."""

    prefix: str


def ref_children(
    branches: Mapping[str, str], tags: Mapping[str, str], prefix: str = ""
) -> dict[str, Ref | RefGroup]:
    """The next name component under `prefix` ("" at the top, else ending in '/') of every ref,
    mapped to the ref it names or the group of refs below it.

    A branch wins over a tag of the same name, and a ref wins over a group (`a` is the ref
    `a` even if another kind holds `a/b`); what is hidden stays reachable by commit id.
    Children come in the order of the refs' full names.
    """
    out: dict[str, Ref | RefGroup] = {}
    for name in sorted(branches.keys() | tags.keys()):
        if not name.startswith(prefix):
            continue
        child, sep, _ = name[len(prefix) :].partition("/")
        if not sep:
            # Assigned, not set-default: a ref replaces a group of the same name.
            if name in branches:
                out[child] = Ref("branch", name, branches[name])
            else:
                out[child] = Ref("tag", name, tags[name])
        else:
            out.setdefault(child, RefGroup(prefix + child + "/"))
    return out
