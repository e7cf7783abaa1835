//! The chunk engine of one store: ties the index table, the pack writer and the read caches
//! together. Ingest lives in `ingest.rs`, flushing in `writer.rs`, range reads in `reader.rs`.
//!
//! Its parts are private to this module: the other modules reach them through the methods
//! below (`table()`, `table_mut()` and `writer()` take the locks). Lock order: the writer
//! before the table, never the other way round (writer.rs checks which chunks are new under
//! the writer lock, then reads the table).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::chunker::ChunkerParams;
use crate::error::{Error, IoContext, Result};
use crate::fsio::{ensure_dir, sync_dir, write_renamed};
use crate::hashing::{ChunkId, IdSet};
use crate::index::{
    encode_fragment, fragment_path, list_fragments, read_fragment, IndexTable, Stats,
};
use crate::pack::{pack_path, scan_pack, PackFormat};
use crate::reader::ReadCaches;
use crate::writer::Writer;

pub struct Engine {
    packs_dir: PathBuf,
    index_dir: PathBuf,
    params: ChunkerParams,
    pack_target: u64,
    /// How the packs this engine writes are named (the store's format version says).
    pack_format: PackFormat,
    table: RwLock<IndexTable>,
    writer: Mutex<Writer>,
    caches: ReadCaches,
    /// Fragments the last `reload_index` could not read (pack id, why): skipped so that the
    /// rest of the store stays usable and `udr fsck --repair` can rebuild them.
    damaged: Mutex<Vec<(ChunkId, String)>>,
    /// An engine over files its caller names (cached_files.rs) instead of a store's packs:
    /// there is no `index/` to reload, and a chunk it does not know is not an error of the
    /// store but a miss the caller answers from elsewhere.
    files_from_caller: bool,
}

impl Engine {
    /// Opens the store at `root` (which must exist) and loads every index fragment.
    pub fn open(
        root: &Path,
        min: u32,
        avg: u32,
        max: u32,
        pack_target: u64,
        pack_format: PackFormat,
    ) -> Result<Self> {
        let params = ChunkerParams::new(min, avg, max)?;
        if pack_target == 0 {
            return Err(Error::Invalid("pack_target must be positive".into()));
        }
        if !fs::metadata(root).at(root)?.is_dir() {
            return Err(Error::Invalid(format!(
                "store root {} is not a directory",
                root.display()
            )));
        }
        let engine = Engine {
            packs_dir: root.join("packs"),
            index_dir: root.join("index"),
            params,
            pack_target,
            pack_format,
            table: RwLock::new(IndexTable::default()),
            writer: Mutex::new(Writer::default()),
            caches: ReadCaches::default(),
            damaged: Mutex::new(Vec::new()),
            files_from_caller: false,
        };
        for dir in [&engine.packs_dir, &engine.index_dir] {
            if ensure_dir(dir)? {
                sync_dir(root)?;
            }
        }
        engine.reload_index()?;
        Ok(engine)
    }

    /// The same engine with a verified-bytes cache of `bytes` (0: none) instead of
    /// `reader::DEFAULT_READ_CACHE_BYTES`.
    pub fn with_read_cache(mut self, bytes: usize) -> Self {
        self.caches = ReadCaches::new(bytes);
        self
    }

    /// An engine that reads chunks from files its caller adds (cached_files.rs): it writes
    /// nothing and has no store directory.
    pub(crate) fn over_caller_files(read_cache_bytes: usize) -> Self {
        Engine {
            packs_dir: PathBuf::new(),
            index_dir: PathBuf::new(),
            // Never used: this engine does not chunk or write.
            params: ChunkerParams::new(4096, 16384, 65536).expect("valid chunk sizes"),
            pack_target: 1,
            pack_format: PackFormat::V2,
            table: RwLock::new(IndexTable::default()),
            writer: Mutex::new(Writer::default()),
            caches: ReadCaches::new(read_cache_bytes),
            damaged: Mutex::new(Vec::new()),
            files_from_caller: true,
        }
    }

    /// Whether this engine reads files its caller names (`over_caller_files`).
    pub(crate) fn files_from_caller(&self) -> bool {
        self.files_from_caller
    }

    pub fn params(&self) -> &ChunkerParams {
        &self.params
    }

    /// `packs/`: where pack files go (`pack::pack_path`).
    pub(crate) fn packs_dir(&self) -> &Path {
        &self.packs_dir
    }

    /// `index/`: where index fragments go (`index::fragment_path`).
    pub(crate) fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    /// The size at which the open pack is sealed.
    pub(crate) fn pack_target(&self) -> u64 {
        self.pack_target
    }

