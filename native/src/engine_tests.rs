//! Behaviour of the whole engine on a real directory: what the Python layer relies on.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::chunker::normalize_cut_points;
use crate::chunklist::ChunkList;
use crate::engine::Engine;
use crate::error::Error;
use crate::hashing::ChunkId;
use crate::index::fragment_path;
use crate::pack::{pack_path, PackFormat, CHUNK_HEADER_LEN, PACK_MAGIC_LEN};
use crate::stream::ChunkStream;
use crate::testutil::{noise, TempDir};

const MIN: u32 = 1024;
const AVG: u32 = 4096;
const MAX: u32 = 16384;

fn open(root: &Path, pack_target: u64) -> Engine {
    open_writing(root, pack_target, PackFormat::V2)
}

fn open_writing(root: &Path, pack_target: u64, format: PackFormat) -> Engine {
    Engine::open(root, MIN, AVG, MAX, pack_target, format).unwrap()
}

fn read_all(e: &Engine, list: &ChunkList) -> crate::error::Result<Vec<u8>> {
    let mut out = vec![0u8; list.size() as usize];
    let n = e.read_into(list, 0, &mut out)?;
    assert_eq!(n, out.len());
    Ok(out)
}

/// Files under `dir` (recursively), as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn only_pack(root: &Path) -> (ChunkId, PathBuf) {
    let packs: Vec<_> = files_under(&root.join("packs"))
        .into_iter()
        .filter(|p| p.ends_with(".pack"))
        .collect();
    assert_eq!(packs.len(), 1, "{packs:?}");
    let name = Path::new(&packs[0]).file_stem().unwrap().to_str().unwrap();
    (
        ChunkId::from_hex(name).unwrap(),
        root.join("packs").join(&packs[0]),
    )
}

#[test]
fn round_trip_through_packs_and_a_fresh_engine() {
    let dir = TempDir::new("roundtrip");
    let data = noise(3 << 20, 1);
    let list = {
        let e = open(&dir.0, 256 << 10);
        let list = e.ingest(&data, &[], false).unwrap();
        assert_eq!(list.size(), data.len() as u64);
        let ids = e.flush().unwrap();
        assert!(ids.len() > 5, "pack_target splits the data into many packs");
        list
    };
    let e = open(&dir.0, 256 << 10);
    assert_eq!(read_all(&e, &list).unwrap(), data);
    for &(off, len) in &[(0u64, 1usize), (4095, 3), (1 << 20, 70_000), (3 << 20, 10)] {
        let mut buf = vec![0u8; len];
        let n = e.read_into(&list, off, &mut buf).unwrap();
        let end = (off as usize + len).min(data.len());
        assert_eq!(&buf[..n], &data[off as usize..end]);
    }
    assert_eq!(e.read_into(&list, 10 << 20, &mut [0u8; 4]).unwrap(), 0);
    let s = e.stats();
    assert_eq!(s.raw_bytes, data.len() as u64);
    assert_eq!(s.chunks, list.len() as u64);
}

#[test]
fn the_pipeline_and_the_single_thread_path_agree() {
    let dir = TempDir::new("pipeline");
    let e = open(&dir.0, 32 << 20);
    let data = noise(20 << 20, 2); // above the pipeline threshold
    let big = e.ingest(&data, &[5_000_000], false).unwrap();
    let small: Vec<_> = data
        .chunks(5_000_000)
        .flat_map(|part| e.ingest(part, &[], false).unwrap().chunks().to_vec())
        .collect();
    // The first 5 MB end at the cut point either way.
    let n = small
        .iter()
        .scan(0u64, |end, c| {
            *end += u64::from(c.len);
            Some(*end)
        })
        .position(|end| end == 5_000_000)
        .unwrap();
    assert_eq!(&big.chunks()[..=n], &small[..=n]);
    assert_eq!(read_all(&e, &big).unwrap(), data);
}

