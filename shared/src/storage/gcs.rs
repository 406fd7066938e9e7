//! Cloud Storage through the official `google-cloud-storage` crate.
//!
//! Reads (whole or ranged) and writes use the JSON API; listing, copying and deleting use the
//! StorageControl API (gRPC), which `gcp-storage-emulator` does not serve.

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_gax::paginator::ItemPaginator as _;
use google_cloud_storage::client::{Storage, StorageControl};

use google_cloud_storage::model_ext::ReadRange;

use super::{ByteRange, Created, ObjectStore, RangeRead};
use crate::error::{BackendError, Retry};

/// Buckets in Cloud Storage. Object writes and reads use the JSON API; listing uses the
/// StorageControl API (gRPC).
#[derive(Clone, Debug)]
pub struct GcsObjectStore {
    storage: Storage,
    control: StorageControl,
    endpoint: Option<String>,
}

impl GcsObjectStore {
    /// Builds the clients once, with the SDK's default retry policy. `endpoint` overrides the
    /// service address (an emulator); `anonymous` skips credentials (emulators only).
    pub async fn connect(endpoint: Option<&str>, anonymous: bool) -> anyhow::Result<Self> {
        let mut storage = Storage::builder();
        let mut control = StorageControl::builder();
        if let Some(endpoint) = endpoint {
            storage = storage.with_endpoint(endpoint);
            control = control.with_endpoint(endpoint);
        }
        if anonymous {
            let credentials = google_cloud_auth::credentials::anonymous::Builder::new().build();
            storage = storage.with_credentials(credentials.clone());
            control = control.with_credentials(credentials);
        }
        Ok(Self {
            storage: storage.build().await?,
            control: control.build().await?,
            endpoint: endpoint.map(str::to_owned),
        })
    }
}

fn bucket_path(bucket: &str) -> String {
    format!("projects/_/buckets/{bucket}")
}

