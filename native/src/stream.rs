//! A file written sequentially in pieces of unknown total size (the FUSE write path): chunks
//! are cut and stored as data arrives, keeping a few MiB at most in memory.
//!
//! Past `PIPELINE_MIN_BYTES` a stream runs the same two stages as a large ingest: `write`
//! (on the caller's thread) finds boundaries and hashes the chunks; a thread owned by the
//! stream checks them against the index, appends the new ones to the open pack and hashes the
//! whole file. Smaller files never start the thread.

use std::mem;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::chunker::Segmenter;
use crate::chunklist::{ChunkList, ChunkRef};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ingest::{chunk_refs, hash_chunks, BATCHES_QUEUED, BATCH_BYTES, PIPELINE_MIN_BYTES};
use crate::writer::HashedChunk;

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
    /// Bytes not yet part of a chunk; they start at absolute offset `base`. Filled up to
    /// `batch_len` before cutting, so that chunks go to the storing stage in batches.
    pending: Vec<u8>,
    base: u64,
    /// At least twice the largest chunk, so a full `pending` always yields a chunk.
    batch_len: usize,
    stage: Stage,
}

/// Where cut chunks are stored: on the caller's thread, or handed to the stream's thread.
enum Stage {
    Inline(Box<Stored>), // boxed: the hasher is large
    Thread(StoreThread),
}

/// What the storing stage has done so far.
#[derive(Default)]
struct Stored {
    chunks: Vec<ChunkRef>,
    /// The whole file's hash, updated as chunks are stored so `finish` need not re-read them.
    file_hash: blake3::Hasher,
}

/// Chunk bytes cut by `write`, owned: the caller's buffer is gone once `write` returns.
struct Batch {
    bytes: Vec<u8>,
    chunks: Vec<HashedChunk>,
}

impl ChunkStream {
    /// Cut points are not supported: a stream learns where its columns start only at the end,
    /// after the bytes before them are already chunked.
    pub fn new(engine: Arc<Engine>, compress: bool) -> Self {
        let seg = Segmenter::new(engine.params().clone(), Vec::new());
        let batch_len = BATCH_BYTES.max(2 * engine.params().max());
        ChunkStream {
            engine,
            compress,
            state: Mutex::new(Some(StreamState {
                seg,
                pending: Vec::new(),
                base: 0,
                batch_len,
                stage: Stage::Inline(Box::default()),
            })),
            digest: Mutex::new(None),
        }
    }

