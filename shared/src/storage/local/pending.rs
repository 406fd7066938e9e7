//! What the local store has committed to its journal but not yet written as files, and how far
//! the files have caught up: shared by the committer, the file writer and readers.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::journal::Location;

/// Committed bytes allowed to wait for their files; past this, new writes wait for the file
/// writer. A burst this large is absorbed at journal speed.
pub const MAX_BACKLOG_BYTES: u64 = 1 << 30;

#[derive(Default)]
pub struct Pending {
    objects: Mutex<BTreeMap<String, Location>>,
    progress: Mutex<Progress>,
    progressed: Condvar,
}

#[derive(Default)]
struct Progress {
    committed: u64,
    written: u64,
    backlog_bytes: u64,
    last_commit: Option<Instant>,
    /// Callers blocked in [`Pending::wait_written`]: the file writer does not rest for them.
    waiting: usize,
}

/// Every lock here guards plain data that each holder leaves consistent before it could panic,
/// so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pending {
    /// The journal location of `key` ("bucket/name") while its file is not written yet.
    pub fn location(&self, key: &str) -> Option<Location> {
        lock(&self.objects).get(key).cloned()
    }

    pub fn contains(&self, key: &str) -> bool {
        lock(&self.objects).contains_key(key)
    }

    /// True when some key starts with `prefix`.
    pub fn has_under(&self, prefix: &str) -> bool {
        lock(&self.objects)
            .range(prefix.to_owned()..)
            .next()
            .is_some_and(|(key, _)| key.starts_with(prefix))
    }

    /// Keys starting with `prefix`, in order.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        lock(&self.objects)
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Records objects committed to the journal; each will be reported by [`Pending::written`].
    pub fn committed(&self, objects: impl IntoIterator<Item = (String, Location)>) {
        let (mut count, mut bytes) = (0, 0);
        {
            let mut pending = lock(&self.objects);
            for (key, location) in objects {
                count += 1;
                bytes += u64::from(location.len);
                pending.insert(key, location);
            }
        }
        let mut progress = lock(&self.progress);
        progress.committed += count;
        progress.backlog_bytes += bytes;
        progress.last_commit = Some(Instant::now());
    }

    /// Whether the file writer should yield to new writes: something was committed in the last
    /// `window`, and nobody is waiting for files.
    pub fn busy(&self, window: Duration) -> bool {
        let progress = lock(&self.progress);
        progress.waiting == 0 && progress.last_commit.is_some_and(|at| at.elapsed() < window)
    }

    /// Records that an object committed earlier has its file now (or, with `written` false,
    /// that writing it failed and it stays readable from the journal).
    pub fn written(&self, key: &str, len: u32, written: bool) {
        if written {
            lock(&self.objects).remove(key);
        }
        let mut progress = lock(&self.progress);
        progress.written += 1;
        progress.backlog_bytes = progress.backlog_bytes.saturating_sub(u64::from(len));
        self.progressed.notify_all();
    }

    /// Bytes of committed objects waiting for their files.
    pub fn backlog_bytes(&self) -> u64 {
        lock(&self.progress).backlog_bytes
    }

    /// How many objects have been committed so far.
    pub fn committed_count(&self) -> u64 {
        lock(&self.progress).committed
    }

    /// Blocks until the first `count` committed objects have been dealt with by the file writer,
    /// which works flat out meanwhile, even while new writes keep coming.
    pub fn wait_written(&self, count: u64) {
        let mut progress = lock(&self.progress);
        progress.waiting += 1;
        let mut progress = self
            .progressed
            .wait_while(progress, |p| p.written < count)
            .unwrap_or_else(PoisonError::into_inner);
        progress.waiting -= 1;
    }

    /// Blocks while more than `limit` bytes of committed objects wait for their files.
    pub fn wait_backlog_below(&self, limit: u64) {
        let progress = lock(&self.progress);
        drop(
            self.progressed
                .wait_while(progress, |p| p.backlog_bytes > limit)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::local::journal::Journal;

    /// Under a steady stream of writes the file writer rests between short slices; a caller
    /// waiting for files (a flush, or a range read of an object not yet a file) must not wait
    /// behind those rests, or it would wait for the whole backlog at a fiftieth of the speed.
    #[test]
    fn the_writer_does_not_rest_while_someone_waits_for_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _lock) = Journal::begin(dir.path(), false).unwrap();
        let mut buffer = Vec::new();
        let staged = Journal::stage(&mut buffer, "b/1", b"one").unwrap();
        let (segment, start) = journal.commit(&buffer).unwrap();
        let location = Location {
            segment,
            offset: start + staged.body_offset,
            len: staged.len,
        };
        let pending = Arc::new(Pending::default());
        pending.committed([("b/1".to_owned(), location)]);
        let window = Duration::from_secs(3600);
        assert!(pending.busy(window), "just committed: the writer yields");

        let waiter = {
            let pending = pending.clone();
            std::thread::spawn(move || pending.wait_written(1))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while pending.busy(window) {
            assert!(
                Instant::now() < deadline,
                "a caller waiting for files did not stop the writer's rests"
            );
            std::thread::yield_now();
        }
        pending.written("b/1", 3, true);
        waiter.join().unwrap();
        assert!(
            pending.busy(window),
            "nobody waits any more: the writer yields again"
        );
    }
}
