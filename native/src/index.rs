//! Index fragments (docs/format.md, "Index fragments") and the in-memory table built from them.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::hashing::{ChunkId, IdMap, IdSet};
use crate::pack::{Codec, IndexEntry};

pub const INDEX_MAGIC: &[u8; 8] = b"UDRIDX01";
/// id (32) + offset (8) + stored length (4) + raw length (4) + codec (1) + reserved (3).
pub const INDEX_ENTRY_LEN: usize = 52;
/// magic (8) + pack id (32) + entry count (8).
const FRAGMENT_HEADER_LEN: usize = 48;
const FRAGMENT_TRAILER_LEN: usize = 32;

/// `index/<pack id>.idx`
pub fn fragment_path(index_dir: &Path, pack_id: &ChunkId) -> PathBuf {
    index_dir.join(format!("{}.idx", pack_id.to_hex()))
}

pub fn encode_fragment(pack_id: &ChunkId, entries: &[IndexEntry]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| e.id);
    let mut out = Vec::with_capacity(
        FRAGMENT_HEADER_LEN + sorted.len() * INDEX_ENTRY_LEN + FRAGMENT_TRAILER_LEN,
    );
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&pack_id.0);
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    for e in &sorted {
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.stored_len.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.extend_from_slice(&[e.codec as u8, 0, 0, 0]);
    }
    let digest = blake3::hash(&out);
    out.extend_from_slice(digest.as_bytes());
    out
}

