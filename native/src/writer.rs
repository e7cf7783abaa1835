//! Appending new chunks to the open pack, and `flush`: making packs durable and indexing them.
//!
//! A pack's life: open (appended to, under `packs/.tmp-<random>`), sealed (full, its id known,
//! still under the temp name), durable (fsynced, renamed to `packs/xx/<id>.pack`, directory
//! fsynced), indexed (`index/<id>.idx` written the same way). Sealed packs are made durable
//! by the next `flush`, not at once, so that ingesting a large file never waits for the disk.
//! Every chunk is readable from the moment its bytes are written, through the open file.

use std::collections::BTreeSet;

use crate::chunklist::{ChunkList, ChunkRef};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fsio::{ensure_dir, sync_dir, write_renamed};
use crate::hashing::{ChunkId, IdSet};
use crate::index::{encode_fragment, fragment_path, PackSlot, PackState};
use crate::pack::{pack_path, AppendError, Codec, IndexEntry, PackWriter, SealedPack, StoredChunk};

/// Chunks are stored compressed only when zstd saves at least this share (docs/format.md).
const ZSTD_MAX_RATIO_PERCENT: usize = 90;
const ZSTD_LEVEL: i32 = 3;

/// A chunk of some input: its range and id.
#[derive(Clone, Copy, Debug)]
pub struct HashedChunk {
    pub start: usize,
    pub len: u32,
    pub id: ChunkId,
}

struct OpenPack {
    pack: PackWriter,
    slot: u32,
}

struct PendingPack {
    pack: SealedPack,
    slot: u32,
    synced: bool,
}

/// A pack under its final name whose fragment is not yet durable.
struct RenamedPack {
    id: ChunkId,
    slot: u32,
    entries: Vec<IndexEntry>,
}

