"""Progress of a long operation: one line on stderr, rewritten in place, on a terminal only.

Nothing is printed when stderr is not a terminal (a pipe, a file, cron), so scripts and
logs see only the command's result. The line appears once the operation has run for
SHOW_AFTER seconds (`UDR_PROGRESS_AFTER` overrides it), and is redrawn at most
REDRAW_EVERY seconds apart.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from udrfs.cli.output import human_bytes, printable

SHOW_AFTER = 1.0
REDRAW_EVERY = 0.2


def _show_after() -> float:
    try:
        return float(os.environ.get("UDR_PROGRESS_AFTER", SHOW_AFTER))
    except ValueError:
        return SHOW_AFTER


class TerminalProgress:
    """`verb: 1.2 GiB of 4.0 GiB, 3 files (150.0 MiB/s, 19 s left)` on stderr.

    Call `update` with what is done so far (from any thread), or `ticking()` for an
    operation that reports nothing until it ends (the line then shows the time it has run).
    Use as a context manager: leaving it ends the line.
    """

    def __init__(self, verb: str, total_bytes: int | None = None, stream: TextIO | None = None):
        self.verb = printable(verb)
        self.total = total_bytes
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._start = time.monotonic()
        self._after = _show_after()
        self._drawn_at: float | None = None
        self._done = 0
        self._files: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def update(self, done_bytes: int, files: int | None = None) -> None:
        with self._lock:
            self._done, self._files = done_bytes, files
        self._draw()

    def ticking(self) -> TerminalProgress:
        """Redraw on a timer while the operation runs (it need not call `update`)."""
        if self.enabled and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        self._draw()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_EVERY / 2):
            self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        elapsed = now - self._start
        with self._lock:
            if elapsed < self._after or self._stop.is_set():
                return
            if self._drawn_at is not None and now - self._drawn_at < REDRAW_EVERY:
                return
            self._drawn_at = now
            self.stream.write(f"\r{self._line(elapsed)}\x1b[K")
            self.stream.flush()

    def _line(self, elapsed: float) -> str:
        parts = []
        if self._done:
            parts.append(human_bytes(self._done))
            if self.total:
                parts[-1] += f" of {human_bytes(self.total)}"
        elif self.total:
            parts.append(human_bytes(self.total))
        if self._files is not None:
            parts.append(f"{self._files} files")
        detail = []
        if self._done and elapsed > 0:
            rate = self._done / elapsed
            detail.append(f"{human_bytes(int(rate))}/s")
            if self.total and rate > 0 and self._done < self.total:
                detail.append(f"{(self.total - self._done) / rate:.0f} s left")
        else:
            detail.append(f"{elapsed:.0f} s")
        return f"{self.verb}: {', '.join(parts) or '...'} ({', '.join(detail)})"

    def close(self) -> None:
        """End the line (if one was drawn) so what follows starts on its own line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self._drawn_at is not None:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn_at = None

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
