"""`udr fsck`: one `check_*` method per invariant of docs/format.md.

Each check adds `Finding`s: what is damaged, what it affects (branches, tags, table
versions) and the command that repairs it. The checks share what earlier ones learnt (the
commits reachable from refs, the manifests they name, which pack holds each chunk), so they run
in the order `Fsck.checks` gives. Repairs live in catalog/repair.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from udrfs.catalog.clock import clock_jumps
from udrfs.catalog.model import Commit, TableVersion, now_utc
from udrfs.errors import UdrError
from udrfs.store.atomic import TEMP_PREFIX
from udrfs.store.chunks import chunk_list
from udrfs.store.condemned import in_use, read_record, record_path
from udrfs.store.expired import EXPIRED_DIR, ExpiredRecord, is_record_name
from udrfs.store.keys import fragment_key, pack_key
from udrfs.store.objects import is_object_id

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.store import Store

# A temp file younger than this may belong to a writer that is still running.
TEMP_GRACE_SECONDS = 3600.0
# Where `udr fsck --repair` moves what it cannot repair; udrfs never reads it.
LOST_AND_FOUND = "lost+found"
MAIN = "main"
# How many affected items a finding names before it counts the rest.
SHOWN_AFFECTED = 8


@dataclass(frozen=True)
class Finding:
    """One broken invariant."""

    check: str  # the check that found it: "refs", "history", "manifests", ...
    subject: str  # what is damaged, as a path in the store or an object
    problem: str
    affects: tuple[str, ...] = ()  # branches, tags and table versions that cannot be read
    repair: str = ""  # the command that repairs it, or why nothing can

    def __str__(self) -> str:
        text = f"{self.subject}: {self.problem}"
        if self.affects:
            shown = ", ".join(self.affects[:SHOWN_AFFECTED])
            more = len(self.affects) - SHOWN_AFFECTED
            text += f"; affects {shown}" + (f" and {more} more" if more > 0 else "")
        return text + (f"; {self.repair}" if self.repair else "")


@dataclass
class FsckReport:
    commits: int = 0
    manifests: int = 0
    packs: int = 0
    findings: list[Finding] = field(default_factory=list)
    # What `--repair` did, in words (empty without --repair).
    repaired: list[str] = field(default_factory=list)
    # Not damage, but worth knowing (clock jumps); they do not make the store "not ok".
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def problems(self) -> list[str]:
        return [str(f) for f in self.findings]


class Fsck:
    """The checks of one store. `run()` performs them all and returns the report."""

    def __init__(self, store: Store, history: History, verify_packs: bool = True) -> None:
        self.store = store
        self.history = history
        self.root = store.root
        self.verify_packs = verify_packs
        self.report = FsckReport()
        # Filled by the checks, in order:
        self.refs: dict[str, str] = {}  # "branch main" -> commit id, for refs that parse
        self.bad_refs: dict[tuple[str, str], str] = {}  # (kind, name) -> problem
        self.commits: dict[str, Commit] = {}  # every readable commit reachable from a ref
        self.reached_by: dict[str, set[str]] = {}  # commit id -> refs it is reachable from
        self.manifests: dict[str, TableVersion] = {}
        self.manifest_users: dict[str, set[str]] = {}  # manifest id -> refs reaching it
        self.bad_objects: set[str] = set()  # object ids that exist but cannot be read
        self.pack_users: dict[str, set[str]] = {}  # pack id -> table versions with chunks in it
        self.pack_chunks: dict[str, dict[str, int]] = {}  # pack id -> {chunk id: raw length}
        self.bad_packs: set[str] = set()  # packs whose bytes do not match their ids
        self.missing_fragments: set[str] = set()  # packs with no readable index fragment
        self.unindexed_chunks = 0  # chunks of readable versions found in no index fragment
        self.orphan_fragments: set[str] = set()  # fragments whose pack is gone
        self.stray_temp_files: list[Path] = []
        self.bad_staging: list[Path] = []
        self.bad_count_records: list[Path] = []
        self.expired: set[str] = set()  # manifests with a readable expired/ record
        self.bad_expiry_records: list[Path] = []

    def checks(self) -> list[Callable[[], None]]:
        """Every check, in the order they must run."""
        return [
            self.check_expiry_records,
            self.check_refs,
            self.check_history,
            self.check_seq,
            self.check_commit_times,
            self.check_manifests,
            self.check_count_records,
            self.check_index,
            self.check_packs,
            self.check_temp_files,
            self.check_staging,
        ]

    def run(self) -> FsckReport:
        self.store.chunks.reload_index()  # fragments other processes wrote since we opened
        for check in self.checks():
            check()
        return self.report

    def add(
        self, check: str, subject: str, problem: str, affects: Iterable[str], repair: str
    ) -> None:
        self.report.findings.append(Finding(check, subject, problem, tuple(affects), repair))

    @property
    def repair_cmd(self) -> str:
        return f"`udr fsck --repair {self.root}`"

    # ---- retention ----------------------------------------------------------------------

    def check_expiry_records(self) -> None:
        """Each file in `expired/` is a record naming the manifest it is named for
        (docs/format.md, "Expired versions"); the manifests they name may miss chunks."""
        directory = self.root / EXPIRED_DIR
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            if not is_record_name(path.name):
                continue
            try:
                ExpiredRecord.from_json(path.read_bytes(), path)
            except (UdrError, OSError) as exc:
                self.bad_expiry_records.append(path)
                self.add(
                    "expired",
                    str(path.relative_to(self.root)),
                    f"is not a readable expiry record ({str(exc).split('; `udr fsck')[0]})",
                    (),
                    f"{self.repair_cmd} moves it to {LOST_AND_FOUND}/ (that version then "
                    "counts as kept, if its data is still there)",
                )
                continue
            self.expired.add(path.name[:-5])

    # ---- refs and history ---------------------------------------------------------------

    def check_refs(self) -> None:
        """Each ref file holds one commit id naming a readable commit; `main` exists."""
        refs_dir = self.store.local_refs.refs_dir
        for kind, what in (("heads", "branch"), ("tags", "tag")):
            base = refs_dir / kind
            if not base.is_dir() and kind == "tags":
                continue  # a copy that drops empty directories loses nothing here
            if not base.is_dir():
                self.add(
                    "refs",
                    f"{base.relative_to(self.root)}/",
                    "is missing: every " + what + " in it is lost",
                    (),
                    f"{self.repair_cmd} recreates it and restores each branch to the newest "
                    "commit recorded for it",
                )
                continue
            for dirpath, _dirs, files in os.walk(base):
                for fname in sorted(files):
                    if fname.startswith(TEMP_PREFIX):
                        continue
                    path = Path(dirpath) / fname
                    name = path.relative_to(base).as_posix()
                    problem = self._ref_problem(path)
                    if problem is None:
                        self.refs[f"{what} {name}"] = path.read_text("ascii").strip()
                        continue
                    self.bad_refs[(kind, name)] = problem
                    self.add(
                        "refs",
                        f"refs/{kind}/{name}",
                        problem,
                        (f"{what} {name}",),
                        self._ref_repair(kind, name),
                    )
        if (refs_dir / "heads").is_dir() and not (refs_dir / "heads" / MAIN).is_file():
            self.bad_refs[("heads", MAIN)] = "is missing"
            self.add(
                "refs",
                f"refs/heads/{MAIN}",
                "is missing",
                (f"branch {MAIN}",),
                self._ref_repair("heads", MAIN),
            )

    def _ref_problem(self, path: Path) -> str | None:
        try:
            text = path.read_bytes().decode("ascii").strip()
        except UnicodeDecodeError:
            return "is not a commit id (not ASCII text)"
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if not text:
            return "is empty"
        if not is_object_id(text):
            return f"is not a commit id ({text[:40]!r})"
        if not self.store.objects.exists(text):
            return f"names commit {text}, which is missing from objects/"
        try:
            self.history.commit(text)
        except UdrError as exc:
            return f"names {text}, which is not a readable commit ({exc})"
        return None

    def _ref_repair(self, kind: str, name: str) -> str:
        if kind == "heads":
            return (
                f"{self.repair_cmd} points it at the newest commit recorded for branch "
                f"{name!r} (or says which commits to choose from)"
            )
        return (
            f"{self.repair_cmd} moves it to {LOST_AND_FOUND}/; then `udr tag {self.root} "
            f"{name} COMMIT` recreates it"
        )

    def check_history(self) -> None:
        """Every commit reachable from a ref, and its parents, exist and are readable."""
        missing: dict[str, set[str]] = {}
        for label, head in self.refs.items():
            todo, seen = [head], set()
            while todo:
                commit_id = todo.pop()
                if commit_id in seen:
                    continue
                seen.add(commit_id)
                self.reached_by.setdefault(commit_id, set()).add(label)
                commit = self._commit(commit_id, missing)
                if commit is not None:
                    todo.extend(commit.parents)
        for commit_id, why in sorted(missing.items()):
            (problem,) = why
            self.add(
                "history",
                f"commit {commit_id}",
                problem,
                sorted(self.reached_by[commit_id]),
                "its history before it cannot be read; "
                + (
                    f"{self.repair_cmd} moves it to {LOST_AND_FOUND}/"
                    if commit_id in self.bad_objects
                    else "restore objects/ from a copy of the store if there is one"
                ),
            )
        self.report.commits = len(self.commits)

    def _commit(self, commit_id: str, missing: dict[str, set[str]]) -> Commit | None:
        if commit_id in self.commits:
            return self.commits[commit_id]
        if commit_id in missing:
            return None
        try:
            commit = self.history.commit(commit_id)
        except UdrError as exc:
            if self.store.objects.exists(commit_id):
                self.bad_objects.add(commit_id)
                missing[commit_id] = {f"is damaged ({exc})"}
            else:
                missing[commit_id] = {"is missing from objects/"}
            return None
        self.commits[commit_id] = commit
        return commit

    def check_commit_times(self) -> None:
        """No commit is dated in the future or after the commit that follows it
        (catalog/clock.py); these are warnings, not damage."""
        self.report.warnings.extend(clock_jumps(self.commits.values(), self.commits, now_utc()))

    def check_seq(self) -> None:
        """A commit's seq is its first parent's seq + 1 (docs/format.md, "Commit")."""
        for commit in self.commits.values():
            parent = self.commits.get(commit.parents[0]) if commit.parents else None
            if parent is not None and commit.seq != parent.seq + 1:
                self.add(
                    "seq",
                    f"commit {commit.id}",
                    f"has seq {commit.seq} but its first parent {parent.id[:12]} has seq "
                    f"{parent.seq}",
                    sorted(self.reached_by.get(commit.id, ())),
                    "data stays readable; commits are immutable, so this cannot be rewritten",
                )

    # ---- manifests, chunks, index, packs ---------------------------------------------

    def check_manifests(self) -> None:
        """Every manifest a commit names is readable; its chunks add up to its size and each
        is in an index fragment (whose pack is on disk: `check_index`)."""
        names: dict[str, tuple[str, int | None]] = {}
        for commit in self.commits.values():
            for table, manifest_id in commit.tables.items():
                self.manifest_users.setdefault(manifest_id, set()).update(
                    self.reached_by.get(commit.id, ())
                )
                names.setdefault(manifest_id, (table, None))
            for change in commit.changes:
                if change.new_version is not None and change.table in commit.tables:
                    names[commit.tables[change.table]] = (change.table, change.new_version)
        released = self._released()
        for manifest_id in sorted(self.manifest_users):
            table, number = names[manifest_id]
            label = self.version_label(manifest_id, table, number)
            try:
                m = self.history.manifest(manifest_id)
            except UdrError as exc:
                exists = self.store.objects.exists(manifest_id)
                if exists:
                    self.bad_objects.add(manifest_id)
                self.add(
                    "manifests",
                    f"manifest {manifest_id}",
                    f"is damaged ({exc})" if exists else "is missing from objects/",
                    (label,),
                    f"that version cannot be read; {self.repair_cmd} moves it to {LOST_AND_FOUND}/"
                    if exists
                    else "that version cannot be read",
                )
                continue
            self.manifests[manifest_id] = m
            label = self.version_label(manifest_id, m.table, m.version)
            if m.chunks.size != m.size:
                self.add(
                    "manifests",
                    f"manifest {manifest_id}",
                    f"its chunks add up to {m.chunks.size} bytes, not {m.size}",
                    (label,),
                    "that version cannot be read; nothing can repair it",
                )
            if manifest_id in released:
                continue  # `udr expire` released its data: its chunks may be gone
            unindexed = 0
            for chunk_id, length in zip(m.chunks.ids(), _lengths(m), strict=True):
                pack = self.store.chunks.pack_of(chunk_id)
                if pack is None:
                    unindexed += 1
                    continue
                self.pack_users.setdefault(pack, set()).add(label)
                self.pack_chunks.setdefault(pack, {})[chunk_id] = length
            if unindexed:
                self.unindexed_chunks += unindexed
                self.add(
                    "chunks",
                    f"manifest {manifest_id}",
                    f"{unindexed} of its {m.chunks.count} chunks are in no index fragment",
                    (label,),
                    f"{self.repair_cmd} rebuilds index fragments from the packs; chunks in no "
                    "pack cannot be restored",
                )
        self.report.manifests = len(self.manifest_users)

    def _released(self) -> set[str]:
        """Manifests whose data `udr expire` released (a readable `expired/` record) and that
        no ref's head commit and no staged transaction holds (catalog/liveness.py): their
        chunks may be collected, which is not damage."""
        if not self.expired:
            return set()
        held = {
            m
            for head in self.refs.values()
            if head in self.commits
            for m in self.commits[head].tables.values()
        }
        for path in self.store.staging_dir.glob("tx/**/*.json"):
            try:
                held.update(m for m in json.loads(path.read_text("utf-8"))["staged"].values() if m)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # check_staging reports it
        return self.expired - held

    def version_label(self, manifest_id: str, table: str, version: int | None) -> str:
        """`t v3 (branch main, tag v1)`: a table version and the refs it is reachable from."""
        where = ", ".join(sorted(self.manifest_users.get(manifest_id, ())))
        name = f"{table} v{version}" if version is not None else f"{table} ({manifest_id[:12]})"
        return f"{name} ({where})" if where else name

    def check_index(self) -> None:
        """Every pack has a readable index fragment and every fragment has its pack."""
        packs = {p.stem for p in self.root.glob("packs/??/*.pack") if is_object_id(p.stem)}
        fragments = {p.stem for p in (self.root / "index").glob("*.idx") if is_object_id(p.stem)}
        damaged = self.store.chunks.damaged_fragments()
        self.report.packs = len(packs)
        condemned = self._condemned()
        for pack in sorted(packs - fragments):
            if pack_key(pack) in condemned and not self.pack_users.get(pack):
                continue  # the collector is deleting it: fragment first, then the pack
            self.missing_fragments.add(pack)
            if not self.unindexed_chunks:
                # Every version finds its chunks: a writer stopped between the pack and its
                # fragment (format.md, "Index fragments"), so no commit can use the pack.
                self.report.warnings.append(
                    f"pack {pack} has no index fragment and no version reads from it (a write "
                    f"was interrupted before its commit): `udr gc {self.root}` reclaims it once "
                    f"the grace period has passed, {self.repair_cmd} rebuilds its fragment"
                )
                continue
            self.add(
                "index",
                f"pack {pack}",
                "has no index fragment (index/ lost it): its chunks cannot be found",
                (),
                f"{self.repair_cmd} rebuilds index/{pack}.idx from the pack",
            )
        for pack, why in sorted(damaged.items()):
            self.missing_fragments.add(pack)
            self.add(
                "index",
                fragment_key(pack),
                f"is damaged ({why.split('; `udr fsck')[0]})",
                sorted(self.pack_users.get(pack, ())),
                f"{self.repair_cmd} rebuilds it from the pack"
                if pack in packs
                else f"its pack is missing too; {self.repair_cmd} moves it to {LOST_AND_FOUND}/",
            )
        for pack in sorted(fragments - packs - set(damaged)):
            self.orphan_fragments.add(pack)
            self.add(
                "index",
                f"pack {pack}",
                f"is missing from packs/ (index/{pack}.idx still lists it)",
                sorted(self.pack_users.get(pack, ())),
                f"those versions cannot be read (restore the pack from a copy of the store if "
                f"there is one); {self.repair_cmd} moves the fragment to {LOST_AND_FOUND}/",
            )

    def _condemned(self) -> set[str]:
        try:
            return set(read_record(self.root))
        except UdrError as exc:
            self.add(
                "gc",
                str(record_path(self.root).relative_to(self.root)),
                str(exc).split("; ")[0],
                (),
                "delete it; the next `udr gc` condemns again what is still unreferenced",
            )
            return set()

    def check_packs(self) -> None:
        """Every pack's bytes match its name and every chunk in it matches its id (slow: reads
        every pack; `--quick` skips it)."""
        if not self.verify_packs:
            return
        for path in sorted(self.root.glob("packs/??/*.pack")):
            if not is_object_id(path.stem):
                continue
            try:
                self.store.chunks.verify_pack(path.stem)
            except UdrError as exc:
                self.bad_packs.add(path.stem)
                self.add(
                    "packs",
                    f"pack {path.stem}",
                    f"is damaged ({str(exc).split('; the store is')[0]})",
                    sorted(self.pack_users.get(path.stem, ())),
                    f"{self.repair_cmd} copies its intact chunks to a new pack and moves it to "
                    f"{LOST_AND_FOUND}/",
                )

    def check_count_records(self) -> None:
        """Each row-count record (`counts/xx/<commit id>`) is readable, names its commit, and
        counts exactly that commit's pending tables. A missing record is not damage: its
        counts are computed when the log is read."""
        for path in sorted(self.store.counts.directory.glob("??/*")):
            if path.name.startswith(TEMP_PREFIX) or not is_object_id(path.name):
                continue
            try:
                doc = self.store.counts.get(path.name)
            except UdrError as exc:
                problem = str(exc).split(";")[0]
            else:
                commit = self.commits.get(path.name)
                pending = set(commit.pending_counts) if commit is not None else None
                if doc is not None and pending is not None and set(doc["tables"]) != pending:
                    problem = "counts other tables than its commit left pending"
                else:
                    continue
            self.bad_count_records.append(path)
            self.add(
                "counts",
                str(path.relative_to(self.root)),
                problem,
                (),
                f"{self.repair_cmd} moves it to {LOST_AND_FOUND}/ and the counts are "
                "computed again when the change log is read",
            )

    # ---- leftovers ---------------------------------------------------------------------

    def check_temp_files(self) -> None:
        """No `.tmp-*` file older than the grace period that no live process holds: a crashed
        writer left it."""
        cutoff = time.time() - TEMP_GRACE_SECONDS
        condemned = self._condemned()
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d != LOST_AND_FOUND]
            for fname in files:
                path = Path(dirpath) / fname
                key = path.relative_to(self.root).as_posix()
                if key in condemned:
                    continue  # the collector deletes it once its grace period is over
                if fname.startswith(TEMP_PREFIX) and _mtime(path) < cutoff and not in_use(path):
                    self.stray_temp_files.append(path)  # a pack being written is flocked
        if self.stray_temp_files:
            self.add(
                "temp",
                f"{len(self.stray_temp_files)} temp file(s)",
                f"left by crashed writers, e.g. {self.stray_temp_files[0].relative_to(self.root)}",
                (),
                f"harmless; {self.repair_cmd} deletes them",
            )

    def check_staging(self) -> None:
        """Named transactions name only objects and chunks that exist."""
        staging = self.store.staging_dir
        for path in sorted(staging.glob("tx/**/*.json")):
            problem = self._tx_problem(path)
            if problem:
                self._bad_tx(path, problem)
        for path in sorted(staging.glob("tx-files/**/*.json")):
            problem = self._tx_files_problem(path)
            if problem:
                self._bad_tx(path, problem)

    def _bad_tx(self, path: Path, problem: str) -> None:
        self.bad_staging.append(path)
        self.add(
            "staging",
            str(path.relative_to(self.root)),
            problem,
            (f"uncommitted transaction {path.stem}",),
            f"it cannot be committed; {self.repair_cmd} moves it to {LOST_AND_FOUND}/",
        )

    def _tx_problem(self, path: Path) -> str | None:
        try:
            doc = json.loads(path.read_text("utf-8"))
            ids = [doc["base"], *(m for m in doc["staged"].values() if m)]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"is unreadable ({exc})"
        missing = [i for i in ids if not (is_object_id(i) and self.store.objects.exists(i))]
        return f"names missing object(s) {', '.join(missing)}" if missing else None

    def _tx_files_problem(self, path: Path) -> str | None:
        try:
            doc = json.loads(path.read_text("utf-8"))
            lists = [chunk_list(n["chunks"]) for n in doc["files"].values() if n.get("chunks")]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UdrError) as exc:
            return f"is unreadable ({exc})"
        missing = sum(1 for cl in lists for c in cl.ids() if self.store.chunks.pack_of(c) is None)
        return f"names {missing} chunk(s) in no index fragment" if missing else None


def _lengths(m: TableVersion) -> list[int]:
    raw = m.chunks.to_bytes()
    return [int.from_bytes(raw[i + 32 : i + 36], "little") for i in range(0, len(raw), 36)]


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return float("inf")