#[test]
fn an_input_cut_by_several_threads_gives_one_threads_chunks_in_order() {
    let dir = TempDir::new("cutters");
    let e = open(&dir.0, 4 << 20);
    let data = noise(24 << 20, 21);
    // Cut points as a Parquet file's column chunks give them: uneven, some close together.
    let mut cuts = Vec::new();
    let mut at = 0i64;
    for i in 0..400i64 {
        at += 1_000 + (i * 7_919) % 120_000;
        cuts.push(at);
    }
    let whole = crate::chunker::chunk_list_of(
        e.params(),
        &data,
        normalize_cut_points(&cuts, Some(data.len() as u64)).unwrap(),
    );
    let (stored, digest) = e.ingest_digest(&data, &cuts, false, true).unwrap();
    assert_eq!(stored.chunks(), whole.chunks());
    assert_eq!(digest, Some(blake3::hash(&data)));
    // Stored again, nothing is new; stored without cut points, the same bytes read back.
    let before = (e.stats().chunks, e.stats().pending_bytes);
    assert_eq!(
        e.ingest(&data, &cuts, false).unwrap().chunks(),
        whole.chunks()
    );
    assert_eq!((e.stats().chunks, e.stats().pending_bytes), before);
    let (plain, plain_digest) = e.ingest_digest(&data, &[], false, true).unwrap();
    assert_eq!(plain_digest, digest);
    e.flush().unwrap();
    let reopened = open(&dir.0, 4 << 20);
    assert_eq!(read_all(&reopened, &stored).unwrap(), data);
    assert_eq!(read_all(&reopened, &plain).unwrap(), data);
}

#[test]
fn unflushed_chunks_are_readable_and_leave_only_temp_files() {
    let dir = TempDir::new("unflushed");
    let data = noise(200_000, 3);
    {
        let e = open(&dir.0, 32 << 20);
        let list = e.ingest(&data, &[], false).unwrap();
        assert_eq!(read_all(&e, &list).unwrap(), data);
        let packs = files_under(&dir.0.join("packs"));
        assert!(packs.iter().all(|p| p.starts_with(".tmp-")), "{packs:?}");
        assert!(files_under(&dir.0.join("index")).is_empty());
        assert_eq!(e.stats().pending_chunks, list.len() as u64);
    }
    // Dropping the engine without flush removes its temp pack.
    assert!(files_under(&dir.0.join("packs")).is_empty());
}

#[test]
fn the_same_data_twice_adds_no_pack_bytes() {
    let dir = TempDir::new("dedup");
    let e = open(&dir.0, 32 << 20);
    let data = noise(1 << 20, 4);
    let a = e.ingest(&data, &[], false).unwrap();
    assert_eq!(e.flush().unwrap().len(), 1);
    let before = e.stats();
    let b = e.ingest(&data, &[], false).unwrap();
    assert_eq!(a, b);
    assert!(e.flush().unwrap().is_empty());
    assert_eq!(e.stats(), before);
    // Repeated content inside one input is stored once too.
    let mut twice = data.clone();
    twice.extend_from_slice(&data);
    e.ingest(&twice, &[data.len() as i64], false).unwrap();
    assert!(e.flush().unwrap().is_empty());
}

