//! Where a job's state lives: objects under `<jobs prefix><function>/<id>/` in the function's
//! bucket, written only with create-if-absent (a function may create objects there, not replace
//! or delete them):
//! - `request.json`: the request, once;
//! - `0000000000.json`, `0000000001.json`, …: checkpoints, each the job's whole view; the
//!   highest is the job's state. Writing the next number is the lock: two instances that both
//!   try to take a job over write the same number, and only one of them creates it;
//! - `cancel`: present once someone asked the job to stop.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::JobView;
use crate::error::BackendError;
use crate::storage::{Created, ObjectStore};

const REQUEST: &str = "request.json";
const CANCEL: &str = "cancel";

/// What the listing shows of one job's objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct JobFiles {
    /// The highest checkpoint, when there is one.
    pub latest: Option<u64>,
    pub cancel: bool,
}

#[derive(Clone)]
pub(super) struct JobStore {
    objects: Arc<dyn ObjectStore>,
    bucket: String,
    /// `<jobs prefix><function>/`.
    root: String,
}

impl JobStore {
    pub fn new(objects: Arc<dyn ObjectStore>, bucket: String, root: String) -> Self {
        Self {
            objects,
            bucket,
            root,
        }
    }

    /// Where the jobs live, for logs: `bucket/prefix`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.bucket, self.root)
    }

    fn name(&self, id: &str, file: &str) -> String {
        format!("{}{id}/{file}", self.root)
    }

    pub async fn write_request(&self, id: &str, request: &Value) -> Result<(), BackendError> {
        let body = serde_json::to_vec(request).expect("a JSON value always serialises");
        self.objects
            .create_if_absent(
                &self.bucket,
                &self.name(id, REQUEST),
                Bytes::from(body),
                "application/json",
            )
            .await?;
        Ok(())
    }

    pub async fn read_request(&self, id: &str) -> Result<Option<Value>, BackendError> {
        let bytes = self
            .objects
            .read(&self.bucket, &self.name(id, REQUEST))
            .await?;
        Ok(bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Creates checkpoint `seq`; [`Created::AlreadyExisted`] means another instance wrote it
    /// first and owns the job now.
    pub async fn write_checkpoint(
        &self,
        id: &str,
        seq: u64,
        view: &JobView,
    ) -> Result<Created, BackendError> {
        let body = serde_json::to_vec(view).expect("a job view always serialises");
        self.objects
            .create_if_absent(
                &self.bucket,
                &self.name(id, &format!("{seq:010}.json")),
                Bytes::from(body),
                "application/json",
            )
            .await
    }

    pub async fn read_checkpoint(
        &self,
        id: &str,
        seq: u64,
    ) -> Result<Option<JobView>, BackendError> {
        let bytes = self
            .objects
            .read(&self.bucket, &self.name(id, &format!("{seq:010}.json")))
            .await?;
        Ok(bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    pub async fn request_cancel(&self, id: &str) -> Result<(), BackendError> {
        self.objects
            .create_if_absent(
                &self.bucket,
                &self.name(id, CANCEL),
                Bytes::from_static(b"{}"),
                "application/json",
            )
            .await?;
        Ok(())
    }

    /// The files of one job.
    pub async fn files(&self, id: &str) -> Result<JobFiles, BackendError> {
        let names = self.objects.list(&self.bucket, &self.name(id, "")).await?;
        Ok(self.group(names).remove(id).unwrap_or_default())
    }

    /// Every job's files, by id (ids start with their start time, so in start order).
    pub async fn all(&self) -> Result<BTreeMap<String, JobFiles>, BackendError> {
        let names = self.objects.list(&self.bucket, &self.root).await?;
        Ok(self.group(names))
    }

    fn group(&self, names: Vec<String>) -> BTreeMap<String, JobFiles> {
        let mut jobs: BTreeMap<String, JobFiles> = BTreeMap::new();
        for name in names {
            let Some((id, file)) = name
                .strip_prefix(&self.root)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let files = jobs.entry(id.to_owned()).or_default();
            if file == CANCEL {
                files.cancel = true;
            } else if let Some(seq) = file
                .strip_suffix(".json")
                .filter(|seq| seq.len() == 10)
                .and_then(|seq| seq.parse::<u64>().ok())
            {
                files.latest = files.latest.max(Some(seq));
            }
        }
        jobs
    }
}
