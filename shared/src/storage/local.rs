//! The embedded object store: bucket `B`, object `N` is the plain file `<root>/B/N`.
//!
//! Writes go through one writer thread that commits them in groups: each object is written to a
//! temporary file and hard-linked to its name (the link fails if the name exists, which is the
//! create-if-absent test, and nobody ever sees a half-written object), then one `syncfs` makes
//! the whole group durable before any of its writers is answered. Under load one sync covers
//! many requests; alone, a request pays for one sync.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use async_trait::async_trait;
use bytes::Bytes;
use rustix::fs::{AtFlags, Mode, OFlags};
use tokio::sync::oneshot;

use super::{ByteRange, Created, ObjectStore, RangeRead, is_safe_object_name};
use crate::error::{BackendError, Retry};

/// Most writes committed by one sync.
const MAX_GROUP: usize = 512;
/// Directory handles the writer keeps open.
const MAX_OPEN_DIRECTORIES: usize = 256;

/// A directory per bucket under `root`.
#[derive(Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
    writer: mpsc::Sender<WriteJob>,
}

struct WriteJob {
    path: PathBuf,
    body: Bytes,
    done: oneshot::Sender<io::Result<Created>>,
}

impl LocalObjectStore {
    /// Opens (creating) the store under `root`. `durable` makes every acknowledged write survive
    /// a power cut (`syncfs`); without it writes survive a crash of the process only.
    pub fn open(root: impl Into<PathBuf>, durable: bool) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let (writer, jobs) = mpsc::channel();
        let sync_root = fs::File::open(&root)?;
        std::thread::Builder::new()
            .name("pulse-object-writer".to_owned())
            .spawn(move || GroupWriter::new(durable.then_some(sync_root)).run(&jobs))?;
        Ok(Self { root, writer })
    }

    fn path(&self, bucket: &str, name: &str) -> Result<PathBuf, BackendError> {
        if !is_safe_object_name(name) {
            return Err(unsafe_address(bucket, name));
        }
        Ok(self.bucket_dir(bucket, name)?.join(name))
    }

    fn bucket_dir(&self, bucket: &str, name: &str) -> Result<PathBuf, BackendError> {
        if !is_safe_object_name(bucket) || bucket.contains('/') {
            return Err(unsafe_address(bucket, name));
        }
        Ok(self.root.join(bucket))
    }
}

