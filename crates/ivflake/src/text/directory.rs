//! The tantivy `Directory` a bundle is searched through, read-only: each
//! file is either held whole (the term dictionary, field norms, metadata),
//! or cold, with only the byte ranges opening reads held (footers, each
//! field's first bytes: the hotcache). A search reads a cold file's other
//! bytes, its postings, only from what it fetched beforehand: they are set
//! for the compute job that scores (`with_postings`), so a read never waits
//! on the store and one outside them is an error, never a hidden GET.
//!
//! `Recorder` is the build's side: a directory that notes what opening an
//! index reads, which is what the hotcache holds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, OwnedBytes, RamDirectory, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::HasLen;

/// One file of a bundle as its directory serves it.
#[derive(Debug)]
pub(super) enum BundleFile {
    Whole(OwnedBytes),
    /// `len` bytes, of which `hot` (sorted, disjoint) are held.
    Cold {
        len: usize,
        hot: Vec<(Range<usize>, OwnedBytes)>,
    },
}

/// Postings one search fetched: (range in the cold file, bytes).
pub(super) type Fetched = Vec<(Range<usize>, bytes::Bytes)>;

thread_local! {
    /// The postings of the search scoring on this thread.
    static POSTINGS: RefCell<Option<Arc<Fetched>>> = const { RefCell::new(None) };
}

/// Runs `work` with `fetched` readable by the cold files' handles.
pub(super) fn with_postings<T>(fetched: Arc<Fetched>, work: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            POSTINGS.with(|p| p.borrow_mut().take());
        }
    }
    POSTINGS.with(|p| *p.borrow_mut() = Some(fetched));
    let _reset = Reset;
    work()
}

impl HasLen for BundleFile {
    fn len(&self) -> usize {
        match self {
            BundleFile::Whole(bytes) => bytes.len(),
            BundleFile::Cold { len, .. } => *len,
        }
    }
}

impl FileHandle for BundleFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if range.end > self.len() || range.start > range.end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("bytes {range:?} of a {}-byte file", self.len()),
            ));
        }
        let hot = match self {
            BundleFile::Whole(bytes) => return Ok(bytes.slice(range)),
            BundleFile::Cold { hot, .. } => hot,
        };
        let inside = |held: &Range<usize>| held.start <= range.start && range.end <= held.end;
        if let Some((held, bytes)) = hot.iter().find(|(held, _)| inside(held)) {
            return Ok(bytes.slice(range.start - held.start..range.end - held.start));
        }
        let fetched = POSTINGS.with(|p| {
            let p = p.borrow();
            let (held, bytes) = p.as_ref()?.iter().find(|(held, _)| inside(held))?;
            // Copied once into tantivy's own buffer type.
            Some(bytes[range.start - held.start..range.end - held.start].to_vec())
        });
        fetched.map(OwnedBytes::new).ok_or_else(|| {
            io::Error::other(format!(
                "bytes {range:?} of a text index were read without being fetched first"
            ))
        })
    }
}

/// A bundle's files, read-only.
#[derive(Debug, Clone, Default)]
pub(super) struct BundleDirectory {
    files: Arc<HashMap<PathBuf, Arc<BundleFile>>>,
}

impl BundleDirectory {
    pub fn new(files: HashMap<PathBuf, Arc<BundleFile>>) -> Self {
        Self { files: Arc::new(files) }
    }
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "a text bundle is read-only")
}

impl Directory for BundleDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        match self.files.get(path) {
            Some(file) => Ok(file.clone()),
            None => Err(OpenReadError::FileDoesNotExist(path.to_path_buf())),
        }
    }

    fn delete(&self, _path: &Path) -> Result<(), DeleteError> {
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.files.contains_key(path))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::wrap_io_error(read_only(), path.to_path_buf()))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let file = self.get_file_handle(path)?;
        file.read_bytes(0..file.len())
            .map(|b| b.as_slice().to_vec())
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn atomic_write(&self, _path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only())
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, tantivy::directory::error::LockError> {
        // Nothing writes: readers need no lock.
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, _callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}

/// Reads of a `RamDirectory`, noted: (file, range).
/// Reads noted: (file, byte range).
type Reads = Arc<Mutex<Vec<(PathBuf, Range<usize>)>>>;

#[derive(Debug, Clone)]
pub(super) struct Recorder {
    inner: RamDirectory,
    pub reads: Reads,
}

impl Recorder {
    pub fn new(inner: RamDirectory) -> Self {
        Self {
            inner,
            reads: Arc::default(),
        }
    }

    pub fn take(&self) -> Vec<(PathBuf, Range<usize>)> {
        self.reads
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct RecordedFile {
    path: PathBuf,
    inner: Arc<dyn FileHandle>,
    reads: Reads,
}

impl HasLen for RecordedFile {
    fn len(&self) -> usize {
        self.inner.len()
    }
}

impl FileHandle for RecordedFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if let Ok(mut reads) = self.reads.lock() {
            reads.push((self.path.clone(), range.clone()));
        }
        self.inner.read_bytes(range)
    }
}

impl Directory for Recorder {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(Arc::new(RecordedFile {
            path: path.to_path_buf(),
            inner: self.inner.get_file_handle(path)?,
            reads: self.reads.clone(),
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn watch(&self, callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(callback)
    }
}