#[test]
fn chunks_end_at_cut_points() {
    let dir = TempDir::new("cuts");
    let e = open(&dir.0, 32 << 20);
    let data = noise(300_000, 5);
    let cuts = [-5, 0, 10, 4097, 150_000, 299_999, 300_000, 400_000];
    let list = e.ingest(&data, &cuts, false).unwrap();
    let ends: Vec<u64> = list
        .chunks()
        .iter()
        .scan(0u64, |end, c| {
            *end += u64::from(c.len);
            Some(*end)
        })
        .collect();
    for c in [10, 4097, 150_000, 299_999] {
        assert!(ends.contains(&c), "no chunk ends at {c}");
    }
    assert!(matches!(
        e.ingest(&data, &[5, 3], false),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn compressed_chunks_round_trip() {
    let dir = TempDir::new("zstd");
    let e = open(&dir.0, 32 << 20);
    let text: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("{i},{}\n", i % 97).into_bytes())
        .collect();
    let list = e.ingest(&text, &[], true).unwrap();
    e.flush().unwrap();
    let s = e.stats();
    assert!(s.stored_bytes * 2 < s.raw_bytes, "{s:?}");
    let fresh = open(&dir.0, 32 << 20);
    assert_eq!(read_all(&fresh, &list).unwrap(), text);
    let mut small = [0u8; 100];
    fresh.read_into(&list, 123_456, &mut small).unwrap();
    assert_eq!(&small[..], &text[123_456..123_556]);
}

#[test]
fn a_corrupt_byte_is_an_error_never_wrong_bytes() {
    let dir = TempDir::new("corrupt");
    let data = noise(100_000, 6);
    let list = {
        let e = open(&dir.0, 32 << 20);
        let list = e.ingest(&data, &[], false).unwrap();
        e.flush().unwrap();
        list
    };
    let (pack_id, path) = only_pack(&dir.0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[60_000] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let e = open(&dir.0, 32 << 20);
    let err = read_all(&e, &list).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains(&pack_id.to_hex())),
        "{err}"
    );
    // Partial reads of the damaged chunk fail too.
    let mut buf = [0u8; 10];
    assert!(matches!(
        e.read_into(&list, 59_990, &mut buf),
        Err(Error::Corrupt(_))
    ));
    assert!(matches!(e.verify_pack(&pack_id), Err(Error::Corrupt(_))));
    assert!(matches!(e.rebuild_index(&pack_id), Err(Error::Corrupt(_))));
}

/// The (offset, length) of each chunk record (header and stored bytes) of a pack file.
fn records(pack: &[u8]) -> Vec<(usize, usize)> {
    let (mut out, mut pos) = (Vec::new(), PACK_MAGIC_LEN);
    while pos < pack.len() {
        let stored = u32::from_le_bytes(pack[pos + 36..pos + 40].try_into().unwrap()) as usize;
        out.push((pos, CHUNK_HEADER_LEN + stored));
        pos += CHUNK_HEADER_LEN + stored;
    }
    out
}

#[test]
fn packs_of_both_versions_are_read_and_verified_by_one_engine() {
    let dir = TempDir::new("versions");
    let (old, new) = (noise(200_000, 11), noise(200_000, 12));
    let old_list = {
        let e = open_writing(&dir.0, 32 << 20, PackFormat::V1);
        let list = e.ingest(&old, &[], false).unwrap();
        e.flush().unwrap();
        list
    };
    let (v1_id, v1_path) = only_pack(&dir.0);
    let v1_bytes = fs::read(&v1_path).unwrap();
    assert!(v1_bytes.starts_with(b"UDRPACK1"));
    assert_eq!(
        ChunkId::of(&v1_bytes),
        v1_id,
        "a version 1 pack is named by its bytes"
    );

    // The store upgraded: the same engine code now writes version 2 packs beside the old.
    let e = open_writing(&dir.0, 32 << 20, PackFormat::V2);
    let new_list = e.ingest(&new, &[], false).unwrap();
    let ids = e.flush().unwrap();
    assert_eq!(ids.len(), 1);
    let v2_bytes = fs::read(pack_path(&dir.0.join("packs"), &ids[0])).unwrap();
    assert!(v2_bytes.starts_with(b"UDRPACK2"));
    let mut headers = blake3::Hasher::new();
    headers.update(b"UDRPACK2");
    for (start, _) in records(&v2_bytes) {
        headers.update(&v2_bytes[start..start + CHUNK_HEADER_LEN]);
    }
    assert_eq!(
        ChunkId::from(headers.finalize()),
        ids[0],
        "named by its headers"
    );

    let e = open(&dir.0, 32 << 20);
    assert_eq!(read_all(&e, &old_list).unwrap(), old);
    assert_eq!(read_all(&e, &new_list).unwrap(), new);
    assert_eq!(e.verify_pack(&v1_id).unwrap(), old_list.len());
    assert_eq!(e.verify_pack(&ids[0]).unwrap(), new_list.len());
}

#[test]
fn a_version_2_pack_with_its_chunks_reordered_does_not_match_its_name() {
    let dir = TempDir::new("reordered");
    let data = noise(100_000, 13);
    {
        let e = open(&dir.0, 32 << 20);
        e.ingest(&data, &[], false).unwrap();
        e.flush().unwrap();
    }
    let (pack_id, path) = only_pack(&dir.0);
    let bytes = fs::read(&path).unwrap();
    let recs = records(&bytes);
    assert!(recs.len() >= 2);
    // Every chunk is intact and still matches its id: only the name can tell.
    let (a, b) = (recs[0], recs[1]);
    let mut swapped = bytes[..a.0].to_vec();
    swapped.extend_from_slice(&bytes[b.0..b.0 + b.1]);
    swapped.extend_from_slice(&bytes[a.0..a.0 + a.1]);
    swapped.extend_from_slice(&bytes[b.0 + b.1..]);
    fs::write(&path, &swapped).unwrap();
    let e = open(&dir.0, 32 << 20);
    let err = e.verify_pack(&pack_id).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("does not match the pack's name")),
        "{err}"
    );
}

