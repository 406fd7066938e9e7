//! The local store's journal: where a write is committed before its file exists.
//!
//! Each process appends to its own segments, `<root>/.journal/<owner>-<seq>.log`, and holds an
//! exclusive `flock` on `<owner>.lock` while it lives. A record is
//! `[payload length u32][crc32c of payload u32][payload]`, the payload being
//! `[key length u16][key: "bucket/name"][body]`, little-endian. Reading stops at the first
//! record that is short or fails its checksum: that is a write torn by a crash, never answered.
//! Segments of an owner whose lock is free belong to a process that died; the next store to
//! open adopts them and writes their objects out.
//!
//! Segments are written full of zeros and synced before use (by a thread of their own, one segment
//! ahead), so a commit overwrites blocks the file system has already allocated, and its `fdatasync`
//! flushes data only. Appending would make every sync commit the file system's metadata journal
//! too, with whatever the file writer has changed meanwhile: here that tripled the CPU cost of a
//! commit. The zeros go out a megabyte at a time, each synced, with a rest between: written in one
//! go, the 32 MiB queued ahead of the commits' syncs and lengthened their slowest answers. A zero
//! length ends a segment's records.

use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use rustix::fs::{FlockOperation, Mode, OFlags};

/// The journal's directory under the store's root (not a valid bucket name, so never listed).
pub const JOURNAL_DIR: &str = ".journal";
/// A segment is sealed, and a new one begun, once it holds this much.
pub const SEGMENT_BYTES: u64 = 32 << 20;

/// Zeros written, and synced, at a time while preparing a segment, and the rest between.
const ZERO_CHUNK_BYTES: usize = 1 << 20;
const ZERO_CHUNK_REST: std::time::Duration = std::time::Duration::from_millis(5);

const HEADER_BYTES: usize = 8;
const KEY_LENGTH_BYTES: usize = 2;

/// One segment file, open for writing (by its owner) and for reads at any offset.
pub struct Segment {
    path: PathBuf,
    file: File,
    /// Written full of zeros and synced: commits within it change no file system metadata.
    prepared: bool,
}

