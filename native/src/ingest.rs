//! Ingest of a whole buffer or file: chunk, hash, store the chunks not yet known.
//!
//! An input with cut points (a Parquet file's column chunks) is split into stretches between
//! cut points, and one helper thread per core takes the next stretch, cuts and hashes its
//! chunks and stores them; chunking restarts at every cut point, so the chunks are those one
//! thread would cut. The whole input's BLAKE3, when asked for, is computed by the same helpers
//! in aligned pieces (each a subtree of BLAKE3's tree) merged at the end. Nothing waits for
//! another stage: each helper does all the work of what it took, so both cores stay busy.
//! Chunks reach the packs in the order the helpers store them; the chunk list is in input
//! order.
//!
//! An input without cut points is cut by one helper thread from start to end, while the
//! calling thread stores the chunks and hashes the input, in order.

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use memmap2::{Advice, Mmap};

use crate::chunker::{normalize_cut_points, ChunkerParams, Segmenter};
use crate::chunklist::{ChunkList, ChunkRef};
use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::hashing::ChunkId;
use crate::writer::HashedChunk;

/// Below this, starting a thread costs more than it saves.
pub(crate) const PIPELINE_MIN_BYTES: usize = 8 << 20;
/// Chunk bytes handed from one stage to the next at a time, and the least a stretch between
/// cut points holds.
pub(crate) const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the stages.
pub(crate) const BATCHES_QUEUED: usize = 4;
/// Most helper threads on one input.
const MAX_HELPERS: usize = 4;
/// The whole-input hash is computed in pieces of this size, a power of two times BLAKE3's
/// 1 KiB chunk, so that each piece is a subtree. An input of `PIPELINE_MIN_BYTES` or more has
/// at least two.
const PIECE_BYTES: usize = 4 << 20;

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

/// A stretch of an input that starts and ends at a cut point (or an end of the input), with
/// the cut points inside it (`cuts`, indices into the input's cut points).
struct Stretch {
    bytes: Range<usize>,
    cuts: Range<usize>,
}

impl Stretch {
    /// The chunks of this stretch of `data` (whose cut points are `cuts`), with their ids.
    fn chunks(&self, params: &ChunkerParams, data: &[u8], cuts: &[u64]) -> Vec<HashedChunk> {
        let mut seg = Segmenter::new(params.clone(), cuts[self.cuts.clone()].to_vec());
        let start = self.bytes.start;
        let ranges: Vec<(usize, usize)> = seg
            .split(&data[self.bytes.clone()], start as u64, true)
            .into_iter()
            .map(|(offset, len)| (start + offset, len))
            .collect();
        hash_chunks(data, &ranges)
    }
}

/// The input `0..len` split at its cut points into stretches of at least `BATCH_BYTES` (the
/// last may be shorter).
fn stretches(cuts: &[u64], len: usize) -> Vec<Stretch> {
    let (mut out, mut start, mut first_cut) = (Vec::new(), 0, 0);
    for (i, &cut) in cuts.iter().enumerate() {
        let cut = cut as usize;
        if cut - start >= BATCH_BYTES {
            out.push(Stretch {
                bytes: start..cut,
                cuts: first_cut..i,
            });
            (start, first_cut) = (cut, i + 1);
        }
    }
    out.push(Stretch {
        bytes: start..len,
        cuts: first_cut..cuts.len(),
    });
    out
}

/// BLAKE3 of `data` from the chaining values of its `PIECE_BYTES` pieces (at least two).
/// Every node of BLAKE3's tree larger than a piece splits at a multiple of the piece size, so
/// the tree above the pieces splits a run of them where BLAKE3 would: after the largest power
/// of two pieces that leaves at least one.
fn hash_of_pieces(pieces: &[ChainingValue]) -> blake3::Hash {
    fn split(pieces: &[ChainingValue]) -> (&[ChainingValue], &[ChainingValue]) {
        pieces.split_at(1 << (pieces.len() - 1).ilog2())
    }
    fn subtree(pieces: &[ChainingValue]) -> ChainingValue {
        if pieces.len() == 1 {
            return pieces[0];
        }
        let (left, right) = split(pieces);
        merge_subtrees_non_root(&subtree(left), &subtree(right), Mode::Hash)
    }
    assert!(pieces.len() >= 2, "an input of one piece is hashed whole");
    let (left, right) = split(pieces);
    merge_subtrees_root(&subtree(left), &subtree(right), Mode::Hash)
}

