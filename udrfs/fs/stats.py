"""Live counters of the mount, shown as the virtual file `MOUNT/.stats` (JSON)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field


@dataclass
class MountStats:
    """Counters kept by the daemon. Only the trio thread updates them: no locking needed."""

    requests: int = 0
    reads: int = 0
    # reads of version bytes answered by the chunk engine (not the kernel's page cache)
    engine_reads: int = 0
    bytes_served: int = 0
    open_files: int = 0
    lookups: int = 0
    inodes: int = 0
    refusals: int = 0
    # the write side (.tx): write requests, their bytes, commands `commit` run
    writes: int = 0
    bytes_written: int = 0
    commits: int = 0
    errors: int = 0
    started: float = field(default_factory=time.time)

    def render(
        self,
        engine: dict[str, object],
        cache_hits: int,
        cache_misses: int,
        mountpoint: str,
        store: str,
    ) -> bytes:
        """The `.stats` file: the daemon's counters, its catalog cache, the chunk engine's."""
        doc: dict[str, object] = asdict(self)
        doc["uptime_s"] = round(time.time() - self.started, 3)
        doc["pid"] = os.getpid()
        doc["mountpoint"] = mountpoint
        doc["store"] = store
        doc["cache_hits"] = cache_hits
        doc["cache_misses"] = cache_misses
        # Chunks read by the engine, where the engine counts them (null otherwise).
        doc["chunk_reads"] = engine.get("chunk_reads")
        doc["engine"] = engine
        return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()