    /// Takes a copy of `data`. A failure of the storing thread since the last call is
    /// reported here (or by `finish`).
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.with_state(|st, engine, compress| {
            if let Stage::Thread(t) = &mut st.stage {
                t.check()?;
            }
            let mut rest = data;
            while !rest.is_empty() {
                let n = rest.len().min(st.batch_len - st.pending.len());
                st.pending.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if st.pending.len() == st.batch_len {
                    st.cut(engine, compress, false)?;
                }
            }
            Ok(())
        })
    }

    /// Stores the buffered tail, waits until every chunk is stored and returns the chunk list.
    pub fn finish(&self) -> Result<ChunkList> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = guard.take().ok_or_else(closed)?;
        st.cut(&self.engine, self.compress, true)?;
        let stored = match st.stage {
            Stage::Inline(stored) => *stored,
            Stage::Thread(mut t) => t.join()?,
        };
        let hex = stored.file_hash.finalize().to_hex().to_string();
        *self.digest.lock().unwrap_or_else(|e| e.into_inner()) = Some(hex);
        Ok(ChunkList::from_chunks(stored.chunks))
    }

    /// BLAKE3 of all bytes written, as 64 hex digits; `None` until `finish` succeeded.
    pub fn digest(&self) -> Option<String> {
        self.digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops buffered bytes and ends the storing thread. Chunks already stored stay in their
    /// pack, unreferenced.
    pub fn abort(&self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(state); // joins the thread, outside the lock
    }

    /// Runs `f` on the live state; a failure ends the stream, whose bytes are then incomplete.
    fn with_state(
        &self,
        f: impl FnOnce(&mut StreamState, &Arc<Engine>, bool) -> Result<()>,
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
    /// Cuts and hashes the chunks of `pending` that more data cannot change (all of them at
    /// `eof`) and hands them to the storing stage.
    fn cut(&mut self, engine: &Arc<Engine>, compress: bool, eof: bool) -> Result<()> {
        let ranges = self.seg.split(&self.pending, self.base, eof);
        let Some(&(start, len)) = ranges.last() else {
            return Ok(());
        };
        let used = start + len;
        let chunks = hash_chunks(&self.pending, &ranges);
        // The last batch of a file is not worth a thread.
        if !eof && self.base >= PIPELINE_MIN_BYTES as u64 {
            if let Stage::Inline(stored) = &mut self.stage {
                let stored = *mem::take(stored);
                self.stage =
                    Stage::Thread(StoreThread::start(Arc::clone(engine), compress, stored)?);
            }
        }
        self.base += used as u64;
        match &mut self.stage {
            Stage::Inline(stored) => {
                stored.store(engine, &self.pending[..used], &chunks, compress)?;
                self.pending.drain(..used);
            }
            Stage::Thread(t) => {
                // The cut bytes go to the thread as they are; only the undecided tail (less
                // than one chunk) is copied into a new buffer.
                let mut next = Vec::with_capacity(self.batch_len);
                next.extend_from_slice(&self.pending[used..]);
                let mut bytes = mem::replace(&mut self.pending, next);
                bytes.truncate(used);
                t.send(Batch { bytes, chunks })?;
            }
        }
        Ok(())
    }
}

impl Stored {
    /// `bytes` are exactly the bytes of `chunks`, which follow those stored before.
    fn store(
        &mut self,
        engine: &Engine,
        bytes: &[u8],
        chunks: &[HashedChunk],
        compress: bool,
    ) -> Result<()> {
        engine.store_chunks(bytes, chunks, compress)?;
        self.file_hash.update(bytes);
        self.chunks.extend(chunk_refs(chunks));
        Ok(())
    }
}

/// The storing stage on its own thread, fed through a bounded queue (`BATCHES_QUEUED`
/// batches), which keeps a fast writer from buffering more than a few MiB. Dropping it closes
/// the queue and waits for the thread, which stores what is already queued and ends: an
/// aborted or dropped stream leaves no thread behind.
struct StoreThread {
    queue: Option<SyncSender<Batch>>,
    thread: Option<JoinHandle<Result<Stored>>>,
}

impl StoreThread {
    fn start(engine: Arc<Engine>, compress: bool, mut stored: Stored) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Batch>(BATCHES_QUEUED);
        let thread = thread::Builder::new()
            .name("chunk-stream".into())
            .spawn(move || {
                // Returning early drops `rx`: the next `send` fails and collects the error.
                for batch in rx {
                    stored.store(&engine, &batch.bytes, &batch.chunks, compress)?;
                }
                Ok(stored)
            })?;
        Ok(StoreThread {
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    /// The thread's error, if it has stopped: while the queue is open it only stops on one.
    fn check(&mut self) -> Result<()> {
        match &self.thread {
            Some(t) if !t.is_finished() => Ok(()),
            _ => Err(self.ended_early()),
        }
    }

    fn send(&mut self, batch: Batch) -> Result<()> {
        let queue = self.queue.as_ref().ok_or_else(closed)?;
        if queue.send(batch).is_err() {
            return Err(self.ended_early());
        }
        Ok(())
    }

    fn ended_early(&mut self) -> Error {
        match self.join() {
            Err(e) => e,
            Ok(_) => Error::Internal("the stream's storing thread ended early".into()),
        }
    }

    /// Closes the queue and waits until every queued batch is stored.
    fn join(&mut self) -> Result<Stored> {
        self.queue = None;
        let thread = self.thread.take().ok_or_else(closed)?;
        thread.join().unwrap_or_else(|_| {
            Err(Error::Internal(
                "the stream's storing thread panicked".into(),
            ))
        })
    }
}

impl Drop for StoreThread {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

fn closed() -> Error {
    Error::Invalid("the stream is finished, aborted or failed; start a new one".into())
}