/// The chaining value of piece `n` of `data`.
fn piece_value(data: &[u8], n: usize) -> ChainingValue {
    let start = n * PIECE_BYTES;
    let end = (start + PIECE_BYTES).min(data.len());
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(start as u64);
    hasher.update(&data[start..end]);
    hasher.finalize_non_root()
}

/// What one helper takes at a time.
#[derive(Clone, Copy)]
enum Work {
    /// Cut, hash and store the chunks of stretch n.
    Stretch(usize),
    /// Hash piece n of the input.
    Piece(usize),
}

/// What one helper hands back.
enum Done {
    Stretch(usize, Vec<ChunkRef>),
    Piece(usize, ChainingValue),
}

impl Engine {
    /// Stores `data` and returns its chunk list. See `normalize_cut_points` for `cut_points`.
    pub fn ingest(&self, data: &[u8], cut_points: &[i64], compress: bool) -> Result<ChunkList> {
        Ok(self.ingest_digest(data, cut_points, compress, false)?.0)
    }

    /// As `ingest`, and with `digest` the BLAKE3 of `data` too, computed by the same threads
    /// (callers need no second pass over the input).
    pub fn ingest_digest(
        &self,
        data: &[u8],
        cut_points: &[i64],
        compress: bool,
        digest: bool,
    ) -> Result<(ChunkList, Option<blake3::Hash>)> {
        let cuts = normalize_cut_points(cut_points, Some(data.len() as u64))?;
        if data.len() < PIPELINE_MIN_BYTES {
            let mut seg = Segmenter::new(self.params().clone(), cuts);
            let batch = hash_chunks(data, &seg.split(data, 0, true));
            self.store_chunks(data, &batch, compress)?;
            let list = ChunkList::from_chunks(chunk_refs(&batch).collect());
            return Ok((list, digest.then(|| blake3::hash(data))));
        }
        let stretches = stretches(&cuts, data.len());
        if stretches.len() < 2 {
            return self.ingest_in_order(data, cuts, compress, digest);
        }
        self.ingest_stretches(data, &cuts, &stretches, compress, digest)
    }

    /// Helpers each take the next stretch or piece (see the module comment).
    fn ingest_stretches(
        &self,
        data: &[u8],
        cuts: &[u64],
        stretches: &[Stretch],
        compress: bool,
        digest: bool,
    ) -> Result<(ChunkList, Option<blake3::Hash>)> {
        let pieces = if digest {
            data.len().div_ceil(PIECE_BYTES)
        } else {
            0
        };
        // Interleaved by where they start, so the helpers read the input from start to end.
        let mut work: Vec<(usize, Work)> = stretches
            .iter()
            .enumerate()
            .map(|(n, s)| (s.bytes.start, Work::Stretch(n)))
            .chain((0..pieces).map(|n| (n * PIECE_BYTES, Work::Piece(n))))
            .collect();
        work.sort_by_key(|&(start, _)| start);
        let helpers = thread::available_parallelism().map_or(2, |n| n.get().min(MAX_HELPERS));
        let next = AtomicUsize::new(0);
        thread::scope(|s| {
            let (tx, rx) = mpsc::channel::<Result<Done>>();
            let mut threads = Vec::new();
            for _ in 0..helpers {
                let (tx, next, work) = (tx.clone(), &next, &work);
                threads.push(s.spawn(move || loop {
                    let Some(&(_, job)) = work.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let done = match job {
                        Work::Stretch(n) => {
                            let batch = stretches[n].chunks(self.params(), data, cuts);
                            self.store_chunks(data, &batch, compress)
                                .map(|()| Done::Stretch(n, chunk_refs(&batch).collect()))
                        }
                        Work::Piece(n) => Ok(Done::Piece(n, piece_value(data, n))),
                    };
                    let failed = done.is_err();
                    if tx.send(done).is_err() || failed {
                        return; // the caller stopped, or this helper's error ends the ingest
                    }
                }));
            }
            drop(tx);
            let mut lists: Vec<Vec<ChunkRef>> = vec![Vec::new(); stretches.len()];
            let mut values = vec![[0u8; 32]; pieces];
            for done in rx {
                // Returning early drops `rx`: each helper stops at its next send.
                match done? {
                    Done::Stretch(n, refs) => lists[n] = refs,
                    Done::Piece(n, value) => values[n] = value,
                }
            }
            for thread in threads {
                thread
                    .join()
                    .map_err(|_| Error::Internal("a chunking thread panicked".into()))?;
            }
            let list = ChunkList::from_chunks(lists.concat());
            Ok((list, digest.then(|| hash_of_pieces(&values))))
        })
    }

