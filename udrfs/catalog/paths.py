"""The path grammar both clients show over a store: the mount (fs/) and `udr://` (query/fsspec.py).

```
@<ref>/                    a branch or tag; `@experiment/new-scoring/` for a ref with '/'
@<commit id>/              any commit, by its 64 hex digits or a unique prefix of at least 8
                           (`udr log` prints 12): resolves, never listed
  .changes                 the ref's change log, one JSON line a commit (for programs)
  .changes.txt             the same log, one short line a commit (for people)
  <table>/
    vN.parquet             version N along the ref's history
    latest.parquet         the version the ref's head holds
    .changes               the table's change log
    .changes.txt           the same, for people
```

Pure functions over names and the branch and tag maps (`Catalog.branches()`, `.tags()`), so
the two clients cannot drift apart on what a name means. They work in `str`; the mount
converts to and from its `bytes` names at its edge.

What a name means where a commit is expected (`@NAME/`, `branch=`, `-b`, `--from`, ...) is
decided by `pick`, the one resolver (Catalog.resolve, the mount and udr:// call it), in this
fixed order:

1. 64 lowercase hex digits: that commit. No ref may be named so (store/refnames.py).
2. A branch of that name, else a tag of that name (a branch wins over a tag). At the top of
   the mount and of udr://, a group of refs (`@experiment/` for `experiment/...`) counts as
   a name too.
3. 8 to 63 lowercase hex digits: the one commit whose id begins with them.

A name that matches under both 2 and 3, or a prefix shared by several commits, is refused with
AmbiguousRefError naming the candidates; nothing is chosen silently. A branch or tag cannot be
created under a name that is a prefix of a commit (Catalog.create_branch), so this needs a
hex-named ref and a later commit whose id happens to begin with its name. Short ids are
looked up in one fan-out directory of `objects/`, never by scanning every object.

What a directory lists and what a name below a ref resolves to is decided here too, by the
namespace model at the end of this module (`list_refs`, `list_ref`, `list_table`,
`lookup_ref`, `lookup_in_ref`, `lookup_in_table`), over typed entries (`RefEntry`,
`GroupEntry`, `TableEntry`, `VersionEntry`, `LatestEntry`, `ChangesEntry`); a change log's
lines are rendered by its entry (`ChangesEntry.render`), so both clients show the same bytes.
The clients read the catalog (the mount asynchronously through its view, udr:// directly)
and hand the model what they read; they add only what is theirs (inodes, attributes,
`.stats`, `.tx`; fsspec's info dicts). The one rule:

- A listing comes in name order (byte order of the names), the change logs last (`.changes`,
  then `.changes.txt`); in a table, `v1.parquet ... vN.parquet` by number, then
  `latest.parquet`, then the change logs.
- A table is under a ref only while the ref's head holds it: a table dropped at the head is
  neither listed nor resolved (its old versions stay reachable through an older commit).
- `latest.parquet` names the version the head holds (the mount shows it as a symlink to that
  `vN.parquet`); it is left out of the listing when that version cannot be read.
- A ref whose commit cannot be read is left out of listings and is an error when named
  (the mount: EIO). Commit ids resolve but are never listed.

The CLI's version specs (`t@3`, `main:t@3`, `t=3`, `@main/t/v3.parquet`) are parsed in
catalog/specs.py, which uses this grammar for the path form.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, overload

from udrfs.catalog.model import ChangeEntry
from udrfs.errors import AmbiguousRefError, NotFoundError
from udrfs.store.objects import is_object_id

REF_MARK = "@"
LATEST = "latest.parquet"
CHANGES = ".changes"
CHANGES_TEXT = ".changes.txt"

# At most 18 digits so that every version number fits an int64; no leading zero so that each
# version has exactly one name.
_VERSION_FILE = re.compile(r"v([1-9][0-9]{0,17})\.parquet")
SHORT_ID_MIN = 8
_COMMIT_PREFIX = re.compile(rf"[0-9a-f]{{{SHORT_ID_MIN},64}}")


def version_file_name(number: int) -> str:
    return f"v{number}.parquet"


def parse_version_file(name: str) -> int | None:
    """N for `vN.parquet`, None for any other name."""
    match = _VERSION_FILE.fullmatch(name)
    return int(match[1]) if match else None


def is_commit_id(name: str) -> bool:
    return is_object_id(name)


def may_name_commit(name: str) -> bool:
    """Whether `name` is a commit id or a prefix long enough to stand for one (8+ hex)."""
    return _COMMIT_PREFIX.fullmatch(name) is not None


@dataclass(frozen=True)
class Ref:
    """A branch or tag shown at one level: `name` is its full name, `commit_id` its head.
    Where a commit is expected, a name may also mean a commit or a remote-tracking ref."""

    kind: Literal["branch", "tag", "remote", "commit"]
    name: str
    commit_id: str

    def describe(self) -> str:
        return f"{self.kind} {self.commit_id if self.kind == 'commit' else self.name}"


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


@overload
def pick(name: str, named: Ref | None, commit_ids: Sequence[str]) -> Ref: ...
@overload
def pick(name: str, named: Ref | RefGroup | None, commit_ids: Sequence[str]) -> Ref | RefGroup: ...
def pick(name: str, named: Ref | RefGroup | None, commit_ids: Sequence[str]) -> Ref | RefGroup:
    """What `name` means where a commit is expected (the order is in the module docstring).

    `named` is what the refs call `name` (the branch, else the tag, of that name; at the top
    of a namespace, `ref_children(...)[name]`); `commit_ids` are the commits whose ids begin
    with `name`, looked up by the caller only when `may_name_commit(name)`. A commit comes
    back as `Ref("commit", id, id)`.
    """
    if is_commit_id(name):
        if name in commit_ids:
            return Ref("commit", name, name)
        raise NotFoundError(f"there is no commit {name} in this store")
    commits = [Ref("commit", c, c) for c in sorted(set(commit_ids))]
    if named is not None and commits:
        what = named.describe() if isinstance(named, Ref) else f"refs {named.prefix}..."
        raise AmbiguousRefError(name, [what, *(c.describe() for c in commits)])
    if named is not None:
        return named
    if len(commits) > 1:
        raise AmbiguousRefError(name, [c.describe() for c in commits])
    if commits:
        return commits[0]
    raise NotFoundError(f"{name!r} is not a branch, tag or commit id of this store")


# ---- the namespace model ---------------------------------------------------------------------


@dataclass(frozen=True)
class RefEntry:
    """`@<ref>/`: a branch, a tag or a commit, with the commit it shows."""

    ref: Ref


@dataclass(frozen=True)
class GroupEntry:
    """`@<first>/`: the refs whose names start with `prefix` (ends in '/')."""

    prefix: str


@dataclass(frozen=True)
class TableEntry:
    """`<table>/` under a ref whose head holds the table."""

    table: str


@dataclass(frozen=True)
class VersionEntry:
    """`vN.parquet`: version `number` of `table`, stored as manifest `manifest_id`."""

    table: str
    number: int
    manifest_id: str


@dataclass(frozen=True)
class ExpiredEntry:
    """`vN.parquet` of a version `udr expire` released: not listed; looking it up is an error
    that says when and by which policy (catalog/retention.py)."""

    table: str
    number: int
    manifest_id: str


@dataclass(frozen=True)
class LatestEntry:
    """`latest.parquet`: the version the head holds; `target` is its `vN.parquet`, None if
    that version cannot be read (then it is not listed, and reading it is an error)."""

    table: str
    manifest_id: str
    target: VersionEntry | None


@dataclass(frozen=True)
class ChangesEntry:
    """`.changes` (`text` False: JSON lines) or `.changes.txt` (`text` True: one line for
    people) of the ref (`table` None) or of one table."""

    table: str | None
    text: bool = False

    @property
    def name(self) -> str:
        return CHANGES_TEXT if self.text else CHANGES

    def render(self, entry: ChangeEntry) -> bytes:
        """The line this log shows for `entry`, with its newline."""
        line = entry.to_text_line() if self.text else entry.to_json_line()
        return line.encode() + b"\n"


def change_logs(table: str | None) -> list[tuple[str, ChangesEntry]]:
    """The change logs of a ref (`table` None) or of a table, as listed: JSON lines first."""
    return [(entry.name, entry) for entry in (ChangesEntry(table), ChangesEntry(table, True))]


def lookup_change_log(name: str, table: str | None) -> ChangesEntry | None:
    return next((entry for n, entry in change_logs(table) if n == name), None)


Entry: TypeAlias = (
    RefEntry | GroupEntry | TableEntry | VersionEntry | ExpiredEntry | LatestEntry | ChangesEntry
)


def list_refs(
    branches: Mapping[str, str], tags: Mapping[str, str], prefix: str = ""
) -> list[tuple[str, RefEntry | GroupEntry]]:
    """The listing of the top (`prefix` "", names carry the `@`) or of a group of refs."""
    mark = "" if prefix else REF_MARK
    out: list[tuple[str, RefEntry | GroupEntry]] = []
    for child, target in sorted(ref_children(branches, tags, prefix).items()):
        entry = RefEntry(target) if isinstance(target, Ref) else GroupEntry(target.prefix)
        out.append((mark + child, entry))
    return out


def lookup_ref(
    name: str, branches: Mapping[str, str], tags: Mapping[str, str], prefix: str = ""
) -> RefEntry | GroupEntry | None:
    """A ref or group named `name` in a group (`prefix` ends in '/'), None if none is.

    At the top (`prefix` ""), `name` is without its `@`, and the caller decides with `pick`
    (a name there may also be a commit id)."""
    target = ref_children(branches, tags, prefix).get(name)
    if target is None:
        return None
    return RefEntry(target) if isinstance(target, Ref) else GroupEntry(target.prefix)


def list_ref(tables: Iterable[str]) -> list[tuple[str, TableEntry | ChangesEntry]]:
    """The listing of a ref whose head holds `tables`."""
    out: list[tuple[str, TableEntry | ChangesEntry]] = [
        (table, TableEntry(table)) for table in sorted(tables)
    ]
    out.extend(change_logs(None))
    return out


def lookup_in_ref(name: str, tables: Collection[str]) -> TableEntry | ChangesEntry | None:
    """`name` under a ref whose head holds `tables`; None if nothing is called so."""
    log = lookup_change_log(name, None)
    if log is not None:
        return log
    if name in tables:
        return TableEntry(name)
    return None


def latest_version(
    table: str, versions: Mapping[int, str], head_manifest: str
) -> VersionEntry | None:
    """The newest version stored as `head_manifest` (the one the head holds); None if it
    is not among `versions` (it cannot be read). Never an older version instead."""
    for number in sorted(versions, reverse=True):
        if versions[number] == head_manifest:
            return VersionEntry(table, number, head_manifest)
    return None


def list_table(
    table: str,
    versions: Mapping[int, str],
    head_manifest: str,
    released: Collection[str] = frozenset(),
) -> list[tuple[str, VersionEntry | LatestEntry | ChangesEntry]]:
    """The listing of `table`: `versions` maps each readable version number along the ref's
    history to its manifest id; `head_manifest` is the version the ref's head holds;
    versions whose manifests are `released` (by `udr expire`) are not listed."""
    out: list[tuple[str, VersionEntry | LatestEntry | ChangesEntry]] = [
        (version_file_name(n), VersionEntry(table, n, versions[n]))
        for n in sorted(versions)
        if not _released(versions[n], head_manifest, released)
    ]
    target = latest_version(table, versions, head_manifest)
    if target is not None:
        out.append((LATEST, LatestEntry(table, head_manifest, target)))
    out.extend(change_logs(table))
    return out


def _released(manifest_id: str, head_manifest: str, released: Collection[str]) -> bool:
    # The version a ref's head holds is never released (the collector keeps it).
    return manifest_id != head_manifest and manifest_id in released


def lookup_in_table(
    table: str,
    name: str,
    versions: Mapping[int, str],
    head_manifest: str,
    released: Collection[str] = frozenset(),
) -> VersionEntry | ExpiredEntry | LatestEntry | ChangesEntry | None:
    """`name` inside `table` (arguments as for `list_table`); None if nothing is called so."""
    log = lookup_change_log(name, table)
    if log is not None:
        return log
    if name == LATEST:
        return LatestEntry(table, head_manifest, latest_version(table, versions, head_manifest))
    number = parse_version_file(name)
    if number is not None and number in versions:
        if _released(versions[number], head_manifest, released):
            return ExpiredEntry(table, number, versions[number])
        return VersionEntry(table, number, versions[number])
    return None
