//! Object storage: the trait every function uses, with Cloud Storage and a local directory per
//! bucket behind it.

mod gcs;
mod local;

use async_trait::async_trait;
use bytes::Bytes;

pub use gcs::GcsObjectStore;
pub use local::LocalObjectStore;

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
}

/// A path inside a bucket that a person might have typed: no empty, `.` or `..` segments.
pub fn is_safe_object_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."))
}
