"""Who a commit is by, unless the caller says: the one default author."""

from __future__ import annotations

import getpass
import os
import pwd
import socket


def default_author() -> str:
    """Who a commit is by unless the caller says: $UDR_AUTHOR, else `user@host`."""
    return os.environ.get("UDR_AUTHOR") or user_at_host()


def user_at_host(uid: int | None = None) -> str:
    """`user@host` of the user `uid` (the mount names the process that asked), or of this
    process's user."""
    try:
        user = getpass.getuser() if uid is None else pwd.getpwuid(uid).pw_name
    except (KeyError, OSError):
        user = "unknown" if uid is None else str(uid)
    return f"{user}@{socket.gethostname()}"
