//! Content-defined chunking: FastCDC 2020, normalisation level 1, between cut points
//! (docs/format.md, "Chunks").

use fastcdc::v2020;

use crate::chunklist::{ChunkList, ChunkRef};
use crate::error::{Error, Result};
use crate::hashing::ChunkId;

/// A store's chunk sizes, checked once, with the FastCDC masks derived from them.
#[derive(Clone, Debug)]
pub struct ChunkerParams {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl ChunkerParams {
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self> {
        let in_range = (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min)
            && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg)
            && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max);
        if !in_range || min > avg || avg > max {
            return Err(Error::Invalid(format!(
                "chunk sizes min={min} avg={avg} max={max} are not usable: need min <= avg <= max, \
                 min in [{}, {}], avg in [{}, {}], max in [{}, {}]",
                v2020::MINIMUM_MIN,
                v2020::MINIMUM_MAX,
                v2020::AVERAGE_MIN,
                v2020::AVERAGE_MAX,
                v2020::MAXIMUM_MIN,
                v2020::MAXIMUM_MAX
            )));
        }
        // Same derivation as `v2020::FastCDC::with_level(.., Normalization::Level1)`, done once
        // here so that cutting needs no per-call setup.
        let bits = v2020::logarithm2(avg);
        let level = v2020::Normalization::Level1.bits();
        Ok(ChunkerParams {
            min: min as usize,
            avg: avg as usize,
            max: max as usize,
            mask_s: v2020::MASKS[(bits + level) as usize],
            mask_l: v2020::MASKS[(bits - level) as usize],
        })
    }

    pub fn avg(&self) -> usize {
        self.avg
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Length of the chunk that starts at `window[0]`, where `window` ends at the end of its
    /// segment or is at least `max` bytes long (FastCDC never looks further than `max`).
    fn cut(&self, window: &[u8]) -> usize {
        let (_, len) = v2020::cut(
            window,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len
    }
}

/// Checks caller-supplied cut points: sorted (duplicates allowed); those outside (0, size) are
/// dropped, since a cut at either end of the data is a no-op.
pub fn normalize_cut_points(points: &[i64], size: Option<u64>) -> Result<Vec<u64>> {
    if let Some(w) = points.windows(2).find(|w| w[0] > w[1]) {
        return Err(Error::Invalid(format!(
            "cut points must be sorted, found {} before {}",
            w[0], w[1]
        )));
    }
    let mut out: Vec<u64> = points
        .iter()
        .filter(|&&p| p > 0 && size.is_none_or(|s| (p as u64) < s))
        .map(|&p| p as u64)
        .collect();
    out.dedup();
    Ok(out)
}

/// Cuts a byte sequence that may arrive piece by piece. A chunk is only reported once no
/// later byte could move its end: the next cut point is in view, `max` bytes are in view, or
/// the data has ended. Fed all at once or in pieces, the same data gives the same chunks.
pub struct Segmenter {
    params: ChunkerParams,
    cut_points: Vec<u64>,
    next_cut: usize,
}

impl Segmenter {
    /// `cut_points` must come from `normalize_cut_points`.
    pub fn new(params: ChunkerParams, cut_points: Vec<u64>) -> Self {
        Segmenter {
            params,
            cut_points,
            next_cut: 0,
        }
    }

    /// Length of the chunk starting at `data[0]`, whose absolute offset is `base`, or `None`
    /// if more data is needed to decide. `eof` says `data` runs to the end of the input.
    pub fn next_len(&mut self, data: &[u8], base: u64, eof: bool) -> Option<usize> {
        if data.is_empty() {
            return None;
        }
        while self
            .cut_points
            .get(self.next_cut)
            .is_some_and(|&c| c <= base)
        {
            self.next_cut += 1;
        }
        let to_cut = self.cut_points.get(self.next_cut).map(|&c| c - base);
        let (window, segment_ends) = match to_cut {
            Some(n) if n <= data.len() as u64 => (&data[..n as usize], true),
            _ => (data, eof),
        };
        if !segment_ends && window.len() < self.params.max {
            return None;
        }
        Some(self.params.cut(window))
    }

    /// Every chunk of `data` that is final, as (offset in `data`, length).
    pub fn split(&mut self, data: &[u8], base: u64, eof: bool) -> Vec<(usize, usize)> {
        let mut out = Vec::with_capacity(data.len() / self.params.avg + 1);
        let mut pos = 0;
        while let Some(len) = self.next_len(&data[pos..], base + pos as u64, eof) {
            out.push((pos, len));
            pos += len;
        }
        out
    }
}

/// Chunks and hashes `data` on the calling thread without storing anything.
pub fn chunk_list_of(params: &ChunkerParams, data: &[u8], cut_points: Vec<u64>) -> ChunkList {
    let mut seg = Segmenter::new(params.clone(), cut_points);
    let chunks = seg
        .split(data, 0, true)
        .into_iter()
        .map(|(start, len)| ChunkRef {
            id: ChunkId::of(&data[start..start + len]),
            len: len as u32,
        })
        .collect();
    ChunkList::from_chunks(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;

    fn params() -> ChunkerParams {
        ChunkerParams::new(4096, 16384, 65536).unwrap()
    }

    fn lens(v: &[(usize, usize)]) -> Vec<usize> {
        v.iter().map(|c| c.1).collect()
    }

    #[test]
    fn matches_the_fastcdc_crate() {
        let data = noise(3 << 20, 1);
        let ours = Segmenter::new(params(), vec![]).split(&data, 0, true);
        let theirs: Vec<(usize, usize)> =
            v2020::FastCDC::with_level(&data, 4096, 16384, 65536, v2020::Normalization::Level1)
                .map(|c| (c.offset, c.length))
                .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_chunk_ends_at_every_cut_point() {
        let data = noise(1 << 20, 2);
        let cuts =
            normalize_cut_points(&[0, 100, 5000, 5001, 700_000, 1 << 20], Some(1 << 20)).unwrap();
        assert_eq!(cuts, vec![100, 5000, 5001, 700_000]);
        let chunks = Segmenter::new(params(), cuts.clone()).split(&data, 0, true);
        let ends: Vec<u64> = chunks.iter().map(|&(s, l)| (s + l) as u64).collect();
        for c in cuts {
            assert!(ends.contains(&c), "no chunk ends at {c}");
        }
        assert_eq!(*ends.last().unwrap(), 1 << 20);
        assert!(chunks.iter().all(|&(_, l)| l <= 65536));
    }

    #[test]
    fn unsorted_cut_points_are_refused() {
        assert!(normalize_cut_points(&[10, 5], None).is_err());
    }

    #[test]
    fn pieces_give_the_same_chunks_as_the_whole() {
        let data = noise(2 << 20, 3);
        let whole = Segmenter::new(params(), vec![]).split(&data, 0, true);
        let mut seg = Segmenter::new(params(), vec![]);
        let (mut buf, mut base, mut got) = (Vec::new(), 0u64, Vec::new());
        for piece in data.chunks(12_345) {
            buf.extend_from_slice(piece);
            let mut used = 0;
            for (s, l) in seg.split(&buf, base, false) {
                got.push((base as usize + s, l));
                used = s + l;
            }
            assert!(buf.len() - used < 65536, "keeps less than max buffered");
            buf.drain(..used);
            base += used as u64;
        }
        for (s, l) in seg.split(&buf, base, true) {
            got.push((base as usize + s, l));
        }
        assert_eq!(lens(&got), lens(&whole));
        assert_eq!(got, whole);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(ChunkerParams::new(16384, 8192, 65536).is_err());
        assert!(ChunkerParams::new(1, 8192, 65536).is_err());
    }
}
