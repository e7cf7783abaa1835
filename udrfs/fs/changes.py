"""The `.changes` and `.changes.txt` files: change logs that grow as commits land.

Each log renders its lines as its entry in the namespace model says (catalog/paths.py,
`ChangesEntry.render`: JSON lines, or one line for people), so udr:// shows the same bytes.

A branch's log only ever grows while its branch moves forward, so a new head costs one
catalog call for the new entries, appended to the bytes already rendered. A head that is
not a descendant of the rendered one (a branch reset) re-renders the whole log. The files
are opened with direct_io, so every read and every stat sees the current length: `tail -f`
(which polls the size on FUSE) prints new lines as they come.

A commit's line appears once its row counts are known: those computed after the commit point
(docs/architecture.md, "Row counts") hold the line, and every later one, back for the seconds
they take, so a line never changes once shown and the file only grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from udrfs.catalog.paths import ChangesEntry
from udrfs.fs.catalog_view import CatalogView, RefSpec


@dataclass
class _RenderedLog:
    head: str | None = None
    data: bytes = b""
    # (seq, commit) of the last line, to check that a new head continues this log.
    last: tuple[int, str] | None = None
    lock: trio.Lock = field(default_factory=trio.Lock)


class ChangeLogs:
    """Rendered change logs, one per (ref, log: its table or None, and its form)."""

    def __init__(self, view: CatalogView) -> None:
        self._view = view
        self._logs: dict[tuple[RefSpec, ChangesEntry], _RenderedLog] = {}

    async def content(self, ref: RefSpec, which: ChangesEntry) -> bytes:
        """The log as of the ref's current head (empty if the ref is gone)."""
        log = self._logs.setdefault((ref, which), _RenderedLog())
        head = self._view.commit_of(ref)
        if head is None:
            return b""
        if log.head == head:
            return log.data
        # One renderer per log: concurrent stats of a growing file share one catalog call.
        async with log.lock:
            if log.head != head:
                await self._advance(log, head, which)
        return log.data

    def current_size(self, ref: RefSpec, which: ChangesEntry) -> int | None:
        """The log's size if it is rendered for the ref's current head, else None."""
        log = self._logs.get((ref, which))
        if log is None or log.head != self._view.commit_of(ref):
            return None
        return len(log.data)

    async def _advance(self, log: _RenderedLog, head: str, which: ChangesEntry) -> None:
        # A commit whose row counts are still being computed ends the lines returned: the log
        # stops before it and stays behind the head (asked again on the next read or stat)
        # until its counts are recorded. No line is ever shown twice or changed.
        if log.last is not None:
            # since is exclusive: asking from seq - 1 returns the last rendered line first.
            lines, held = await self._view.change_lines(head, log.last[0] - 1, which)
            if lines and lines[0][:2] == log.last:
                log.data += b"".join(line for _, _, line in lines[1:])
                log.head = None if held else head
                log.last = lines[-1][:2]
                return
        lines, held = await self._view.change_lines(head, 0, which)
        log.data = b"".join(line for _, _, line in lines)
        log.head = None if held else head
        log.last = lines[-1][:2] if lines else None
