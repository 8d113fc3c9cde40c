//! The file operations storage needs, behind a trait so tests can inject
//! faults: torn writes, a full disk, failing fsyncs.
//!
//! Obligations of an implementation:
//! - `write_at` either writes the whole buffer or returns an error; a torn
//!   write is modelled as an error after a prefix was written;
//! - `sync_data` returns only once written data is durable; after it fails,
//!   the file's durable content is unknown (callers must not retry it);
//! - `rename` replaces the target atomically; `sync_dir` makes names durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An open file.
pub trait StorageFile: Send + Sync {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
}

/// A file system.
pub trait FileSystem: Send + Sync {
    /// Opens a file for reading and writing, creating it if missing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The files in `dir`, sorted by name.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl StorageFile for StdFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl FileSystem for StdFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// What the fault injector does. `disk_full` and `slow_sync` last until
/// cleared; the others fire once, then clear.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Writes that need new space (past a file's end) fail with ENOSPC;
    /// writes into space already allocated still succeed, as on a real disk.
    pub disk_full: bool,
    /// The next `sync_data` of a file whose path contains this fails with EIO.
    pub fail_next_sync_of: Option<String>,
    /// The next write stores only this many bytes, then fails with EIO.
    pub tear_next_write_after: Option<usize>,
    /// Every `sync_data` of a file whose path contains the pattern takes this
    /// long more (a slow or overloaded disk).
    pub slow_sync: Option<(String, std::time::Duration)>,
}

/// Wraps a file system and injects the faults in a shared [`Faults`].
#[derive(Clone)]
pub struct FaultyFs<F: FileSystem + Clone> {
    inner: F,
    faults: Arc<Mutex<Faults>>,
}

impl<F: FileSystem + Clone> FaultyFs<F> {
    pub fn new(inner: F) -> Self {
        FaultyFs {
            inner,
            faults: Arc::default(),
        }
    }

    /// The switchboard: change faults while the storage runs.
    pub fn faults(&self) -> Arc<Mutex<Faults>> {
        self.faults.clone()
    }
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

struct FaultyFile {
    inner: Box<dyn StorageFile>,
    path: PathBuf,
    faults: Arc<Mutex<Faults>>,
}

impl FaultyFile {
    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StorageFile for FaultyFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut faults = self.faults();
        if faults.disk_full && offset + buf.len() as u64 > self.inner.size()? {
            return Err(enospc());
        }
        if let Some(prefix) = faults.tear_next_write_after.take() {
            drop(faults);
            self.inner.write_at(offset, &buf[..prefix.min(buf.len())])?;
            return Err(eio());
        }
        drop(faults);
        self.inner.write_at(offset, buf)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut faults = self.faults();
        let path = self.path.to_string_lossy();
        if faults
            .fail_next_sync_of
            .as_deref()
            .is_some_and(|pattern| path.contains(pattern))
        {
            faults.fail_next_sync_of = None;
            return Err(eio());
        }
        let delay = faults
            .slow_sync
            .as_ref()
            .filter(|(pattern, _)| path.contains(pattern.as_str()))
            .map(|(_, delay)| *delay);
        drop(faults);
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.faults().disk_full && len > self.inner.size()? {
            return Err(enospc());
        }
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl<F: FileSystem + Clone> FileSystem for FaultyFs<F> {
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FaultyFile {
            inner: self.inner.open(path)?,
            path: path.to_path_buf(),
            faults: self.faults.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }
}

/// Whether an I/O error means the disk (or quota) is full.
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28) | Some(122))
}
