//! Reads of chunks held in files its caller names, instead of a store's packs: the on-disk
//! cache of a store read from a remote (udrfs/store/chunk_cache.py), whose segment files hold
//! raw chunks back to back. The caller adds each file with where each of its chunks lies, and
//! forgets it when it removes the file; reads, checks and read-ahead then run as for a
//! store's packs (reader.rs), every chunk's BLAKE3 checked on every read from its file.
//!
//! What the caller has not added is not an error here: `read_known_into` stops before the
//! first chunk it cannot find (unknown, or its file removed meanwhile) and says how far it
//! got, and `prefetch` skips such chunks, so that the caller reads them its own way (from
//! memory, or from the remote); so is a file removed after it was opened, which is not read
//! again (its space is freed). A file read here is marked used (its mtime), as the caller
//! evicts the least recently used files first.

use std::path::PathBuf;

use crate::engine::Engine;
use crate::hashing::ChunkId;
use crate::pack::{Codec, IndexEntry};

/// Where a chunk lies in a caller's file: its id, the offset of its bytes, their length.
pub type FileChunk = (ChunkId, u64, u32);

impl Engine {
    /// Adds the file `path`, named `id` by the caller, holding raw `chunks`; false if a file
    /// of that id is already known. A chunk another known file holds stays read from there.
    pub fn add_file(&self, id: ChunkId, path: PathBuf, chunks: &[FileChunk]) -> bool {
        let entries: Vec<IndexEntry> = chunks
            .iter()
            .map(|&(chunk, offset, len)| IndexEntry {
                id: chunk,
                offset,
                stored_len: len,
                raw_len: len,
                codec: Codec::Raw,
            })
            .collect();
        self.table_mut().add_durable_pack(id, path, &entries)
    }

    /// Forgets the file `id`, given the chunks it holds, and closes it; false if unknown.
    pub fn forget_file(&self, id: &ChunkId, chunks: &[ChunkId]) -> bool {
        let slot = self.table_mut().forget_pack_holding(id, chunks);
        if let Some(slot) = slot {
            self.caches().close(slot);
        }
        slot.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::chunklist::{ChunkList, ChunkRef};
    use crate::engine::Engine;
    use crate::error::Error;
    use crate::hashing::ChunkId;
    use crate::testutil::TempDir;

    use super::FileChunk;

    /// A file of raw chunks after a 16-byte header, as a caller would write one.
    fn write_file(dir: &std::path::Path, name: &str, chunks: &[&[u8]]) -> Vec<FileChunk> {
        let mut bytes = vec![0u8; 16];
        let mut out = Vec::new();
        for c in chunks {
            out.push((ChunkId::of(c), bytes.len() as u64, c.len() as u32));
            bytes.extend_from_slice(c);
        }
        fs::write(dir.join(name), bytes).unwrap();
        out
    }

    fn list_of(chunks: &[&[u8]]) -> ChunkList {
        ChunkList::from_chunks(
            chunks
                .iter()
                .map(|c| ChunkRef {
                    id: ChunkId::of(c),
                    len: c.len() as u32,
                })
                .collect(),
        )
    }

    /// A temporary directory and four chunks of a file.
    fn setup() -> (TempDir, Vec<Vec<u8>>) {
        let parts = (0..4u8)
            .map(|k| vec![k + 1; 1000 + usize::from(k)])
            .collect();
        (TempDir::new("cached-files"), parts)
    }

    #[test]
    fn a_read_stops_before_the_first_chunk_no_file_holds() {
        let (tmp, parts) = setup();
        let dir = &tmp.0;
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let engine = Engine::over_caller_files(1 << 20);
        let held = write_file(dir, "a", &refs[..2]);
        assert!(engine.add_file(ChunkId::of(b"a"), dir.join("a"), &held));
        let list = list_of(&refs);
        let mut buf = vec![0u8; list.size() as usize];
        let n = engine.read_known_into(&list, 10, &mut buf).unwrap();
        assert_eq!(n, refs[0].len() + refs[1].len() - 10);
        assert_eq!(&buf[..n], &[refs[0], refs[1]].concat()[10..]);
        // The rest added in a second file: the read goes to the end.
        let more = write_file(dir, "b", &refs[2..]);
        engine.add_file(ChunkId::of(b"b"), dir.join("b"), &more);
        let n = engine.read_known_into(&list, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], refs.concat().as_slice());
    }

    #[test]
    fn a_forgotten_or_removed_file_is_a_miss_and_a_damaged_one_an_error() {
        let (tmp, parts) = setup();
        let dir = &tmp.0;
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let engine = Engine::over_caller_files(0);
        let held = write_file(dir, "a", &refs);
        let id = ChunkId::of(b"a");
        engine.add_file(id, dir.join("a"), &held);
        let list = list_of(&refs);
        let mut buf = vec![0u8; list.size() as usize];
        assert_eq!(
            engine.read_known_into(&list, 0, &mut buf).unwrap(),
            buf.len()
        );

        let ids: Vec<ChunkId> = held.iter().map(|c| c.0).collect();
        assert!(engine.forget_file(&id, &ids));
        assert_eq!(engine.read_known_into(&list, 0, &mut buf).unwrap(), 0);
        assert!(!engine.forget_file(&id, &ids));

        // Added again, read (so open), then removed behind the engine's back: a miss, not
        // bytes read from the removed file.
        engine.add_file(id, dir.join("a"), &held);
        assert_eq!(
            engine.read_known_into(&list, 0, &mut buf).unwrap(),
            buf.len()
        );
        fs::remove_file(dir.join("a")).unwrap();
        assert_eq!(engine.read_known_into(&list, 0, &mut buf).unwrap(), 0);
        assert_eq!(engine.prefetch(&list, 0, list.size()).unwrap(), 0);

        // A damaged byte in the second chunk: the bytes before it, then an error naming the file.
        let b = ChunkId::of(b"b");
        let held = write_file(dir, "b", &refs);
        let mut bytes = fs::read(dir.join("b")).unwrap();
        bytes[held[1].1 as usize + 7] ^= 1;
        fs::write(dir.join("b"), bytes).unwrap();
        let engine = Engine::over_caller_files(0);
        engine.add_file(b, dir.join("b"), &held);
        match engine.read_known_into(&list, 0, &mut buf) {
            Err(Error::Corrupt(why)) => assert!(why.contains("file "), "{why}"),
            other => panic!("damage not reported: {other:?}"),
        }
    }

    #[test]
    fn prefetch_reads_ahead_only_the_chunks_files_hold() {
        let (tmp, parts) = setup();
        let dir = &tmp.0;
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let engine = Engine::over_caller_files(1 << 20);
        let held = write_file(dir, "a", &[refs[1], refs[3]]);
        engine.add_file(ChunkId::of(b"a"), dir.join("a"), &held);
        let list = list_of(&refs);
        let loaded = engine.prefetch(&list, 0, list.size()).unwrap();
        assert_eq!(loaded, (refs[1].len() + refs[3].len()) as u64);
        // Served from memory now, though the file is gone.
        fs::remove_file(dir.join("a")).unwrap();
        let mut buf = vec![0u8; refs[1].len()];
        let at = refs[0].len() as u64;
        assert_eq!(
            engine.read_known_into(&list, at, &mut buf).unwrap(),
            buf.len()
        );
        assert_eq!(buf, refs[1]);
    }
}
