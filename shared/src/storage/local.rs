//! The embedded object store: bucket `B`, object `N` is the plain file `<root>/B/N`.
//!
//! A write is committed by appending it to this process's journal (`journal.rs`) in groups, one
//! `fdatasync` for every group of writes that arrived together, and only then answered. Its file is
//! written afterwards by a background thread (`writer.rs`) that yields to new writes: creating a
//! file cost about 150 µs of CPU on the build machine's ext4, a write to a journal segment about
//! 6 µs (its sync, about 90 µs, is shared by the group), so a burst of writes is taken at journal
//! speed and the files follow when the writes pause. Until its file exists an object is read,
//! listed and checked for create-if-absent from the journal, so every answered write is visible at
//! once through the store. While writes keep coming the file writer takes a small share of the
//! core, a share that grows once a 1 GiB backlog is half full or the files fall 30 s behind their
//! commits; past 1 GiB, new writes wait for files.
//!
//! A process that ends normally leaves every object as a file: dropping the last handle waits
//! for the writer. One that is killed leaves the rest in its journal, and the next store opened
//! on the same root writes them out. Between two processes sharing a root, create-if-absent is
//! settled when the second one's file is written: the first file stays, though both writers
//! may have been told their object was new.

mod committer;
mod journal;
mod pending;
mod writer;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

use self::committer::{Committer, Forming, Group, WriteJob};
use self::journal::Journal;
use self::pending::Pending;
use self::writer::{FileWriter, Work};
use super::{ByteRange, Created, ObjectStore, RangeRead, is_safe_object_name};
use crate::error::{BackendError, Retry};

/// Cloud Storage's limit on an object name, and a file name's limit on each part of it.
const MAX_NAME_BYTES: usize = 1024;
const MAX_PART_BYTES: usize = 255;

/// A directory per bucket under `root`.
#[derive(Clone)]
pub struct LocalObjectStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    pending: Arc<Pending>,
    /// Writes waiting to be handed to the committer together.
    forming: Arc<Forming>,
    /// Closed on drop, which ends the committer, then the file writer. Group leaders hold it
    /// weakly: a leader that has not run yet when the last handle goes (on the same runtime
    /// thread, say) must not keep the committer, and so the drop, waiting for it.
    groups: Option<Arc<mpsc::Sender<Group>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    /// Waits for every answered write to be in its file.
    fn drop(&mut self) {
        self.groups.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl LocalObjectStore {
    /// Opens (creating) the store under `root`, taking over the journals of processes that
    /// died. `durable` makes every acknowledged write survive a power cut (`fdatasync`);
    /// without it writes survive a crash of the process only.
    pub fn open(root: impl Into<PathBuf>, durable: bool) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let pending = Arc::new(Pending::default());
        let (files, work) = mpsc::channel();
        for orphan in journal::adopt_orphans(&root)? {
            let mut release = Some(orphan.lock);
            let count = orphan.segments.len();
            for (index, (segment, records)) in orphan.segments.into_iter().enumerate() {
                pending.committed(records.iter().cloned());
                let committed_at = Instant::now();
                for (key, location) in records {
                    let _ = files.send(Work::Object {
                        key,
                        location,
                        committed_at,
                    });
                }
                let release = if index + 1 == count {
                    release.take()
                } else {
                    None
                };
                let _ = files.send(Work::Sealed { segment, release });
            }
            // An owner whose segments were all retired before it died leaves only its lock file.
            if let Some(lock) = release {
                lock.release();
            }
        }
        let (journal, lock) = Journal::begin(&root, durable)?;
        let file_writer = FileWriter {
            root: root.clone(),
            pending: pending.clone(),
            sync_root: if durable {
                Some(fs::File::open(&root)?)
            } else {
                None
            },
        };
        let committer = Committer {
            root: root.clone(),
            pending: pending.clone(),
            journal,
            lock,
            files,
        };
        let (groups, queue) = mpsc::channel();
        let threads = vec![
            std::thread::Builder::new()
                .name("pulse-object-commit".to_owned())
                .spawn(move || committer.run(&queue))?,
            std::thread::Builder::new()
                .name("pulse-object-files".to_owned())
                .spawn(move || file_writer.run(&work))?,
        ];
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                pending,
                forming: Arc::default(),
                groups: Some(Arc::new(groups)),
                threads,
            }),
        })
    }

    /// `bucket/name`, the object's path under the root, once both are checked safe and the name
    /// is one a file can have.
    fn key(bucket: &str, name: &str) -> Result<String, BackendError> {
        if !is_safe_object_name(name) {
            return Err(unsafe_address(bucket, name));
        }
        Self::check_bucket(bucket, name)?;
        if name.len() > MAX_NAME_BYTES || name.split('/').any(|part| part.len() > MAX_PART_BYTES) {
            return Err(BackendError::new(
                format!("write to local bucket {bucket}"),
                Retry::Permanent,
                format!(
                    "an object name of {} bytes: names are at most {MAX_NAME_BYTES} bytes (as \
                     in Cloud Storage) and each part between slashes at most {MAX_PART_BYTES} \
                     (a file name's limit)",
                    name.len()
                ),
            ));
        }
        Ok(format!("{bucket}/{name}"))
    }

    /// Bucket names never start with a dot, which keeps the journal out of reach.
    fn check_bucket(bucket: &str, name: &str) -> Result<(), BackendError> {
        if !is_safe_object_name(bucket) || bucket.contains('/') || bucket.starts_with('.') {
            return Err(unsafe_address(bucket, name));
        }
        Ok(())
    }

    /// Waits for the file of `key` when it is still only in the journal, for operations that
    /// work on the file itself (ranges, copies, deletes).
    async fn ensure_file(&self, key: &str) -> Result<(), BackendError> {
        if self.inner.pending.contains(key) {
            self.flush().await?;
        }
        Ok(())
    }
}

