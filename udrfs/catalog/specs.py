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

Durations (`90d`, `24h`) and sizes (`10G`, `512M`) given to commands are parsed here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

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


# ---- durations and shares ------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_SECONDS_ONLY = re.compile(r"^\d+(\.\d+)?$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """`90d`, `24h`, `30m`, `45s`, `2w`, several (`1d12h`), or plain seconds (`2.5`);
    UsageError otherwise."""
    spec = text.strip().lower()
    if _SECONDS_ONLY.match(spec):
        return timedelta(seconds=float(spec))
    parts = _DURATION.findall(spec)
    if not parts or _DURATION.sub("", spec).strip():
        raise UsageError(
            f"{text!r} is not a duration: give a number and a unit, s m h d or w (e.g. 90d, 24h)"
        )
    return timedelta(seconds=sum(int(n) * _SECONDS[u] for n, u in parts))


def format_duration(delta: timedelta) -> str:
    """The shortest `parse_duration` spelling of a whole number of seconds."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _SECONDS[unit] == 0:
            return f"{seconds // _SECONDS[unit]}{unit}"
    return f"{seconds}s"


def parse_share(text: str) -> float:
    """`5%` or `0.05` -> 0.05; UsageError unless it is from 0 to below 100%."""
    spec = text.strip()
    try:
        value = float(spec[:-1]) / 100 if spec.endswith("%") else float(spec)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise UsageError(f"{text!r} is not a share: give a percentage such as 5% (0% to 99%)")
    return value
