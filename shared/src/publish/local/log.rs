//! The local bus's log: what makes a published message survive a crash of the process.
//!
//! A message published to a topic with subscriptions is appended here, and synced, before
//! `publish` answers; when a delivery ends (acknowledged, or dead-lettered with its record
//! stored) a note that it is done is appended, without a sync of its own: a note lost in a
//! crash only means one more delivery, which downstream deduplicates. A bus opened on the same
//! directory reads the log back and delivers again every message some subscription has not
//! finished.
//!
//! Layout: `<dir>/LOCK` (an exclusive `flock` held while the bus lives: one bus per directory)
//! and segments `<dir>/<seq>.log`. A record is `[payload length u32][crc32c of payload u32]
//! [payload]`, little-endian; the payload is `[kind u8][message id u64]` then, for a publish,
//! the topic, the subscriptions still owed the message and the message as JSON, or, for a done
//! note, the subscription's name. Reading a segment stops at the first short or corrupt record:
//! a write torn by a crash, never answered. Each process writes new segments only.
//!
//! Commits are grouped: one thread takes every append waiting, writes them with one `write` and
//! syncs once (`fdatasync`), then answers them all, so throughput comes from the group, not
//! from the disk's sync rate.
//!
//! Growth is bounded by compaction, oldest segment first: when a segment fills, a new one is
//! begun and sealed segments are looked at from the oldest; one with no live message is
//! deleted, one whose live messages are at most half its bytes has them written again at the
//! end of the log (synced) and is then deleted. Opening the log does the same for everything
//! an earlier process left. The log therefore holds about twice its undelivered messages plus
//! one segment. Deleting only the oldest keeps done notes valid: a note is never older than
//! the copy of its message it refers to.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::delivery::envelope::PushMessage;

/// A segment is sealed, and a new one begun, once it holds this much.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// A group is written once it holds this much, even if more appends are waiting.
const GROUP_BYTES: usize = 4 << 20;

const HEADER_BYTES: usize = 8;
const PUBLISH: u8 = 1;
const DONE: u8 = 2;

/// A message read back from the log: some subscriptions have not finished with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undelivered {
    pub topic: String,
    /// The subscriptions still owed a delivery.
    pub subscriptions: Vec<String>,
    pub message: PushMessage,
}

/// How the log is kept.
#[derive(Clone, Copy, Debug)]
pub struct LogOptions {
    /// Sync each group before answering (`PULSE_LOCAL_FSYNC`); without, a message survives a
    /// crash of the process but not of the machine.
    pub durable: bool,
    /// Size at which a segment is sealed.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            durable: true,
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// What the log holds, for tests and the bus's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// Segments on disk, the one being written included.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Messages some subscription has not finished with.
    pub live: usize,
    /// Groups written, and syncs made (one per group holding a publish when durable).
    pub groups: u64,
    pub syncs: u64,
}

enum Op {
    Append {
        id: u64,
        record: Vec<u8>,
        subscriptions: Vec<String>,
        reply: oneshot::Sender<io::Result<()>>,
    },
    Done {
        id: u64,
        subscription: String,
    },
    Stats(oneshot::Sender<LogStats>),
    Close(oneshot::Sender<()>),
}