/// True when an error says there is no object at a path: nothing there, a directory (of other
/// objects' names), or a file where a directory on the way would be.
fn is_absent(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
    )
}

fn unsafe_address(bucket: &str, name: &str) -> BackendError {
    BackendError::new(
        format!("address {bucket}/{name}"),
        Retry::Permanent,
        "bucket or object name has an empty, `.` or `..` segment, or the bucket starts with `.`",
    )
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    fn describe(&self) -> String {
        format!("local directory {}", self.inner.root.display())
    }

    async fn create_if_absent(
        &self,
        bucket: &str,
        name: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<Created, BackendError> {
        let key = Self::key(bucket, name)?;
        let operation = || format!("write {}", self.inner.root.join(&key).display());
        let stopped =
            || BackendError::new(operation(), Retry::Transient, "the commit thread stopped");
        let groups = self.inner.groups.as_ref().ok_or_else(stopped)?;
        let (done, result) = oneshot::channel();
        let leads = {
            let mut forming = self
                .inner
                .forming
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            forming.push((
                WriteJob {
                    key: key.clone(),
                    body,
                },
                done,
            ));
            forming.len() == 1
        };
        if leads {
            tokio::spawn(committer::gather(
                self.inner.forming.clone(),
                Arc::downgrade(groups),
            ));
        }
        match result.await {
            Ok(Ok(created)) => Ok(created),
            // An object the journal cannot hold, or a name a file cannot have beside the others:
            // no retry can store it.
            Ok(Err(err)) if err.kind() == io::ErrorKind::InvalidInput => {
                Err(BackendError::new(operation(), Retry::Permanent, err))
            }
            Ok(Err(err)) => Err(BackendError::io(operation(), &err)),
            Err(_) => Err(stopped()),
        }
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, BackendError> {
        let key = Self::key(bucket, name)?;
        let path = self.inner.root.join(&key);
        let operation = || format!("read {}", path.display());
        if let Some(location) = self.inner.pending.location(&key) {
            let body = tokio::task::spawn_blocking(move || location.read())
                .await
                .map_err(|e| BackendError::new(operation(), Retry::Transient, e))?
                .map_err(|e| BackendError::io(operation(), &e))?;
            return Ok(Some(Bytes::from(body)));
        }
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(err) if is_absent(&err) => Ok(None),
            Err(err) => Err(BackendError::io(operation(), &err)),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BackendError> {
        Self::check_bucket(bucket, prefix)?;
        // A prefix may end in `/` or a partial name, but may not climb out of the bucket.
        let directories = prefix.rsplit_once('/').map_or("", |(dirs, _)| dirs);
        if prefix.starts_with('/') || (!directories.is_empty() && !is_safe_object_name(directories))
        {
            return Err(unsafe_address(bucket, prefix));
        }
        let bucket_key = format!("{bucket}/");
        // The journal's objects are taken before the directories are walked: the file writer
        // links an object's file first and only then drops it from the journal, so an object
        // missing from this snapshot already has its file. Walked first, an object whose file
        // was linked after the walk and dropped before this read would be in neither.
        let in_journal = self
            .inner
            .pending
            .keys_under(&format!("{bucket_key}{prefix}"));
        let bucket_dir = self.inner.root.join(bucket);
        let operation = format!("list {}/{prefix}", bucket_dir.display());
        let on_disk = {
            let prefix = prefix.to_owned();
            tokio::task::spawn_blocking(move || list_under(&bucket_dir, &prefix))
                .await
                .map_err(|e| BackendError::new(operation.clone(), Retry::Transient, e))?
                .map_err(|e| BackendError::io(operation, &e))?
        };
        let mut names = on_disk;
        names.extend(
            in_journal
                .into_iter()
                .map(|key| key[bucket_key.len()..].to_owned()),
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn read_range(
        &self,
        bucket: &str,
        name: &str,
        range: ByteRange,
        generation: Option<i64>,
    ) -> Result<Option<RangeRead>, BackendError> {
        let key = Self::key(bucket, name)?;
        self.ensure_file(&key).await?;
        let path = self.inner.root.join(key);
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
        let (from_key, to_key) = (Self::key(bucket, name)?, Self::key(bucket, to)?);
        self.ensure_file(&from_key).await?;
        self.ensure_file(&to_key).await?;
        let (from, to) = (self.inner.root.join(from_key), self.inner.root.join(to_key));
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
        let key = Self::key(bucket, name)?;
        self.ensure_file(&key).await?;
        let path = self.inner.root.join(key);
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
            Err(err) if is_absent(&err) => Ok(()),
            Err(err) => Err(BackendError::io(operation, &err)),
        }
    }

    fn uri(&self, bucket: &str, name: &str) -> String {
        self.inner
            .root
            .join(bucket)
            .join(name)
            .display()
            .to_string()
    }

    async fn flush(&self) -> Result<(), BackendError> {
        let pending = self.inner.pending.clone();
        let committed = pending.committed_count();
        tokio::task::spawn_blocking(move || pending.wait_written(committed))
            .await
            .map_err(|e| BackendError::new("wait for the local files", Retry::Transient, e))
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
        Err(err) if is_absent(&err) => return Ok(None),
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
        Err(err) if is_absent(&err) => return Ok(false),
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

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use super::*;

    /// The last handle can go while a group's leader is spawned but has not run: on this
    /// one-thread runtime the leader cannot run while the drop waits, so the drop must not wait
    /// for it (it did, and a replay-job test hung for good).
    #[tokio::test]
    async fn the_last_handle_goes_while_a_group_is_forming() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), false).unwrap();
        let mut write = Box::pin(store.create_if_absent(
            "b",
            "raw/x/1.json",
            Bytes::from_static(b"one"),
            "application/json",
        ));
        // One poll, without yielding to the runtime: the write joins a forming group and
        // spawns its leader, which has not run when the write and the store go.
        let mut context = Context::from_waker(Waker::noop());
        assert!(write.as_mut().poll(&mut context).is_pending());
        drop(write);
        drop(store);
        let reopened = LocalObjectStore::open(dir.path(), false).unwrap();
        assert_eq!(reopened.read("b", "raw/x/1.json").await.unwrap(), None);
    }

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
        store.flush().await.unwrap();
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
        store.flush().await.unwrap();
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
        store.flush().await.unwrap();
        std::fs::remove_dir_all(dir.path().join("b")).unwrap();
        assert_eq!(write("raw/a/2.json").await.unwrap(), Created::New);
        store.flush().await.unwrap();
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

    /// Cloud Storage holds `a/b` and `a/b/c` both; files cannot. The second of such a pair was
    /// answered as stored (a directory taken for the object, or two journal records whose files
    /// cannot both be written) and then lost: it is refused now, for good, and the first kept.
    #[tokio::test]
    async fn a_name_that_clashes_with_a_file_or_directory_is_refused_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), false).unwrap();
        let put = |name: &'static str| {
            let store = store.clone();
            async move {
                store
                    .create_if_absent("b", name, Bytes::from(name), "text/plain")
                    .await
            }
        };
        // In the journal, then on disk, and within one group.
        assert_eq!(put("j/a").await.unwrap(), Created::New);
        assert_eq!(put("j/a/c").await.unwrap_err().retry, Retry::Permanent);
        assert_eq!(put("j/x/y").await.unwrap(), Created::New);
        let err = put("j/x").await.unwrap_err();
        assert!(err.message.contains("j/x/…"), "{}", err.message);
        store.flush().await.unwrap();
        assert_eq!(put("j/a/c/d").await.unwrap_err().retry, Retry::Permanent);
        assert_eq!(put("j/x").await.unwrap_err().retry, Retry::Permanent);
        let (first, second) = tokio::join!(put("g/p"), put("g/p/q"));
        assert!(first.is_ok() != second.is_ok(), "{first:?} {second:?}");

        store.flush().await.unwrap();
        for (name, stored) in [
            ("j/a", true),
            ("j/x/y", true),
            ("j/a/c", false),
            ("j/x", false),
        ] {
            let read = store.read("b", name).await.unwrap();
            assert_eq!(read.is_some(), stored, "{name}");
            if stored {
                assert_eq!(read.unwrap(), Bytes::from(name));
            }
        }
        let kept = [
            store.read("b", "g/p").await.unwrap(),
            store.read("b", "g/p/q").await.unwrap(),
        ];
        assert_eq!(
            kept.iter().flatten().count(),
            1,
            "the one answered as stored is there"
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
        let err = store.list(".journal", "").await.unwrap_err();
        assert_eq!(err.retry, Retry::Permanent, "the journal is no bucket");
        for name in ["../escape.json", "a//b", "/abs", "a/./b"] {
            let err = store
                .create_if_absent("b", name, Bytes::new(), "text/plain")
                .await
                .unwrap_err();
            assert_eq!(err.retry, Retry::Permanent, "{name}");
        }
        // Names no file can have (a part over 255 bytes) or Cloud Storage refuses (over 1,024
        // bytes): refused before they reach the journal, for good.
        for name in ["x".repeat(256), format!("{}x.json", "part/".repeat(205))] {
            let err = store
                .create_if_absent("b", &name, Bytes::new(), "text/plain")
                .await
                .unwrap_err();
            assert_eq!(err.retry, Retry::Permanent, "{}", err.message);
        }
        let longest = format!("{}/{}", "x".repeat(255), "y".repeat(255));
        let created = store
            .create_if_absent("b", &longest, Bytes::new(), "text/plain")
            .await
            .unwrap();
        assert_eq!(created, Created::New, "the longest parts a file can have");
    }

    /// Every answered write is readable and listed at once, whether its file exists yet or not.
    #[tokio::test]
    async fn answered_writes_are_visible_before_and_after_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), true).unwrap();
        let writes = (0..2000).map(|i| {
            let store = store.clone();
            async move {
                let name = format!("raw/{}/{i}.json", i % 7);
                let body = Bytes::from(format!("{{\"n\":{i}}}"));
                let created = store
                    .create_if_absent("b", &name, body.clone(), "application/json")
                    .await
                    .unwrap();
                assert_eq!(created, Created::New);
                assert_eq!(store.read("b", &name).await.unwrap(), Some(body));
                let again = store
                    .create_if_absent("b", &name, Bytes::from_static(b"other"), "x/y")
                    .await
                    .unwrap();
                assert_eq!(again, Created::AlreadyExisted);
            }
        });
        futures_util::future::join_all(writes).await;
        assert_eq!(store.list("b", "raw/").await.unwrap().len(), 2000);
        assert_eq!(store.list("b", "raw/3/").await.unwrap().len(), 286);
    }

    /// Dropping the last handle leaves every object as a file and no journal behind.
    #[tokio::test]
    async fn dropping_the_store_writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path(), true).unwrap();
        for i in 0..300 {
            let name = format!("raw/{i}.json");
            store
                .create_if_absent("b", &name, Bytes::from(format!("{i}")), "text/plain")
                .await
                .unwrap();
        }
        drop(store);
        for i in 0..300 {
            let body = std::fs::read(dir.path().join(format!("b/raw/{i}.json"))).unwrap();
            assert_eq!(body, format!("{i}").as_bytes());
        }
        let journal: Vec<_> = std::fs::read_dir(dir.path().join(journal::JOURNAL_DIR))
            .unwrap()
            .collect();
        assert!(journal.is_empty(), "journal left behind: {journal:?}");
    }

    /// A lock file left with no segments (its owner died after retiring them all) is removed.
    #[tokio::test]
    async fn a_lone_lock_file_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join(journal::JOURNAL_DIR);
        std::fs::create_dir_all(&journal).unwrap();
        std::fs::write(journal.join("1-1.lock"), b"").unwrap();
        drop(LocalObjectStore::open(dir.path(), false).unwrap());
        let left: Vec<_> = std::fs::read_dir(&journal).unwrap().collect();
        assert!(left.is_empty(), "journal left behind: {left:?}");
    }

    /// A process killed before writing its files leaves them in its journal; the next store
    /// writes them, keeps files that exist already, and serves them meanwhile.
    #[tokio::test]
    async fn a_dead_process_journal_is_written_out_by_the_next_store() {
        let dir = tempfile::tempdir().unwrap();
        let (mut dead, lock) = Journal::begin(dir.path(), true).unwrap();
        let mut buffer = Vec::new();
        Journal::stage(&mut buffer, "b/raw/a.json", b"from the journal").unwrap();
        Journal::stage(&mut buffer, "b/raw/b.json", b"journal copy").unwrap();
        dead.commit(&buffer).unwrap();
        std::fs::create_dir_all(dir.path().join("b/raw")).unwrap();
        std::fs::write(dir.path().join("b/raw/b.json"), b"already a file").unwrap();
        drop(lock);

        let store = LocalObjectStore::open(dir.path(), true).unwrap();
        assert_eq!(
            store.read("b", "raw/a.json").await.unwrap().unwrap(),
            "from the journal"
        );
        let again = store
            .create_if_absent("b", "raw/a.json", Bytes::from_static(b"new"), "x/y")
            .await
            .unwrap();
        assert_eq!(again, Created::AlreadyExisted);
        store.flush().await.unwrap();
        let file = |name: &str| std::fs::read(dir.path().join("b/raw").join(name)).unwrap();
        assert_eq!(file("a.json"), b"from the journal");
        assert_eq!(file("b.json"), b"already a file");
        drop(store);
        let journal: Vec<_> = std::fs::read_dir(dir.path().join(journal::JOURNAL_DIR))
            .unwrap()
            .collect();
        assert!(journal.is_empty(), "journal left behind: {journal:?}");
    }
}
