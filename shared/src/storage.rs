//! Object storage: the trait every function uses, with Cloud Storage (`gcs.rs`) and, in a build
//! with the `local` feature, a local directory per bucket (`local.rs`) behind it.

mod gcs;
#[cfg(feature = "local")]
mod local;

use async_trait::async_trait;
use bytes::Bytes;

pub use gcs::GcsObjectStore;
#[cfg(feature = "local")]
pub use local::{LocalObjectStore, local_generation};

use crate::error::BackendError;

/// What a create-if-absent write found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// The object did not exist and now does, durably.
    New,
    /// An object of that name already existed; it was left as it was.
    AlreadyExisted,
}

/// A bucket-and-object store with create-if-absent writes.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Where objects live, for the start-up log (`gs://…` or a directory).
    fn describe(&self) -> String;

    /// Writes `body` as `bucket/name` unless that object exists. Returns only once the object is
    /// durably stored, so the caller may acknowledge what it holds.
    async fn create_if_absent(
        &self,
        bucket: &str,
        name: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Created, BackendError>;

    /// Reads a whole object; `None` when it does not exist.
    async fn read(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, BackendError>;

    /// Names of the objects whose name starts with `prefix`, in lexical order.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BackendError>;

    /// A page of [`Self::list`]: at most `max` names after `after` (from the first when `None`),
    /// in lexical order. Callers that work on what they list (replays) take a page at a time, so
    /// neither a request's work nor its answer grows with the prefix.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, BackendError> {
        let names = self.list(bucket, prefix).await?;
        Ok(names
            .into_iter()
            .filter(|name| after.is_none_or(|after| name.as_str() > after))
            .take(max)
            .collect())
    }

    /// Reads part of an object (of `generation`, when given) and what the store says about the
    /// whole of it; `None` when it (or that generation) does not exist.
    async fn read_range(
        &self,
        bucket: &str,
        name: &str,
        range: ByteRange,
        generation: Option<i64>,
    ) -> Result<Option<RangeRead>, BackendError>;

    /// Copies an object (of `generation`, when given) to `to` in the same bucket, replacing
    /// whatever `to` held, within the store (the bytes do not pass through this process).
    /// `Ok(false)` when the source does not exist.
    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        to: &str,
    ) -> Result<bool, BackendError>;

    /// Deletes an object (only `generation`, when given, so a newer upload under the same name
    /// survives). An object that is already gone is not an error.
    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(), BackendError>;

    /// Where a warehouse reads the object from: `gs://bucket/name`, or a local file path.
    fn uri(&self, bucket: &str, name: &str) -> String;

    /// Waits until every write answered so far is in its final place, for callers that look
    /// past the store (at the local files). Cloud Storage writes are there when answered.
    async fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Which bytes of an object to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// The last `n` bytes (all of them when the object is shorter).
    Tail(u64),
    /// `len` bytes from `offset` (fewer at the end of the object).
    Segment { offset: u64, len: u64 },
}

/// Bytes read from part of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRead {
    pub bytes: Bytes,
    /// Size of the whole object.
    pub size: u64,
    /// The generation read: Cloud Storage's, or locally the file's modification time in
    /// microseconds (it changes when the file is replaced).
    pub generation: i64,
}

/// A path inside a bucket that a person might have typed: no empty, `.` or `..` segments.
pub fn is_safe_object_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."))
}
