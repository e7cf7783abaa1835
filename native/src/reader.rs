//! Range reads of a chunk list: `pread` from packs, every chunk's BLAKE3 checked before its
//! bytes are handed out. Safe to call from many threads at once.
//!
//! Bytes read from a pack are verified on every read, however often the same chunk was read
//! before: a pack damaged while a process runs is noticed by that process's next read of it.
//! What is remembered is verified bytes, never the fact that a pack was once good: a bounded
//! LRU of chunks (`ChunkCache`, `DEFAULT_READ_CACHE_BYTES`) holds chunks decoded for partial
//! reads and chunks read ahead by `prefetch`, and serves them without touching the pack.
//!
//! A prefetch claims the chunks it is about to read, so that each chunk is read and hashed
//! once however the reader and the read-ahead interleave: a read that needs the chunk the
//! prefetch is reading right now waits for it; a read that needs a claimed chunk the prefetch
//! has not started takes it over (reads it itself, straight into its buffer), and the
//! prefetch skips it. A reader behind the read-ahead copies from memory; one that overtakes
//! it (the worker thread got no core) reads directly, as if there were no read-ahead.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::chunk_cache::ChunkCache;
use crate::chunklist::{ChunkList, ChunkRef};
use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::hashing::{ChunkId, IdSet};
use crate::index::Location;
use crate::pack::{decode_verified, Codec};

/// Size of the verified-bytes cache unless the engine is opened with another (docs/mount.md).
pub const DEFAULT_READ_CACHE_BYTES: usize = 64 << 20;
const OPEN_PACKS_MAX: usize = 256;
/// Buffers of evicted chunks kept for the next chunks read (saves zeroing fresh memory).
const SPARE_BUFFERS_MAX: usize = 64;
/// A file of an engine over its caller's files is marked used (its mtime, which orders the
/// caller's evictions) when opened and again when read after this long.
const MARK_USED_EVERY: Duration = Duration::from_secs(60);

pub struct ReadCaches {
    files: Mutex<OpenPacks>,
    verified: Mutex<Verified>,
    /// Signalled when a chunk being loaded by a prefetch is done (in the cache, or failed).
    loaded: Condvar,
}

/// Verified chunk bytes, and the chunks a prefetch is reading right now.
struct Verified {
    cache: ChunkCache,
    /// Claimed by a prefetch, not started yet.
    claimed: IdSet,
    /// Being read by a prefetch right now.
    loading: IdSet,
    /// Readers waiting on `loaded`.
    waiting: usize,
    /// Cached chunks read ahead and not yet read to their end: a sequential reader passes
    /// each once, so the read that reaches a chunk's end drops it and its buffer is reused
    /// for the next chunk read ahead. The read-ahead's memory stays a few MiB, warm in the
    /// CPU's caches, instead of cycling through the whole cache.
    ahead: IdSet,
    spare: Vec<Vec<u8>>,
}

/// How often a read reloads the index for one chunk whose pack went missing (each reload
/// forgets the packs deleted so far).
const RELOADS_PER_CHUNK: u32 = 4;

impl Verified {
    fn insert(&mut self, id: ChunkId, data: Arc<Vec<u8>>) {
        for (old_id, old) in self.cache.insert(id, data) {
            self.ahead.remove(&old_id);
            self.recycle(old);
        }
    }

    /// Keeps an evicted chunk's buffer for reuse; past `SPARE_BUFFERS_MAX` the oldest spare
    /// goes (`buffer` leaves spares that do not fit, which must not block newer ones).
    fn recycle(&mut self, data: Arc<Vec<u8>>) {
        if let Ok(buf) = Arc::try_unwrap(data) {
            if self.spare.len() >= SPARE_BUFFERS_MAX {
                self.spare.remove(0);
            }
            self.spare.push(buf);
        }
    }
}

impl ReadCaches {
    /// Caches that keep at most `cache_bytes` of verified chunk data (0: none).
    pub fn new(cache_bytes: usize) -> Self {
        ReadCaches {
            files: Mutex::new(OpenPacks::default()),
            verified: Mutex::new(Verified {
                cache: ChunkCache::new(cache_bytes),
                claimed: IdSet::default(),
                loading: IdSet::default(),
                waiting: 0,
                ahead: IdSet::default(),
                spare: Vec::new(),
            }),
            loaded: Condvar::new(),
        }
    }