#[test]
fn a_truncated_pack_is_corruption() {
    let dir = TempDir::new("truncated");
    let data = noise(100_000, 7);
    let list = {
        let e = open(&dir.0, 32 << 20);
        let list = e.ingest(&data, &[], false).unwrap();
        e.flush().unwrap();
        list
    };
    let (pack_id, path) = only_pack(&dir.0);
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(50_000).unwrap();
    let e = open(&dir.0, 32 << 20);
    let err = read_all(&e, &list).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("truncated")),
        "{err}"
    );
    let err = e.verify_pack(&pack_id).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("truncated")),
        "{err}"
    );
}

#[test]
fn a_bad_index_fragment_is_listed_naming_the_file_and_the_engine_still_opens() {
    let dir = TempDir::new("badidx");
    {
        let e = open(&dir.0, 32 << 20);
        e.ingest(&noise(50_000, 8), &[], false).unwrap();
        e.flush().unwrap();
    }
    let (pack_id, _) = only_pack(&dir.0);
    let frag = fragment_path(&dir.0.join("index"), &pack_id);
    let mut bytes = fs::read(&frag).unwrap();
    bytes[..8].copy_from_slice(b"NOTANIDX");
    fs::write(&frag, &bytes).unwrap();
    let e = open(&dir.0, 32 << 20);
    let damaged = e.damaged_fragments();
    assert_eq!(damaged.len(), 1);
    let (id, why) = &damaged[0];
    assert!(*id == pack_id && why.contains(&pack_id.to_hex()) && why.contains("magic"));
}

#[test]
fn an_index_is_rebuilt_from_its_pack() {
    let dir = TempDir::new("rebuild");
    let data = noise(300_000, 9);
    let list = {
        let e = open(&dir.0, 32 << 20);
        let list = e.ingest(&data, &[], false).unwrap();
        e.flush().unwrap();
        list
    };
    let (pack_id, _) = only_pack(&dir.0);
    let frag = fragment_path(&dir.0.join("index"), &pack_id);
    let original = fs::read(&frag).unwrap();
    fs::remove_file(&frag).unwrap();

    let e = open(&dir.0, 32 << 20);
    assert!(matches!(read_all(&e, &list), Err(Error::NotFound(_))));
    e.rebuild_index(&pack_id).unwrap();
    assert_eq!(fs::read(&frag).unwrap(), original);
    assert_eq!(read_all(&e, &list).unwrap(), data);
    assert_eq!(e.verify_pack(&pack_id).unwrap(), list.len());
}

#[test]
fn a_damaged_fragment_is_skipped_at_open_and_listed_until_rebuilt() {
    let dir = TempDir::new("damagedfrag");
    let data = noise(300_000, 11);
    let list = {
        let e = open(&dir.0, 32 << 20);
        let list = e.ingest(&data, &[], false).unwrap();
        e.flush().unwrap();
        list
    };
    let (pack_id, _) = only_pack(&dir.0);
    let frag = fragment_path(&dir.0.join("index"), &pack_id);
    fs::write(&frag, b"UDRIDX01 garbage").unwrap();

    let e = open(&dir.0, 32 << 20);
    let damaged = e.damaged_fragments();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].0, pack_id);
    assert!(
        damaged[0].1.contains("udr fsck --repair"),
        "{}",
        damaged[0].1
    );
    assert!(matches!(read_all(&e, &list), Err(Error::NotFound(_))));
    e.rebuild_index(&pack_id).unwrap();
    assert!(e.damaged_fragments().is_empty());
    assert_eq!(e.pack_of(&list.chunks()[0].id), Some(pack_id));
    assert_eq!(read_all(&e, &list).unwrap(), data);
}