fn unsafe_address(bucket: &str, name: &str) -> BackendError {
    BackendError::new(
        format!("address {bucket}/{name}"),
        Retry::Permanent,
        "bucket or object name has an empty, `.` or `..` segment",
    )
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    async fn create_if_absent(
        &self,
        bucket: &str,
        name: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<Created, BackendError> {
        let path = self.path(bucket, name)?;
        let operation = || format!("write {}", path.display());
        let (done, result) = oneshot::channel();
        self.writer
            .send(WriteJob {
                path: path.clone(),
                body,
                done,
            })
            .map_err(|_| {
                BackendError::new(operation(), Retry::Transient, "the writer thread stopped")
            })?;
        match result.await {
            Ok(Ok(created)) => Ok(created),
            Ok(Err(err)) => Err(BackendError::io(operation(), &err)),
            Err(_) => Err(BackendError::new(
                operation(),
                Retry::Transient,
                "the writer thread stopped",
            )),
        }
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, BackendError> {
        let path = self.path(bucket, name)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(BackendError::io(format!("read {}", path.display()), &err)),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BackendError> {
        let bucket_dir = self.bucket_dir(bucket, prefix)?;
        // A prefix may end in `/` or a partial name, but may not climb out of the bucket.
        let directories = prefix.rsplit_once('/').map_or("", |(dirs, _)| dirs);
        if prefix.starts_with('/') || (!directories.is_empty() && !is_safe_object_name(directories))
        {
            return Err(unsafe_address(bucket, prefix));
        }
        let prefix = prefix.to_owned();
        let operation = format!("list {}/{prefix}", bucket_dir.display());
        tokio::task::spawn_blocking(move || list_under(&bucket_dir, &prefix))
            .await
            .map_err(|e| BackendError::new(operation.clone(), Retry::Transient, e))?
            .map_err(|e| BackendError::io(operation, &e))
    }

    async fn read_range(
        &self,
        bucket: &str,
        name: &str,
        range: ByteRange,
        generation: Option<i64>,
    ) -> Result<Option<RangeRead>, BackendError> {
        let path = self.path(bucket, name)?;
        let operation = format!("read {}", path.display());
        tokio::task::spawn_blocking(move || read_range_of(&path, range, generation))
            .await
            .map_err(|e| BackendError::new(operation.clone(), Retry::Transient, e))?
            .map_err(|e| BackendError::io(operation, &e))
    }

    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        to: &str,
    ) -> Result<bool, BackendError> {
        let from = self.path(bucket, name)?;
        let to = self.path(bucket, to)?;
        let operation = format!("copy {} to {}", from.display(), to.display());
        tokio::task::spawn_blocking(move || copy_file(&from, generation, &to))
            .await
            .map_err(|e| BackendError::new(operation.clone(), Retry::Transient, e))?
            .map_err(|e| BackendError::io(operation, &e))
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(), BackendError> {
        let path = self.path(bucket, name)?;
        let operation = format!("delete {}", path.display());
        let removed = match generation {
            Some(generation) => match fs::metadata(&path) {
                Ok(metadata) if local_generation(&metadata) != generation => return Ok(()),
                Ok(_) => fs::remove_file(&path),
                Err(err) => Err(err),
            },
            None => fs::remove_file(&path),
        };
        match removed {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(BackendError::io(operation, &err)),
        }
    }

    fn uri(&self, bucket: &str, name: &str) -> String {
        self.root.join(bucket).join(name).display().to_string()
    }
}

/// A local object's generation: its modification time in microseconds since the epoch (Cloud
/// Storage generations are microsecond timestamps too), so a replaced file is a new generation.
pub fn local_generation(metadata: &fs::Metadata) -> i64 {
    metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

fn read_range_of(
    path: &Path,
    range: ByteRange,
    generation: Option<i64>,
) -> io::Result<Option<RangeRead>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let metadata = file.metadata()?;
    let found = local_generation(&metadata);
    if generation.is_some_and(|wanted| wanted != found) {
        return Ok(None);
    }
    let size = metadata.len();
    let (offset, len) = match range {
        ByteRange::Tail(n) => (size.saturating_sub(n), n.min(size)),
        ByteRange::Segment { offset, len } => {
            (offset.min(size), len.min(size.saturating_sub(offset)))
        }
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(Some(RangeRead {
        bytes: Bytes::from(bytes),
        size,
        generation: found,
    }))
}

/// Copies through a temporary file renamed over `to`, synced first: a reader of `to` sees the
/// old file or the whole new one, and a copy that is answered survives a power cut.
fn copy_file(from: &Path, generation: Option<i64>, to: &Path) -> io::Result<bool> {
    let mut source = match fs::File::open(from) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    let found = local_generation(&source.metadata()?);
    if generation.is_some_and(|wanted| wanted != found) {
        return Ok(false);
    }
    let dir = to
        .parent()
        .ok_or_else(|| io::Error::other("object path has no directory"))?;
    fs::create_dir_all(dir)?;
    static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let copy = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!(".tmp-copy-{}-{copy}", std::process::id()));
    let copied = fs::File::create(&temp).and_then(|mut target| {
        io::copy(&mut source, &mut target)?;
        target.sync_all()
    });
    match copied.and_then(|()| fs::rename(&temp, to)) {
        Ok(()) => Ok(true),
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(err)
        }
    }
}

/// Lists files under `bucket_dir` whose relative name starts with `prefix`, skipping temporary
/// files. Only directories that can hold a match are walked.
fn list_under(bucket_dir: &Path, prefix: &str) -> io::Result<Vec<String>> {
    let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let mut names = Vec::new();
    let mut pending = vec![bucket_dir.join(dir_part)];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(bucket_dir) else {
                continue;
            };
            let relative = relative.to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                if prefix.starts_with(&relative) || relative.starts_with(prefix) {
                    pending.push(path);
                }
            } else if relative.starts_with(prefix) && !is_temporary(&entry.file_name()) {
                names.push(relative);
            }
        }
    }
    names.sort();
    Ok(names)
}

fn is_temporary(file_name: &std::ffi::OsStr) -> bool {
    file_name.to_string_lossy().starts_with(".tmp-")
}

