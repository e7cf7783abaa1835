"""Which names a ref (branch, tag, remote-tracking name such as `r2/main`) may have.

Every ref name passes `check_ref_name` before it becomes a path under `refs/` or `locks/`:
creating, reading, comparing-and-swapping and deleting a ref all go through it (store/refs.py),
and so does every `branch=` of the API and `-b` of the CLI (through the catalog). The rules are
git's `check-ref-format` rules, on a narrower alphabet (docs/format.md, "Refs"):

- parts separated by single `/`: no leading or trailing `/`, no `//`;
- each part uses only ASCII letters, digits, `.`, `_` and `-` and begins with a letter or
  digit (so no part begins with `.` or `-`, and there are no control characters, spaces,
  `~ ^ : ? * [ \\`, no `@{` and no lone `@`);
- no `..`, no part ending in `.` or in `.lock`;
- at most 200 characters;
- the first part is not a commit id (64 hex digits), so `@<id>/` of the mount and an id
  given wherever a ref is expected always mean the commit.

Why these suffice for the disk: a valid name is a relative path that stays below its
directory, never names a temporary file (`.tmp-*` begins with `.`), and never names or
passes through a lock file: the lock of `a` is `locks/<kind>/a.lock`, and no name has a part
ending in `.lock`. A hex name that is a *prefix* of an existing commit is refused by the
catalog, which knows the commits (Catalog.create_branch).
"""

from __future__ import annotations

import re

from udrfs.errors import InvalidNameError

MAX_REF_NAME = 200
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FULL_ID = re.compile(r"[0-9a-fA-F]{64}")


def ref_name_problem(name: str) -> str | None:
    """Why `name` is not a valid ref name, or None if it is."""
    if not name:
        return "it is empty"
    if len(name) > MAX_REF_NAME:
        return f"it is longer than {MAX_REF_NAME} characters"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "it begins or ends with '/' or has '//'"
    if ".." in name:
        return "it contains '..'"
    parts = name.split("/")
    for part in parts:
        if not _PART.fullmatch(part):
            return (
                f"part {part!r} must begin with a letter or digit and hold only letters, "
                "digits, '.', '_' and '-'"
            )
        if part.endswith("."):
            return f"part {part!r} ends with '.'"
        if part.endswith(".lock"):
            return f"part {part!r} ends with '.lock'"
    if _FULL_ID.fullmatch(parts[0]):
        return "it is named like a commit id (64 hex digits)"
    return None


def is_valid_ref_name(name: str) -> bool:
    return ref_name_problem(name) is None


def check_ref_name(name: str, what: str = "branch") -> str:
    """`name` if it may name a ref of kind `what` ("branch", "tag"); InvalidNameError if not."""
    problem = ref_name_problem(name)
    if problem is not None:
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise InvalidNameError(
            f"{shown!r} is not a valid {what} name ({problem}): use letters, digits, '.', '_', "
            "'-', with '/' between parts (e.g. experiment/new-scoring)"
        )
    return name
