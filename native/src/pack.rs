//! Pack files: chunks with self-describing headers, named by a BLAKE3 hash: of the whole file
//! in a version 1 pack, of its magic and chunk headers in a version 2 pack (docs/format.md,
//! "Packs").

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::fsio::TempFile;
use crate::hashing::ChunkId;

/// Length of a pack's magic, the same in every version.
pub const PACK_MAGIC_LEN: usize = 8;
/// id (32) + raw length (4) + stored length (4) + codec (1) + reserved (3).
pub const CHUNK_HEADER_LEN: usize = 44;

/// How a pack is named; its magic says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackFormat {
    /// `UDRPACK1`: the BLAKE3 of every byte of the file.
    V1,
    /// `UDRPACK2`: the BLAKE3 of the magic and the chunk headers, in pack order. Each header
    /// holds its chunk's id and each chunk is checked against its id, so the name still
    /// vouches for every byte, and writing a pack hashes 44 bytes a chunk instead of all of it.
    V2,
}

impl PackFormat {
    pub fn version(self) -> u8 {
        match self {
            PackFormat::V1 => 1,
            PackFormat::V2 => 2,
        }
    }

    pub fn from_version(v: u8) -> Option<Self> {
        match v {
            1 => Some(PackFormat::V1),
            2 => Some(PackFormat::V2),
            _ => None,
        }
    }

    fn magic(self) -> &'static [u8; PACK_MAGIC_LEN] {
        match self {
            PackFormat::V1 => b"UDRPACK1",
            PackFormat::V2 => b"UDRPACK2",
        }
    }

    fn of_magic(bytes: &[u8]) -> Option<Self> {
        [PackFormat::V1, PackFormat::V2]
            .into_iter()
            .find(|f| bytes.starts_with(f.magic()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
}

impl Codec {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Where one chunk sits in one pack: what a pack's scan finds and an index fragment records
/// (index.rs builds on it; docs/format.md, "Index fragments").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: ChunkId,
    /// Offset of the stored bytes (after the chunk header) in the pack.
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
}

/// Where the file of pack `id` lives: `packs/xx/<id>.pack`.
pub fn pack_path(packs_dir: &Path, id: &ChunkId) -> PathBuf {
    let hex = id.to_hex();
    packs_dir.join(&hex[..2]).join(format!("{hex}.pack"))
}

fn encode_header(
    id: &ChunkId,
    raw_len: u32,
    stored_len: u32,
    codec: Codec,
) -> [u8; CHUNK_HEADER_LEN] {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    h[..32].copy_from_slice(&id.0);
    h[32..36].copy_from_slice(&raw_len.to_le_bytes());
    h[36..40].copy_from_slice(&stored_len.to_le_bytes());
    h[40] = codec as u8;
    h
}

thread_local! {
    // One zstd context per reading thread instead of one allocation per decoded chunk.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// The raw bytes of a stored chunk, checked against its id. The error says what is wrong;
/// the caller adds which pack and chunk.
pub fn decode_verified<'a>(
    id: &ChunkId,
    raw_len: u32,
    codec: Codec,
    stored: &'a [u8],
) -> std::result::Result<Cow<'a, [u8]>, String> {
    let raw = match codec {
        Codec::Raw => Cow::Borrowed(stored),
        Codec::Zstd => DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
            }
            let d = slot.as_mut().expect("just set");
            let mut out = Vec::with_capacity(raw_len as usize);
            d.decompress_to_buffer(stored, &mut out)
                .map_err(|e| format!("zstd data does not decode ({e})"))?;
            Ok::<_, String>(Cow::Owned(out))
        })?,
    };
    if raw.len() != raw_len as usize {
        return Err(format!(
            "decodes to {} bytes, header says {raw_len}",
            raw.len()
        ));
    }
    if ChunkId::of(&raw) != *id {
        return Err("content does not match its id (hash mismatch)".into());
    }
    Ok(raw)
}

/// A chunk ready to append: header fields and the bytes to store.
pub struct StoredChunk<'a> {
    pub id: ChunkId,
    pub raw_len: u32,
    pub codec: Codec,
    pub bytes: &'a [u8],
}

/// A pack being written under a temporary name in `packs/`.
pub struct PackWriter {
    tmp: TempFile,
    len: u64,
    format: PackFormat,
    // What names the pack, hashed as it is written, so closing the pack needs no second read.
    hasher: blake3::Hasher,
    entries: Vec<IndexEntry>,
}

/// Why an append failed, and whether the pack is still intact (cut back to its old length).
pub struct AppendError {
    pub error: Error,
    pub pack_intact: bool,
}

