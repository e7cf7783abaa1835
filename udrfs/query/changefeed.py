"""Following a branch's change log: one callback per new entry, in order, none missed.

A `Subscription` remembers `last_seq`, the sequence number of the last entry its callback
returned from. It advances only after the callback returns, so a caller that saves it and
passes it back as `from_seq` after a restart receives every later entry exactly once; an entry
whose callback raised (or whose process died) is delivered again, never skipped.

It polls the branch head (one small file read per interval) and reads the catalog's change log
only when the head moved. Entries are `ChangeEntry` records, the same as `Repo.changes()` and
the mount's `.changes` lines, delivered with their row counts: counts computed after a
commit point are waited for (or computed here, if no other process is doing it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from udrfs.catalog import Catalog, ChangeEntry

Callback = Callable[[ChangeEntry], object]


class Subscription:
    """Delivers a branch's new change-log entries to `callback`, oldest first."""

    def __init__(
        self,
        catalog: Catalog,
        callback: Callback,
        branch: str = "main",
        from_seq: int | None = None,
        table: str | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self._catalog = catalog
        self._callback = callback
        self.branch = branch
        self.table = table
        self.poll_interval = poll_interval
        # No position given: start at the head, i.e. deliver only commits made from now on.
        self.last_seq = catalog.commit(catalog.head(branch)).seq if from_seq is None else from_seq
        self.error: BaseException | None = None
        self._seen_head: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()

    def poll(self) -> int:
        """Deliver every entry after `last_seq` now; return how many were delivered."""
        with self._poll_lock:
            head = self._catalog.head(self.branch)
            if head == self._seen_head:
                return 0
            delivered = 0
            for entry in self._catalog.changes(head, self.last_seq, self.table):
                if self._stop.is_set():
                    return delivered
                self._callback(entry)
                self.last_seq = entry.seq
                delivered += 1
            self._seen_head = head
            return delivered

    # ---- running in the background ----------------------------------------------------

    def start(self) -> Subscription:
        """Poll in a daemon thread until `stop()`; an error from the callback stops it."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._run, name=f"udr-subscription-{self.branch}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except BaseException as exc:  # kept for the owner: a thread cannot raise to it
                self.error = exc
                return
            self._stop.wait(self.poll_interval)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling and wait for the thread (an entry being delivered finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Poll in the calling thread until `stop()` is called from another thread."""
        self._run()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Subscription:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
