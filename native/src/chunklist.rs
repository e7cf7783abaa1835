//! A file's chunk list: (chunk id, raw length) per chunk, 36 bytes each (docs/format.md, "Chunks").

use crate::error::{Error, Result};
use crate::hashing::ChunkId;

pub const CHUNK_LIST_ENTRY_LEN: usize = 36;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// The chunks of one file, with their end offsets precomputed so a range read finds its first
/// chunk by binary search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkList {
    chunks: Vec<ChunkRef>,
    ends: Vec<u64>,
}

impl ChunkList {
    pub fn from_chunks(chunks: Vec<ChunkRef>) -> Self {
        let ends = chunks
            .iter()
            .scan(0u64, |end, c| {
                *end += u64::from(c.len);
                Some(*end)
            })
            .collect();
        ChunkList { chunks, ends }
    }

    pub fn from_bytes(blob: &[u8]) -> Result<Self> {
        if !blob.len().is_multiple_of(CHUNK_LIST_ENTRY_LEN) {
            return Err(Error::Invalid(format!(
                "a chunk list is {CHUNK_LIST_ENTRY_LEN} bytes per chunk, got {} bytes",
                blob.len()
            )));
        }
        let chunks = blob
            .chunks_exact(CHUNK_LIST_ENTRY_LEN)
            .map(|e| ChunkRef {
                id: ChunkId(e[..32].try_into().expect("32 bytes")),
                len: u32::from_le_bytes(e[32..].try_into().expect("4 bytes")),
            })
            .collect::<Vec<_>>();
        if let Some(i) = chunks.iter().position(|c| c.len == 0) {
            return Err(Error::Invalid(format!(
                "chunk {i} of the chunk list is empty"
            )));
        }
        Ok(Self::from_chunks(chunks))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.chunks.len() * CHUNK_LIST_ENTRY_LEN);
        for c in &self.chunks {
            out.extend_from_slice(&c.id.0);
            out.extend_from_slice(&c.len.to_le_bytes());
        }
        out
    }

    pub fn chunks(&self) -> &[ChunkRef] {
        &self.chunks
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Total raw bytes: the file size.
    pub fn size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The chunk holding byte `offset` and that chunk's start offset; `None` past the end.
    pub fn locate(&self, offset: u64) -> Option<(usize, u64)> {
        let i = self.ends.partition_point(|&end| end <= offset);
        (i < self.chunks.len()).then(|| (i, self.ends[i] - u64::from(self.chunks[i].len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(lens: &[u32]) -> ChunkList {
        ChunkList::from_chunks(
            lens.iter()
                .map(|&len| ChunkRef {
                    id: ChunkId::of(&len.to_le_bytes()),
                    len,
                })
                .collect(),
        )
    }

    #[test]
    fn bytes_round_trip() {
        let l = list(&[5, 7, 9]);
        let blob = l.to_bytes();
        assert_eq!(blob.len(), 3 * CHUNK_LIST_ENTRY_LEN);
        assert_eq!(ChunkList::from_bytes(&blob).unwrap(), l);
        assert!(ChunkList::from_bytes(&blob[1..]).is_err());
    }

    #[test]
    fn locate_finds_the_chunk_holding_an_offset() {
        let l = list(&[5, 7, 9]);
        assert_eq!(l.size(), 21);
        assert_eq!(l.locate(0), Some((0, 0)));
        assert_eq!(l.locate(4), Some((0, 0)));
        assert_eq!(l.locate(5), Some((1, 5)));
        assert_eq!(l.locate(20), Some((2, 12)));
        assert_eq!(l.locate(21), None);
        assert_eq!(list(&[]).locate(0), None);
    }
}