impl PackWriter {
    pub fn create(packs_dir: &Path, format: PackFormat) -> Result<Self> {
        let tmp = TempFile::create_in(packs_dir)?;
        (&**tmp.file()).write_all(format.magic()).at(tmp.path())?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(format.magic());
        Ok(PackWriter {
            tmp,
            len: PACK_MAGIC_LEN as u64,
            format,
            hasher,
            entries: Vec::new(),
        })
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.len
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub fn chunk_count(&self) -> usize {
        self.entries.len()
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn file(&self) -> &Arc<File> {
        self.tmp.file()
    }

    /// Appends `chunks` with one vectored write (no copy of the chunk bytes) and returns their
    /// index entries. On failure the file is cut back to its previous length, so that chunks
    /// appended earlier stay readable; `pack_intact` is false if even that failed.
    pub fn append(
        &mut self,
        chunks: &[StoredChunk<'_>],
    ) -> std::result::Result<&[IndexEntry], AppendError> {
        let headers: Vec<_> = chunks
            .iter()
            .map(|c| encode_header(&c.id, c.raw_len, c.bytes.len() as u32, c.codec))
            .collect();
        // A version 1 pack hashes its bytes before the copy into the page cache, which finds
        // them in cache; the old hasher is kept to undo a failed write.
        let before = self.hasher.clone();
        for (h, c) in headers.iter().zip(chunks) {
            self.hasher.update(h);
            if self.format == PackFormat::V1 {
                self.hasher.update(c.bytes);
            }
        }
        let mut slices: Vec<IoSlice<'_>> = headers
            .iter()
            .zip(chunks)
            .flat_map(|(h, c)| [IoSlice::new(h), IoSlice::new(c.bytes)])
            .collect();
        if let Err(e) = write_all_vectored(self.tmp.file(), &mut slices) {
            self.hasher = before;
            let pack_intact = self.truncate_to_len().is_ok();
            return Err(AppendError {
                error: Error::io_at(e, self.tmp.path()),
                pack_intact,
            });
        }
        let first = self.entries.len();
        for c in chunks {
            self.entries.push(IndexEntry {
                id: c.id,
                offset: self.len + CHUNK_HEADER_LEN as u64,
                stored_len: c.bytes.len() as u32,
                raw_len: c.raw_len,
                codec: c.codec,
            });
            self.len += (CHUNK_HEADER_LEN + c.bytes.len()) as u64;
        }
        Ok(&self.entries[first..])
    }

    fn truncate_to_len(&self) -> io::Result<()> {
        let f = &**self.tmp.file();
        f.set_len(self.len)?;
        (&*f).seek(SeekFrom::Start(self.len)).map(drop)
    }

    /// The id the pack would have if it were sealed now.
    pub fn current_id(&self) -> ChunkId {
        self.hasher.finalize().into()
    }

    /// Ends writing: the pack's id is now known. It still has its temporary name.
    pub fn seal(self) -> SealedPack {
        SealedPack {
            id: self.hasher.finalize().into(),
            tmp: self.tmp,
            entries: self.entries,
        }
    }
}

fn write_all_vectored(file: &File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut w = file;
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A complete pack under its temporary name, waiting for `flush` to make it durable.
pub struct SealedPack {
    pub id: ChunkId,
    pub tmp: TempFile,
    pub entries: Vec<IndexEntry>,
}

/// Reads a whole pack, checks every chunk and the pack's own name, and returns its index
/// entries in pack order.
pub fn scan_pack(path: &Path, expected: &ChunkId) -> Result<Vec<IndexEntry>> {
    let bytes = std::fs::read(path).at(path)?;
    Ok(check_pack(&bytes, expected, &path.display().to_string())?.1)
}

/// Checks the bytes of a pack (every chunk, and the pack's name `expected`) and returns its
/// format and index entries in pack order; errors name the pack `label`.
pub fn check_pack(
    bytes: &[u8],
    expected: &ChunkId,
    label: &str,
) -> Result<(PackFormat, Vec<IndexEntry>)> {
    let corrupt = |what: String| Error::Corrupt(format!("pack {label}: {what}"));
    let Some(format) = PackFormat::of_magic(bytes) else {
        return Err(corrupt("not a pack file (bad magic)".into()));
    };
    let mut name = blake3::Hasher::new();
    name.update(format.magic());
    let mut entries = Vec::new();
    let mut pos = PACK_MAGIC_LEN;
    while pos < bytes.len() {
        let Some(h) = bytes.get(pos..pos + CHUNK_HEADER_LEN) else {
            return Err(corrupt(format!("truncated chunk header at offset {pos}")));
        };
        let id = ChunkId(h[..32].try_into().expect("32 bytes"));
        let raw_len = u32::from_le_bytes(h[32..36].try_into().expect("4 bytes"));
        let stored_len = u32::from_le_bytes(h[36..40].try_into().expect("4 bytes"));
        let codec = Codec::from_u8(h[40])
            .filter(|_| h[41..44] == [0, 0, 0])
            .ok_or_else(|| corrupt(format!("bad chunk header at offset {pos}")))?;
        let start = pos + CHUNK_HEADER_LEN;
        let Some(stored) = bytes.get(start..start + stored_len as usize) else {
            return Err(corrupt(format!(
                "truncated: chunk {id:?} at offset {start} needs {stored_len} bytes"
            )));
        };
        decode_verified(&id, raw_len, codec, stored)
            .map_err(|why| corrupt(format!("chunk {id:?} at offset {start}: {why}")))?;
        name.update(h);
        if format == PackFormat::V1 {
            name.update(stored);
        }
        entries.push(IndexEntry {
            id,
            offset: start as u64,
            stored_len,
            raw_len,
            codec,
        });
        pos = start + stored_len as usize;
    }
    if ChunkId::from(name.finalize()) != *expected {
        return Err(corrupt(
            "content does not match the pack's name (hash mismatch)".into(),
        ));
    }
    Ok((format, entries))
}
