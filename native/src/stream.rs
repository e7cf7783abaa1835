//! A file written sequentially in pieces of unknown total size (the FUSE write path): chunks
//! are cut and stored as data arrives, keeping less than `chunk_max` bytes buffered.

use std::sync::{Arc, Mutex};

use crate::chunker::Segmenter;
use crate::chunklist::{ChunkList, ChunkRef};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ingest::{chunk_refs, hash_chunks};

pub struct ChunkStream {
    engine: Arc<Engine>,
    compress: bool,
    /// `None` once finished, aborted or failed.
    state: Mutex<Option<StreamState>>,
    /// BLAKE3 of every byte written, set by `finish`.
    digest: Mutex<Option<String>>,
}

struct StreamState {
    seg: Segmenter,
    /// Bytes not yet part of a chunk; they start at absolute offset `base`.
    pending: Vec<u8>,
    base: u64,
    chunks: Vec<ChunkRef>,
    /// The whole file's hash, updated as bytes arrive so `finish` need not re-read them.
    file_hash: blake3::Hasher,
}

impl ChunkStream {
    /// Cut points are not supported: a stream learns where its columns start only at the end,
    /// after the bytes before them are already chunked.
    pub fn new(engine: Arc<Engine>, compress: bool) -> Self {
        let seg = Segmenter::new(engine.params().clone(), Vec::new());
        ChunkStream {
            engine,
            compress,
            state: Mutex::new(Some(StreamState {
                seg,
                pending: Vec::new(),
                base: 0,
                chunks: Vec::new(),
                file_hash: blake3::Hasher::new(),
            })),
            digest: Mutex::new(None),
        }
    }

    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.with_state(|st, engine, compress| {
            st.file_hash.update(data);
            if st.pending.is_empty() {
                // Cut straight from the caller's buffer; keep only the undecided tail.
                let used = st.store_final_chunks(engine, data, false, compress)?;
                st.pending.extend_from_slice(&data[used..]);
            } else {
                let mut buf = std::mem::take(&mut st.pending);
                buf.extend_from_slice(data);
                let used = st.store_final_chunks(engine, &buf, false, compress)?;
                buf.drain(..used);
                st.pending = buf;
            }
            Ok(())
        })
    }

    pub fn finish(&self) -> Result<ChunkList> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = guard.take().ok_or_else(closed)?;
        let tail = std::mem::take(&mut st.pending);
        st.store_final_chunks(&self.engine, &tail, true, self.compress)?;
        let hex = st.file_hash.finalize().to_hex().to_string();
        *self.digest.lock().unwrap_or_else(|e| e.into_inner()) = Some(hex);
        Ok(ChunkList::from_chunks(st.chunks))
    }

    /// BLAKE3 of all bytes written, as 64 hex digits; `None` until `finish` succeeded.
    pub fn digest(&self) -> Option<String> {
        self.digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops buffered bytes. Chunks already stored stay in their pack, unreferenced.
    pub fn abort(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Runs `f` on the live state; a failure ends the stream, whose bytes are then incomplete.
    fn with_state(
        &self,
        f: impl FnOnce(&mut StreamState, &Engine, bool) -> Result<()>,
    ) -> Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = guard.as_mut().ok_or_else(closed)?;
        let result = f(st, &self.engine, self.compress);
        if result.is_err() {
            *guard = None;
        }
        result
    }
}

impl StreamState {
    /// Stores the chunks of `data` that more data cannot change; returns the bytes they cover.
    fn store_final_chunks(
        &mut self,
        engine: &Engine,
        data: &[u8],
        eof: bool,
        compress: bool,
    ) -> Result<usize> {
        let ranges = self.seg.split(data, self.base, eof);
        let batch = hash_chunks(data, &ranges);
        engine.store_chunks(data, &batch, compress)?;
        self.chunks.extend(chunk_refs(&batch));
        let used = ranges.last().map_or(0, |&(start, len)| start + len);
        self.base += used as u64;
        Ok(used)
    }
}

fn closed() -> Error {
    Error::Invalid("the stream is finished, aborted or failed; start a new one".into())
}
