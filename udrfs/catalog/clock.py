"""Commit times, and what one wrong clock may do to them (docs/architecture.md, "Commit times
and as_of").

A commit is stamped with the writer's clock, but never before its first parent (plus 1 µs),
so ordinary skew between writers keeps times in order along a branch. A parent more than
`CLOCK_JUMP` ahead of the writer's clock was stamped by a clock that jumped (a machine
set to 2099): following it would date every later commit after it, and `as_of=now` would
return the snapshot before the jump. So the new commit takes the writer's own clock instead,
time goes backwards once along the history, and the jump is reported: a `ClockJumpWarning`
at commit time (a line in the mount's log), and `udr fsck` lists it (`clock_jumps`).

`as_of=T` is the newest commit along the first-parent history whose time is at or before T
(Catalog.commit_at walks back from the head). History order decides, not time order, so the
answer always contains every commit stamped at or before T; across a jump it may also contain
the commit stamped after T that lies before them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import datetime, timedelta

from udrfs.catalog.model import Commit, now_utc
from udrfs.errors import ClockJumpWarning

# Further ahead than this is a wrong clock, not skew between writers.
CLOCK_JUMP = timedelta(minutes=5)
_TICK = timedelta(microseconds=1)


def commit_time(parent: Commit, branch: str, now: datetime | None = None) -> datetime:
    """The time of a new commit on `branch` whose first parent is `parent`."""
    now = now or now_utc()
    if parent.time - now <= CLOCK_JUMP:
        return max(now, parent.time + _TICK)
    message = (
        f"the head of {branch!r} (commit {parent.id[:12]}) is dated {_shown(parent.time)}, "
        f"{parent.time - now} ahead of this machine's clock: the new commit is dated "
        f"{_shown(now)}, before it. Check the clocks of the machines "
        "writing to this store; `udr fsck` lists such jumps"
    )
    # The daemon routes warnings into its log (logging.captureWarnings in fs/daemon.py).
    warnings.warn(message, ClockJumpWarning, stacklevel=2)
    return now


def clock_jumps(commits: Iterable[Commit], parents: dict[str, Commit], now: datetime) -> list[str]:
    """Commits dated ahead of the clock `now`, or ahead of the commit that follows them on a
    branch, each in words. `parents` maps commit id -> commit for looking up first parents."""
    found = []
    for commit in sorted(commits, key=lambda c: (c.time, c.id)):
        if commit.time - now > CLOCK_JUMP:
            found.append(
                f"commit {commit.id[:12]} (seq {commit.seq} on {commit.branch}) is dated "
                f"{_shown(commit.time)}, in the future: its writer's clock was ahead; "
                "`as_of` before that time does not include it"
            )
        parent = parents.get(commit.parents[0]) if commit.parents else None
        if parent is not None and parent.time - commit.time > CLOCK_JUMP:
            found.append(
                f"commit {parent.id[:12]} (seq {parent.seq} on {parent.branch}) is dated "
                f"{_shown(parent.time)}, after the commit that follows it ({commit.id[:12]}, "
                f"{_shown(commit.time)}): its writer's clock was ahead; `as_of` before "
                f"{_shown(commit.time)} does not include it"
            )
    return found


def _shown(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"
