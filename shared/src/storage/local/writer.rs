//! The local store's file writer: a background thread, working in short slices while writes
//! keep arriving, that writes each committed object out as its file and deletes a journal
//! segment once every object in it is a durable file.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::journal::{Location, OwnerLock, Segment};
use super::pending::{MAX_BACKLOG_BYTES, Pending};

/// Directory handles the writer keeps open.
const MAX_OPEN_DIRECTORIES: usize = 256;
/// While writes keep arriving (one within this window), files are written in short slices with
/// rests between: creating a file costs the core far more than committing a write, and a file
/// system call cannot be pre-empted, so even at the lowest CPU priority (`SCHED_IDLE`) preprocess
/// answered 7.0k–7.3k durable requests/s with files written flat out, against 16.7k–17.0k with them
/// deferred. The writer's share of its time grows from [`MIN_BUSY_SHARE`] to all of it as the
/// backlog fills from half its limit to the limit, or as the files fall from [`FILE_LAG_GRACE`] to
/// twice that behind their commits, whichever asks more. A burst is absorbed at journal speed; a
/// steady stream settles a little past the grace period behind, instead of filling half the
/// backlog (at 1,000 events/s the backlog had reached 161 MiB and 230,000 objects after 5.5
/// minutes, each object's key and location held in memory until its file is written). When
/// writes stop, or anyone waits for files ([`Pending::wait_written`]), files are written flat out.
const BUSY_WINDOW: Duration = Duration::from_millis(20);
const BUSY_SLICE: Duration = Duration::from_millis(1);
const MIN_BUSY_SHARE: f64 = 0.02;
const FILE_LAG_GRACE: Duration = Duration::from_secs(30);

/// How long to rest after a slice while writes keep arriving, given the backlog and how long ago
/// the next object to write was committed.
fn busy_rest(backlog_bytes: u64, lag: Duration) -> Duration {
    #[allow(clippy::cast_precision_loss)] // a ratio of two byte counts
    let fill = backlog_bytes as f64 / MAX_BACKLOG_BYTES as f64;
    let behind = lag.as_secs_f64() / FILE_LAG_GRACE.as_secs_f64();
    let share = (2.0 * fill - 1.0)
        .max(behind - 1.0)
        .clamp(MIN_BUSY_SHARE, 1.0);
    BUSY_SLICE.mul_f64((1.0 - share) / share)
}

/// What the committer hands the file writer, in commit order.
pub enum Work {
    /// Write this object's file.
    Object {
        key: String,
        location: Location,
        committed_at: Instant,
    },
    /// Every object of this segment has been handed over: once their files are durable, the
    /// segment goes (and with the owner's last segment, its lock).
    Sealed {
        segment: Arc<Segment>,
        release: Option<OwnerLock>,
    },
}

pub struct FileWriter {
    pub root: PathBuf,
    pub pending: Arc<Pending>,
    /// The root's handle to `syncfs`, when writes must survive a power cut.
    pub sync_root: Option<fs::File>,
}

impl FileWriter {
    pub fn run(self, work: &mpsc::Receiver<Work>) {
        let mut files = Files::default();
        let mut kept: HashSet<PathBuf> = HashSet::new();
        let mut slice = Instant::now();
        for item in work {
            match item {
                Work::Object {
                    key,
                    location,
                    committed_at,
                } => {
                    if !self.pending.busy(BUSY_WINDOW) {
                        slice = Instant::now();
                    } else if slice.elapsed() >= BUSY_SLICE {
                        let backlog = self.pending.backlog_bytes();
                        std::thread::sleep(busy_rest(backlog, committed_at.elapsed()));
                        slice = Instant::now();
                    }
                    let written = location
                        .read()
                        .and_then(|body| files.write(&self.root.join(&key), &body));
                    if let Err(err) = &written {
                        tracing::error!(
                            object = %key,
                            journal = %location.segment.path().display(),
                            error = %err,
                            "could not write the object's file; it stays readable from the \
                             journal, which is kept, and the next start tries again"
                        );
                        kept.insert(location.segment.path().to_path_buf());
                    }
                    self.pending.written(&key, location.len, written.is_ok());
                }
                Work::Sealed { segment, release } => {
                    if kept.remove(segment.path()) {
                        continue;
                    }
                    if let Err(err) = self.retire(&segment) {
                        tracing::error!(
                            journal = %segment.path().display(),
                            error = %err,
                            "could not make the journal's files durable; the journal is kept \
                             and the next start writes them again"
                        );
                        continue;
                    }
                    if let Some(lock) = release {
                        lock.release();
                    }
                }
            }
        }
    }

    /// Makes the files written so far durable, then deletes the segment that held them.
    fn retire(&self, segment: &Segment) -> io::Result<()> {
        if let Some(root) = &self.sync_root {
            rustix::fs::syncfs(root)?;
        }
        fs::remove_file(segment.path())
    }
}

/// Writes files through cached directory handles.
#[derive(Default)]
struct Files {
    next_temp: u64,
    directories: HashMap<PathBuf, Arc<OwnedFd>>,
}

impl Files {
    /// Writes one object: a temporary file in the object's directory, hard-linked to its name,
    /// so nobody sees half a file. A name that exists already (another process wrote it) is
    /// left as it is. Every call works relative to a cached handle on the directory, so the
    /// kernel resolves one path component per call instead of the whole path.
    fn write(&mut self, path: &Path, body: &[u8]) -> io::Result<()> {
        let (dir_path, name) = match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => (dir, name),
            _ => return Err(io::Error::other("object path has no directory or name")),
        };
        let dir = self.directory(dir_path)?;
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
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(err),
            _ => Ok(()),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_rests_less_as_the_backlog_grows() {
        let rest_ms = |fill: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let backlog = (MAX_BACKLOG_BYTES as f64 * fill) as u64;
            (busy_rest(backlog, Duration::ZERO).as_secs_f64() * 1000.0).round()
        };
        assert_eq!(rest_ms(0.0), 49.0);
        assert_eq!(rest_ms(0.5), 49.0);
        assert_eq!(rest_ms(0.75), 1.0);
        assert_eq!(rest_ms(1.0), 0.0);
        assert_eq!(rest_ms(2.0), 0.0);
    }

    #[test]
    fn the_writer_rests_less_as_files_fall_behind() {
        let rest_ms =
            |lag: f64| (busy_rest(0, FILE_LAG_GRACE.mul_f64(lag)).as_secs_f64() * 1000.0).round();
        assert_eq!(rest_ms(0.0), 49.0);
        assert_eq!(rest_ms(1.0), 49.0);
        assert_eq!(rest_ms(1.5), 1.0);
        assert_eq!(rest_ms(2.0), 0.0);
        assert_eq!(rest_ms(4.0), 0.0);
        // Whichever asks more: a full backlog is not rested on because the files are recent.
        assert_eq!(busy_rest(MAX_BACKLOG_BYTES, Duration::ZERO), Duration::ZERO);
    }
}
