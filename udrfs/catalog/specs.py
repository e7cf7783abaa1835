"""The CLI's version specs: every spelling that names a version of a table, parsed here.

```
TABLE                        the newest version (of the branch given by -b)
TABLE@N                      version N                            udr cat, udr diff
REF:TABLE  REF:TABLE@N       the same on REF (a branch, tag or commit id)
@N                           the new side of a diff: version N of the old side's table
@REF/TABLE/vN.parquet        the path form, as in the mount and udr:// (catalog/paths.py)
@REF/TABLE/latest.parquet    the version REF's head holds; `@REF/TABLE` means the same
TABLE=N                      udr query --version: the SQL name TABLE reads version N
REF@N  REF  N                a side of Repo.diff (Python): version N on REF, REF's newest
```

`@` after a table is a version number (`t@3`); `@` at the start of a path is a ref
(`@main/t/v3.parquet`), as at the top of the mount and of udr://. A ref has no
`:` or `@` and a table has no `/`, `:` or `@` (store/refnames.py, catalog/names.py), so each
spelling reads one way. All of them come out as one `VersionRef`; docs/usage.md lists them
for users.
"""

from __future__ import annotations

from dataclasses import dataclass

from udrfs.catalog.paths import LATEST, REF_MARK, parse_version_file
from udrfs.errors import UsageError

_SPELLINGS = "TABLE@N, REF:TABLE@N, REF:TABLE or @REF/TABLE/vN.parquet"


@dataclass(frozen=True)
class VersionRef:
    """A version of a table as the user named it: `ref` None means the command's branch
    (-b), `table` None the other side's table (`@N` in a diff), `version` None the newest."""

    ref: str | None
    table: str | None
    version: int | None


def _number(text: str, spec: str, example: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{spec!r}: a version is a positive number, as in {example}")
    return int(text)


def parse_version_spec(spec: str) -> VersionRef:
    """`TABLE`, `TABLE@N`, `REF:TABLE`, `REF:TABLE@N`, `@N` or the path form (module doc)."""
    if spec.startswith(REF_MARK) and "/" in spec:
        return _parse_path(spec)
    ref, colon, rest = spec.rpartition(":")
    if colon and not ref:
        raise UsageError(f"{spec!r}: name the ref before ':', or write {_SPELLINGS}")
    table, at, number = rest.partition("@")
    version = _number(number, spec, f"{table or 't'}@3") if at else None
    return VersionRef(ref or None, table or None, version)


def _parse_path(spec: str) -> VersionRef:
    parts = [p for p in spec[len(REF_MARK) :].split("/") if p]
    version: int | None = None
    if parts and (parts[-1] == LATEST or parse_version_file(parts[-1]) is not None):
        version = parse_version_file(parts.pop())
    elif parts and parts[-1].endswith(".parquet"):
        raise UsageError(f"{spec!r}: a version file is vN.parquet or {LATEST}")
    if len(parts) < 2:
        raise UsageError(f"{spec!r}: write the path form as @REF/TABLE/vN.parquet")
    return VersionRef("/".join(parts[:-1]), parts[-1], version)


def parse_pin(spec: str) -> VersionRef:
    """`TABLE=N` (udr query --version)."""
    table, eq, number = spec.partition("=")
    if not eq or not table or not number.isdigit() or int(number) < 1:
        raise UsageError(f"--version {spec!r}: write TABLE=N, e.g. nyc_master=5")
    return VersionRef(None, table, int(number))


def parse_ref_version(spec: str) -> VersionRef:
    """A side of Repo.diff: `N` (on the given branch), `REF` (its newest) or `REF@N`."""
    if spec.isdigit():
        return VersionRef(None, None, _number(spec, spec, "3"))
    ref, at, number = spec.partition("@")
    version = _number(number, spec, "main@3") if at else None
    return VersionRef(ref or None, None, version)