#[test]
fn a_failed_flush_leaves_no_pack_under_its_final_name_and_can_be_retried() {
    let dir = TempDir::new("flushfail");
    let e = open(&dir.0, 32 << 20);
    let data = noise(100_000, 10);
    let list = e.ingest(&data, &[], false).unwrap();
    // Predict the pack's name from a twin store, then block its directory with a file.
    let twin = TempDir::new("flushfail-twin");
    let t = open(&twin.0, 32 << 20);
    t.ingest(&data, &[], false).unwrap();
    let pack_id = t.flush().unwrap()[0];
    let final_path = pack_path(&dir.0.join("packs"), &pack_id);
    let blocker = final_path.parent().unwrap();
    fs::write(blocker, b"in the way").unwrap();

    assert!(matches!(e.flush(), Err(Error::Io { .. })));
    assert!(!final_path.exists());
    assert!(files_under(&dir.0.join("index")).is_empty());
    assert_eq!(read_all(&e, &list).unwrap(), data, "still readable");

    fs::remove_file(blocker).unwrap();
    assert_eq!(e.flush().unwrap(), vec![pack_id]);
    assert!(final_path.exists());
    let leftovers: Vec<_> = files_under(&dir.0)
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(read_all(&open(&dir.0, 32 << 20), &list).unwrap(), data);
}

#[test]
fn a_stream_cuts_like_a_whole_ingest() {
    let dir = TempDir::new("stream");
    let e = Arc::new(open(&dir.0, 32 << 20));
    let data = noise(1_000_000, 11);
    let s = ChunkStream::new(Arc::clone(&e), false);
    for piece in data.chunks(7_777) {
        s.write(piece).unwrap();
    }
    let streamed = s.finish().unwrap();
    assert!(s.write(b"more").is_err(), "finished streams refuse writes");
    let whole = e.ingest(&data, &[], false).unwrap();
    assert_eq!(streamed, whole);
    assert_eq!(read_all(&e, &streamed).unwrap(), data);
}

