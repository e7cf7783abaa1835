//! The engine's error type. The Python bindings map each variant to one exception class.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum Error {
    /// An operating-system error. The errno is kept so that, for example, a full disk reaches
    /// Python as `OSError(errno.ENOSPC)`.
    Io {
        source: io::Error,
        path: Option<PathBuf>,
    },
    /// Bytes on disk that do not match what their name or header promises.
    Corrupt(String),
    /// A chunk id that no index fragment knows.
    NotFound(String),
    /// Chunks written since the last flush were given up after an IO error; `errno` is that
    /// error's, so a full disk still reads as ENOSPC.
    Lost { errno: Option<i32>, message: String },
    /// Arguments that can never work (bad sizes, unsorted cut points, ...).
    Invalid(String),
    /// A bug in the engine (a worker thread panicked): not the caller's fault nor the disk's.
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io_at(source: io::Error, path: &Path) -> Self {
        Error::Io {
            source,
            path: Some(path.to_path_buf()),
        }
    }

    /// The errno of an IO error, if it has one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Lost { errno, .. } => *errno,
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Error::Io { source, path: None }
    }
}

/// Attaches the path an IO error concerns, so the message names the file.
pub trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io_at(e, path))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                source,
                path: Some(p),
            } => write!(f, "{}: {source}", p.display()),
            Error::Io { source, path: None } => write!(f, "{source}"),
            Error::Lost { message, .. } => f.write_str(message),
            Error::Corrupt(m) | Error::NotFound(m) | Error::Invalid(m) | Error::Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