/// The log, as the bus holds it: appends go to its commit thread. Dropping it lets the thread
/// finish what it was given and waits for it, so the lock is free when the drop returns.
pub struct BusLog {
    ops: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for BusLog {
    fn drop(&mut self) {
        self.ops = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl BusLog {
    /// Opens (or creates) the log in `dir`, taking its lock, and returns the messages an earlier
    /// process left undelivered, in the order they were published.
    pub fn open(dir: &Path, options: LogOptions) -> io::Result<(Self, Vec<Undelivered>)> {
        fs::create_dir_all(dir)?;
        let lock = take_lock(&dir.join("LOCK"))?;
        let mut state = State::recover(dir, options, lock)?;
        let undelivered = state.undelivered()?;
        state.begin_segment()?;
        state.compact()?;
        let (ops, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("pulse-bus-log".to_owned())
            .spawn(move || state.run(&receiver))?;
        let log = Self {
            ops: Some(ops),
            thread: Some(thread),
        };
        Ok((log, undelivered))
    }

    fn send(&self, op: Op) -> io::Result<()> {
        self.ops
            .as_ref()
            .ok_or_else(stopped)?
            .send(op)
            .map_err(|_| stopped())
    }

    /// Appends a published message owed to `subscriptions`; resolves once it is durable.
    pub async fn append(
        &self,
        topic: &str,
        subscriptions: &[String],
        message: &PushMessage,
    ) -> io::Result<()> {
        let id = message_number(&message.message_id)?;
        let record = publish_record(id, topic, subscriptions, message)?;
        let (reply, answer) = oneshot::channel();
        self.send(Op::Append {
            id,
            record,
            subscriptions: subscriptions.to_vec(),
            reply,
        })?;
        answer.await.map_err(|_| stopped())?
    }

    /// Notes that `subscription` has finished with the message (acknowledged or dead-lettered).
    pub fn done(&self, subscription: &str, message_id: &str) {
        if let Ok(id) = message_number(message_id) {
            let _ = self.send(Op::Done {
                id,
                subscription: subscription.to_owned(),
            });
        }
    }

    /// Writes what it was given, then stops the commit thread and lets the lock go; appends
    /// afterwards fail.
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Op::Close(reply)).is_ok() {
            let _ = answer.await;
        }
    }

    /// What the log holds now (after every operation sent before this call).
    pub async fn stats(&self) -> io::Result<LogStats> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Stats(reply))?;
        answer.await.map_err(|_| stopped())
    }
}

fn stopped() -> io::Error {
    io::Error::other("the bus log's thread has stopped")
}

/// The bus's message ids are decimal numbers.
fn message_number(id: &str) -> io::Result<u64> {
    id.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message id {id:?} is not the local bus's"),
        )
    })
}

fn take_lock(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::from_bits_truncate(0o644))?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "the local bus log {} is in use by another process (is another `pulse up` \
                 running on this data dir?)",
                path.parent().unwrap_or(path).display()
            ),
        )),
        Err(err) => Err(err.into()),
    }
}

#[derive(Serialize, Deserialize)]
struct PublishBody<'a> {
    topic: std::borrow::Cow<'a, str>,
    subscriptions: Vec<String>,
    message: std::borrow::Cow<'a, PushMessage>,
}