#[test]
fn a_large_stream_stores_on_its_thread_and_cuts_like_a_whole_ingest() {
    let dir = TempDir::new("stream-large");
    let e = Arc::new(open(&dir.0, 1 << 20));
    let data = noise(20 << 20, 12);
    let s = ChunkStream::new(Arc::clone(&e), false);
    let mut rest = &data[..];
    for n in [1usize, 4096, 100_000, 1 << 20, 3 << 20].iter().cycle() {
        let (piece, tail) = rest.split_at((*n).min(rest.len()));
        s.write(piece).unwrap();
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    assert_eq!(s.digest(), None);
    let streamed = s.finish().unwrap();
    assert_eq!(
        s.digest().unwrap(),
        blake3::hash(&data).to_hex().to_string()
    );
    assert_eq!(streamed, e.ingest(&data, &[], false).unwrap());
    assert_eq!(read_all(&e, &streamed).unwrap(), data);

    // Dropped or aborted mid-way, a stream ends its thread (these would hang otherwise).
    let dropped = ChunkStream::new(Arc::clone(&e), false);
    dropped.write(&data).unwrap();
    drop(dropped);
    let aborted = ChunkStream::new(Arc::clone(&e), false);
    aborted.write(&data).unwrap();
    aborted.abort();
    assert!(aborted.finish().is_err());
}

#[test]
fn a_failure_of_the_storing_thread_ends_the_stream_with_its_error() {
    let dir = TempDir::new("stream-fail");
    // Small packs, so every batch opens a new pack file.
    let e = Arc::new(open(&dir.0, 64 << 10));
    let s = ChunkStream::new(Arc::clone(&e), false);
    // Fresh bytes for every write, so that every batch has chunks to store.
    let piece = |seed: u64| noise(1 << 20, 100 + seed);
    for seed in 0..16 {
        s.write(&piece(seed)).unwrap(); // past the threshold: the thread is running
    }
    // New packs can no longer be created; the thread fails on its next batch.
    fs::rename(dir.0.join("packs"), dir.0.join("packs-gone")).unwrap();
    let err = (16..64)
        .find_map(|seed| s.write(&piece(seed)).err())
        .expect("a write reports the failure");
    assert_eq!(err.raw_os_error(), Some(2), "ENOENT from the thread: {err}");
    assert!(
        matches!(s.write(b"more"), Err(Error::Invalid(_))),
        "the stream has ended"
    );
    assert!(s.finish().is_err());
}

#[test]
fn other_engines_packs_are_found_by_a_rescan() {
    let dir = TempDir::new("rescan");
    let reader = open(&dir.0, 32 << 20);
    let writer = open(&dir.0, 32 << 20);
    let data = noise(100_000, 12);
    let list = writer.ingest(&data, &[], false).unwrap();
    assert!(!reader.contains(&list.chunks()[0].id));
    writer.flush().unwrap();
    assert_eq!(read_all(&reader, &list).unwrap(), data);
    assert!(reader.contains(&list.chunks()[0].id));
    assert_eq!(reader.reload_index().unwrap(), 0);
}

#[test]
fn concurrent_reads_and_writes() {
    let dir = TempDir::new("threads");
    let e = Arc::new(open(&dir.0, 512 << 10));
    let data = Arc::new(noise(4 << 20, 13));
    let list = Arc::new(e.ingest(&data, &[], false).unwrap());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (e, data, list) = (Arc::clone(&e), Arc::clone(&data), Arc::clone(&list));
            s.spawn(move || {
                let mut buf = vec![0u8; 100_000];
                for i in 0..50u64 {
                    let off = (i * 7_919 + t * 100_003) * 97 % (data.len() as u64);
                    let n = e.read_into(&list, off, &mut buf).unwrap();
                    assert_eq!(&buf[..n], &data[off as usize..off as usize + n]);
                }
            });
        }
        let e2 = Arc::clone(&e);
        s.spawn(move || {
            e2.ingest(&noise(2 << 20, 14), &[], false).unwrap();
            e2.flush().unwrap();
        });
    });
    assert_eq!(read_all(&e, &list).unwrap(), *data);
}

/// Stores `data` in a fresh store at `dir` and returns its chunk list and the pack's path.
fn stored(dir: &Path, data: &[u8]) -> (ChunkList, PathBuf) {
    let e = open(dir, 32 << 20);
    let list = e.ingest(data, &[], false).unwrap();
    e.flush().unwrap();
    (list, only_pack(dir).1)
}

