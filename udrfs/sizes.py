"""Sizes as people write them: `4096`, `512M`, `20G`, `20GB`, `1TiB` (powers of 1024)."""

from __future__ import annotations

import re

from udrfs.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes of a size such as `512M`, `64G`, `20GB` or `1T`; UsageError if it is not one."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise UsageError(f"a size cannot be negative ({text})")
        return text
    match = _SIZE.match(str(text))
    if match is None:
        raise UsageError(f"{text!r} is not a size: use e.g. 512M, 64G or 1T")
    return int(match[1]) << (10 * " KMGT".index(match[2].upper() or " "))
