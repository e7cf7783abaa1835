"""Bytes per table and per branch (`udr stats`; the figures are defined in docs/usage.md,
"Where the bytes are").

One pass: the collector's survey (catalog/gc.py: one listing, the one liveness walk
`find_live`, one read of every index fragment) with a visitor that tags what the walk finds.
Every root (branch, tag, remote-tracking ref, and the named transactions together) gets a
bit; every live commit, manifest and chunk gets the set of roots that reach it, and every
chunk the set of tables whose versions hold it, as bits of one integer. Commits get theirs
in one topological pass over the commit graph `find_live` already holds (children before
parents), manifests from the commits naming them and, through `parent`, from the versions
after them; a manifest whose set grows after its chunks were tagged (only a version's
parent can) is tagged again at the end, which is rare and bounded by the number of roots.
Memory: one integer per live chunk, commit and manifest, beside what the collector holds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from udrfs.catalog.liveness import CHUNK_RECORD, Live, Staged
from udrfs.catalog.model import TableVersion
from udrfs.store.keys import object_key, pack_key
from udrfs.store.packs import CHUNK_HEADER

if TYPE_CHECKING:
    from udrfs.catalog.history import History
    from udrfs.store import Store

STAGING = "staging"  # the root that stands for every named transaction
BRANCH_PREFIX = "heads/"


@dataclass(frozen=True)
class TableBytes:
    """One table's share of the store (docs/usage.md, "Where the bytes are")."""

    table: str
    versions: int  # live versions whose data the store keeps
    released: int  # live versions whose data `udr expire` released
    logical_bytes: int  # the file sizes of those `versions`, added up
    stored_bytes: int  # the distinct chunks those versions hold, as stored in their packs
    only_bytes: int  # of those, the chunks no version of another table holds

    @property
    def shared_bytes(self) -> int:
        return self.stored_bytes - self.only_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "shared_bytes": self.shared_bytes}


@dataclass(frozen=True)
class BranchBytes:
    """One branch's share of the store (docs/usage.md, "Where the bytes are")."""

    branch: str
    reachable_bytes: int  # chunks and objects the branch reaches
    only_bytes: int  # of those, what no other root reaches
    freed_bytes: int  # what deleting the branch and then `udr gc` would delete

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Footprint:
    tables: tuple[TableBytes, ...]
    branches: tuple[BranchBytes, ...]
    live_chunk_bytes: int  # every live chunk, as stored in the pack that keeps it
    reclaimable_bytes: int  # files nothing reaches (what `udr gc` frees in the end)


def measure(store: Store, history: History) -> Footprint:
    """The figures above, in one survey of the store (reads only; fails closed like gc)."""
    from udrfs.catalog.gc import Collector

    tagger = _Tagger()
    stored: dict[str, int] = {}

    def on_keeper(chunk: str, pack: str, length: int) -> None:
        stored[chunk] = CHUNK_HEADER + length

    collector = Collector(store, history, dry_run=True)
    survey = collector.survey(visitor=tagger, on_keeper=on_keeper)
    tagger.retag(history)
    live = survey.live
    roots, tables = tagger.roots, tagger.table_names
    nroots = len(roots)
    root_mask = (1 << nroots) - 1
    reach = [0] * nroots
    only = [0] * nroots
    t_stored = [0] * len(tables)
    t_only = [0] * len(tables)
    pack_roots: dict[str, int] = {}
    for chunk, code in tagger.chunks.items():
        size = stored[chunk]
        root_bits = code & root_mask
        _spread(root_bits, size, reach, only)
        _spread(code >> nroots, size, t_stored, t_only)
        pack = survey.holders[chunk]
        pack_roots[pack] = pack_roots.get(pack, 0) | root_bits
    freed = [0] * nroots
    objects = [(c, tagger.commit_bits.get(c, 0)) for c in live.commits]
    objects += [(m, tagger.manifest_bits.get(m, 0)) for m in live.manifests]
    for object_id, bits in objects:
        size = collector.file_size(object_key(object_id), survey)
        _spread(bits, size, reach, only)
        _spread(bits, size, [0] * nroots, freed)
    for pack, bits in pack_roots.items():
        if bits and bits & (bits - 1) == 0:  # one root keeps this pack
            freed[bits.bit_length() - 1] += collector.file_size(pack_key(pack), survey)
    return Footprint(
        tables=tuple(
            TableBytes(
                name,
                tagger.versions[i],
                tagger.released[i],
                tagger.logical[i],
                t_stored[i],
                t_only[i],
            )
            for i, name in sorted(enumerate(tables), key=lambda x: x[1])
        ),
        branches=tuple(
            BranchBytes(name[len(BRANCH_PREFIX) :], reach[i], only[i], freed[i])
            for i, name in enumerate(roots)
            if name.startswith(BRANCH_PREFIX)
        ),
        live_chunk_bytes=sum(stored[c] for c in live.chunks),
        reclaimable_bytes=sum(collector.file_size(k, survey) for k in survey.garbage),
    )


