//! Ingest of a whole buffer or file: chunk, hash, store the chunks not yet known.
//!
//! Large inputs run as a two-stage pipeline, one stage per core: a helper thread finds chunk
//! boundaries and hashes the chunks; the calling thread checks them against the index and
//! appends the new ones to the open pack (which also hashes them into the pack's name).

use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use memmap2::{Advice, Mmap};

use crate::chunker::{normalize_cut_points, Segmenter};
use crate::chunklist::{ChunkList, ChunkRef};
use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::hashing::ChunkId;
use crate::writer::HashedChunk;

/// Below this, starting a thread costs more than it saves.
pub(crate) const PIPELINE_MIN_BYTES: usize = 8 << 20;
/// Chunk bytes handed from one stage to the next at a time.
pub(crate) const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the stages.
pub(crate) const BATCHES_QUEUED: usize = 4;

/// Ids of the chunks `ranges` (offset, length) of `data`.
pub(crate) fn hash_chunks(data: &[u8], ranges: &[(usize, usize)]) -> Vec<HashedChunk> {
    ranges
        .iter()
        .map(|&(start, len)| HashedChunk {
            start,
            len: len as u32,
            id: ChunkId::of(&data[start..start + len]),
        })
        .collect()
}

pub(crate) fn chunk_refs(batch: &[HashedChunk]) -> impl Iterator<Item = ChunkRef> + '_ {
    batch.iter().map(|c| ChunkRef {
        id: c.id,
        len: c.len,
    })
}

/// The bytes of `data` a non-empty batch covers (batches are contiguous and in order).
fn batch_bytes<'a>(data: &'a [u8], batch: &[HashedChunk]) -> &'a [u8] {
    match (batch.first(), batch.last()) {
        (Some(first), Some(last)) => &data[first.start..last.start + last.len as usize],
        _ => &[],
    }
}

impl Engine {
    /// Stores `data` and returns its chunk list. See `normalize_cut_points` for `cut_points`.
    pub fn ingest(&self, data: &[u8], cut_points: &[i64], compress: bool) -> Result<ChunkList> {
        self.ingest_hashing(data, cut_points, compress, None)
    }

    /// As `ingest`, also feeding every byte, in order, to `file_hash`. The whole-file hash is
    /// computed on the pack-writing stage, which has spare time while the other stage chunks,
    /// so callers need no second pass over the file.
    pub fn ingest_hashing(
        &self,
        data: &[u8],
        cut_points: &[i64],
        compress: bool,
        mut file_hash: Option<&mut blake3::Hasher>,
    ) -> Result<ChunkList> {
        let cuts = normalize_cut_points(cut_points, Some(data.len() as u64))?;
        let mut seg = Segmenter::new(self.params().clone(), cuts);
        if data.len() < PIPELINE_MIN_BYTES {
            let batch = hash_chunks(data, &seg.split(data, 0, true));
            self.store_chunks(data, &batch, compress)?;
            if let Some(hasher) = file_hash {
                hasher.update(data);
            }
            return Ok(ChunkList::from_chunks(chunk_refs(&batch).collect()));
        }
        thread::scope(|s| {
            let (tx, rx) = mpsc::sync_channel::<Vec<HashedChunk>>(BATCHES_QUEUED);
            let producer = s.spawn(move || {
                let (mut pos, mut batch, mut batch_bytes) = (0, Vec::new(), 0);
                while let Some(len) = seg.next_len(&data[pos..], pos as u64, true) {
                    batch.push(HashedChunk {
                        start: pos,
                        len: len as u32,
                        id: ChunkId::of(&data[pos..pos + len]),
                    });
                    pos += len;
                    batch_bytes += len;
                    if batch_bytes >= BATCH_BYTES {
                        batch_bytes = 0;
                        if tx.send(std::mem::take(&mut batch)).is_err() {
                            return; // the consumer failed and is gone
                        }
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
            });
            let mut chunks = Vec::with_capacity(data.len() / self.params().avg() + 1);
            for batch in rx {
                // Returning early drops `rx`, which stops the producer.
                self.store_chunks(data, &batch, compress)?;
                if let Some(hasher) = file_hash.as_deref_mut() {
                    hasher.update(batch_bytes(data, &batch));
                }
                chunks.extend(chunk_refs(&batch));
            }
            producer
                .join()
                .map_err(|_| Error::Internal("the chunking thread panicked".into()))?;
            Ok(ChunkList::from_chunks(chunks))
        })
    }

    /// Stores the file at `path`. The file is memory-mapped: it must not shrink meanwhile.
    pub fn ingest_file(
        &self,
        path: &Path,
        cut_points: &[i64],
        compress: bool,
    ) -> Result<ChunkList> {
        self.ingest_file_hashing(path, cut_points, compress, None)
    }

    /// As `ingest_file`, also feeding the file's bytes to `file_hash` (see `ingest_hashing`).
    pub fn ingest_file_hashing(
        &self,
        path: &Path,
        cut_points: &[i64],
        compress: bool,
        file_hash: Option<&mut blake3::Hasher>,
    ) -> Result<ChunkList> {
        let file = File::open(path).at(path)?;
        if file.metadata().at(path)?.len() == 0 {
            return self.ingest_hashing(&[], cut_points, compress, file_hash);
        }
        // SAFETY: the mapping is only read. A file truncated while mapped would fault; callers
        // ingest files they own (staged imports), which nobody else writes.
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        let _ = map.advise(Advice::Sequential); // a hint only
        self.ingest_hashing(&map, cut_points, compress, file_hash)
    }
}
