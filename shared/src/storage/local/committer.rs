//! The local store's commit thread: takes writes in groups, decides create-if-absent for each,
//! appends the new ones to the journal with one sync, and only then answers.
//!
//! Groups are gathered on the async side ([`gather`]): the first write of a group waits until
//! every other task ready to run has had its turn, so the writes of requests that arrived
//! together go to this thread in one hand-over and are answered in one. On one core a sync
//! stalls the CPU itself, so the fewer syncs and thread switches per write, the better.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::sync::{Arc, Weak, mpsc};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::journal::{Journal, Location, OwnerLock, Staged};
use super::pending::{MAX_BACKLOG_BYTES, Pending};
use super::writer::Work;
use crate::storage::Created;

/// Most writes committed by one sync.
pub const MAX_GROUP: usize = 512;

pub struct WriteJob {
    /// `bucket/name`, checked safe.
    pub key: String,
    pub body: Bytes,
}

/// Writes handed over together, and where their answers go, in the same order.
pub struct Group {
    pub jobs: Vec<WriteJob>,
    pub done: oneshot::Sender<Vec<io::Result<Created>>>,
}

/// Writes waiting to form the next group, each with its writer's answer.
pub type Forming = std::sync::Mutex<Vec<(WriteJob, oneshot::Sender<io::Result<Created>>)>>;