impl Segment {
    /// Bytes of a body stored in this segment.
    pub fn read(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let mut body = vec![0; len as usize];
        self.file.read_exact_at(&mut body, offset)?;
        Ok(body)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where a committed object's body is, until its file exists.
#[derive(Clone)]
pub struct Location {
    pub segment: Arc<Segment>,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub fn read(&self) -> io::Result<Vec<u8>> {
        self.segment.read(self.offset, self.len)
    }
}

/// An owner's lock, held while its segments may still be needed. Dropping it lets the lock go;
/// [`OwnerLock::release`] also removes the lock file once nothing of the owner's is left.
pub struct OwnerLock {
    path: PathBuf,
    _held: OwnedFd,
}

impl OwnerLock {
    /// Takes the owner's lock without waiting; `None` when a live process holds it.
    fn try_take(path: PathBuf) -> io::Result<Option<Self>> {
        let flags = OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&path, flags, Mode::from_bits_truncate(0o644))?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self { path, _held: fd })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Removes the lock file; called once the owner's last segment is gone.
    pub fn release(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// This process's end of the journal: the segment being written, and the next one ready.
pub struct Journal {
    current: Arc<Segment>,
    current_len: u64,
    /// A write to the current segment failed, so its tail is unknown: nothing more may go in
    /// it, because recovery stops reading at the first bad record.
    abandoned: bool,
    spares: mpsc::Receiver<io::Result<Segment>>,
    preparer: std::thread::JoinHandle<()>,
    durable: bool,
}

/// A record laid out in a group's buffer, not yet written.
pub struct Staged {
    /// The body's offset from the start of the group's buffer.
    pub body_offset: u64,
    pub len: u32,
}

impl Journal {
    /// Begins this process's journal under `root`, taking its owner lock.
    pub fn begin(root: &Path, durable: bool) -> io::Result<(Self, OwnerLock)> {
        let dir_path = root.join(JOURNAL_DIR);
        fs::create_dir_all(&dir_path)?;
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let owner = format!("{}-{}", std::process::id(), since_epoch.as_nanos());
        let lock = OwnerLock::try_take(dir_path.join(format!("{owner}.lock")))?
            .ok_or_else(|| io::Error::other(format!("journal owner {owner} is locked already")))?;
        // The first segment is not prepared, so the store opens at once; it is left as soon
        // as a prepared one is ready.
        let first = open_segment(&dir_path, &owner, 0)?;
        let dir = File::open(&dir_path)?;
        if durable {
            dir.sync_all()?;
        }
        let (ready, spares) = mpsc::sync_channel(0);
        let preparer = std::thread::Builder::new()
            .name("pulse-journal-prep".to_owned())
            .spawn(move || prepare_segments(&dir, &dir_path, &owner, durable, &ready))?;
        let journal = Self {
            current: Arc::new(first),
            current_len: 0,
            abandoned: false,
            spares,
            preparer,
            durable,
        };
        Ok((journal, lock))
    }

    /// Appends one record for `key` to `buffer`; says where its body lies in the buffer.
    pub fn stage(buffer: &mut Vec<u8>, key: &str, body: &[u8]) -> io::Result<Staged> {
        // `InvalidInput`: no retry can store it.
        let too_large = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a name of {} bytes and a body of {} bytes: the local store takes names up \
                     to 65,535 bytes and objects up to 4 GiB",
                    key.len(),
                    body.len()
                ),
            )
        };
        let key_len = u16::try_from(key.len()).map_err(|_| too_large())?;
        let len = u32::try_from(body.len()).map_err(|_| too_large())?;
        let payload_len =
            u32::try_from(KEY_LENGTH_BYTES + key.len() + body.len()).map_err(|_| too_large())?;
        let start = buffer.len();
        buffer.extend_from_slice(&payload_len.to_le_bytes());
        buffer.extend_from_slice(&[0; 4]);
        buffer.extend_from_slice(&key_len.to_le_bytes());
        buffer.extend_from_slice(key.as_bytes());
        let body_offset = buffer.len() as u64;
        buffer.extend_from_slice(body);
        let crc = crc32c::crc32c(&buffer[start + HEADER_BYTES..]);
        buffer[start + 4..start + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        Ok(Staged { body_offset, len })
    }

    /// Writes a group's records at the end of the current segment and makes them durable.
    /// Returns the segment and the offset the buffer starts at. After a failure the segment is
    /// abandoned (its tail is unknown): commits are refused until a new one is begun.
    pub fn commit(&mut self, buffer: &[u8]) -> io::Result<(Arc<Segment>, u64)> {
        if self.abandoned {
            return Err(io::Error::other(
                "an earlier journal write failed and no new segment could be begun yet",
            ));
        }
        let start = self.current_len;
        if buffer.is_empty() {
            return Ok((self.current.clone(), start));
        }
        let written = self
            .current
            .file
            .write_all_at(buffer, start)
            .and_then(|()| {
                if self.durable {
                    self.current.file.sync_data()
                } else {
                    Ok(())
                }
            });
        match written {
            Ok(()) => {
                self.current_len += buffer.len() as u64;
                Ok((self.current.clone(), start))
            }
            Err(err) => {
                // Records past `start` may be on disk; they were not answered, and if they are
                // whole they will be written out, which a failed write allows.
                self.abandoned = true;
                Err(err)
            }
        }
    }

    /// Moves to the next segment when the current one is full, or is the unprepared first
    /// one and a prepared one is ready; returns the one left, to be sealed.
    pub fn rotate_if_due(&mut self) -> io::Result<Option<Arc<Segment>>> {
        let next = if self.current_len >= SEGMENT_BYTES || self.abandoned {
            self.spares
                .recv()
                .map_err(|_| io::Error::other("the journal's segment thread stopped"))??
        } else if !self.current.prepared {
            match self.spares.try_recv() {
                Ok(next) => next?,
                Err(_) => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        self.current_len = 0;
        self.abandoned = false;
        Ok(Some(std::mem::replace(&mut self.current, Arc::new(next))))
    }

    /// Ends the journal, once its segment thread has deleted the spare it made; returns the
    /// segment being written, to be sealed.
    pub fn end(self) -> Arc<Segment> {
        drop(self.spares);
        let _ = self.preparer.join();
        self.current
    }
}

/// Prepares segments `1, 2, …` one ahead of the committer until it goes, then deletes the one
/// it no longer needs.
fn prepare_segments(
    dir: &File,
    dir_path: &Path,
    owner: &str,
    durable: bool,
    ready: &mpsc::SyncSender<io::Result<Segment>>,
) {
    for seq in 1.. {
        let prepared = open_segment(dir_path, owner, seq).and_then(|mut segment| {
            fill_with_zeros(&segment.file, durable)?;
            if durable {
                dir.sync_all()?;
            }
            segment.prepared = true;
            Ok(segment)
        });
        if let Err(mpsc::SendError(unused)) = ready.send(prepared) {
            if let Ok(segment) = unused {
                let _ = fs::remove_file(segment.path);
            }
            return;
        }
    }
}

fn fill_with_zeros(file: &File, durable: bool) -> io::Result<()> {
    static ZEROS: [u8; ZERO_CHUNK_BYTES] = [0; ZERO_CHUNK_BYTES];
    let mut offset = 0;
    while offset < SEGMENT_BYTES {
        file.write_all_at(&ZEROS, offset)?;
        offset += ZEROS.len() as u64;
        if durable {
            file.sync_data()?;
            std::thread::sleep(ZERO_CHUNK_REST);
        }
    }
    if durable {
        file.sync_all()?;
    }
    Ok(())
}

fn open_segment(dir: &Path, owner: &str, seq: u64) -> io::Result<Segment> {
    let path = dir.join(format!("{owner}-{seq:08}.log"));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok(Segment {
        path,
        file,
        prepared: false,
    })
}

/// A committed object: its key (`bucket/name`) and where its body is.
pub type Record = (String, Location);

/// A dead process's journal, taken over: its lock, and its segments in order with the records
/// each holds.
pub struct Orphan {
    pub lock: OwnerLock,
    pub segments: Vec<(Arc<Segment>, Vec<Record>)>,
}

/// Takes over every journal under `root` whose owner is gone. Owners still alive are left.
pub fn adopt_orphans(root: &Path) -> io::Result<Vec<Orphan>> {
    let dir = root.join(JOURNAL_DIR);
    let mut by_owner: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(owner) = name.strip_suffix(".lock") {
            by_owner.entry(owner.to_owned()).or_default();
        } else if let Some((owner, _seq)) =
            name.strip_suffix(".log").and_then(|s| s.rsplit_once('-'))
        {
            by_owner.entry(owner.to_owned()).or_default().push(path);
        }
    }
    let mut orphans = Vec::new();
    for (owner, mut segment_paths) in by_owner {
        let Some(lock) = OwnerLock::try_take(dir.join(format!("{owner}.lock")))? else {
            continue;
        };
        segment_paths.sort();
        let mut segments = Vec::new();
        for path in segment_paths {
            let file = File::options().read(true).write(true).open(&path)?;
            let segment = Arc::new(Segment {
                path,
                file,
                prepared: false,
            });
            let records = read_records(&segment)?;
            segments.push((segment, records));
        }
        orphans.push(Orphan { lock, segments });
    }
    Ok(orphans)
}

/// The whole records of a segment, in order, up to the first torn one.
fn read_records(segment: &Arc<Segment>) -> io::Result<Vec<Record>> {
    let bytes = fs::read(&segment.path)?;
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER_BYTES) {
        let payload_len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let start = at + HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + payload_len) else {
            break;
        };
        if payload_len < KEY_LENGTH_BYTES || crc32c::crc32c(payload) != crc {
            break;
        }
        let key_len = u16::from_le_bytes([payload[0], payload[1]]) as usize;
        let Some(key) = payload
            .get(KEY_LENGTH_BYTES..KEY_LENGTH_BYTES + key_len)
            .and_then(|key| std::str::from_utf8(key).ok())
        else {
            break;
        };
        let body_start = start + KEY_LENGTH_BYTES + key_len;
        let len = u32::try_from(payload_len - KEY_LENGTH_BYTES - key_len).expect("fits u32");
        records.push((
            key.to_owned(),
            Location {
                segment: segment.clone(),
                offset: body_start as u64,
                len,
            },
        ));
        at = start + payload_len;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_records_are_read_back_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, lock) = Journal::begin(dir.path(), true).unwrap();
        let mut buffer = Vec::new();
        let staged = Journal::stage(&mut buffer, "b/raw/1.json", b"one").unwrap();
        Journal::stage(&mut buffer, "b/raw/2.json", b"").unwrap();
        let (segment, start) = journal.commit(&buffer).unwrap();
        let location = Location {
            segment: segment.clone(),
            offset: start + staged.body_offset,
            len: staged.len,
        };
        assert_eq!(location.read().unwrap(), b"one");
        // A third record cut short, as a crash mid-write leaves it.
        let mut torn = Vec::new();
        Journal::stage(&mut torn, "b/raw/3.json", b"three").unwrap();
        journal.commit(&torn[..torn.len() - 2]).unwrap();

        assert!(adopt_orphans(dir.path()).unwrap().is_empty(), "owner alive");
        drop(lock);
        let orphans = adopt_orphans(dir.path()).unwrap();
        assert_eq!(orphans.len(), 1);
        let (_, records) = &orphans[0].segments[0];
        let keys: Vec<&str> = records.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["b/raw/1.json", "b/raw/2.json"]);
        assert_eq!(records[0].1.read().unwrap(), b"one");
        assert!(records[1].1.read().unwrap().is_empty());
    }

    #[test]
    fn a_corrupted_record_ends_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, lock) = Journal::begin(dir.path(), false).unwrap();
        let mut buffer = Vec::new();
        Journal::stage(&mut buffer, "b/1", b"first").unwrap();
        let second = buffer.len();
        Journal::stage(&mut buffer, "b/2", b"second").unwrap();
        buffer[second + HEADER_BYTES + 4] ^= 0xff;
        journal.commit(&buffer).unwrap();
        drop(lock);
        let orphans = adopt_orphans(dir.path()).unwrap();
        assert_eq!(orphans[0].segments[0].1.len(), 1);
    }
}