    fn verified(&self) -> MutexGuard<'_, Verified> {
        lock(&self.verified)
    }

    /// The chunk's verified bytes if cached (after waiting for a prefetch that is reading
    /// it). A chunk claimed by a prefetch but not started is taken over: `None`, and the
    /// prefetch will skip it.
    fn cached(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        let mut v = self.verified();
        while v.loading.contains(id) {
            v.waiting += 1;
            v = self.loaded.wait(v).unwrap_or_else(|e| e.into_inner());
            v.waiting -= 1;
        }
        if v.claimed.remove(id) {
            return None;
        }
        v.cache.get(id)
    }

    /// A read-ahead chunk was read to its end: drop it and keep its buffer for reuse.
    fn passed(&self, id: &ChunkId, data: Arc<Vec<u8>>) {
        let mut v = self.verified();
        if v.ahead.remove(id) {
            v.cache.remove(id);
            v.recycle(data);
        }
    }

    /// A buffer of `len` bytes to read a chunk into (its content is overwritten): a spare one
    /// that fits without holding more than twice `len`, else a new one. The cache counts a
    /// buffer's capacity, so a large spare reused for a small chunk would crowd out others.
    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = {
            let mut v = self.verified();
            let fits = |b: &Vec<u8>| b.capacity() >= len && b.capacity() <= 2 * len;
            match v.spare.iter().position(fits) {
                Some(k) => v.spare.swap_remove(k),
                None => Vec::new(),
            }
        };
        buf.resize(len, 0);
        buf
    }
}

/// Chunks claimed by one prefetch, in order; those not yet read (`ids[done..]`) are released
/// when it ends, however it ends.
struct Claims<'a> {
    caches: &'a ReadCaches,
    ids: Vec<ChunkId>,
    done: usize,
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        if self.done < self.ids.len() {
            let mut v = self.caches.verified();
            for id in &self.ids[self.done..] {
                v.claimed.remove(id);
            }
        }
    }
}

impl Default for ReadCaches {
    fn default() -> Self {
        Self::new(DEFAULT_READ_CACHE_BYTES)
    }
}

/// Open pack files by table slot (with when each was last marked used), oldest closed first
/// when too many are open.
#[derive(Default)]
struct OpenPacks {
    files: HashMap<u32, (Arc<File>, Instant)>,
    order: VecDeque<u32>,
}

