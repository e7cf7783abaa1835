//! Durable file creation: temp file in the target directory, fsync, rename, fsync of the
//! directory (docs/format.md, "Writing a file").

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IoContext, Result};

/// 16 hex digits that differ between calls, threads and processes: names for temp files.
pub fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per thread; mixing in the pid, the clock and a
    // counter keeps names distinct even between forked processes.
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    format!("{:016x}", h.finish())
}

/// A `.tmp-<random>` file that is removed when dropped, unless `persist` moved it into place.
pub struct TempFile {
    path: PathBuf,
    file: Arc<File>,
    persisted: bool,
}

impl TempFile {
    pub fn create_in(dir: &Path) -> Result<Self> {
        loop {
            let path = dir.join(format!(".tmp-{}", random_suffix()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => {
                    // A shared lock for as long as the file is open: the collector deletes
                    // only temporary files no live process holds (docs/format.md, "Garbage
                    // collection"). Where flock is unsupported the age rule alone applies.
                    // SAFETY: flock on a descriptor this function owns.
                    let _ = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
                    return Ok(TempFile {
                        path,
                        file: Arc::new(f),
                        persisted: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).at(&path),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file; shared so readers can `pread` from it while it is still being written.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Makes the written bytes durable (fsync of the file).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_all().at(&self.path)
    }

    /// Asks the kernel to start writing the file's dirty pages now, without waiting, so that a
    /// later `sync` finds most of the work done. A hint: errors are ignored (the `sync` that
    /// must succeed comes later).
    pub fn start_writeback(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; offset 0 and length 0 mean the whole file.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }

    /// Renames onto `dest`. The caller must `sync` first and `sync_dir` the destination after.
    /// On failure the file keeps its temporary name (and is still removed on drop).
    pub fn rename_to(&mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).at(dest)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Best effort: a leftover `.tmp-*` is garbage by definition of the format.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// fsync of a directory, so that entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes `bytes` to a temp file in `dest`'s directory, fsyncs, renames onto `dest`.
/// The directory is not synced here, so that several files can share one directory fsync.
pub fn write_renamed(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = dest.parent().expect("destination has a parent directory");
    let mut tmp = TempFile::create_in(dir)?;
    (&**tmp.file()).write_all(bytes).at(tmp.path())?;
    tmp.sync()?;
    tmp.rename_to(dest)
}

/// Creates `dir` if missing; returns whether it was created (its parent then needs a sync).
pub fn ensure_dir(dir: &Path) -> Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).at(dir),
    }
}