/// The writer thread's state: what to sync, and a counter for temporary names.
struct GroupWriter {
    sync_root: Option<fs::File>,
    next_temp: u64,
    directories: HashMap<PathBuf, Arc<OwnedFd>>,
}

impl GroupWriter {
    fn new(sync_root: Option<fs::File>) -> Self {
        Self {
            sync_root,
            next_temp: 0,
            directories: HashMap::new(),
        }
    }

    fn run(mut self, jobs: &mpsc::Receiver<WriteJob>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Ok(first) = jobs.recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let mut results: Vec<io::Result<Created>> = group
                .iter()
                .map(|job| self.write(&job.path, &job.body))
                .collect();
            // Every group is synced, including one of duplicates only: an object found existing
            // may be one whose own sync failed, and its redelivery must not be acknowledged
            // before it is durable.
            if let Err(err) = self.sync() {
                // Nothing in this group is known durable: fail every write in it, so each is
                // retried.
                let kind = err.kind();
                let message = err.to_string();
                for result in &mut results {
                    *result = Err(io::Error::new(kind, message.clone()));
                }
            }
            for (job, result) in group.drain(..).zip(results) {
                // The requester may have given up (timeout); the object stays either way.
                let _ = job.done.send(result);
            }
        }
    }

    /// Writes one object: a temporary file in the object's directory, hard-linked to its name.
    /// Every call works relative to a cached handle on that directory, so the kernel resolves
    /// one path component per call instead of the whole path.
    fn write(&mut self, path: &Path, body: &[u8]) -> io::Result<Created> {
        let (dir_path, name) = match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => (dir, name),
            _ => return Err(io::Error::other("object path has no directory or name")),
        };
        let dir = self.directory(dir_path)?;
        if rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Ok(Created::AlreadyExisted);
        }
        self.next_temp += 1;
        let temp = format!(".tmp-{}-{}", std::process::id(), self.next_temp);
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
        let mode = Mode::from_bits_truncate(0o644);
        let (dir, file) = match rustix::fs::openat(&dir, temp.as_str(), flags, mode) {
            // The directory was removed behind the cached handle: open it afresh, once.
            Err(rustix::io::Errno::NOENT) => {
                self.directories.remove(dir_path);
                let dir = self.directory(dir_path)?;
                let file = rustix::fs::openat(&dir, temp.as_str(), flags, mode)?;
                (dir, file)
            }
            other => (dir, other?),
        };
        let written = fs::File::from(file).write_all(body);
        let linked = written.and_then(|()| {
            rustix::fs::linkat(&dir, temp.as_str(), &dir, name, AtFlags::empty())
                .map_err(io::Error::from)
        });
        let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
        match linked {
            Ok(()) => Ok(Created::New),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(Created::AlreadyExisted),
            Err(err) => Err(err),
        }
    }

    /// An open handle on `dir`, created if missing. Raw archive directories change every
    /// minute, so a small cache holds the ones in use; it is emptied when it grows large.
    fn directory(&mut self, dir: &Path) -> io::Result<Arc<OwnedFd>> {
        if let Some(fd) = self.directories.get(dir) {
            return Ok(fd.clone());
        }
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(dir, flags, Mode::empty()) {
            Err(rustix::io::Errno::NOENT) => {
                fs::create_dir_all(dir)?;
                rustix::fs::open(dir, flags, Mode::empty())?
            }
            other => other?,
        };
        if self.directories.len() >= MAX_OPEN_DIRECTORIES {
            self.directories.clear();
        }
        let fd = Arc::new(fd);
        self.directories.insert(dir.to_path_buf(), fd.clone());
        Ok(fd)
    }

    fn sync(&self) -> io::Result<()> {
        match &self.sync_root {
            Some(root) => rustix::fs::syncfs(root).map_err(io::Error::from),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_once_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), true).unwrap();
        let first = store
            .create_if_absent(
                "b",
                "raw/x/1.json",
                Bytes::from_static(b"one"),
                "application/json",
            )
            .await
            .unwrap();
        let second = store
            .create_if_absent(
                "b",
                "raw/x/1.json",
                Bytes::from_static(b"two"),
                "application/json",
            )
            .await
            .unwrap();
        assert_eq!((first, second), (Created::New, Created::AlreadyExisted));
        assert_eq!(
            store.read("b", "raw/x/1.json").await.unwrap().unwrap(),
            "one"
        );
        assert_eq!(
            std::fs::read(dir.path().join("b/raw/x/1.json")).unwrap(),
            b"one"
        );
        assert_eq!(store.read("b", "raw/x/2.json").await.unwrap(), None);
    }

    #[tokio::test]
    async fn concurrent_writers_of_one_name_create_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), false).unwrap();
        let writes = (0..64).map(|i| {
            let store = store.clone();
            async move {
                store
                    .create_if_absent("b", "same.json", Bytes::from(format!("{i}")), "text/plain")
                    .await
                    .unwrap()
            }
        });
        let results = futures_util::future::join_all(writes).await;
        assert_eq!(results.iter().filter(|c| **c == Created::New).count(), 1);
    }

    #[tokio::test]
    async fn lists_by_prefix_without_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), false).unwrap();
        for name in [
            "raw/order/a.json",
            "raw/order/b.json",
            "raw/orders/c.json",
            "dead-letter/x.json",
        ] {
            store
                .create_if_absent("b", name, Bytes::from_static(b"{}"), "application/json")
                .await
                .unwrap();
        }
        std::fs::write(dir.path().join("b/raw/order/.tmp-1-1"), b"").unwrap();
        assert_eq!(
            store.list("b", "raw/order/").await.unwrap(),
            ["raw/order/a.json", "raw/order/b.json"]
        );
        assert_eq!(store.list("b", "raw/order").await.unwrap().len(), 3);
        assert!(store.list("missing", "raw/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_directory_removed_behind_the_writer_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), false).unwrap();
        let write = |name: &'static str| {
            store.create_if_absent("b", name, Bytes::from_static(b"{}"), "application/json")
        };
        assert_eq!(write("raw/a/1.json").await.unwrap(), Created::New);
        std::fs::remove_dir_all(dir.path().join("b")).unwrap();
        assert_eq!(write("raw/a/2.json").await.unwrap(), Created::New);
        assert!(dir.path().join("b/raw/a/2.json").exists());
    }

    #[tokio::test]
    async fn reads_ranges_copies_and_deletes_by_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), false).unwrap();
        store
            .create_if_absent("b", "in/a.bin", Bytes::from_static(b"0123456789"), "x/y")
            .await
            .unwrap();
        let tail = store
            .read_range("b", "in/a.bin", ByteRange::Tail(3), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&tail.bytes[..], tail.size), (&b"789"[..], 10));
        let generation = Some(tail.generation);
        let segment = ByteRange::Segment { offset: 8, len: 5 };
        let read = |range, generation| store.read_range("b", "in/a.bin", range, generation);
        assert_eq!(
            read(segment, generation).await.unwrap().unwrap().bytes,
            "89"
        );
        assert_eq!(
            read(segment, Some(1)).await.unwrap(),
            None,
            "another generation"
        );
        assert!(
            store
                .copy("b", "in/a.bin", generation, "q/a.bin")
                .await
                .unwrap()
        );
        assert!(!store.copy("b", "in/none", None, "q/none").await.unwrap());
        assert_eq!(
            store.read("b", "q/a.bin").await.unwrap().unwrap(),
            "0123456789"
        );
        store.delete("b", "in/a.bin", Some(1)).await.unwrap();
        assert!(
            store.read("b", "in/a.bin").await.unwrap().is_some(),
            "kept: other generation"
        );
        store.delete("b", "in/a.bin", generation).await.unwrap();
        store.delete("b", "in/a.bin", None).await.unwrap();
        assert_eq!(store.read("b", "in/a.bin").await.unwrap(), None);
        assert_eq!(
            store.uri("b", "in/a.bin"),
            dir.path().join("b/in/a.bin").display().to_string()
        );
    }

    #[tokio::test]
    async fn unsafe_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), false).unwrap();
        for prefix in ["../", "raw/../../", "/etc/"] {
            let err = store.list("b", prefix).await.unwrap_err();
            assert_eq!(err.retry, Retry::Permanent, "{prefix}");
        }
        for name in ["../escape.json", "a//b", "/abs", "a/./b"] {
            let err = store
                .create_if_absent("b", name, Bytes::new(), "text/plain")
                .await
                .unwrap_err();
            assert_eq!(err.retry, Retry::Permanent, "{name}");
        }
    }
}