#[derive(Default)]
pub struct Writer {
    open: Option<OpenPack>,
    sealed: Vec<PendingPack>,
    renamed: Vec<RenamedPack>,
    /// Set when written chunks had to be dropped (a failed fsync leaves their bytes unknown).
    /// Chunk lists handed out earlier may name them, so every later flush fails.
    lost: Option<(Option<i32>, String)>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl Writer {
    fn try_compress(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        if self.compressor.is_none() {
            self.compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        // A buffer of the largest size worth keeping: zstd fails when the output does not fit.
        let mut out = Vec::with_capacity(raw.len() * ZSTD_MAX_RATIO_PERCENT / 100);
        let n = self
            .compressor
            .as_mut()?
            .compress_to_buffer(raw, &mut out)
            .ok()?;
        (n > 0).then_some(out)
    }
}

impl Engine {
    /// Appends the chunks of `batch` (ranges of `src`) that the store does not hold yet, in
    /// a pack the collector has not condemned (a condemned pack may be deleted before the
    /// chunk list naming the chunk is committed, so the chunk is written again).
    pub(crate) fn store_chunks(
        &self,
        src: &[u8],
        batch: &[HashedChunk],
        compress: bool,
    ) -> Result<()> {
        let mut w = self.writer();
        // Checked under the writer lock, so two ingests cannot both store the same new chunk.
        let fresh: Vec<&HashedChunk> = {
            let table = self.table();
            let mut seen = IdSet::default();
            batch
                .iter()
                .filter(|c| !table.holds_for_dedup(&c.id) && seen.insert(c.id))
                .collect()
        };
        self.store_in_packs(&mut w, src, &fresh, compress)
    }

    /// Copies chunks the store already holds into new packs (repack): each is read from its
    /// pack and checked against its id first, so a damaged chunk is never copied. The copies
    /// reach the disk at the next `flush`; until then, and after, reads keep using the packs
    /// the chunks were found in. A chunk stored zstd'd is stored zstd'd again. Returns the
    /// raw bytes copied.
    pub fn copy_chunks(&self, ids: &[ChunkId]) -> Result<u64> {
        let mut seen = IdSet::default();
        // (raw bytes, chunks) for chunks stored raw and for those stored compressed.
        let mut groups: [(Vec<u8>, Vec<HashedChunk>); 2] = Default::default();
        for id in ids {
            if !seen.insert(*id) {
                continue;
            }
            let Some(loc) = self.table().get(id) else {
                return Err(Error::NotFound(format!(
                    "chunk {id:?} is in no index fragment of this store"
                )));
            };
            let chunk = ChunkRef {
                id: *id,
                len: loc.raw_len,
            };
            // Once per chunk, not per call: the collector may delete several packs (whose
            // chunks newer packs also hold) while a long copy runs; each reload forgets the
            // packs gone so far, so it costs one reload per pack deleted meanwhile.
            let mut rescanned = false;
            let data = self.load_verified(&chunk, &mut rescanned)?;
            let (src, batch) = &mut groups[usize::from(loc.codec == Codec::Zstd)];
            batch.push(HashedChunk {
                start: src.len(),
                len: loc.raw_len,
                id: *id,
            });
            src.extend_from_slice(&data);
        }
        let mut w = self.writer();
        let mut copied = 0;
        for (compress, (src, batch)) in [false, true].into_iter().zip(&groups) {
            let refs: Vec<&HashedChunk> = batch.iter().collect();
            self.store_in_packs(&mut w, src, &refs, compress)?;
            copied += src.len() as u64;
        }
        Ok(copied)
    }

    /// Appends `chunks` (ranges of `src`) to the open pack, opening and sealing packs as they
    /// fill; the caller decided that each is to be stored.
    fn store_in_packs(
        &self,
        w: &mut Writer,
        src: &[u8],
        fresh: &[&HashedChunk],
        compress: bool,
    ) -> Result<()> {
        if fresh.is_empty() {
            return Ok(());
        }
        let raw_of = |c: &HashedChunk| &src[c.start..c.start + c.len as usize];
        let compressed: Vec<Option<Vec<u8>>> = fresh
            .iter()
            .map(|c| compress.then(|| w.try_compress(raw_of(c))).flatten())
            .collect();
        let stored: Vec<StoredChunk<'_>> = fresh
            .iter()
            .zip(&compressed)
            .map(|(c, z)| StoredChunk {
                id: c.id,
                raw_len: c.len,
                codec: if z.is_some() { Codec::Zstd } else { Codec::Raw },
                bytes: z.as_deref().unwrap_or_else(|| raw_of(c)),
            })
            .collect();

        let mut rest = &stored[..];
        while !rest.is_empty() {
            let room = self.open_pack(w)?;
            // An open pack is always below its target, so at least one chunk goes in.
            let mut n = 0;
            let mut len = room;
            while n < rest.len() && len < self.pack_target() {
                len += (crate::pack::CHUNK_HEADER_LEN + rest[n].bytes.len()) as u64;
                n += 1;
            }
            self.append(w, &rest[..n])?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Writes again every chunk of `list` that only a condemned pack holds, so that the
    /// chunk list can be committed whatever the collector deletes next (docs/architecture.md,
    /// "Garbage collection"). Returns how many chunks were written.
    pub fn keep_chunks(&self, list: &ChunkList) -> Result<usize> {
        let todo: Vec<ChunkRef> = {
            let table = self.table();
            let mut seen = IdSet::default();
            list.chunks()
                .iter()
                .filter(|c| !table.holds_for_dedup(&c.id) && seen.insert(c.id))
                .copied()
                .collect()
        };
        for chunk in &todo {
            let data = self.load_verified(chunk, &mut false)?;
            let batch = [HashedChunk {
                start: 0,
                len: chunk.len,
                id: chunk.id,
            }];
            self.store_chunks(&data, &batch, false)?;
        }
        Ok(todo.len())
    }

    /// The open pack (created if needed); returns its current length.
    fn open_pack(&self, w: &mut Writer) -> Result<u64> {
        if let Some(open) = &w.open {
            return Ok(open.pack.size());
        }
        let pack = PackWriter::create(self.packs_dir(), self.pack_format())?;
        let slot = self.table_mut().add_slot(PackSlot {
            id: None,
            path: pack.path().to_path_buf(),
            pinned: Some(pack.file().clone()),
            size: pack.size(),
            state: PackState::Writing,
        });
        let len = pack.size();
        w.open = Some(OpenPack { pack, slot });
        Ok(len)
    }

    fn append(&self, w: &mut Writer, chunks: &[StoredChunk<'_>]) -> Result<()> {
        let open = w.open.as_mut().expect("open_pack was called");
        match open.pack.append(chunks) {
            Ok(entries) => {
                let mut table = self.table_mut();
                table.insert(open.slot, entries);
                table.pack_mut(open.slot).size = open.pack.size();
            }
            Err(AppendError { error, pack_intact }) => {
                if !pack_intact {
                    let open = w.open.take().expect("checked above");
                    self.table_mut().discard(open.slot, open.pack.entries());
                    w.lost = Some(lost_message(
                        &error,
                        "a write failed and could not be undone",
                    ));
                }
                return Err(error);
            }
        }
        if open.pack.size() >= self.pack_target() {
            let mut open = w.open.take().expect("checked above");
            self.avoid_existing_name(w, &mut open)?;
            w.sealed.push(PendingPack {
                pack: open.pack.seal(),
                slot: open.slot,
                synced: false,
            });
        }
        Ok(())
    }

    /// A pack is never renamed onto an existing one: a pack with the same content exists
    /// when chunks of a condemned (or half-deleted) pack are written again in the same order,
    /// and the collector may be about to delete that file. A salt chunk (16 random bytes,
    /// referenced by nothing) gives the new pack another name (docs/format.md, "Packs").
    fn avoid_existing_name(&self, w: &mut Writer, open: &mut OpenPack) -> Result<()> {
        let id = open.pack.current_id();
        if !self.table().is_condemned_pack(&id) && !pack_path(self.packs_dir(), &id).exists() {
            return Ok(());
        }
        let salt = crate::fsio::random_suffix().into_bytes();
        let chunk = StoredChunk {
            id: ChunkId::of(&salt),
            raw_len: salt.len() as u32,
            codec: Codec::Raw,
            bytes: &salt,
        };
        match open.pack.append(&[chunk]) {
            Ok(entries) => {
                let mut table = self.table_mut();
                table.insert(open.slot, entries);
                table.pack_mut(open.slot).size = open.pack.size();
                Ok(())
            }
            Err(AppendError { error, .. }) => {
                // The pack is no longer open: its chunks are given up, as after a failed write.
                self.table_mut().discard(open.slot, open.pack.entries());
                w.lost = Some(lost_message(
                    &error,
                    "a write failed and could not be undone",
                ));
                Err(error)
            }
        }
    }

    /// Makes every chunk written so far durable: see the module comment. Returns the ids of
    /// the packs that became durable and indexed.
    pub fn flush(&self) -> Result<Vec<ChunkId>> {
        let mut w = self.writer();
        if let Some((errno, message)) = &w.lost {
            return Err(Error::Lost {
                errno: *errno,
                message: message.clone(),
            });
        }
        if let Some(mut open) = w.open.take() {
            if open.pack.chunk_count() > 0 {
                self.avoid_existing_name(&mut w, &mut open)?;
                w.sealed.push(PendingPack {
                    pack: open.pack.seal(),
                    slot: open.slot,
                    synced: false,
                });
            } else {
                self.table_mut().discard(open.slot, &[]);
            }
        }
        self.persist_sealed(&mut w)?;
        self.index_renamed(&mut w)
    }

    /// fsync + rename of each sealed pack, then one fsync per directory touched.
    fn persist_sealed(&self, w: &mut Writer) -> Result<()> {
        // Queue the writes of every pack before waiting for the first one: one deep queue
        // instead of one round trip to the disk per pack.
        for p in w.sealed.iter().filter(|p| !p.synced) {
            p.pack.tmp.start_writeback();
        }
        let mut dirs = BTreeSet::new();
        let mut parent_changed = false;
        while let Some(p) = w.sealed.first_mut() {
            if !p.synced {
                if let Err(e) = p.pack.tmp.sync() {
                    // After a failed fsync the kernel may have dropped the dirty pages: the
                    // pack's content is unknown, so it is given up.
                    let p = w.sealed.remove(0);
                    self.table_mut().discard(p.slot, &p.pack.entries);
                    w.lost = Some(lost_message(&e, "a pack could not be made durable"));
                    return Err(e);
                }
                p.synced = true;
            }
            let dest = pack_path(self.packs_dir(), &p.pack.id);
            let dir = dest.parent().expect("packs/xx").to_path_buf();
            parent_changed |= ensure_dir(&dir)?;
            // On failure the pack stays sealed (and synced) for the next flush to retry.
            p.pack.tmp.rename_to(&dest)?;
            let p = w.sealed.remove(0);
            let (id, slot, entries) = (p.pack.id, p.slot, p.pack.entries);
            dirs.insert(dir);
            w.renamed.push(RenamedPack { id, slot, entries });
        }
        // Directories of packs renamed by an earlier, failed flush are synced again too.
        for r in &w.renamed {
            dirs.insert(
                pack_path(self.packs_dir(), &r.id)
                    .parent()
                    .expect("packs/xx")
                    .to_path_buf(),
            );
        }
        if parent_changed {
            sync_dir(self.packs_dir())?;
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        let mut table = self.table_mut();
        for r in &w.renamed {
            table.mark_durable(r.slot, r.id, pack_path(self.packs_dir(), &r.id));
        }
        Ok(())
    }

    /// Writes the fragment of every durable pack that has none yet.
    fn index_renamed(&self, w: &mut Writer) -> Result<Vec<ChunkId>> {
        for r in &w.renamed {
            write_renamed(
                &fragment_path(self.index_dir(), &r.id),
                &encode_fragment(&r.id, &r.entries),
            )?;
        }
        if !w.renamed.is_empty() {
            sync_dir(self.index_dir())?;
        }
        Ok(w.renamed.drain(..).map(|r| r.id).collect())
    }
}

fn lost_message(error: &Error, what: &str) -> (Option<i32>, String) {
    (
        error.raw_os_error(),
        format!(
            "{what} ({error}); chunks ingested since the last flush were lost: \
             open a new engine and ingest them again"
        ),
    )
}