#[async_trait]
impl ObjectStore for GcsObjectStore {
    fn describe(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("Cloud Storage at {endpoint}"),
            None => "Cloud Storage".to_owned(),
        }
    }

    async fn create_if_absent(
        &self,
        bucket: &str,
        name: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Created, BackendError> {
        // `ifGenerationMatch=0`: the write succeeds only if no live object has this name, which
        // also makes the request idempotent, so the SDK may retry it safely.
        let result = self
            .storage
            .write_object(bucket_path(bucket), name, body)
            .set_if_generation_match(0)
            .set_content_type(content_type)
            .send_buffered()
            .await;
        match result {
            Ok(_) => Ok(Created::New),
            Err(err) if err.http_status_code() == Some(412) || is_failed_precondition(&err) => {
                Ok(Created::AlreadyExisted)
            }
            Err(err) => Err(BackendError::from_gax(
                format!("write gs://{bucket}/{name}"),
                &err,
            )),
        }
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, BackendError> {
        let operation = || format!("read gs://{bucket}/{name}");
        let mut response = match self
            .storage
            .read_object(bucket_path(bucket), name)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) if err.http_status_code() == Some(404) || is_not_found(&err) => {
                return Ok(None);
            }
            Err(err) => return Err(BackendError::from_gax(operation(), &err)),
        };
        let mut contents = Vec::new();
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| BackendError::from_gax(operation(), &e))?;
            contents.extend_from_slice(&chunk);
        }
        Ok(Some(Bytes::from(contents)))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BackendError> {
        let mut items = self
            .control
            .list_objects()
            .set_parent(bucket_path(bucket))
            .set_prefix(prefix)
            .by_item();
        let mut names = Vec::new();
        while let Some(object) = items.next().await {
            let object = object
                .map_err(|e| BackendError::from_gax(format!("list gs://{bucket}/{prefix}"), &e))?;
            names.push(object.name);
        }
        names.sort();
        Ok(names)
    }

    /// Lists from `after` on (Cloud Storage's `lexicographicStart`, inclusive, so `after` itself
    /// is skipped here) and stops at `max`: a page costs about one list call, whatever follows.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, BackendError> {
        let mut request = self
            .control
            .list_objects()
            .set_parent(bucket_path(bucket))
            .set_prefix(prefix)
            .set_page_size(i32::try_from(max.clamp(1, 1000)).unwrap_or(1000));
        if let Some(after) = after {
            request = request.set_lexicographic_start(after);
        }
        let mut items = request.by_item();
        let mut names = Vec::new();
        while names.len() < max
            && let Some(object) = items.next().await
        {
            let object = object
                .map_err(|e| BackendError::from_gax(format!("list gs://{bucket}/{prefix}"), &e))?;
            if after.is_none_or(|after| object.name.as_str() > after) {
                names.push(object.name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn read_range(
        &self,
        bucket: &str,
        name: &str,
        range: ByteRange,
        generation: Option<i64>,
    ) -> Result<Option<RangeRead>, BackendError> {
        let operation = || format!("read {range:?} of gs://{bucket}/{name}");
        let mut request = self
            .storage
            .read_object(bucket_path(bucket), name)
            .set_read_range(match range {
                ByteRange::Tail(n) => ReadRange::tail(n),
                ByteRange::Segment { offset, len } => ReadRange::segment(offset, len),
            });
        if let Some(generation) = generation {
            request = request.set_generation(generation);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) if err.http_status_code() == Some(404) || is_not_found(&err) => {
                return Ok(None);
            }
            // A range that starts past the end (416): nothing to read there.
            Err(err) if err.http_status_code() == Some(416) => {
                return Err(BackendError::new(operation(), Retry::Permanent, err));
            }
            Err(err) => return Err(BackendError::from_gax(operation(), &err)),
        };
        let object = response.object();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| BackendError::from_gax(operation(), &e))?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(RangeRead {
            bytes: Bytes::from(bytes),
            size: u64::try_from(object.size).unwrap_or(0),
            generation: object.generation,
        }))
    }

    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        to: &str,
    ) -> Result<bool, BackendError> {
        let operation = || format!("copy gs://{bucket}/{name} to {to}");
        // A rewrite of a large object may take several calls, each carrying the token of the
        // last; the bytes never leave Cloud Storage.
        let mut token = String::new();
        loop {
            let mut request = self
                .control
                .rewrite_object()
                .set_source_bucket(bucket_path(bucket))
                .set_source_object(name)
                .set_destination_bucket(bucket_path(bucket))
                .set_destination_name(to)
                .set_rewrite_token(token.clone());
            if let Some(generation) = generation {
                request = request.set_source_generation(generation);
            }
            match request.send().await {
                Ok(response) if response.done => return Ok(true),
                Ok(response) => token = response.rewrite_token,
                Err(err) if err.http_status_code() == Some(404) || is_not_found(&err) => {
                    return Ok(false);
                }
                Err(err) => return Err(BackendError::from_gax(operation(), &err)),
            }
        }
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(), BackendError> {
        let mut request = self
            .control
            .delete_object()
            .set_bucket(bucket_path(bucket))
            .set_object(name);
        if let Some(generation) = generation {
            request = request.set_if_generation_match(generation);
        }
        match request.send().await {
            Ok(()) => Ok(()),
            // Gone already, or replaced by a newer generation that is not ours to delete.
            Err(err)
                if matches!(err.http_status_code(), Some(404 | 412))
                    || is_not_found(&err)
                    || is_failed_precondition(&err) =>
            {
                Ok(())
            }
            Err(err) => Err(BackendError::from_gax(
                format!("delete gs://{bucket}/{name}"),
                &err,
            )),
        }
    }

    fn uri(&self, bucket: &str, name: &str) -> String {
        format!("gs://{bucket}/{name}")
    }
}

fn is_failed_precondition(err: &google_cloud_gax::error::Error) -> bool {
    err.status()
        .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::FailedPrecondition)
}

fn is_not_found(err: &google_cloud_gax::error::Error) -> bool {
    err.status()
        .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::NotFound)
}
