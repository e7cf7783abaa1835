//! Range reads of a chunk list: `pread` from packs, every chunk's BLAKE3 checked before its
//! bytes are trusted. Safe to call from many threads at once.
//!
//! Checking costs a hash of the whole chunk, so each chunk location is checked once per
//! process (the verified set) and chunks decoded for partial reads are kept in a small LRU.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, RwLock};

use crate::chunk_cache::ChunkCache;
use crate::chunklist::{ChunkList, ChunkRef};
use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::hashing::ChunkId;
use crate::index::Location;
use crate::pack::{decode_verified, Codec};

const CHUNK_CACHE_BYTES: usize = 64 << 20;
const OPEN_PACKS_MAX: usize = 256;
/// About 64 GiB of 64 KiB chunks. Past this the set starts over (chunks are then checked once
/// more), which bounds its memory in a long-running daemon to a few tens of MB.
const VERIFIED_MAX: usize = 1 << 20;

pub struct ReadCaches {
    files: Mutex<OpenPacks>,
    chunks: Mutex<ChunkCache>,
    /// (pack slot, offset) of chunk copies whose hash has been checked.
    verified: RwLock<HashSet<(u32, u64)>>,
}

impl Default for ReadCaches {
    fn default() -> Self {
        ReadCaches {
            files: Mutex::new(OpenPacks::default()),
            chunks: Mutex::new(ChunkCache::new(CHUNK_CACHE_BYTES)),
            verified: RwLock::new(HashSet::new()),
        }
    }
}

/// Open pack files by table slot, oldest closed first when too many are open.
#[derive(Default)]
struct OpenPacks {
    files: HashMap<u32, Arc<File>>,
    order: VecDeque<u32>,
}

impl OpenPacks {
    fn insert(&mut self, slot: u32, file: Arc<File>) {
        if self.files.insert(slot, file).is_none() {
            self.order.push_back(slot);
        }
        while self.order.len() > OPEN_PACKS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.files.remove(&old);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded caches stay consistent across a panic (each update is one insert/remove).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Copies bytes `[offset, offset + dst.len())` of the file `list` describes into `dst`;
    /// returns how many (fewer at the end of the file, 0 past it).
    pub fn read_into(&self, list: &ChunkList, offset: u64, dst: &mut [u8]) -> Result<usize> {
        let Some((mut index, mut chunk_start)) = list.locate(offset) else {
            return Ok(0);
        };
        let n = (dst.len() as u64).min(list.size() - offset) as usize;
        let mut rescanned = false;
        let mut done = 0;
        while done < n {
            let chunk = list.chunks()[index];
            let within = (offset + done as u64 - chunk_start) as usize;
            let take = (chunk.len as usize - within).min(n - done);
            self.read_chunk(&chunk, within, &mut dst[done..done + take], &mut rescanned)?;
            done += take;
            chunk_start += u64::from(chunk.len);
            index += 1;
        }
        Ok(n)
    }

    /// Fills `out` with bytes of `chunk` starting `within` bytes into it.
    fn read_chunk(
        &self,
        chunk: &ChunkRef,
        within: usize,
        out: &mut [u8],
        rescanned: &mut bool,
    ) -> Result<()> {
        if let Some(data) = lock(&self.caches.chunks).get(&chunk.id) {
            out.copy_from_slice(&data[within..within + out.len()]);
            return Ok(());
        }
        let loc = self.locate(&chunk.id, rescanned)?;
        if loc.raw_len != chunk.len {
            return Err(Error::Corrupt(format!(
                "chunk {:?} is {} bytes in its chunk list but {} in the index",
                chunk.id, chunk.len, loc.raw_len
            )));
        }
        let file = self.pack_file(loc.pack)?;
        let key = (loc.pack, loc.offset);
        let verified = self
            .caches
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key);
        let whole = within == 0 && out.len() == chunk.len as usize;
        match loc.codec {
            Codec::Raw if verified => self.pread(&file, &loc, &chunk.id, out, within as u64),
            Codec::Raw if whole => {
                // Read straight into the caller's buffer and check it there. On a mismatch
                // the error means the caller never uses those bytes.
                self.pread(&file, &loc, &chunk.id, out, 0)?;
                if ChunkId::of(out) != chunk.id {
                    return Err(self.corrupt(&loc, &chunk.id, "content does not match its id"));
                }
                self.mark_verified(key);
                Ok(())
            }
            _ => {
                let mut stored = vec![0u8; loc.stored_len as usize];
                self.pread(&file, &loc, &chunk.id, &mut stored, 0)?;
                // Raw chunks are checked in place (borrowed); zstd ones come back decoded.
                let decoded = match decode_verified(&chunk.id, loc.raw_len, loc.codec, &stored) {
                    Ok(Cow::Owned(raw)) => Some(raw),
                    Ok(Cow::Borrowed(_)) => None,
                    Err(why) => return Err(self.corrupt(&loc, &chunk.id, &why)),
                };
                let raw = decoded.unwrap_or(stored);
                self.mark_verified(key);
                out.copy_from_slice(&raw[within..within + out.len()]);
                lock(&self.caches.chunks).insert(chunk.id, Arc::new(raw));
                Ok(())
            }
        }
    }

    /// The chunk's location; an unknown id triggers one rescan of `index/` per read.
    fn locate(&self, id: &ChunkId, rescanned: &mut bool) -> Result<Location> {
        if let Some(loc) = self.table().get(id) {
            return Ok(loc);
        }
        if !*rescanned {
            *rescanned = true;
            self.reload_index()?;
            if let Some(loc) = self.table().get(id) {
                return Ok(loc);
            }
        }
        Err(Error::NotFound(format!(
            "chunk {id:?} is in no index fragment of this store"
        )))
    }

    fn pack_file(&self, slot: u32) -> Result<Arc<File>> {
        if let Some(f) = lock(&self.caches.files).files.get(&slot) {
            return Ok(Arc::clone(f));
        }
        let (pinned, path) = {
            let table = self.table();
            let p = table.pack(slot);
            (p.pinned.clone(), p.path.clone())
        };
        let file = match pinned {
            Some(f) => f,
            None => Arc::new(File::open(&path).at(&path)?),
        };
        lock(&self.caches.files).insert(slot, Arc::clone(&file));
        Ok(file)
    }

    /// Reads `buf.len()` stored bytes of the chunk at `loc`, starting `skip` bytes in.
    fn pread(
        &self,
        file: &File,
        loc: &Location,
        id: &ChunkId,
        buf: &mut [u8],
        skip: u64,
    ) -> Result<()> {
        match file.read_exact_at(buf, loc.offset + skip) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.corrupt(
                loc,
                id,
                "the pack is truncated (the chunk's bytes run past its end)",
            )),
            Err(e) => Err(Error::io_at(e, &self.table().pack(loc.pack).path)),
        }
    }

    fn mark_verified(&self, key: (u32, u64)) {
        let mut verified = self
            .caches
            .verified
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(key);
    }

    fn corrupt(&self, loc: &Location, id: &ChunkId, why: &str) -> Error {
        let table = self.table();
        let pack = table.pack(loc.pack);
        let name = pack
            .id
            .map_or_else(|| pack.path.display().to_string(), |p| p.to_hex());
        Error::Corrupt(format!(
            "pack {name}, chunk {id:?} at offset {}: {why}",
            loc.offset
        ))
    }
}