/// Parses and checks a fragment; errors name `path`.
pub fn decode_fragment(bytes: &[u8], path: &Path) -> Result<(ChunkId, Vec<IndexEntry>)> {
    let corrupt = |what: &str| {
        Error::Corrupt(format!(
            "index fragment {}: {what}; `udr fsck --repair STORE` rebuilds it from its pack",
            path.display()
        ))
    };
    if !bytes.starts_with(INDEX_MAGIC) {
        return Err(corrupt("not an index fragment (bad magic)"));
    }
    if bytes.len() < FRAGMENT_HEADER_LEN + FRAGMENT_TRAILER_LEN {
        return Err(corrupt("truncated"));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - FRAGMENT_TRAILER_LEN);
    if blake3::hash(body).as_bytes() != trailer {
        return Err(corrupt("checksum mismatch"));
    }
    let pack_id = ChunkId(body[8..40].try_into().expect("32 bytes"));
    let count = u64::from_le_bytes(body[40..48].try_into().expect("8 bytes"));
    let records = &body[FRAGMENT_HEADER_LEN..];
    if records.len() as u64 != count.saturating_mul(INDEX_ENTRY_LEN as u64) {
        return Err(corrupt("entry count does not match the file length"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for r in records.chunks_exact(INDEX_ENTRY_LEN) {
        let codec = Codec::from_u8(r[48])
            .filter(|_| r[49..52] == [0, 0, 0])
            .ok_or_else(|| corrupt("unknown codec"))?;
        entries.push(IndexEntry {
            id: ChunkId(r[..32].try_into().expect("32 bytes")),
            offset: u64::from_le_bytes(r[32..40].try_into().expect("8 bytes")),
            stored_len: u32::from_le_bytes(r[40..44].try_into().expect("4 bytes")),
            raw_len: u32::from_le_bytes(r[44..48].try_into().expect("4 bytes")),
            codec,
        });
    }
    if entries.windows(2).any(|w| w[0].id > w[1].id) {
        return Err(corrupt("entries are not sorted"));
    }
    Ok((pack_id, entries))
}

/// Reads `index/<id>.idx` and checks that it describes pack `id`.
pub fn read_fragment(path: &Path, expected: &ChunkId) -> Result<Vec<IndexEntry>> {
    let bytes = fs::read(path).at(path)?;
    let (pack_id, entries) = decode_fragment(&bytes, path)?;
    if pack_id != *expected {
        return Err(Error::Corrupt(format!(
            "index fragment {} describes pack {pack_id:?}, not the one it is named for; \
             `udr fsck --repair STORE` rebuilds it from its pack",
            path.display()
        )));
    }
    Ok(entries)
}

/// Fragment files in `index_dir` (named `<pack id>.idx`) for which `known` is false.
pub fn list_fragments(
    index_dir: &Path,
    mut known: impl FnMut(&ChunkId) -> bool,
) -> Result<Vec<(ChunkId, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(index_dir).at(index_dir)? {
        let entry = entry.at(index_dir)?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".idx")) else {
            continue; // temp files and strangers
        };
        if let Some(id) = ChunkId::from_hex(stem).filter(|id| !known(id)) {
            out.push((id, entry.path()));
        }
    }
    out.sort_by_key(|f| f.0);
    Ok(out)
}

/// Where a chunk lives: which pack slot of the table, and where in it.
#[derive(Clone, Copy, Debug)]
pub struct Location {
    pub pack: u32,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackState {
    /// Open or sealed by this engine, still under its temporary name.
    Writing,
    /// Under its final name, fsynced.
    Durable,
    /// Given up after a failed write; holds no chunk any more.
    Discarded,
}

#[derive(Debug)]
pub struct PackSlot {
    /// `None` while the pack is open (its name hashes its final headers, or content).
    pub id: Option<ChunkId>,
    pub path: PathBuf,
    /// The open file of a pack being written: its temporary name goes away at rename.
    pub pinned: Option<Arc<File>>,
    pub size: u64,
    pub state: PackState,
}

/// Totals reported by `ChunkEngine.stats()`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packs: u64,
    pub chunks: u64,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    /// Chunks and pack bytes written but not yet made durable by `flush`.
    pub pending_chunks: u64,
    pub pending_bytes: u64,
}

/// Every chunk this engine knows: loaded from fragments or written by it. One compact map
/// (id -> location) rather than a Python object per chunk.
#[derive(Default)]
pub struct IndexTable {
    chunks: IdMap<Location>,
    packs: Vec<PackSlot>,
    slot_of_pack: IdMap<u32>,
    /// Packs the collector condemned (docs/format.md, "Garbage collection"): a writer never
    /// deduplicates against them, and a location in one gives way to any other.
    condemned: IdSet,
}

impl IndexTable {
    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        self.chunks.get(id).copied()
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    /// Whether a writer may skip storing this chunk: it is known, in a pack not condemned.
    pub fn holds_for_dedup(&self, id: &ChunkId) -> bool {
        self.chunks
            .get(id)
            .is_some_and(|loc| !self.is_condemned_slot(loc.pack))
    }

    fn is_condemned_slot(&self, slot: u32) -> bool {
        self.packs[slot as usize]
            .id
            .is_some_and(|p| self.condemned.contains(&p))
    }

    pub fn is_condemned_pack(&self, id: &ChunkId) -> bool {
        self.condemned.contains(id)
    }

    /// Replaces the set of condemned packs.
    pub fn set_condemned(&mut self, packs: IdSet) {
        self.condemned = packs;
    }

    pub fn slot_of(&self, id: &ChunkId) -> Option<u32> {
        self.slot_of_pack.get(id).copied()
    }

    /// Ids of the durable packs this table knows.
    pub fn durable_pack_ids(&self) -> Vec<ChunkId> {
        self.slot_of_pack.keys().copied().collect()
    }

    /// Forgets durable packs that are gone from the store (the collector deleted them):
    /// their chunks lose their locations (`insert` them again from the packs that remain).
    pub fn forget_packs(&mut self, gone: &[ChunkId]) {
        let slots: std::collections::HashSet<u32> = gone
            .iter()
            .filter_map(|id| self.slot_of_pack.remove(id))
            .collect();
        if slots.is_empty() {
            return;
        }
        self.chunks.retain(|_, loc| !slots.contains(&loc.pack));
        for slot in &slots {
            let p = &mut self.packs[*slot as usize];
            p.pinned = None;
            p.size = 0;
            p.state = PackState::Discarded;
        }
    }

    pub fn pack(&self, slot: u32) -> &PackSlot {
        &self.packs[slot as usize]
    }

    pub fn pack_mut(&mut self, slot: u32) -> &mut PackSlot {
        &mut self.packs[slot as usize]
    }

    /// Whether a durable pack with this id is loaded.
    pub fn knows_pack(&self, id: &ChunkId) -> bool {
        self.slot_of_pack.contains_key(id)
    }

    pub fn add_slot(&mut self, slot: PackSlot) -> u32 {
        let n = self.packs.len() as u32;
        if let (Some(id), PackState::Durable) = (slot.id, slot.state) {
            self.slot_of_pack.insert(id, n);
        }
        self.packs.push(slot);
        n
    }

    /// Adds a durable pack and its entries; false if the pack was already known.
    pub fn add_durable_pack(&mut self, id: ChunkId, path: PathBuf, entries: &[IndexEntry]) -> bool {
        if self.knows_pack(&id) {
            return false;
        }
        let size = entries
            .iter()
            .map(|e| e.offset + u64::from(e.stored_len))
            .max()
            .unwrap_or(crate::pack::PACK_MAGIC_LEN as u64);
        let slot = self.add_slot(PackSlot {
            id: Some(id),
            path,
            pinned: None,
            size,
            state: PackState::Durable,
        });
        self.insert(slot, entries);
        true
    }

    /// Records where `entries` live. A chunk already known keeps its location, except that a
    /// durable copy replaces one in a pack still being written (which a failed flush could
    /// take away), and a copy in a pack not condemned replaces one in a condemned pack.
    pub fn insert(&mut self, slot: u32, entries: &[IndexEntry]) {
        let durable = self.packs[slot as usize].state == PackState::Durable;
        let condemned_here = self.is_condemned_slot(slot);
        let condemned = &self.condemned;
        for e in entries {
            let loc = Location {
                pack: slot,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
                codec: e.codec,
            };
            let packs = &self.packs;
            self.chunks
                .entry(e.id)
                .and_modify(|old| {
                    let was = &packs[old.pack as usize];
                    let was_condemned = was.id.is_some_and(|p| condemned.contains(&p));
                    if (durable && was.state != PackState::Durable)
                        || (was_condemned && !condemned_here)
                    {
                        *old = loc;
                    }
                })
                .or_insert(loc);
        }
    }

    /// The pack in `slot` became durable under `path`.
    pub fn mark_durable(&mut self, slot: u32, id: ChunkId, path: PathBuf) {
        let p = &mut self.packs[slot as usize];
        p.id = Some(id);
        p.path = path;
        p.pinned = None;
        p.state = PackState::Durable;
        self.slot_of_pack.insert(id, slot);
    }

    /// Forgets a pack that will never become durable, and every chunk located in it.
    pub fn discard(&mut self, slot: u32, entries: &[IndexEntry]) {
        self.unlocate(slot, entries.iter().map(|e| &e.id));
        let p = &mut self.packs[slot as usize];
        p.pinned = None;
        p.size = 0;
        p.state = PackState::Discarded;
    }

    /// Forgets one durable pack, given the chunks it holds (no pass over the whole table, as
    /// `forget_packs` makes); returns its slot, None if it was not known.
    pub fn forget_pack_holding(&mut self, id: &ChunkId, chunks: &[ChunkId]) -> Option<u32> {
        let slot = self.slot_of_pack.remove(id)?;
        self.unlocate(slot, chunks.iter());
        let p = &mut self.packs[slot as usize];
        p.pinned = None;
        p.size = 0;
        p.state = PackState::Discarded;
        p.path = PathBuf::new(); // slots are not reused: keep what stays of one small
        Some(slot)
    }

    /// Removes the locations of `ids` that point into `slot`.
    fn unlocate<'a>(&mut self, slot: u32, ids: impl Iterator<Item = &'a ChunkId>) {
        for id in ids {
            if self.chunks.get(id).is_some_and(|l| l.pack == slot) {
                self.chunks.remove(id);
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for p in &self.packs {
            match p.state {
                PackState::Durable => {
                    s.packs += 1;
                    s.stored_bytes += p.size;
                }
                PackState::Writing => s.pending_bytes += p.size,
                PackState::Discarded => {}
            }
        }
        for loc in self.chunks.values() {
            if self.packs[loc.pack as usize].state == PackState::Durable {
                s.chunks += 1;
                s.raw_bytes += u64::from(loc.raw_len);
            } else {
                s.pending_chunks += 1;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> IndexEntry {
        IndexEntry {
            id: ChunkId::of(&[n]),
            offset: 52 + u64::from(n),
            stored_len: 10,
            raw_len: 20,
            codec: Codec::Zstd,
        }
    }

    #[test]
    fn fragment_round_trip_sorts_entries() {
        let pack = ChunkId::of(b"pack");
        let entries: Vec<_> = (0..10).map(entry).collect();
        let bytes = encode_fragment(&pack, &entries);
        assert_eq!(bytes.len(), 48 + 10 * INDEX_ENTRY_LEN + 32);
        let (id, mut got) = decode_fragment(&bytes, Path::new("x.idx")).unwrap();
        assert_eq!(id, pack);
        assert!(got.windows(2).all(|w| w[0].id < w[1].id));
        got.sort_by_key(|e| e.offset);
        assert_eq!(got, entries);
    }

    #[test]
    fn bad_magic_and_flipped_bits_are_corruption() {
        let bytes = encode_fragment(&ChunkId::of(b"p"), &[entry(1)]);
        let mut bad = bytes.clone();
        bad[0] = b'X';
        let err = decode_fragment(&bad, Path::new("bad.idx")).unwrap_err();
        assert!(matches!(&err, Error::Corrupt(m) if m.contains("bad.idx") && m.contains("magic")));
        let mut flipped = bytes.clone();
        flipped[60] ^= 1;
        assert!(matches!(
            decode_fragment(&flipped, Path::new("f.idx")),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            decode_fragment(&bytes[..bytes.len() - 1], Path::new("t.idx")),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn durable_location_replaces_one_being_written() {
        let mut t = IndexTable::default();
        let writing = t.add_slot(PackSlot {
            id: None,
            path: "tmp".into(),
            pinned: None,
            size: 100,
            state: PackState::Writing,
        });
        t.insert(writing, &[entry(1)]);
        assert!(t.add_durable_pack(ChunkId::of(b"p"), "p".into(), &[entry(1), entry(2)]));
        assert_ne!(t.get(&entry(1).id).unwrap().pack, writing);
        t.discard(writing, &[entry(1)]);
        assert!(t.contains(&entry(1).id));
        let s = t.stats();
        assert_eq!((s.packs, s.chunks, s.raw_bytes), (1, 2, 40));
    }
}
