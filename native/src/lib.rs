//! `udrfs._native`: the chunk engine of UDR-FS (docs/format.md: packs, index fragments, chunk
//! lists). This file holds only the PyO3 bindings; the engine is plain Rust in the modules
//! below and builds and tests without Python (`cargo test --no-default-features`).
//!
//! Every call that hashes or touches the disk releases the GIL for its whole duration, and no
//! call loops over chunks in Python.

pub mod cached_files;
pub mod chunk_cache;
pub mod chunker;
pub mod chunklist;
pub mod engine;
pub mod error;
pub mod fsio;
pub mod hashing;
pub mod index;
pub mod ingest;
pub mod pack;
pub mod parquet_footer;
pub mod reader;
pub mod stream;
pub mod writer;

#[cfg(test)]
mod engine_tests;
#[cfg(feature = "python")]
mod pybuffer;
#[cfg(test)]
mod testutil;

#[cfg(feature = "python")]
mod bindings {
    use std::path::PathBuf;
    use std::sync::Arc;

    use pyo3::create_exception;
    use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyDict, PyTuple};

    use crate::chunker::{chunk_list_of, normalize_cut_points, ChunkerParams};
    use crate::chunklist::ChunkList;
    use crate::engine::Engine;
    use crate::error::Error;
    use crate::hashing::{self, ChunkId};
    use crate::pack::PackFormat;
    use crate::pybuffer::ByteView;
    use crate::stream::ChunkStream;

    create_exception!(
        udrfs._native,
        CorruptChunkError,
        PyException,
        "Stored bytes do not match their hash, or a pack or index file is malformed \
         (bad magic, truncated). The message names the file and chunk."
    );
    create_exception!(
        udrfs._native,
        ChunkNotFoundError,
        PyException,
        "A chunk id that no index fragment of the store knows, even after a rescan of index/."
    );

    impl From<Error> for PyErr {
        fn from(e: Error) -> PyErr {
            let message = e.to_string();
            match e {
                Error::Corrupt(m) => CorruptChunkError::new_err(m),
                Error::NotFound(m) => ChunkNotFoundError::new_err(m),
                Error::Invalid(m) => PyValueError::new_err(m),
                Error::Internal(m) => PyRuntimeError::new_err(m),
                Error::Lost { errno: Some(n), .. } => PyOSError::new_err((n, message)),
                Error::Lost { errno: None, .. } => PyOSError::new_err(message),
                Error::Io { source, path } => {
                    // OSError(errno, strerror, filename) keeps `.errno` (ENOSPC -> "disk full")
                    // and picks the subclass (FileNotFoundError, ...).
                    let Some(n) = source.raw_os_error() else {
                        return PyOSError::new_err(message);
                    };
                    let text = source.to_string();
                    let strerror = text
                        .strip_suffix(&format!(" (os error {n})"))
                        .unwrap_or(&text)
                        .to_owned();
                    match path {
                        Some(p) => PyOSError::new_err((n, strerror, p.into_os_string())),
                        None => PyOSError::new_err((n, strerror)),
                    }
                }
            }
        }
    }

    /// The chunk list of one file: 36 bytes per chunk (32-byte BLAKE3 id, then the raw length
    /// as u32 little-endian), see docs/format.md. Immutable; range reads find their first
    /// chunk by binary search over end offsets computed once here.
    #[pyclass(frozen, name = "ChunkList", module = "udrfs._native")]
    pub struct PyChunkList {
        inner: Arc<ChunkList>,
    }

    impl PyChunkList {
        fn wrap(list: ChunkList) -> Self {
            PyChunkList {
                inner: Arc::new(list),
            }
        }
    }

    #[pymethods]
    impl PyChunkList {
        /// Parses an encoded chunk list; ValueError unless its length is a multiple of 36
        /// and every chunk is non-empty.
        #[new]
        fn new(blob: &Bound<'_, PyAny>) -> PyResult<Self> {
            let view = ByteView::readable(blob)?;
            Ok(Self::wrap(ChunkList::from_bytes(view.as_slice())?))
        }

        /// The encoded chunk list (36 bytes per chunk).
        fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
            PyBytes::new(py, &self.inner.to_bytes())
        }

        /// Total raw bytes: the size of the file.
        #[getter]
        fn size(&self) -> u64 {
            self.inner.size()
        }

        /// Number of chunks.
        #[getter]
        fn count(&self) -> usize {
            self.inner.len()
        }

        /// The chunk ids as hex, in file order (for stats and fsck).
        fn ids(&self) -> Vec<String> {
            self.inner.chunks().iter().map(|c| c.id.to_hex()).collect()
        }

        fn __eq__(&self, other: &Bound<'_, PyChunkList>) -> bool {
            *self.inner == *other.get().inner
        }

        fn __repr__(&self) -> String {
            format!(
                "ChunkList(count={}, size={})",
                self.inner.len(),
                self.inner.size()
            )
        }

        /// Pickles as its encoded bytes.
        fn __reduce__<'py>(
            slf: &Bound<'py, Self>,
            py: Python<'py>,
        ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
            let bytes = slf.get().to_bytes(py);
            Ok((
                slf.get_type().into_any(),
                PyTuple::new(py, [bytes.into_any()])?,
            ))
        }
    }

    /// The body of `read_into` of `ChunkEngine` and `ChunkFiles`: `read` fills the writable
    /// buffer `buf` from `offset` of the file `chunks` describes, with the GIL released.
    fn read_into_buffer(
        py: Python<'_>,
        chunks: &Bound<'_, PyChunkList>,
        offset: u64,
        buf: &Bound<'_, PyAny>,
        read: impl FnOnce(&ChunkList, u64, &mut [u8]) -> crate::error::Result<usize> + Send,
    ) -> PyResult<usize> {
        let list = Arc::clone(&chunks.get().inner);
        let mut view = ByteView::writable(buf)?;
        let dst = view.as_mut_slice();
        Ok(py.detach(|| read(&list, offset, dst))?)
    }

    /// The body of `prefetch` of `ChunkEngine` and `ChunkFiles`, with the GIL released.
    fn prefetch_with(
        py: Python<'_>,
        engine: &Engine,
        chunks: &Bound<'_, PyChunkList>,
        offset: u64,
        length: u64,
    ) -> PyResult<u64> {
        let list = Arc::clone(&chunks.get().inner);
        Ok(py.detach(|| engine.prefetch(&list, offset, length))?)
    }

    /// The chunk engine of one store: chunks files into packs, keeps the index of every chunk
    /// in memory, and serves range reads of chunk lists. Thread-safe; several engines in
    /// several processes may share one store.
    #[pyclass(frozen, name = "ChunkEngine", module = "udrfs._native")]
    pub struct PyChunkEngine {
        engine: Arc<Engine>,
    }

    #[pymethods]
    impl PyChunkEngine {
        /// Opens the store at `store_root` (which must exist; `packs/` and `index/` are created
        /// if missing) and loads every index fragment; damaged ones are skipped and listed by
        /// `damaged_fragments`. `read_cache_bytes` bounds the cache of verified chunk bytes
        /// (0: every read goes to the packs); reads of anything else are verified again each time.
        #[new]
        #[pyo3(signature = (store_root, chunk_min, chunk_avg, chunk_max, pack_target,
                            pack_version, read_cache_bytes=crate::reader::DEFAULT_READ_CACHE_BYTES))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            py: Python<'_>,
            store_root: PathBuf,
            chunk_min: u32,
            chunk_avg: u32,
            chunk_max: u32,
            pack_target: u64,
            pack_version: u8,
            read_cache_bytes: usize,
        ) -> PyResult<Self> {
            let format = PackFormat::from_version(pack_version).ok_or_else(|| {
                Error::Invalid(format!("pack version {pack_version} is not 1 or 2"))
            })?;
            let engine = py.detach(|| {
                Engine::open(
                    &store_root,
                    chunk_min,
                    chunk_avg,
                    chunk_max,
                    pack_target,
                    format,
                )
                .map(|e| e.with_read_cache(read_cache_bytes))
            })?;
            Ok(PyChunkEngine {
                engine: Arc::new(engine),
            })
        }

        /// Chunks the file at `path` (FastCDC between the cut points: a chunk always ends at
        /// each cut point; points outside (0, size) are ignored; unsorted is a ValueError),
        /// appends the chunks the store lacks to the open pack and returns the file's chunk
        /// list. With `compress`, chunks are stored zstd'd when that saves 10% or more.
        /// The file is memory-mapped and must not be truncated during the call.
        #[pyo3(signature = (path, cut_points=None, compress=false))]
        fn ingest_file(
            &self,
            py: Python<'_>,
            path: PathBuf,
            cut_points: Option<Vec<i64>>,
            compress: bool,
        ) -> PyResult<PyChunkList> {
            let cuts = cut_points.unwrap_or_default();
            let list = py.detach(|| self.engine.ingest_file(&path, &cuts, compress))?;
            Ok(PyChunkList::wrap(list))
        }

        /// Like `ingest_file`, and also returns the BLAKE3 of the whole file (64 hex digits),
        /// computed during the same pass.
        #[pyo3(signature = (path, cut_points=None, compress=false))]
        fn ingest_file_hashed(
            &self,
            py: Python<'_>,
            path: PathBuf,
            cut_points: Option<Vec<i64>>,
            compress: bool,
        ) -> PyResult<(PyChunkList, String)> {
            let cuts = cut_points.unwrap_or_default();
            let (list, digest) =
                py.detach(|| self.engine.ingest_file_digest(&path, &cuts, compress, true))?;
            let hex = digest.expect("asked for").to_hex().to_string();
            Ok((PyChunkList::wrap(list), hex))
        }

        /// Like `ingest_file`, for bytes already in memory (any contiguous buffer; it must not
        /// be modified during the call).
        #[pyo3(signature = (data, cut_points=None, compress=false))]
        fn ingest_bytes(
            &self,
            py: Python<'_>,
            data: &Bound<'_, PyAny>,
            cut_points: Option<Vec<i64>>,
            compress: bool,
        ) -> PyResult<PyChunkList> {
            let cuts = cut_points.unwrap_or_default();
            let view = ByteView::readable(data)?;
            let bytes = view.as_slice();
            let list = py.detach(|| self.engine.ingest(bytes, &cuts, compress))?;
            Ok(PyChunkList::wrap(list))
        }

        /// A stream for a file written sequentially, of unknown size (the FUSE write path).
        #[pyo3(signature = (compress=false))]
        fn stream(&self, compress: bool) -> PyChunkStream {
            PyChunkStream {
                stream: ChunkStream::new(Arc::clone(&self.engine), compress),
            }
        }

        /// Makes every chunk written so far durable: closes the open pack if it holds a chunk,
        /// fsyncs and renames packs to `packs/xx/<id>.pack`, writes `index/<id>.idx`
        /// atomically. Returns the new pack ids. Packs filled during ingest are sealed at
        /// once but reach the disk here. After a failed fsync the lost chunks make every later
        /// flush fail too (OSError, errno kept): open a new engine and ingest again.
        fn flush(&self, py: Python<'_>) -> PyResult<Vec<String>> {
            let ids = py.detach(|| self.engine.flush())?;
            Ok(ids.iter().map(ChunkId::to_hex).collect())
        }

        /// Copies the chunks with these ids (hex), which the store holds, into new packs
        /// (repack): each is read and checked against its id first; the copies are written
        /// even though the store has the chunks, and reach the disk at the next `flush`.
        /// Returns the raw bytes copied. ChunkNotFoundError for an id no fragment lists.
        fn copy_chunks(&self, py: Python<'_>, chunk_ids: Vec<String>) -> PyResult<u64> {
            let ids = chunk_ids
                .iter()
                .map(|hex| ChunkId::parse(hex, "chunk id"))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(py.detach(|| self.engine.copy_chunks(&ids))?)
        }

        /// Bytes [offset, offset + length) of the file `chunks` describes: shorter at the end
        /// of the file, b"" past it. Every chunk read from a pack has its BLAKE3 checked, on
        /// every read (CorruptChunkError names the pack and chunk; wrong bytes are never
        /// returned); chunks in the verified-bytes cache are copied from it. An unknown chunk
        /// makes the engine rescan index/ once, then raise ChunkNotFoundError.
        fn read<'py>(
            &self,
            py: Python<'py>,
            chunks: &Bound<'_, PyChunkList>,
            offset: u64,
            length: u64,
        ) -> PyResult<Bound<'py, PyBytes>> {
            let list = Arc::clone(&chunks.get().inner);
            let n = length.min(list.size().saturating_sub(offset));
            let n = usize::try_from(n).map_err(|_| PyValueError::new_err("length too large"))?;
            let engine = &self.engine;
            PyBytes::new_with(py, n, |buf| {
                py.detach(|| engine.read_into(&list, offset, buf))?;
                Ok(())
            })
        }

        /// Like `read`, into a writable buffer (bytearray, mmap, numpy array, ...); returns the
        /// number of bytes written. Safe to call from many threads at once.
        fn read_into(
            &self,
            py: Python<'_>,
            chunks: &Bound<'_, PyChunkList>,
            offset: u64,
            buf: &Bound<'_, PyAny>,
        ) -> PyResult<usize> {
            read_into_buffer(py, chunks, offset, buf, |list, at, dst| {
                self.engine.read_into(list, at, dst)
            })
        }

        /// Reads ahead: verifies the chunks holding bytes [offset, offset + length) into the
        /// verified-bytes cache (at most half its size), so later reads of them are memory
        /// copies. Returns how many bytes it read from packs. Errors as `read`.
        fn prefetch(
            &self,
            py: Python<'_>,
            chunks: &Bound<'_, PyChunkList>,
            offset: u64,
            length: u64,
        ) -> PyResult<u64> {
            prefetch_with(py, &self.engine, chunks, offset, length)
        }

        /// Whether the index (or the pack being written) holds this chunk. No rescan.
        fn contains(&self, chunk_id_hex: &str) -> PyResult<bool> {
            let id = ChunkId::parse(chunk_id_hex, "chunk_id_hex")?;
            Ok(self.engine.contains(&id))
        }

        /// The pack (id) whose fragment lists this chunk, or None.
        fn pack_of(&self, chunk_id_hex: &str) -> PyResult<Option<String>> {
            let id = ChunkId::parse(chunk_id_hex, "chunk_id_hex")?;
            Ok(self.engine.pack_of(&id).map(|p| p.to_hex()))
        }

        /// Sets the packs the collector condemned (docs/format.md, "Garbage collection"):
        /// ingest never skips a chunk because a condemned pack holds it (it writes it again),
        /// and reads prefer any other copy.
        fn set_condemned(&self, pack_ids: Vec<String>) -> PyResult<()> {
            let mut set = crate::hashing::IdSet::default();
            for hex in &pack_ids {
                set.insert(ChunkId::parse(hex, "pack_id")?);
            }
            self.engine.set_condemned(set);
            Ok(())
        }

        /// Writes again, into the open pack, the chunks of `chunks` that only condemned packs
        /// hold (reading them there); returns how many. Call `flush` after it.
        fn keep_chunks(&self, py: Python<'_>, chunks: &Bound<'_, PyChunkList>) -> PyResult<usize> {
            let list = Arc::clone(&chunks.get().inner);
            Ok(py.detach(|| self.engine.keep_chunks(&list))?)
        }

        /// Index fragments the last load skipped as damaged: [(pack id, why)].
        fn damaged_fragments(&self) -> Vec<(String, String)> {
            self.engine
                .damaged_fragments()
                .into_iter()
                .map(|(id, why)| (id.to_hex(), why))
                .collect()
        }

        /// Loads index fragments written by other processes; returns how many packs are new.
        fn reload_index(&self, py: Python<'_>) -> PyResult<usize> {
            Ok(py.detach(|| self.engine.reload_index())?)
        }

        /// {"packs", "chunks", "stored_bytes", "raw_bytes"} over durable packs: pack files,
        /// unique chunks, sum of pack file sizes, sum of unique chunk raw lengths. Also
        /// "pending_chunks" and "pending_bytes": written but not yet flushed.
        fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            let s = py.detach(|| self.engine.stats());
            let d = PyDict::new(py);
            d.set_item("packs", s.packs)?;
            d.set_item("chunks", s.chunks)?;
            d.set_item("stored_bytes", s.stored_bytes)?;
            d.set_item("raw_bytes", s.raw_bytes)?;
            d.set_item("pending_chunks", s.pending_chunks)?;
            d.set_item("pending_bytes", s.pending_bytes)?;
            Ok(d)
        }

        /// Reads the whole pack, checks every chunk's hash and the pack's own name; returns
        /// its chunk count. CorruptChunkError otherwise.
        fn verify_pack(&self, py: Python<'_>, pack_id: &str) -> PyResult<usize> {
            let id = ChunkId::parse(pack_id, "pack_id")?;
            Ok(py.detach(|| self.engine.verify_pack(&id))?)
        }

        /// Rewrites `index/<pack_id>.idx` by scanning (and checking) the pack: recovery for a
        /// lost or damaged fragment.
        fn rebuild_index(&self, py: Python<'_>, pack_id: &str) -> PyResult<()> {
            let id = ChunkId::parse(pack_id, "pack_id")?;
            Ok(py.detach(|| self.engine.rebuild_index(&id))?)
        }
    }

    /// Verified reads of chunks held in files the caller names (the on-disk cache of a store
    /// read from a remote: udrfs/store/chunk_cache.py), as `ChunkEngine` reads a store's
    /// packs: every chunk's BLAKE3 checked on every read from its file, with the GIL released
    /// and a bounded cache of verified bytes for read-ahead. Thread-safe.
    #[pyclass(frozen, name = "ChunkFiles", module = "udrfs._native")]
    pub struct PyChunkFiles {
        engine: Arc<Engine>,
    }

    fn chunk_id_of(raw: &[u8]) -> PyResult<ChunkId> {
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| PyValueError::new_err("a chunk id is 32 bytes"))?;
        Ok(ChunkId(bytes))
    }

    #[pymethods]
    impl PyChunkFiles {
        #[new]
        #[pyo3(signature = (read_cache_bytes=crate::reader::DEFAULT_READ_CACHE_BYTES))]
        fn new(read_cache_bytes: usize) -> Self {
            PyChunkFiles {
                engine: Arc::new(Engine::over_caller_files(read_cache_bytes)),
            }
        }

        /// Adds the file at `path`, named `file_id` (64 hex digits), which holds raw chunks:
        /// [(chunk id (32 bytes), offset of its bytes, length)]. False if already added.
        fn add(
            &self,
            file_id: &str,
            path: PathBuf,
            chunks: Vec<(Vec<u8>, u64, u32)>,
        ) -> PyResult<bool> {
            let id = ChunkId::parse(file_id, "file_id")?;
            let chunks = chunks
                .iter()
                .map(|(c, offset, len)| Ok((chunk_id_of(c)?, *offset, *len)))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(self.engine.add_file(id, path, &chunks))
        }

        /// Forgets the file `file_id`, given the ids of the chunks it holds, and closes it
        /// (before the caller removes it). False if it was not added.
        fn forget(&self, file_id: &str, chunk_ids: Vec<Vec<u8>>) -> PyResult<bool> {
            let id = ChunkId::parse(file_id, "file_id")?;
            let ids = chunk_ids
                .iter()
                .map(|c| chunk_id_of(c))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(self.engine.forget_file(&id, &ids))
        }

        /// Copies bytes of the file `chunks` describes, from `offset`, into the writable
        /// `buf`, up to the first chunk no added file holds (or whose file is gone); returns
        /// how many bytes it copied (0 if the first chunk is missing). CorruptChunkError,
        /// naming the file, for bytes that do not match their chunk's id.
        fn read_into(
            &self,
            py: Python<'_>,
            chunks: &Bound<'_, PyChunkList>,
            offset: u64,
            buf: &Bound<'_, PyAny>,
        ) -> PyResult<usize> {
            read_into_buffer(py, chunks, offset, buf, |list, at, dst| {
                self.engine.read_known_into(list, at, dst)
            })
        }

        /// Reads ahead: verifies into memory the chunks of bytes [offset, offset + length)
        /// that added files hold (at most half the cache), skipping the others. Returns how
        /// many bytes it read from files.
        fn prefetch(
            &self,
            py: Python<'_>,
            chunks: &Bound<'_, PyChunkList>,
            offset: u64,
            length: u64,
        ) -> PyResult<u64> {
            prefetch_with(py, &self.engine, chunks, offset, length)
        }

        /// {"files", "chunks", "bytes"}: the files added and not forgotten, the chunks they
        /// hold, and those chunks' bytes.
        fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            let s = self.engine.stats();
            let d = PyDict::new(py);
            d.set_item("files", s.packs)?;
            d.set_item("chunks", s.chunks)?;
            d.set_item("bytes", s.raw_bytes)?;
            Ok(d)
        }
    }

    /// Sequential writes of one file of unknown size: chunks are cut and stored as data
    /// arrives, with a few MiB at most buffered (past 8 MiB a thread of the stream stores
    /// them while `write` cuts the next). Same chunks as `ingest_bytes` of the same bytes
    /// without cut points.
    #[pyclass(frozen, name = "ChunkStream", module = "udrfs._native")]
    pub struct PyChunkStream {
        stream: ChunkStream,
    }

    #[pymethods]
    impl PyChunkStream {
        /// Appends `data` (any contiguous buffer, copied). An error ends the stream; a failure
        /// of the storing thread (e.g. ENOSPC) is raised by the next `write` or `finish`.
        fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
            let view = ByteView::readable(data)?;
            let bytes = view.as_slice();
            Ok(py.detach(|| self.stream.write(bytes))?)
        }

        /// Stores the buffered tail and returns the file's chunk list. `cut_points` is
        /// accepted for symmetry with `ingest_file` and ignored: a stream learns where its
        /// columns start only after the bytes before them are chunked. Re-ingest the finished
        /// file if column-aligned chunks matter.
        #[pyo3(signature = (cut_points=None))]
        fn finish(&self, py: Python<'_>, cut_points: Option<Vec<i64>>) -> PyResult<PyChunkList> {
            let _ignored = cut_points;
            let list = py.detach(|| self.stream.finish())?;
            Ok(PyChunkList::wrap(list))
        }

        /// Drops the buffered bytes; the stream cannot be used afterwards. Chunks already
        /// stored stay in their pack, unreferenced.
        fn abort(&self, py: Python<'_>) {
            // Waits for the storing thread to store what is queued (a few MiB).
            py.detach(|| self.stream.abort());
        }

        /// BLAKE3 of the whole file (every byte written), as 64 hex digits. Valid after
        /// `finish`; before it, raises ValueError.
        fn blake3_hex(&self) -> PyResult<String> {
            self.stream.digest().ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err("the stream is not finished")
            })
        }
    }

    /// BLAKE3 of a buffer, as 64 hex digits.
    #[pyfunction]
    fn blake3_hex(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
        let view = ByteView::readable(data)?;
        let bytes = view.as_slice();
        Ok(py.detach(|| ChunkId::of(bytes).to_hex()))
    }

    /// Checks the bytes of a pack named `pack_id`: every chunk against its id and the pack
    /// against its name (docs/format.md, "Packs"). Returns the pack's format version (1 or 2);
    /// CorruptChunkError, naming `label`, otherwise.
    #[pyfunction]
    fn check_pack(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        pack_id: &str,
        label: &str,
    ) -> PyResult<u8> {
        let id = ChunkId::parse(pack_id, "pack_id")?;
        let view = ByteView::readable(data)?;
        let bytes = view.as_slice();
        let (format, _) = py.detach(|| crate::pack::check_pack(bytes, &id, label))?;
        Ok(format.version())
    }

    /// BLAKE3 of a file's content, as 64 hex digits (memory-mapped, GIL released).
    #[pyfunction]
    fn blake3_file(py: Python<'_>, path: PathBuf) -> PyResult<String> {
        Ok(py.detach(|| hashing::blake3_file(&path))?.to_hex())
    }

    /// Stable 64-bit hash of each value of an Arrow large_binary array: `offsets` holds n+1
    /// int64 little-endian offsets into `data`. Returns n uint64 little-endian. The hash is
    /// FNV-1a 64 over the value's bytes followed by the splitmix64 finalizer; it is part of
    /// the format and never changes. Null values must be handled by the caller (they hash as
    /// whatever bytes their offsets span, usually the empty value).
    #[pyfunction]
    fn hash_binary<'py>(
        py: Python<'py>,
        offsets: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let offsets_view = ByteView::readable(offsets)?;
        let data_view = ByteView::readable(data)?;
        let (offsets, data) = (offsets_view.as_slice(), data_view.as_slice());
        let n = hashing::binary_value_count(offsets, data.len())?;
        PyBytes::new_with(py, n * 8, |out| {
            py.detach(|| hashing::hash_binary_into(offsets, data, out));
            Ok(())
        })
    }

    /// The Thrift `FileMetaData` of one Parquet file holding the row groups of several:
    /// `parts` are each file's `FileMetaData` bytes with how far its row groups moved
    /// (udrfs/parquet/splice.py). ValueError if a part is not such a footer.
    #[pyfunction]
    fn parquet_join_footers<'py>(
        py: Python<'py>,
        parts: Vec<(Vec<u8>, i64)>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let borrowed: Vec<(&[u8], i64)> = parts.iter().map(|(f, s)| (f.as_slice(), *s)).collect();
        let footer = py.detach(|| crate::parquet_footer::join_footers(&borrowed))?;
        Ok(PyBytes::new(py, &footer))
    }

    /// Chunks and hashes `data` exactly as `ChunkEngine.ingest_bytes` would with these sizes,
    /// on the calling thread, storing nothing; returns the encoded chunk list (36 bytes per
    /// chunk). For benchmarks and for checking chunking policy.
    #[pyfunction]
    #[pyo3(signature = (data, chunk_min, chunk_avg, chunk_max, cut_points=None))]
    fn chunk_boundaries<'py>(
        py: Python<'py>,
        data: &Bound<'_, PyAny>,
        chunk_min: u32,
        chunk_avg: u32,
        chunk_max: u32,
        cut_points: Option<Vec<i64>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let params = ChunkerParams::new(chunk_min, chunk_avg, chunk_max)?;
        let view = ByteView::readable(data)?;
        let bytes = view.as_slice();
        let cuts = normalize_cut_points(&cut_points.unwrap_or_default(), Some(bytes.len() as u64))?;
        let blob = py.detach(|| chunk_list_of(&params, bytes, cuts).to_bytes());
        Ok(PyBytes::new(py, &blob))
    }

    /// The chunk engine of UDR-FS: content-defined chunking, packs, index fragments and range
    /// reads (docs/format.md). Every call that hashes or touches the disk releases the GIL.
    #[pymodule]
    #[pyo3(name = "_native")]
    fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        m.add("CorruptChunkError", py.get_type::<CorruptChunkError>())?;
        m.add("ChunkNotFoundError", py.get_type::<ChunkNotFoundError>())?;
        m.add_class::<PyChunkList>()?;
        m.add_class::<PyChunkEngine>()?;
        m.add_class::<PyChunkStream>()?;
        m.add_class::<PyChunkFiles>()?;
        m.add_function(wrap_pyfunction!(blake3_hex, m)?)?;
        m.add_function(wrap_pyfunction!(blake3_file, m)?)?;
        m.add_function(wrap_pyfunction!(check_pack, m)?)?;
        m.add_function(wrap_pyfunction!(hash_binary, m)?)?;
        m.add_function(wrap_pyfunction!(chunk_boundaries, m)?)?;
        m.add_function(wrap_pyfunction!(parquet_join_footers, m)?)?;
        Ok(())
    }
}