    pub(crate) fn pack_format(&self) -> PackFormat {
        self.pack_format
    }

    /// The verified-bytes cache, open pack files and read buffers (reader.rs).
    pub(crate) fn caches(&self) -> &ReadCaches {
        &self.caches
    }

    // A panic while a lock is held cannot leave the table half-updated in a way later readers
    // could misread (every update is a single insert or remove), so poisoning is ignored.
    pub(crate) fn table(&self) -> RwLockReadGuard<'_, IndexTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn table_mut(&self) -> RwLockWriteGuard<'_, IndexTable> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads fragments written since the last load (by other processes); returns how many.
    /// A damaged fragment is skipped and listed by `damaged_fragments` (its chunks read as
    /// not found) rather than making the whole store unusable.
    pub fn reload_index(&self) -> Result<usize> {
        if self.files_from_caller {
            return Ok(0); // the caller adds and forgets its files itself
        }
        let mut listed = IdSet::default();
        let (todo, known) = {
            let table = self.table();
            let todo = list_fragments(&self.index_dir, |id| {
                listed.insert(*id);
                table.knows_pack(id)
            })?;
            (todo, table.durable_pack_ids())
        };
        // Packs the collector deleted (fragment first, then pack: docs/format.md, "Garbage
        // collection") are forgotten, and their chunks found again in the packs that remain.
        let gone: Vec<ChunkId> = known
            .into_iter()
            .filter(|id| !listed.contains(id) && !pack_path(&self.packs_dir, id).exists())
            .collect();
        if !gone.is_empty() {
            self.forget_packs(&gone)?;
        }
        // Files are read without the lock so that concurrent reads are not held up.
        let mut loaded = Vec::with_capacity(todo.len());
        let mut damaged = Vec::new();
        for (id, path) in &todo {
            match read_fragment(path, id) {
                Ok(entries) => loaded.push((*id, entries)),
                Err(Error::Corrupt(why)) => damaged.push((*id, why)),
                // Removed since it was listed (a repair moved it away).
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        *self.damaged.lock().unwrap_or_else(|e| e.into_inner()) = damaged;
        let mut table = self.table_mut();
        let mut added = 0;
        for (id, entries) in loaded {
            if table.add_durable_pack(id, pack_path(&self.packs_dir, &id), &entries) {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Forgets deleted packs and locates their chunks again in the packs that remain.
    fn forget_packs(&self, gone: &[ChunkId]) -> Result<()> {
        self.table_mut().forget_packs(gone);
        let remaining = self.table().durable_pack_ids();
        for id in remaining {
            let path = fragment_path(&self.index_dir, &id);
            match read_fragment(&path, &id) {
                Ok(entries) => {
                    let mut table = self.table_mut();
                    if let Some(slot) = table.slot_of(&id) {
                        table.insert(slot, &entries);
                    }
                }
                // Deleted or damaged since: the next reload deals with it.
                Err(Error::Io { .. } | Error::Corrupt(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sets the packs the collector condemned: no chunk is deduplicated against them.
    pub fn set_condemned(&self, packs: IdSet) {
        self.table_mut().set_condemned(packs);
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.table().contains(id)
    }

    /// The durable pack that holds a chunk, if the index knows one.
    pub fn pack_of(&self, id: &ChunkId) -> Option<ChunkId> {
        let table = self.table();
        table.get(id).and_then(|loc| table.pack(loc.pack).id)
    }

    /// Fragments skipped by the last `reload_index` as damaged: (pack id, why).
    pub fn damaged_fragments(&self) -> Vec<(ChunkId, String)> {
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stats(&self) -> Stats {
        self.table().stats()
    }

    /// Checks every chunk of a pack and the pack's own name; returns its chunk count.
    pub fn verify_pack(&self, pack_id: &ChunkId) -> Result<usize> {
        Ok(scan_pack(&pack_path(&self.packs_dir, pack_id), pack_id)?.len())
    }

    /// Rewrites `index/<pack>.idx` from the pack itself (after checking the pack).
    pub fn rebuild_index(&self, pack_id: &ChunkId) -> Result<()> {
        let path = pack_path(&self.packs_dir, pack_id);
        let entries = scan_pack(&path, pack_id)?;
        write_renamed(
            &fragment_path(&self.index_dir, pack_id),
            &encode_fragment(pack_id, &entries),
        )?;
        sync_dir(&self.index_dir)?;
        self.table_mut().add_durable_pack(*pack_id, path, &entries);
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _)| id != pack_id);
        Ok(())
    }
}
