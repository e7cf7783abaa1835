//! Content hashes (BLAKE3 ids, docs/format.md "Chunks") and the stable 64-bit key hash.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// A BLAKE3-256 digest naming a chunk or a pack.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn of(data: &[u8]) -> Self {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parses 64 hex digits (either case); `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(ChunkId(out))
    }

    /// Like `from_hex`, with an error that names what was expected.
    pub fn parse(s: &str, what: &str) -> Result<Self> {
        Self::from_hex(s)
            .ok_or_else(|| Error::Invalid(format!("{what} must be 64 hex digits, got {s:?}")))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<blake3::Hash> for ChunkId {
    fn from(h: blake3::Hash) -> Self {
        ChunkId(*h.as_bytes())
    }
}

// Ids are already uniformly random, so the first 8 bytes are a perfect table hash: re-hashing
// all 32 bytes with SipHash would only cost time on every lookup.
impl Hash for ChunkId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// The hasher behind `IdMap`/`IdSet`: passes a `ChunkId`'s prefix through unchanged.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than `ChunkId`; any decent mix will do.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type IdMap<V> = HashMap<ChunkId, V, BuildHasherDefault<IdHasher>>;
pub type IdSet = HashSet<ChunkId, BuildHasherDefault<IdHasher>>;

const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// BLAKE3 of a whole file. Large files are memory-mapped, small or special ones read.
pub fn blake3_file(path: &Path) -> Result<ChunkId> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path).at(path)?;
    Ok(hasher.finalize().into())
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The key hash used to anchor Parquet row-group boundaries on key content.
///
/// Defined once and never to change (files written by one release must cut where the next
/// release cuts): FNV-1a 64 over the bytes, then the splitmix64 finalizer so that every input
/// bit reaches every output bit. Test vectors (pinned by a test):
/// `key_hash64(b"") == 0xf52a_15e9_a9b5_e89b`, `key_hash64(b"udr-fs") == 0x8939_a31b_fdf1_2543`.
pub fn key_hash64(value: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in value {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    splitmix64_finalize(h)
}

fn splitmix64_finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Number of values described by an Arrow `large_binary` offsets buffer, after checking it.
pub fn binary_value_count(offsets: &[u8], data_len: usize) -> Result<usize> {
    if !offsets.len().is_multiple_of(8) || offsets.is_empty() {
        return Err(Error::Invalid(format!(
            "offsets must hold n+1 int64 values, got {} bytes",
            offsets.len()
        )));
    }
    let mut prev = 0i64;
    for (i, raw) in offsets.chunks_exact(8).enumerate() {
        let off = i64::from_le_bytes(raw.try_into().expect("8-byte chunk"));
        if off < prev || off as u64 > data_len as u64 {
            return Err(Error::Invalid(format!(
                "offset {i} = {off} is decreasing or past the {data_len} data bytes"
            )));
        }
        prev = off;
    }
    Ok(offsets.len() / 8 - 1)
}

/// `key_hash64` of each value of an Arrow `large_binary` array, written as u64 little-endian
/// into `out` (8 bytes per value). Call `binary_value_count` first to size `out`.
pub fn hash_binary_into(offsets: &[u8], data: &[u8], out: &mut [u8]) {
    let offs = offsets
        .chunks_exact(8)
        .map(|raw| i64::from_le_bytes(raw.try_into().expect("8-byte chunk")) as usize);
    let pairs = offs.clone().zip(offs.skip(1));
    for ((start, end), dst) in pairs.zip(out.chunks_exact_mut(8)) {
        dst.copy_from_slice(&key_hash64(&data[start..end]).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ChunkId::of(b"abc");
        assert_eq!(ChunkId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(ChunkId::from_hex(&id.to_hex().to_uppercase()), Some(id));
        assert_eq!(ChunkId::from_hex("zz"), None);
        assert_eq!(
            id.to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn key_hash_is_pinned() {
        // These values are part of the format: changing them moves every row-group boundary.
        assert_eq!(key_hash64(b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(key_hash64(b"a"), 0x02c0_bdbf_4814_20f8);
        assert_eq!(key_hash64(b"udr-fs"), 0x8939_a31b_fdf1_2543);
    }

    #[test]
    fn hash_binary_matches_per_value_hash() {
        let data = b"applebanana";
        let offsets: Vec<u8> = [0i64, 5, 5, 11]
            .iter()
            .flat_map(|o| o.to_le_bytes())
            .collect();
        let n = binary_value_count(&offsets, data.len()).unwrap();
        assert_eq!(n, 3);
        let mut out = vec![0u8; n * 8];
        hash_binary_into(&offsets, data, &mut out);
        let got: Vec<u64> = out
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![key_hash64(b"apple"), key_hash64(b""), key_hash64(b"banana")]
        );
    }

    #[test]
    fn hash_binary_rejects_bad_offsets() {
        let offsets: Vec<u8> = [0i64, 7].iter().flat_map(|o| o.to_le_bytes()).collect();
        assert!(binary_value_count(&offsets, 5).is_err());
        let offsets: Vec<u8> = [3i64, 1].iter().flat_map(|o| o.to_le_bytes()).collect();
        assert!(binary_value_count(&offsets, 5).is_err());
        assert!(binary_value_count(&[0u8; 7], 5).is_err());
    }
}