fn frame(
    buffer: &mut Vec<u8>,
    payload: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; HEADER_BYTES]);
    payload(buffer)?;
    let len = u32::try_from(buffer.len() - start - HEADER_BYTES)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a message of 4 GiB or more"))?;
    let crc = crc32c::crc32c(&buffer[start + HEADER_BYTES..]);
    buffer[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buffer[start + 4..start + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn publish_record(
    id: u64,
    topic: &str,
    subscriptions: &[String],
    message: &PushMessage,
) -> io::Result<Vec<u8>> {
    let mut record = Vec::with_capacity(message.data.len() + 256);
    frame(&mut record, |buffer| {
        buffer.push(PUBLISH);
        buffer.extend_from_slice(&id.to_le_bytes());
        let body = PublishBody {
            topic: topic.into(),
            subscriptions: subscriptions.to_vec(),
            message: std::borrow::Cow::Borrowed(message),
        };
        serde_json::to_writer(buffer, &body).map_err(io::Error::other)
    })?;
    Ok(record)
}

fn done_record(buffer: &mut Vec<u8>, id: u64, subscription: &str) -> io::Result<()> {
    frame(buffer, |buffer| {
        buffer.push(DONE);
        buffer.extend_from_slice(&id.to_le_bytes());
        buffer.extend_from_slice(subscription.as_bytes());
        Ok(())
    })
}

/// One record read back from a segment.
enum Record {
    Publish {
        id: u64,
        offset: u64,
        len: u64,
        body: PublishBody<'static>,
    },
    Done {
        id: u64,
        subscription: String,
    },
}

/// Reads a segment's whole records; stops at the first torn or corrupt one.
fn read_segment(path: &Path) -> io::Result<Vec<Record>> {
    let bytes = fs::read(path)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER_BYTES {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let start = at + HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        if len < 9 || crc32c::crc32c(payload) != crc {
            break;
        }
        let id = u64::from_le_bytes(payload[1..9].try_into().unwrap_or_default());
        let rest = &payload[9..];
        match payload[0] {
            PUBLISH => match serde_json::from_slice::<PublishBody<'_>>(rest) {
                Ok(body) => records.push(Record::Publish {
                    id,
                    offset: at as u64,
                    len: (HEADER_BYTES + len) as u64,
                    body: PublishBody {
                        topic: body.topic.into_owned().into(),
                        subscriptions: body.subscriptions,
                        message: std::borrow::Cow::Owned(body.message.into_owned()),
                    },
                }),
                Err(err) => {
                    tracing::error!(segment = %path.display(), "unreadable bus log record: {err}");
                    break;
                }
            },
            DONE => records.push(Record::Done {
                id,
                subscription: String::from_utf8_lossy(rest).into_owned(),
            }),
            kind => {
                tracing::error!(segment = %path.display(), kind, "unknown bus log record");
                break;
            }
        }
        at = start + len;
    }
    Ok(records)
}

/// A message some subscription has not finished with, and where its latest copy is.
struct Live {
    segment: u64,
    offset: u64,
    len: u64,
    /// Subscriptions owed it (names, in the order published).
    owed: Vec<String>,
}

#[derive(Default)]
struct SegmentStats {
    bytes: u64,
    live: usize,
    live_bytes: u64,
}

/// The commit thread's state.
struct State {
    dir: PathBuf,
    options: LogOptions,
    _lock: OwnedFd,
    /// Segments by sequence number, oldest first; the last is the one written.
    segments: BTreeMap<u64, SegmentStats>,
    current: Option<(u64, File)>,
    live: HashMap<u64, Live>,
    groups: u64,
    syncs: u64,
}

impl State {
    /// Reads every segment an earlier process left and rebuilds what is still owed.
    fn recover(dir: &Path, options: LogOptions, lock: OwnedFd) -> io::Result<Self> {
        let mut state = Self {
            dir: dir.to_owned(),
            options,
            _lock: lock,
            segments: BTreeMap::new(),
            current: None,
            live: HashMap::new(),
            groups: 0,
            syncs: 0,
        };
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(".log")
                .and_then(|s| s.parse::<u64>().ok())
            {
                found.push(seq);
            }
        }
        found.sort_unstable();
        // Done notes may come before a later copy of their message (a message carried forward
        // by compaction): apply them after every copy is known.
        let mut done: Vec<(u64, String)> = Vec::new();
        for seq in found {
            let path = state.segment_path(seq);
            let bytes = fs::metadata(&path)?.len();
            state.segments.insert(
                seq,
                SegmentStats {
                    bytes,
                    ..SegmentStats::default()
                },
            );
            for record in read_segment(&path)? {
                match record {
                    Record::Publish {
                        id,
                        offset,
                        len,
                        body,
                    } => {
                        // A later copy replaces an earlier one (it names what was still owed
                        // when it was written).
                        state.place(
                            id,
                            Live {
                                segment: seq,
                                offset,
                                len,
                                owed: body.subscriptions,
                            },
                        );
                    }
                    Record::Done { id, subscription } => done.push((id, subscription)),
                }
            }
        }
        for (id, subscription) in done {
            state.finish(id, &subscription);
        }
        Ok(state)
    }

    /// The messages still owed, in publishing order (their ids grow with time).
    fn undelivered(&self) -> io::Result<Vec<Undelivered>> {
        let mut ids: Vec<u64> = self.live.keys().copied().collect();
        ids.sort_unstable();
        let mut undelivered = Vec::with_capacity(ids.len());
        for id in ids {
            let body = self.read_live(id)?;
            let live = &self.live[&id];
            undelivered.push(Undelivered {
                topic: body.topic.into_owned(),
                subscriptions: live.owed.clone(),
                message: body.message.into_owned(),
            });
        }
        Ok(undelivered)
    }

    fn read_live(&self, id: u64) -> io::Result<PublishBody<'static>> {
        let live = &self.live[&id];
        let file = File::open(self.segment_path(live.segment))?;
        let mut bytes = vec![0; usize::try_from(live.len).map_err(io::Error::other)?];
        file.read_exact_at(&mut bytes, live.offset)?;
        let body: PublishBody<'_> =
            serde_json::from_slice(&bytes[HEADER_BYTES + 9..]).map_err(io::Error::other)?;
        Ok(PublishBody {
            topic: body.topic.into_owned().into(),
            subscriptions: body.subscriptions,
            message: std::borrow::Cow::Owned(body.message.into_owned()),
        })
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016}.log"))
    }

    /// Begins a new segment after every existing one.
    fn begin_segment(&mut self) -> io::Result<()> {
        let seq = self.segments.keys().next_back().map_or(0, |last| last + 1);
        let file = fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(self.segment_path(seq))?;
        if self.options.durable {
            File::open(&self.dir)?.sync_all()?;
        }
        self.segments.insert(seq, SegmentStats::default());
        self.current = Some((seq, file));
        Ok(())
    }

    /// Notes that `subscription` is done with message `id`.
    fn finish(&mut self, id: u64, subscription: &str) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        live.owed.retain(|owed| owed != subscription);
        if live.owed.is_empty()
            && let Some(live) = self.live.remove(&id)
        {
            self.unplace(&live);
        }
    }

    /// Records where the latest copy of message `id` is, in place of any earlier copy.
    fn place(&mut self, id: u64, live: Live) {
        let stats = self.segments.entry(live.segment).or_default();
        stats.live += 1;
        stats.live_bytes += live.len;
        if let Some(earlier) = self.live.insert(id, live) {
            self.unplace(&earlier);
        }
    }

    /// Takes a copy that is no longer live off its segment's counts.
    fn unplace(&mut self, live: &Live) {
        if let Some(stats) = self.segments.get_mut(&live.segment) {
            stats.live -= 1;
            stats.live_bytes -= live.len;
        }
    }

    /// Writes `buffer` at the end of the current segment, synced when asked.
    fn write(&mut self, buffer: &[u8], sync: bool) -> io::Result<u64> {
        let (seq, file) = self.current.as_mut().ok_or_else(|| {
            io::Error::other("no bus log segment is open (an earlier write failed)")
        })?;
        let seq = *seq;
        let result = file
            .write_all(buffer)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        if let Err(err) = result {
            // The segment's tail is unknown now: nothing more goes in it.
            self.current = None;
            tracing::error!("bus log write failed; beginning a new segment: {err}");
            if let Err(err) = self.begin_segment() {
                tracing::error!("no new bus log segment: {err}");
            }
            return Err(err);
        }
        if sync {
            self.syncs += 1;
        }
        self.groups += 1;
        let stats = self.segments.entry(seq).or_default();
        let start = stats.bytes;
        stats.bytes += buffer.len() as u64;
        Ok(start)
    }

    /// The commit loop: takes every operation waiting, writes them as one group, syncs once if
    /// the group holds a publish, answers, and compacts when a segment fills.
    fn run(mut self, ops: &mpsc::Receiver<Op>) {
        let mut buffer = Vec::with_capacity(GROUP_BYTES);
        let mut appended: Vec<(u64, u64, u64, Vec<String>)> = Vec::new();
        let mut replies = Vec::new();
        let mut finished = Vec::new();
        let mut stats_wanted = Vec::new();
        let mut closing = None;
        while let Ok(first) = ops.recv() {
            let mut next = Some(first);
            while let Some(op) = next.take() {
                match op {
                    Op::Append {
                        id,
                        record,
                        subscriptions,
                        reply,
                    } => {
                        appended.push((
                            id,
                            buffer.len() as u64,
                            record.len() as u64,
                            subscriptions,
                        ));
                        buffer.extend_from_slice(&record);
                        replies.push(reply);
                    }
                    Op::Done { id, subscription } => {
                        if let Err(err) = done_record(&mut buffer, id, &subscription) {
                            tracing::error!("bus log done note not written: {err}");
                        }
                        finished.push((id, subscription));
                    }
                    Op::Stats(reply) => stats_wanted.push(reply),
                    Op::Close(reply) => closing = Some(reply),
                }
                if buffer.len() < GROUP_BYTES && closing.is_none() {
                    next = ops.try_recv().ok();
                }
            }
            if !buffer.is_empty() {
                let sync = self.options.durable && !replies.is_empty();
                match self.write(&buffer, sync) {
                    Ok(start) => {
                        let seq = self.current.as_ref().map_or(0, |(seq, _)| *seq);
                        for (id, offset, len, owed) in appended.drain(..) {
                            self.place(
                                id,
                                Live {
                                    segment: seq,
                                    offset: start + offset,
                                    len,
                                    owed,
                                },
                            );
                        }
                        for reply in replies.drain(..) {
                            let _ = reply.send(Ok(()));
                        }
                    }
                    Err(err) => {
                        appended.clear();
                        for reply in replies.drain(..) {
                            let _ = reply.send(Err(io::Error::new(err.kind(), err.to_string())));
                        }
                    }
                }
                buffer.clear();
            }
            for (id, subscription) in finished.drain(..) {
                self.finish(id, &subscription);
            }
            if self
                .current
                .as_ref()
                .and_then(|(seq, _)| self.segments.get(seq))
                .is_some_and(|stats| stats.bytes >= self.options.segment_bytes)
                && let Err(err) = self.begin_segment().and_then(|()| self.compact())
            {
                tracing::error!("bus log compaction failed: {err}");
            }
            for reply in stats_wanted.drain(..) {
                let _ = reply.send(self.stats());
            }
            if let Some(reply) = closing.take() {
                // Dropping the state lets the lock go before the answer.
                drop(self);
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Deletes sealed segments from the oldest while they hold no live message, or carries
    /// their live messages forward when those are at most half their bytes.
    fn compact(&mut self) -> io::Result<()> {
        let current = self.current.as_ref().map(|(seq, _)| *seq);
        while let Some((&oldest, stats)) = self.segments.first_key_value() {
            if Some(oldest) == current {
                break;
            }
            if stats.live > 0 {
                if stats.live_bytes * 2 > stats.bytes {
                    break;
                }
                self.carry_forward(oldest)?;
            }
            fs::remove_file(self.segment_path(oldest))?;
            self.segments.remove(&oldest);
        }
        Ok(())
    }

    /// Writes the live messages of segment `seq` again at the end of the log, each naming the
    /// subscriptions still owed it, and syncs them.
    fn carry_forward(&mut self, seq: u64) -> io::Result<()> {
        let mut ids: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, live)| live.segment == seq)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut buffer = Vec::new();
        let mut placed = Vec::with_capacity(ids.len());
        for id in &ids {
            let body = self.read_live(*id)?;
            let owed = self.live[id].owed.clone();
            let record = publish_record(*id, &body.topic, &owed, &body.message)?;
            placed.push((*id, buffer.len() as u64, record.len() as u64));
            buffer.extend_from_slice(&record);
        }
        let start = self.write(&buffer, self.options.durable)?;
        let current = self.current.as_ref().map_or(0, |(seq, _)| *seq);
        for (id, offset, len) in placed {
            if let Some(old) = self.live.remove(&id) {
                self.unplace(&old);
                self.place(
                    id,
                    Live {
                        segment: current,
                        offset: start + offset,
                        len,
                        owed: old.owed,
                    },
                );
            }
        }
        tracing::debug!(
            segment = seq,
            messages = ids.len(),
            "bus log: carried forward"
        );
        Ok(())
    }

    fn stats(&self) -> LogStats {
        LogStats {
            segments: self.segments.len(),
            bytes: self.segments.values().map(|s| s.bytes).sum(),
            live: self.live.len(),
            groups: self.groups,
            syncs: self.syncs,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;

    fn message(id: u64, size: usize) -> PushMessage {
        PushMessage {
            data: "x".repeat(size),
            attributes: [("event_type".to_owned(), "order".to_owned())].into(),
            message_id: id.to_string(),
            publish_time: Some("2026-12-05T20:00:00Z".to_owned()),
            ordering_key: None,
        }
    }

    fn subs(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    fn small(segment_bytes: u64) -> LogOptions {
        LogOptions {
            durable: true,
            segment_bytes,
        }
    }

    #[tokio::test]
    async fn what_is_not_done_is_read_back_with_the_subscriptions_still_owed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, undelivered) = BusLog::open(dir.path(), LogOptions::default()).unwrap();
            assert!(undelivered.is_empty());
            for id in 1..=3 {
                log.append("events-raw", &subs(&["a", "b"]), &message(id, 10))
                    .await
                    .unwrap();
            }
            log.done("a", "1");
            log.done("b", "1");
            log.done("a", "2");
            log.done("b", "unknown id");
            let stats = log.stats().await.unwrap();
            assert_eq!(stats.live, 2);
            assert!(stats.syncs >= 1 && stats.syncs <= 3, "{stats:?}");
        }
        let (log, undelivered) = BusLog::open(dir.path(), LogOptions::default()).unwrap();
        assert_eq!(
            undelivered,
            vec![
                Undelivered {
                    topic: "events-raw".to_owned(),
                    subscriptions: subs(&["b"]),
                    message: message(2, 10),
                },
                Undelivered {
                    topic: "events-raw".to_owned(),
                    subscriptions: subs(&["a", "b"]),
                    message: message(3, 10),
                },
            ]
        );
        assert_eq!(log.stats().await.unwrap().live, 2);
    }

    #[tokio::test]
    async fn a_second_log_on_the_same_directory_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = BusLog::open(dir.path(), LogOptions::default()).unwrap();
        let err = BusLog::open(dir.path(), LogOptions::default())
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(err.to_string().contains("another `pulse up`"), "{err}");
        drop(first);
        BusLog::open(dir.path(), LogOptions::default()).unwrap();
    }

    #[tokio::test]
    async fn a_torn_record_at_the_end_was_never_answered_and_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = BusLog::open(dir.path(), LogOptions::default()).unwrap();
            log.append("t", &subs(&["a"]), &message(1, 100))
                .await
                .unwrap();
            log.append("t", &subs(&["a"]), &message(2, 100))
                .await
                .unwrap();
        }
        // Cut the last record short, as a crash in the middle of a write would.
        let segment = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.extension().is_some_and(|e| e == "log") && fs::metadata(p).unwrap().len() > 0
            })
            .unwrap();
        let len = fs::metadata(&segment).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len - 20)
            .unwrap();
        let (_, undelivered) = BusLog::open(dir.path(), LogOptions::default()).unwrap();
        let ids: Vec<_> = undelivered
            .iter()
            .map(|u| u.message.message_id.as_str())
            .collect();
        assert_eq!(ids, ["1"]);
    }

    #[tokio::test]
    async fn delivered_messages_are_compacted_away_and_the_undelivered_carried_forward() {
        let dir = tempfile::tempdir().unwrap();
        let segment_bytes = 64 << 10;
        let (log, _) = BusLog::open(dir.path(), small(segment_bytes)).unwrap();
        // One message never delivered, then many that are: the log must not grow with them.
        log.append("t", &subs(&["a"]), &message(1, 1000))
            .await
            .unwrap();
        for id in 2..2000 {
            log.append("t", &subs(&["a"]), &message(id, 1000))
                .await
                .unwrap();
            log.done("a", &id.to_string());
        }
        let stats = log.stats().await.unwrap();
        assert_eq!(stats.live, 1);
        assert!(stats.bytes <= 3 * segment_bytes, "{stats:?}");
        assert!(stats.segments <= 3, "{stats:?}");
        drop(log);
        let (log, undelivered) = BusLog::open(dir.path(), small(segment_bytes)).unwrap();
        assert_eq!(undelivered.len(), 1);
        assert_eq!(undelivered[0].message, message(1, 1000));
        // On opening, what an earlier process left is compacted too.
        let stats = log.stats().await.unwrap();
        assert!(stats.bytes <= 2 * segment_bytes, "{stats:?}");
        log.done("a", "1");
        drop(log);
        let (_, undelivered) = BusLog::open(dir.path(), small(segment_bytes)).unwrap();
        assert!(undelivered.is_empty());
    }

    #[tokio::test]
    async fn concurrent_publishes_share_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = BusLog::open(dir.path(), LogOptions::default()).unwrap();
        let log = std::sync::Arc::new(log);
        let tasks: Vec<_> = (1..=200)
            .map(|id| {
                let log = log.clone();
                tokio::spawn(async move { log.append("t", &subs(&["a"]), &message(id, 100)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let stats = log.stats().await.unwrap();
        assert_eq!(stats.live, 200);
        assert!(stats.syncs < 200, "{stats:?}");
    }
}