#[test]
fn a_pack_damaged_after_a_read_is_detected_by_the_same_engine() {
    let dir = TempDir::new("damaged-later");
    let data = noise(100_000, 8);
    let (list, path) = stored(&dir.0, &data);
    let e = open(&dir.0, 32 << 20).with_read_cache(0);
    assert_eq!(read_all(&e, &list).unwrap(), data);
    let mut small = [0u8; 10];
    e.read_into(&list, 59_990, &mut small).unwrap();

    let mut bytes = fs::read(&path).unwrap();
    bytes[60_000] ^= 0x40;
    fs::write(&path, &bytes).unwrap(); // same inode: the engine's open file sees it
    assert!(matches!(read_all(&e, &list), Err(Error::Corrupt(_))));
    assert!(matches!(
        e.read_into(&list, 59_990, &mut small),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn prefetched_chunks_are_served_from_the_verified_cache() {
    let dir = TempDir::new("prefetch");
    let data = noise(200_000, 9);
    let (list, path) = stored(&dir.0, &data);
    let e = open(&dir.0, 32 << 20).with_read_cache(1 << 20);
    assert_eq!(e.prefetch(&list, 0, list.size()).unwrap(), list.size());
    assert_eq!(e.prefetch(&list, 0, list.size()).unwrap(), 0); // all cached already

    let mut bytes = fs::read(&path).unwrap();
    bytes[100_000] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    // Verified before the damage, so still right; an engine without them sees the damage.
    assert_eq!(read_all(&e, &list).unwrap(), data);
    let fresh = open(&dir.0, 32 << 20);
    assert!(matches!(read_all(&fresh, &list), Err(Error::Corrupt(_))));
    assert!(matches!(
        fresh.prefetch(&list, 0, list.size()),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn a_prefetch_reads_at_most_half_the_cache() {
    let dir = TempDir::new("prefetch-budget");
    let data = noise(400_000, 10);
    let (list, _) = stored(&dir.0, &data);
    let e = open(&dir.0, 32 << 20).with_read_cache(100_000);
    let loaded = e.prefetch(&list, 0, list.size()).unwrap();
    assert!(
        (50_000..50_000 + u64::from(MAX)).contains(&loaded),
        "{loaded}"
    );
    let none = open(&dir.0, 32 << 20).with_read_cache(0);
    assert_eq!(none.prefetch(&list, 0, list.size()).unwrap(), 0);
}

#[test]
fn a_failed_prefetch_leaves_no_chunk_claimed() {
    let dir = TempDir::new("prefetch-fails");
    let data = noise(200_000, 11);
    let (list, path) = stored(&dir.0, &data);
    let mut bytes = fs::read(&path).unwrap();
    bytes[20_000] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let e = open(&dir.0, 32 << 20).with_read_cache(1 << 20);
    assert!(matches!(
        e.prefetch(&list, 0, list.size()),
        Err(Error::Corrupt(_))
    ));
    // Reads of the chunks it had claimed but not read neither hang nor fail.
    let mut tail = vec![0u8; 100_000];
    e.read_into(&list, 100_000, &mut tail).unwrap();
    assert_eq!(&tail[..], &data[100_000..]);
}

#[test]
fn reads_racing_a_prefetch_get_the_right_bytes() {
    let dir = TempDir::new("prefetch-race");
    let data = Arc::new(noise(2_000_000, 12));
    let (list, _) = stored(&dir.0, &data);
    let e = Arc::new(open(&dir.0, 32 << 20).with_read_cache(4 << 20));
    let list = Arc::new(list);
    for round in 0..5u64 {
        let prefetcher = {
            let (e, list) = (Arc::clone(&e), Arc::clone(&list));
            std::thread::spawn(move || e.prefetch(&list, 0, list.size()).unwrap())
        };
        let mut offset = round * 1000;
        let mut buf = vec![0u8; 70_000];
        while offset < list.size() {
            let n = e.read_into(&list, offset, &mut buf).unwrap();
            assert_eq!(&buf[..n], &data[offset as usize..offset as usize + n]);
            offset += n as u64;
        }
        prefetcher.join().unwrap();
    }
}

#[test]
fn copy_chunks_writes_held_chunks_into_a_new_pack_that_reads_alone() {
    let dir = TempDir::new("copy");
    let root = dir.0.as_path();
    let e = open(root, 1 << 20);
    let data = noise(200_000, 7);
    let list = e.ingest(&data, &[], false).unwrap();
    let first = e.flush().unwrap();
    assert_eq!(first.len(), 1);
    let ids: Vec<ChunkId> = list.chunks().iter().map(|c| c.id).collect();
    let copied = e.copy_chunks(&ids[1..]).unwrap();
    assert_eq!(copied, list.size() - u64::from(list.chunks()[0].len));
    let second = e.flush().unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    // The old pack goes (as a collector would delete it): a new engine reads the copied
    // chunks from the new pack alone.
    fs::remove_file(pack_path(&root.join("packs"), &first[0])).unwrap();
    fs::remove_file(fragment_path(&root.join("index"), &first[0])).unwrap();
    let fresh = open(root, 1 << 20);
    let tail = ChunkList::from_chunks(list.chunks()[1..].to_vec());
    let start = list.chunks()[0].len as usize;
    assert_eq!(read_all(&fresh, &tail).unwrap(), data[start..]);
    assert!(!fresh.contains(&ids[0]));
}

#[test]
fn a_reader_finds_copied_chunks_after_their_old_pack_is_removed() {
    let dir = TempDir::new("moved");
    let root = dir.0.as_path();
    let writer = open(root, 1 << 20);
    let data = noise(150_000, 11);
    let list = writer.ingest(&data, &[], false).unwrap();
    let old = writer.flush().unwrap();
    // A long-lived reader loads the index while the chunks live in the old pack only.
    let reader = open(root, 1 << 20);
    let ids: Vec<ChunkId> = list.chunks().iter().map(|c| c.id).collect();
    // In another order: the same order would make the same pack, under the same name.
    let reversed: Vec<ChunkId> = ids.iter().rev().copied().collect();
    writer.copy_chunks(&reversed).unwrap();
    let new = writer.flush().unwrap();
    assert_ne!(new, old);
    assert_eq!(reader.reload_index().unwrap(), 1); // it knows the new pack too
    fs::remove_file(pack_path(&root.join("packs"), &old[0])).unwrap();
    fs::remove_file(fragment_path(&root.join("index"), &old[0])).unwrap();
    assert_eq!(read_all(&reader, &list).unwrap(), data);
    assert_eq!(reader.pack_of(&ids[0]), Some(new[0]));
}

#[test]
fn a_missing_pack_with_no_other_copy_is_still_reported_as_missing() {
    let dir = TempDir::new("gone");
    let root = dir.0.as_path();
    let e = open(root, 1 << 20);
    let list = e.ingest(&noise(50_000, 3), &[], false).unwrap();
    let packs = e.flush().unwrap();
    let reader = open(root, 1 << 20);
    fs::remove_file(pack_path(&root.join("packs"), &packs[0])).unwrap();
    let err = read_all(&reader, &list).unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
}

#[test]
fn a_chunk_in_a_condemned_pack_is_written_again() {
    let dir = TempDir::new("condemned");
    let e = open(&dir.0, 32 << 20);
    let data = noise(200_000, 21);
    let a = e.ingest(&data, &[], false).unwrap();
    let first = e.flush().unwrap();
    assert_eq!(first.len(), 1);
    e.set_condemned(first.iter().copied().collect());
    let b = e.ingest(&data, &[], false).unwrap();
    assert_eq!(a, b);
    let second = e.flush().unwrap();
    assert_eq!(second.len(), 1, "the chunks were written again");
    assert_ne!(first, second);
    // A fresh engine that knows the condemned pack locates the chunks in the new one.
    let fresh = open(&dir.0, 32 << 20);
    fresh.set_condemned(first.iter().copied().collect());
    fresh.reload_index().unwrap();
    assert_eq!(read_all(&fresh, &b).unwrap(), data);
}

#[test]
fn a_reader_finds_a_chunk_again_after_its_pack_is_deleted() {
    let dir = TempDir::new("deleted");
    let e = open(&dir.0, 32 << 20);
    let data = noise(200_000, 22);
    let list = e.ingest(&data, &[], false).unwrap();
    let old = e.flush().unwrap()[0];
    let reader = open(&dir.0, 32 << 20);
    // The same chunks written again into a second pack, then the first deleted the way the
    // collector deletes it: fragment first, then pack.
    e.set_condemned([old].into_iter().collect());
    e.ingest(&data, &[], false).unwrap();
    let new = e.flush().unwrap()[0];
    assert_ne!(old, new);
    assert_eq!(reader.pack_of(&list.chunks()[0].id), Some(old));
    fs::remove_file(fragment_path(&dir.0.join("index"), &old)).unwrap();
    fs::remove_file(pack_path(&dir.0.join("packs"), &old)).unwrap();
    assert_eq!(read_all(&reader, &list).unwrap(), data);
    assert_eq!(reader.pack_of(&list.chunks()[0].id), Some(new));
}

#[test]
fn kept_chunks_leave_the_condemned_pack() {
    let dir = TempDir::new("keep");
    let e = open(&dir.0, 32 << 20);
    let data = noise(200_000, 23);
    let list = e.ingest(&data, &[], false).unwrap();
    let old = e.flush().unwrap()[0];
    assert_eq!(e.keep_chunks(&list).unwrap(), 0);
    e.set_condemned([old].into_iter().collect());
    assert_eq!(e.keep_chunks(&list).unwrap(), list.chunks().len());
    let new = e.flush().unwrap()[0];
    assert_ne!(old, new);
    fs::remove_file(fragment_path(&dir.0.join("index"), &old)).unwrap();
    fs::remove_file(pack_path(&dir.0.join("packs"), &old)).unwrap();
    let fresh = open(&dir.0, 32 << 20);
    assert_eq!(read_all(&fresh, &list).unwrap(), data);
}