/// Leads one group: lets every ready task add its write, hands the group to the committer, and
/// answers each writer. Spawned by the write that found `forming` empty, so a writer that
/// gives up (its request cancelled) never strands the others.
pub async fn gather(forming: Arc<Forming>, committer: Weak<mpsc::Sender<Group>>) {
    let lock = || {
        forming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut seen = 0;
    loop {
        tokio::task::yield_now().await;
        let len = lock().len();
        if len == seen || len >= MAX_GROUP {
            break;
        }
        seen = len;
    }
    let (jobs, answers): (Vec<_>, Vec<_>) = std::mem::take(&mut *lock()).into_iter().unzip();
    let (done, results) = oneshot::channel();
    // If the store or its committer is gone, dropping the answers tells every writer so.
    let handed = committer
        .upgrade()
        .is_some_and(|committer| committer.send(Group { jobs, done }).is_ok());
    if !handed {
        return;
    }
    if let Ok(results) = results.await {
        for (answer, result) in answers.into_iter().zip(results) {
            let _ = answer.send(result);
        }
    }
}

/// What one write in a group comes to before the group is committed.
enum Decision {
    Exists,
    /// The same name as a new write earlier in the group: it stands or falls with that one.
    RepeatInGroup,
    New(Staged),
    Failed(io::Error),
}

pub struct Committer {
    pub root: std::path::PathBuf,
    pub pending: Arc<Pending>,
    pub journal: Journal,
    pub lock: OwnerLock,
    pub files: mpsc::Sender<Work>,
}

impl Committer {
    /// Runs until every handle on the store is gone, then hands the last segment to the file
    /// writer.
    pub fn run(mut self, groups: &mpsc::Receiver<Group>) {
        let mut buffer = Vec::new();
        while let Ok(first) = groups.recv() {
            self.pending.wait_backlog_below(MAX_BACKLOG_BYTES);
            let mut taken = vec![first];
            let mut count = taken[0].jobs.len();
            while count < MAX_GROUP {
                match groups.try_recv() {
                    Ok(group) => {
                        count += group.jobs.len();
                        taken.push(group);
                    }
                    Err(_) => break,
                }
            }
            let mut jobs = Vec::with_capacity(count);
            let mut answer_to = Vec::with_capacity(taken.len());
            for group in taken {
                answer_to.push((group.jobs.len(), group.done));
                jobs.extend(group.jobs);
            }
            let mut results = self.commit(jobs, &mut buffer).into_iter();
            for (len, done) in answer_to {
                // The writers may have given up (timeout); the objects stay either way.
                let _ = done.send(results.by_ref().take(len).collect());
            }
            match self.journal.rotate_if_due() {
                Ok(Some(full)) => {
                    let _ = self.files.send(Work::Sealed {
                        segment: full,
                        release: None,
                    });
                }
                Ok(None) => {}
                Err(err) => tracing::error!(
                    error = %err,
                    "could not begin a new journal segment: a full one keeps growing; after a \
                     failed write, writes are refused (and redelivered) until one can be begun"
                ),
            }
        }
        let Self {
            journal,
            lock,
            files,
            ..
        } = self;
        let _ = files.send(Work::Sealed {
            segment: journal.end(),
            release: Some(lock),
        });
    }

    /// Commits one group; answers in the order of `jobs`.
    fn commit(&mut self, jobs: Vec<WriteJob>, buffer: &mut Vec<u8>) -> Vec<io::Result<Created>> {
        buffer.clear();
        let mut in_group = HashSet::with_capacity(jobs.len());
        // The directories the group's new objects need.
        let mut group_dirs: HashSet<&str> = HashSet::new();
        let decisions: Vec<Decision> = jobs
            .iter()
            .map(|job| {
                if in_group.contains(job.key.as_str()) {
                    return Decision::RepeatInGroup;
                }
                if self.pending.contains(&job.key) {
                    return Decision::Exists;
                }
                match self.place(&job.key, &in_group, &group_dirs) {
                    Ok(Place::Taken) => Decision::Exists,
                    Ok(Place::Clash(why)) => {
                        Decision::Failed(io::Error::new(io::ErrorKind::InvalidInput, why))
                    }
                    Ok(Place::Free) => match Journal::stage(buffer, &job.key, &job.body) {
                        Ok(staged) => {
                            in_group.insert(job.key.as_str());
                            group_dirs.extend(parents(&job.key));
                            Decision::New(staged)
                        }
                        Err(err) => Decision::Failed(err),
                    },
                    Err(err) => Decision::Failed(err),
                }
            })
            .collect();
        let committed = self.journal.commit(buffer);
        let mut new = Vec::new();
        let answers = jobs
            .into_iter()
            .zip(decisions)
            .map(|(job, decision)| match (decision, &committed) {
                (Decision::Exists, _) | (Decision::RepeatInGroup, Ok(_)) => {
                    Ok(Created::AlreadyExisted)
                }
                (Decision::Failed(err), _) => Err(err),
                (Decision::New(staged), Ok((segment, start))) => {
                    let location = Location {
                        segment: segment.clone(),
                        offset: start + staged.body_offset,
                        len: staged.len,
                    };
                    new.push((job.key, location));
                    Ok(Created::New)
                }
                (Decision::New(_) | Decision::RepeatInGroup, Err(err)) => {
                    Err(io::Error::new(err.kind(), err.to_string()))
                }
            })
            .collect();
        // Readers find the objects in the journal before their writers hear of them.
        self.pending.committed(new.iter().cloned());
        let committed_at = Instant::now();
        for (key, location) in new {
            let _ = self.files.send(Work::Object {
                key,
                location,
                committed_at,
            });
        }
        answers
    }
}

/// Where a new object would go.
enum Place {
    Free,
    /// Its file exists already (written by an earlier process, or by hand).
    Taken,
    /// A file cannot go there: Cloud Storage holds both `a/b` and `a/b/c`, a directory tree
    /// cannot, and the write answered as stored would be lost when its file is written.
    Clash(String),
}

impl Committer {
    /// Where `key` would go beside the objects there are: on disk, in the journal, or new in
    /// this group (`in_group`, and the directories they need, `group_dirs`). One stat in the
    /// steady state, of the object's own path (its directory's when that is new).
    fn place(
        &self,
        key: &str,
        in_group: &HashSet<&str>,
        group_dirs: &HashSet<&str>,
    ) -> io::Result<Place> {
        let clash = |object: &str| {
            Place::Clash(format!(
                "`{object}` is an object, so `{key}` cannot be stored under it here (the local \
                 store keeps objects as files)"
            ))
        };
        let below = format!("{key}/");
        if group_dirs.contains(key) || self.pending.has_under(&below) {
            return Ok(clash(&format!("{key}/…")));
        }
        if let Some(parent) =
            parents(key).find(|p| in_group.contains(p) || self.pending.contains(p))
        {
            return Ok(clash(parent));
        }
        match fs::symlink_metadata(self.root.join(key)) {
            Ok(metadata) if metadata.is_dir() => Ok(clash(&format!("{key}/…"))),
            Ok(_) => Ok(Place::Taken),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // The nearest existing parent must be a directory.
                for parent in parents(key) {
                    match fs::symlink_metadata(self.root.join(parent)) {
                        Ok(metadata) if metadata.is_dir() => return Ok(Place::Free),
                        Ok(_) => return Ok(clash(parent)),
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                        Err(err) => return Err(err),
                    }
                }
                Ok(Place::Free)
            }
            // A parent is a file.
            Err(err) if err.kind() == io::ErrorKind::NotADirectory => {
                let file = parents(key).find(|parent| {
                    fs::symlink_metadata(self.root.join(parent)).is_ok_and(|m| !m.is_dir())
                });
                Ok(clash(file.unwrap_or(key)))
            }
            Err(err) => Err(err),
        }
    }
}

/// The object paths above `key` ("bucket/name"), nearest first, the bucket's directory left
/// out: `b/x/y/z` gives `b/x/y`, `b/x`.
fn parents(key: &str) -> impl Iterator<Item = &str> {
    let bucket_end = key.find('/').unwrap_or(key.len());
    key.rmatch_indices('/')
        .map(|(i, _)| &key[..i])
        .filter(move |parent| parent.len() > bucket_end)
}