impl OpenPacks {
    fn insert(&mut self, slot: u32, file: Arc<File>) {
        if self.files.insert(slot, (file, Instant::now())).is_none() {
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

impl ReadCaches {
    /// Closes the file of a slot the table forgot (cached_files.rs).
    pub(crate) fn close(&self, slot: u32) {
        let mut open = lock(&self.files);
        if open.files.remove(&slot).is_some() {
            open.order.retain(|s| *s != slot);
        }
    }
}

impl Engine {
    /// Copies bytes `[offset, offset + dst.len())` of the file `list` describes into `dst`;
    /// returns how many (fewer at the end of the file, 0 past it).
    pub fn read_into(&self, list: &ChunkList, offset: u64, dst: &mut [u8]) -> Result<usize> {
        self.read_range(list, offset, dst, false)
    }

    /// Like `read_into`, but stops before the first chunk it cannot find (unknown to the
    /// table, or its file gone): returns the bytes filled up to there, for the caller to read
    /// the rest another way (cached_files.rs). Damaged bytes are still an error.
    pub fn read_known_into(&self, list: &ChunkList, offset: u64, dst: &mut [u8]) -> Result<usize> {
        self.read_range(list, offset, dst, true)
    }

    fn read_range(
        &self,
        list: &ChunkList,
        offset: u64,
        dst: &mut [u8],
        stop_at_missing: bool,
    ) -> Result<usize> {
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
            match self.read_chunk(&chunk, within, &mut dst[done..done + take], &mut rescanned) {
                Err(e) if stop_at_missing && is_missing(&e) => return Ok(done),
                result => result?,
            }
            done += take;
            chunk_start += u64::from(chunk.len);
            index += 1;
        }
        Ok(n)
    }

    /// Reads and verifies the chunks that hold bytes `[offset, offset + len)` of the file
    /// `list` describes into the verified-bytes cache, so that later reads of them copy from
    /// memory. Stops after half the cache's size (more would evict what it read first).
    /// Returns how many bytes of chunks it read from packs.
    pub fn prefetch(&self, list: &ChunkList, offset: u64, len: u64) -> Result<u64> {
        let Some((index, mut chunk_start)) = list.locate(offset) else {
            return Ok(0);
        };
        let end = offset.saturating_add(len).min(list.size());
        let mut todo = Vec::new();
        {
            // An engine over its caller's files reads ahead the chunks they hold; the caller
            // reads ahead the others its own way.
            let table = self.files_from_caller().then(|| self.table());
            let mut v = self.caches().verified();
            let budget = (v.cache.capacity() / 2) as u64;
            let mut claimed = 0;
            for chunk in &list.chunks()[index..] {
                if chunk_start >= end || claimed >= budget {
                    break;
                }
                chunk_start += u64::from(chunk.len);
                if table.as_ref().is_some_and(|t| !t.contains(&chunk.id)) {
                    continue;
                }
                if !v.cache.contains(&chunk.id) && v.claimed.insert(chunk.id) {
                    claimed += u64::from(chunk.len);
                    todo.push(*chunk);
                }
            }
        }
        let mut claims = Claims {
            caches: self.caches(),
            ids: todo.iter().map(|c| c.id).collect(),
            done: 0,
        };
        let mut rescanned = false;
        let mut loaded = 0;
        for chunk in &todo {
            claims.done += 1;
            {
                let mut v = self.caches().verified();
                if !v.claimed.remove(&chunk.id) {
                    continue; // a reader took it over
                }
                v.loading.insert(chunk.id);
            }
            let result = self.load_verified(chunk, &mut rescanned);
            let mut v = self.caches().verified();
            v.loading.remove(&chunk.id);
            if let Ok(data) = &result {
                loaded += data.len() as u64;
                v.insert(chunk.id, Arc::clone(data));
                v.ahead.insert(chunk.id);
            }
            let wake = v.waiting > 0;
            drop(v);
            if wake {
                self.caches().loaded.notify_all();
            }
            match result {
                // A file its caller removed since: the caller reads that chunk its own way.
                Err(e) if self.files_from_caller() && is_missing(&e) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(loaded)
    }

    /// Fills `out` with bytes of `chunk` starting `within` bytes into it.
    fn read_chunk(
        &self,
        chunk: &ChunkRef,
        within: usize,
        out: &mut [u8],
        rescanned: &mut bool,
    ) -> Result<()> {
        if let Some(data) = self.caches().cached(&chunk.id) {
            out.copy_from_slice(&data[within..within + out.len()]);
            if within + out.len() == data.len() {
                self.caches().passed(&chunk.id, data);
            }
            return Ok(());
        }
        if within == 0 && out.len() == chunk.len as usize {
            let (loc, file) = self.open_located(chunk, rescanned)?;
            if loc.codec == Codec::Raw {
                // Read straight into the caller's buffer and check it there. On a mismatch
                // the error means the caller never uses those bytes.
                self.pread(&file, &loc, &chunk.id, out)?;
                if ChunkId::of(out) != chunk.id {
                    return Err(self.corrupt(&loc, &chunk.id, "content does not match its id"));
                }
                return Ok(());
            }
        }
        // Part of a chunk (or a compressed one): the whole chunk must be read to check it,
        // so it is kept for the reads of its other parts.
        let data = self.load_verified(chunk, rescanned)?;
        out.copy_from_slice(&data[within..within + out.len()]);
        self.caches().verified().insert(chunk.id, data);
        Ok(())
    }

    /// The whole chunk, read from its pack, decoded and checked against its id.
    pub(crate) fn load_verified(
        &self,
        chunk: &ChunkRef,
        rescanned: &mut bool,
    ) -> Result<Arc<Vec<u8>>> {
        let (loc, file) = self.open_located(chunk, rescanned)?;
        let mut stored = self.caches().buffer(loc.stored_len as usize);
        self.pread(&file, &loc, &chunk.id, &mut stored)?;
        // Raw chunks are checked in place (borrowed); zstd ones come back decoded.
        let decoded = match decode_verified(&chunk.id, loc.raw_len, loc.codec, &stored) {
            Ok(Cow::Owned(raw)) => Some(raw),
            Ok(Cow::Borrowed(_)) => None,
            Err(why) => return Err(self.corrupt(&loc, &chunk.id, &why)),
        };
        Ok(Arc::new(decoded.unwrap_or(stored)))
    }

    /// The chunk's location and its pack, opened. A pack that is gone was deleted by the
    /// collector after its chunks were copied elsewhere (or were garbage): the index is
    /// reloaded, which forgets it, and the chunk is looked up again. The pack found then may
    /// be another one the same collector run is deleting (a chunk held by several packs, of
    /// which it keeps one), so this repeats, up to `RELOADS_PER_CHUNK` times.
    fn open_located(
        &self,
        chunk: &ChunkRef,
        rescanned: &mut bool,
    ) -> Result<(Location, Arc<File>)> {
        let mut loc = self.locate_checked(chunk, rescanned)?;
        let mut reloads = 0;
        loop {
            match self.pack_file(loc.pack) {
                Err(e) if is_not_found(&e) && reloads < RELOADS_PER_CHUNK => {
                    reloads += 1;
                    *rescanned = true;
                    self.reload_index()?;
                    loc = self.locate_checked(chunk, rescanned)?;
                }
                other => return Ok((loc, other?)),
            }
        }
    }

    /// The chunk's location, which must agree with the chunk list on its length.
    fn locate_checked(&self, chunk: &ChunkRef, rescanned: &mut bool) -> Result<Location> {
        let loc = self.locate(&chunk.id, rescanned)?;
        if loc.raw_len != chunk.len {
            return Err(Error::Corrupt(format!(
                "chunk {:?} is {} bytes in its chunk list but {} in the index",
                chunk.id, chunk.len, loc.raw_len
            )));
        }
        Ok(loc)
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
        {
            let mut open = lock(&self.caches().files);
            if let Some((f, marked)) = open.files.get_mut(&slot) {
                let file = Arc::clone(f);
                if !self.files_from_caller() {
                    return Ok(file);
                }
                // A caller's file removed since it was opened (its cache was deleted, or
                // another process evicted it) is not read again: the caller frees that space.
                let remark = marked.elapsed() >= MARK_USED_EVERY;
                if remark {
                    *marked = Instant::now();
                }
                drop(open);
                if file.metadata().is_ok_and(|m| m.nlink() == 0) {
                    self.caches().close(slot);
                    let gone = io::Error::from(io::ErrorKind::NotFound);
                    return Err(Error::io_at(gone, &self.table().pack(slot).path));
                }
                if remark {
                    mark_used(&file);
                }
                return Ok(file);
            }
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
        if self.files_from_caller() {
            mark_used(&file);
        }
        lock(&self.caches().files).insert(slot, Arc::clone(&file));
        Ok(file)
    }

    /// Reads the first `buf.len()` stored bytes of the chunk at `loc`.
    fn pread(&self, file: &File, loc: &Location, id: &ChunkId, buf: &mut [u8]) -> Result<()> {
        match file.read_exact_at(buf, loc.offset) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.corrupt(
                loc,
                id,
                "the pack is truncated (the chunk's bytes run past its end)",
            )),
            Err(e) => Err(Error::io_at(e, &self.table().pack(loc.pack).path)),
        }
    }

    fn corrupt(&self, loc: &Location, id: &ChunkId, why: &str) -> Error {
        let table = self.table();
        let pack = table.pack(loc.pack);
        let name = match pack.id {
            _ if self.files_from_caller() => format!("file {}", pack.path.display()),
            Some(p) => format!("pack {}", p.to_hex()),
            None => format!("pack {}", pack.path.display()),
        };
        Error::Corrupt(format!(
            "{name}, chunk {id:?} at offset {}: {why}",
            loc.offset
        ))
    }
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// A chunk the table does not know, or whose file is gone.
fn is_missing(e: &Error) -> bool {
    matches!(e, Error::NotFound(_)) || is_not_found(e)
}

/// Marks a caller's file as just used (its mtime: the caller evicts the least recently used
/// first). Best effort: a file that cannot be marked is only evicted sooner.
fn mark_used(file: &File) {
    let _ = file.set_modified(SystemTime::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_buffer_much_larger_than_the_chunk_is_not_reused() {
        let caches = ReadCaches::new(1 << 20);
        caches.verified().spare.push(Vec::with_capacity(256 << 10));
        let small = caches.buffer(16 << 10);
        assert_eq!(small.len(), 16 << 10);
        assert!(
            small.capacity() <= 32 << 10,
            "a 256 KiB spare held for 16 KiB"
        );
        let large = caches.buffer(200 << 10);
        assert!(
            large.capacity() >= 256 << 10,
            "the spare that fits is reused"
        );
    }
}
