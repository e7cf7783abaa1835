"""`udr fsck --repair`: repair what the checks of catalog/fsck.py found, where that is possible.

Nothing is deleted but stray temp files: whatever cannot be repaired (a damaged pack, object,
ref or transaction) is moved under `lost+found/` in the store, keeping its path, so that the
rest of the store reads cleanly and the damaged bytes stay available for inspection.
"""

from __future__ import annotations

import os
from pathlib import Path

from udrfs.catalog.fsck import LOST_AND_FOUND, MAIN, Fsck, FsckReport
from udrfs.catalog.history import History
from udrfs.errors import UdrError
from udrfs.store import Store
from udrfs.store.chunks import ChunkList, ChunkStore


class Repair:
    def __init__(self, fsck: Fsck) -> None:
        self.fsck = fsck
        self.history = fsck.history
        self.store = fsck.store
        self.root = fsck.root
        self.done: list[str] = []

    def run(self) -> list[str]:
        """Repair in dependency order; return what was done, in words."""
        self.repair_index()
        self.repair_packs()
        self.quarantine_objects()
        self.quarantine_count_records()
        self.repair_refs()
        self.remove_temp_files()
        self.quarantine_staging()
        for path in self.fsck.bad_expiry_records:
            if path.exists():
                self.done.append(f"moved damaged {self._rel(self.quarantine(path))}")
        return self.done

    def quarantine(self, path: Path) -> Path:
        """Move `path` to lost+found/, under the same relative path."""
        dest = self.root / LOST_AND_FOUND / path.relative_to(self.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while dest.exists():
            dest = dest.with_name(f"{path.name}.{n}")
            n += 1
        os.replace(path, dest)
        return dest

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    # ---- index and packs ---------------------------------------------------------------

    def repair_index(self) -> None:
        chunks = self.store.chunks
        for pack in sorted(self.fsck.missing_fragments):
            if pack in self.fsck.bad_packs:
                continue
            fragment = self.root / "index" / f"{pack}.idx"
            if not self._pack_path(pack).is_file():
                self.done.append(f"moved {self._rel(self.quarantine(fragment))} (its pack is gone)")
                continue
            try:
                chunks.rebuild_index(pack)
            except UdrError:
                self.fsck.bad_packs.add(pack)  # the pack itself is damaged: salvage below
                continue
            self.done.append(f"rebuilt index/{pack}.idx from its pack")
        for pack in sorted(self.fsck.orphan_fragments):
            fragment = self.root / "index" / f"{pack}.idx"
            self.done.append(f"moved {self._rel(self.quarantine(fragment))} (its pack is gone)")

    def _pack_path(self, pack: str) -> Path:
        return self.root / "packs" / pack[:2] / f"{pack}.pack"

    def repair_packs(self) -> None:
        """Copy the intact chunks of each damaged pack into a new pack, then quarantine it."""
        if not self.fsck.bad_packs:
            return
        salvaged: dict[str, bytes] = {}
        wanted: dict[str, int] = {}
        for pack in sorted(self.fsck.bad_packs):
            known = self.fsck.pack_chunks.get(pack, {})
            wanted.update(known)
            for chunk_id, length in known.items():
                one = ChunkList(bytes.fromhex(chunk_id) + length.to_bytes(4, "little"))
                try:
                    salvaged[chunk_id] = self.store.chunks.read(one, 0, length)
                except UdrError:
                    continue
            for path in (self._pack_path(pack), self.root / "index" / f"{pack}.idx"):
                if path.exists():
                    self.done.append(f"moved damaged {self._rel(self.quarantine(path))}")
        # A new engine no longer knows the quarantined packs, so it stores these chunks again.
        fresh = ChunkStore(self.root, self.store.format)
        for chunk_id, data in list(salvaged.items()):
            if fresh.ingest_bytes(data).ids() != [chunk_id]:
                del salvaged[chunk_id]  # cut differently: leave it lost rather than guess
        fresh.flush()
        self.done.append(
            f"copied {len(salvaged)} of {len(wanted)} chunk(s) that versions need from "
            f"damaged pack(s) into a new pack"
        )

    def quarantine_objects(self) -> None:
        for object_id in sorted(self.fsck.bad_objects):
            path = self.store.objects.path(object_id)
            if path.exists():
                self.done.append(f"moved damaged {self._rel(self.quarantine(path))}")

    def quarantine_count_records(self) -> None:
        """A damaged row-count record goes; its counts are computed again when read."""
        for path in self.fsck.bad_count_records:
            if path.exists():
                self.done.append(f"moved damaged {self._rel(self.quarantine(path))}")

    # ---- refs --------------------------------------------------------------------------

    def repair_refs(self) -> None:
        heads = self.store.local_refs.refs_dir / "heads"
        restore_all = not heads.is_dir()
        for kind in ("heads", "tags"):
            (self.store.local_refs.refs_dir / kind).mkdir(parents=True, exist_ok=True)
        if restore_all:
            self.done.append(
                "recreated refs/heads/ (tags cannot be restored: commits do not record them; "
                f"`udr tag {self.root} NAME COMMIT` recreates one)"
            )
        bad = dict(self.fsck.bad_refs)
        for kind, name in sorted(bad):
            path = self.store.local_refs.path(kind, name)  # type: ignore[arg-type]
            if path.is_file():
                self.done.append(f"moved bad ref {self._rel(self.quarantine(path))}")
        newest = self._newest_commits()
        names = set(newest) if restore_all else {n for k, n in bad if k == "heads"}
        if restore_all:
            names.add(MAIN)
        for name in sorted(names):
            self._restore_branch(name, newest.get(name, []))
        for kind, name in sorted(bad):
            if kind == "tags":
                self.done.append(
                    f"tag {name} is gone: `udr tag {self.root} {name} COMMIT` recreates it"
                )

    def _newest_commits(self) -> dict[str, list[tuple[int, str]]]:
        """Per branch name, the readable commits recorded for it with the highest seq."""
        best: dict[str, list[tuple[int, str]]] = {}
        for object_id in self.store.objects.ids():
            try:
                commit = self.history.commit(object_id)
            except UdrError:
                continue
            top = best.setdefault(commit.branch, [])
            if not top or commit.seq > top[0][0]:
                best[commit.branch] = [(commit.seq, object_id)]
            elif commit.seq == top[0][0]:
                top.append((commit.seq, object_id))
        return best

    def _restore_branch(self, name: str, candidates: list[tuple[int, str]]) -> None:
        if len(candidates) == 1:
            seq, commit_id = candidates[0]
            if self.store.refs.cas("heads", name, None, commit_id):
                self.done.append(
                    f"pointed branch {name} at {commit_id[:12]} (seq {seq}), the newest commit "
                    f"made on it; if it had been fast-forwarded further, `udr merge {self.root} "
                    f"COMMIT --into {name}` moves it on"
                )
            return
        if candidates:
            ids = ", ".join(c[:12] for _, c in candidates)
            self.done.append(
                f"branch {name}: commits {ids} are equally new, so none was chosen: "
                f"`udr branch {self.root} create {name} --from COMMIT` restores it"
            )
        else:
            self.done.append(f"branch {name}: no commit recorded for it was found")

    # ---- leftovers ---------------------------------------------------------------------

    def remove_temp_files(self) -> None:
        for path in self.fsck.stray_temp_files:
            path.unlink(missing_ok=True)
        if self.fsck.stray_temp_files:
            self.done.append(f"deleted {len(self.fsck.stray_temp_files)} stray temp file(s)")

    def quarantine_staging(self) -> None:
        for path in self.fsck.bad_staging:
            if path.exists():
                self.done.append(f"moved broken transaction {self._rel(self.quarantine(path))}")


def fsck(
    store: Store, history: History, verify_packs: bool = True, repair: bool = False
) -> FsckReport:
    """Check the store; with `repair`, repair what can be and check again (through the store
    opened anew: the repair changed what the open one has cached)."""
    checker = Fsck(store, history, verify_packs)
    report = checker.run()
    if not repair or report.ok:
        return report
    done = Repair(checker).run()
    reopened = Store(store.root)
    after = Fsck(reopened, History(reopened), verify_packs).run()
    after.repaired = done
    return after
