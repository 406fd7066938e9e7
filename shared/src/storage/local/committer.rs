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
use std::path::Path;
use std::sync::{Arc, mpsc};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::journal::{Journal, Location, OwnerLock, Staged};
use super::pending::Pending;
use super::writer::Work;
use crate::storage::Created;

/// Most writes committed by one sync.
pub const MAX_GROUP: usize = 512;
/// Committed bytes allowed to wait for their files; past this, new writes wait for the file
/// writer. A burst this large is absorbed at journal speed.
pub const MAX_BACKLOG_BYTES: u64 = 1 << 30;

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
pub async fn gather(forming: Arc<Forming>, committer: mpsc::Sender<Group>) {
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
    // If the committer is gone, dropping the answers tells every writer so.
    if committer.send(Group { jobs, done }).is_err() {
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
        let decisions: Vec<Decision> = jobs
            .iter()
            .map(|job| {
                if in_group.contains(job.key.as_str()) {
                    return Decision::RepeatInGroup;
                }
                if self.pending.contains(&job.key) {
                    return Decision::Exists;
                }
                match exists(&self.root.join(&job.key)) {
                    Ok(true) => Decision::Exists,
                    Ok(false) => match Journal::stage(buffer, &job.key, &job.body) {
                        Ok(staged) => {
                            in_group.insert(job.key.as_str());
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
        for (key, location) in new {
            let _ = self.files.send(Work::Object { key, location });
        }
        answers
    }
}

/// Whether an object's file exists already (written by an earlier process, or by hand).
fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}
