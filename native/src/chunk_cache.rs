//! A bounded LRU of verified chunk bytes (decoded, hash checked when they were read from the
//! pack). Small reads inside one chunk, and a sequential reader behind the read-ahead, are
//! served from it without reading and hashing the chunk again. Everything not in it is read
//! from its pack and verified on every read (docs/mount.md, "Reads").

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::hashing::{ChunkId, IdMap};

pub struct ChunkCache {
    capacity: usize,
    used: usize,
    clock: u64,
    entries: IdMap<(Arc<Vec<u8>>, u64)>,
    // last use -> id; the first entry is the least recently used.
    by_age: BTreeMap<u64, ChunkId>,
}

impl ChunkCache {
    pub fn new(capacity: usize) -> Self {
        ChunkCache {
            capacity,
            used: 0,
            clock: 0,
            entries: IdMap::default(),
            by_age: BTreeMap::new(),
        }
    }

    /// The most bytes of chunk data it holds at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.entries.contains_key(id)
    }

    pub fn get(&mut self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        let (data, age) = self.entries.get_mut(id)?;
        self.by_age.remove(age);
        self.clock += 1;
        *age = self.clock;
        self.by_age.insert(self.clock, *id);
        Some(Arc::clone(data))
    }

    pub fn remove(&mut self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        let (data, age) = self.entries.remove(id)?;
        self.by_age.remove(&age);
        self.used -= weight(&data);
        Some(data)
    }

    /// Only for bytes whose id has been checked: the cache is trusted on later reads.
    /// Returns the entries it evicted to make room (their buffers can be reused).
    pub fn insert(&mut self, id: ChunkId, data: Arc<Vec<u8>>) -> Vec<(ChunkId, Arc<Vec<u8>>)> {
        let mut evicted = Vec::new();
        if weight(&data) > self.capacity || self.entries.contains_key(&id) {
            return evicted;
        }
        self.clock += 1;
        self.used += weight(&data);
        self.entries.insert(id, (data, self.clock));
        self.by_age.insert(self.clock, id);
        while self.used > self.capacity {
            let Some((_, old)) = self.by_age.pop_first() else {
                break;
            };
            if let Some((d, _)) = self.entries.remove(&old) {
                self.used -= weight(&d);
                evicted.push((old, d));
            }
        }
        evicted
    }
}

/// The memory an entry holds: its buffer's capacity, which a reused buffer may make larger
/// than the chunk.
fn weight(data: &Arc<Vec<u8>>) -> usize {
    data.capacity()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut c = ChunkCache::new(30);
        let ids: Vec<_> = (0u8..3).map(|i| ChunkId::of(&[i])).collect();
        for id in &ids {
            c.insert(*id, Arc::new(vec![0; 10]));
        }
        assert!(c.get(&ids[0]).is_some()); // now ids[1] is the oldest
        c.insert(ChunkId::of(b"new"), Arc::new(vec![0; 10]));
        assert!(c.get(&ids[1]).is_none());
        assert!(c.get(&ids[0]).is_some());
        assert!(c.get(&ids[2]).is_some());
    }

    #[test]
    fn an_entry_weighs_its_buffer_not_its_length() {
        let mut c = ChunkCache::new(1000);
        let mut big = Vec::with_capacity(600);
        big.extend_from_slice(&[1; 10]);
        c.insert(ChunkId::of(b"a"), Arc::new(big));
        let evicted = c.insert(ChunkId::of(b"b"), Arc::new(Vec::with_capacity(600)));
        assert_eq!(
            evicted.len(),
            1,
            "600 + 600 bytes held is past a bound of 1000"
        );
    }

    #[test]
    fn a_removed_entry_frees_its_room() {
        let mut c = ChunkCache::new(20);
        let (a, b, d) = (ChunkId::of(b"a"), ChunkId::of(b"b"), ChunkId::of(b"d"));
        c.insert(a, Arc::new(vec![0; 10]));
        c.insert(b, Arc::new(vec![0; 10]));
        assert_eq!(c.remove(&a).map(|v| v.len()), Some(10));
        assert!(c.insert(d, Arc::new(vec![0; 10])).is_empty());
        assert!(c.get(&b).is_some() && c.get(&d).is_some() && c.get(&a).is_none());
    }
}