def _spread(bits: int, size: int, each: list[int], alone: list[int]) -> None:
    """Add `size` to `each[i]` for every bit i of `bits`, and to `alone[i]` if i is the only
    one."""
    if bits and bits & (bits - 1) == 0:
        alone[bits.bit_length() - 1] += size
    while bits:
        low = bits & -bits
        each[low.bit_length() - 1] += size
        bits ^= low


class _Tagger:
    """The `find_live` visitor: which roots reach each commit, manifest and chunk, and which
    tables hold each chunk (module docstring)."""

    def __init__(self) -> None:
        self.roots: list[str] = []
        self.commit_bits: dict[str, int] = {}
        self.manifest_bits: dict[str, int] = {}
        self.chunks: dict[str, int] = {}  # root bits | table bits << len(roots)
        self.table_names: list[str] = []
        self._table_index: dict[str, int] = {}
        self.versions: list[int] = []
        self.released: list[int] = []
        self.logical: list[int] = []
        self._found: dict[str, tuple[str | None, int, bool]] = {}  # parent, table, counted
        self._again: set[str] = set()

    def commits_found(self, live: Live, staged: Staged) -> None:
        self.roots = sorted(live.refs)
        starts: dict[str, int] = {}
        for i, name in enumerate(self.roots):
            starts[live.refs[name]] = starts.get(live.refs[name], 0) | 1 << i
        if staged.bases or staged.manifests or staged.chunk_lists:
            self.roots.append(STAGING)
            bit = 1 << (len(self.roots) - 1)
            for base in staged.bases:
                starts[base] = starts.get(base, 0) | bit
            for manifest in staged.manifests:
                self.manifest_bits[manifest] = self.manifest_bits.get(manifest, 0) | bit
        commits = live.commits
        children = dict.fromkeys(commits, 0)
        for commit in commits.values():
            for parent in commit.parents:
                children[parent] += 1
        bits = self.commit_bits
        todo = deque(c for c, n in children.items() if n == 0)
        while todo:
            commit_id = todo.popleft()
            mine = bits.get(commit_id, 0) | starts.get(commit_id, 0)
            bits[commit_id] = mine
            for parent in commits[commit_id].parents:
                bits[parent] = bits.get(parent, 0) | mine
                children[parent] -= 1
                if children[parent] == 0:
                    todo.append(parent)
        for commit_id, commit in commits.items():
            for manifest in commit.tables.values():
                self.manifest_bits[manifest] = self.manifest_bits.get(manifest, 0) | bits[commit_id]

    def manifest_found(self, manifest_id: str, manifest: TableVersion, counted: bool) -> None:
        table = self._table(manifest.table)
        self._found[manifest_id] = (manifest.parent, table, counted)
        bits = self.manifest_bits.get(manifest_id, 0)
        if counted:
            self.versions[table] += 1
            self.logical[table] += manifest.size
            self._tag(manifest.chunks.to_bytes(), bits | 1 << (len(self.roots) + table))
        else:
            self.released[table] += 1
        self._reach_parent(manifest.parent, bits)

    def chunks_noted(self, encoded: bytes) -> None:
        self._tag(encoded, 1 << self.roots.index(STAGING))

    def retag(self, history: History) -> None:
        """Tag again the chunks of the manifests whose roots grew after they were tagged."""
        for manifest_id in sorted(self._again):
            _parent, table, counted = self._found[manifest_id]
            if counted:
                bits = self.manifest_bits[manifest_id] | 1 << (len(self.roots) + table)
                self._tag(history.manifest(manifest_id).chunks.to_bytes(), bits)
        self._again.clear()

    def _reach_parent(self, parent: str | None, bits: int) -> None:
        """A version reaches its parent: the parent's roots include the version's."""
        while parent is not None:
            old = self.manifest_bits.get(parent, 0)
            if old | bits == old:
                return
            bits |= old
            self.manifest_bits[parent] = bits
            found = self._found.get(parent)
            if found is None:
                return  # not read yet: it takes its roots when it is
            self._again.add(parent)
            parent = found[0]

    def _table(self, name: str) -> int:
        index = self._table_index.get(name)
        if index is None:
            index = self._table_index[name] = len(self.table_names)
            self.table_names.append(name)
            self.versions.append(0)
            self.released.append(0)
            self.logical.append(0)
        return index

    def _tag(self, encoded: bytes, code: int) -> None:
        chunks = self.chunks
        for i in range(0, len(encoded), CHUNK_RECORD):
            chunk = encoded[i : i + 32].hex()
            chunks[chunk] = chunks.get(chunk, 0) | code