    /// One helper cuts and hashes chunks from start to end; the calling thread stores them
    /// and hashes the input, in order.
    fn ingest_in_order(
        &self,
        data: &[u8],
        cuts: Vec<u64>,
        compress: bool,
        digest: bool,
    ) -> Result<(ChunkList, Option<blake3::Hash>)> {
        let mut seg = Segmenter::new(self.params().clone(), cuts);
        let mut file_hash = digest.then(blake3::Hasher::new);
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
                if let Some(hasher) = file_hash.as_mut() {
                    hasher.update(batch_bytes(data, &batch));
                }
                chunks.extend(chunk_refs(&batch));
            }
            producer
                .join()
                .map_err(|_| Error::Internal("the chunking thread panicked".into()))?;
            Ok((
                ChunkList::from_chunks(chunks),
                file_hash.map(|h| h.finalize()),
            ))
        })
    }

    /// Stores the file at `path`. The file is memory-mapped: it must not shrink meanwhile.
    pub fn ingest_file(
        &self,
        path: &Path,
        cut_points: &[i64],
        compress: bool,
    ) -> Result<ChunkList> {
        Ok(self
            .ingest_file_digest(path, cut_points, compress, false)?
            .0)
    }

    /// As `ingest_file`, with the file's BLAKE3 when `digest` (see `ingest_digest`).
    pub fn ingest_file_digest(
        &self,
        path: &Path,
        cut_points: &[i64],
        compress: bool,
        digest: bool,
    ) -> Result<(ChunkList, Option<blake3::Hash>)> {
        let file = File::open(path).at(path)?;
        if file.metadata().at(path)?.len() == 0 {
            return self.ingest_digest(&[], cut_points, compress, digest);
        }
        // SAFETY: the mapping is only read. A file truncated while mapped would fault; callers
        // ingest files they own (staged imports), which nobody else writes.
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        let _ = map.advise(Advice::Sequential); // a hint only
        self.ingest_digest(&map, cut_points, compress, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;

    #[test]
    fn the_hash_of_pieces_is_blake3() {
        let data = noise(9 * PIECE_BYTES + 4096, 31);
        let piece = PIECE_BYTES;
        for len in [
            2 * piece - 1,
            2 * piece,
            2 * piece + 1,
            3 * piece + 1023,
            4 * piece,
            5 * piece + 7,
            8 * piece + 1,
            9 * piece + 4096,
        ] {
            let data = &data[..len];
            let values: Vec<_> = (0..len.div_ceil(piece))
                .map(|n| piece_value(data, n))
                .collect();
            assert_eq!(hash_of_pieces(&values), blake3::hash(data), "length {len}");
        }
    }

    #[test]
    fn stretches_start_and_end_at_cut_points_and_cover_the_input() {
        let cuts = [10, 600_000, 1_100_000, 1_200_000, 3_000_000, 3_000_100];
        let got = stretches(&cuts, 3_500_000);
        let bounds: Vec<_> = got.iter().map(|s| s.bytes.clone()).collect();
        assert_eq!(
            bounds,
            [0..1_100_000, 1_100_000..3_000_000, 3_000_000..3_500_000]
        );
        let inner: Vec<_> = got.iter().map(|s| s.cuts.clone()).collect();
        assert_eq!(inner, [0..2, 3..4, 5..6]);
    }
}
