//! Group commit: one writer task per table coalesces the rows of concurrent requests into one
//! warehouse write (up to the batch limits), keeps the table's schema in memory (so a steady
//! stream costs no metadata call), evolves the table before a batch that needs new columns, and
//! answers each request only when the batch holding its row is committed. Used by table-manager
//! (a table per event type) and inference (the predictions table).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use crate::config::BatchLimits;
use crate::error::{BackendError, Retry};
use crate::metrics;
use crate::warehouse::schema::{apply_additions, fit_row};
use crate::warehouse::{Addition, Fit, InsertError, Row, RowIdentity, TableSpec, Warehouse};

/// Where the rows of a kind (an event type, say) go, and the table to create for them.
pub trait TableShape: Send + Sync + 'static {
    /// The table the rows of `kind` are written to.
    fn table_name(&self, kind: &str) -> String;

    /// The table to create for `kind` when `sample` is the first row it sees.
    fn table_spec(&self, kind: &str, sample: &Map<String, Value>) -> TableSpec;

    /// How the table's rows are told apart, for its deduplicated view.
    fn identity(&self) -> RowIdentity;
}

/// Why a row was not written.
#[derive(Debug)]
pub enum WriteError {
    /// The row does not fit its table and never will as it is: dead-letter it.
    Conflict(String),
    /// The batch failed; the row may succeed when delivered again.
    Backend(BackendError),
}

type Reply = oneshot::Sender<Result<(), WriteError>>;

struct Pending {
    kind: String,
    row: Row,
    bytes: usize,
    /// When the row reached the writer's queue: its linger counts from here, so a row that
    /// waited behind a write in progress does not wait a whole linger more.
    queued: Instant,
    reply: Reply,
}

/// The writers of every table this instance has seen.
#[derive(Clone)]
pub struct Writers {
    warehouse: Arc<dyn Warehouse>,
    shape: Arc<dyn TableShape>,
    limits: BatchLimits,
    tables: Arc<Mutex<HashMap<String, mpsc::Sender<Pending>>>>,
}

impl Writers {
    pub fn new(
        warehouse: Arc<dyn Warehouse>,
        shape: Arc<dyn TableShape>,
        limits: BatchLimits,
    ) -> Self {
        Self {
            warehouse,
            shape,
            limits,
            tables: Arc::default(),
        }
    }

    /// Writes one row to the table of `kind`; returns when its batch is committed.
    pub async fn write(
        &self,
        kind: &str,
        id: String,
        values: Map<String, Value>,
    ) -> Result<(), WriteError> {
        let table = self.shape.table_name(kind);
        let bytes = approximate_size(&values);
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending {
            kind: kind.to_owned(),
            row: Row { id, values },
            bytes,
            queued: Instant::now(),
            reply,
        };
        // A writer that stopped (it never should) is replaced once.
        for _ in 0..2 {
            match self.sender(&table).send(pending).await {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| {
                        Err(WriteError::Backend(BackendError::new(
                            format!("write to table {table}"),
                            Retry::Transient,
                            "the table's writer stopped before answering",
                        )))
                    });
                }
                Err(mpsc::error::SendError(returned)) => {
                    pending = returned;
                    self.tables
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&table);
                }
            }
        }
        Err(WriteError::Backend(BackendError::new(
            format!("write to table {table}"),
            Retry::Transient,
            "the table's writer could not be started",
        )))
    }

    fn sender(&self, table: &str) -> mpsc::Sender<Pending> {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        tables
            .entry(table.to_owned())
            .or_insert_with(|| {
                let (sender, receiver) = mpsc::channel(self.limits.max_rows * 4);
                let writer = TableWriter {
                    table: table.to_owned(),
                    warehouse: self.warehouse.clone(),
                    shape: self.shape.clone(),
                    limits: self.limits,
                    schema: None,
                };
                tokio::spawn(writer.run(receiver));
                sender
            })
            .clone()
    }
}

/// The size a row adds to a batch, near enough: its JSON length.
fn approximate_size(values: &Map<String, Value>) -> usize {
    serde_json::to_vec(values).map_or(0, |json| json.len())
}

struct TableWriter {
    table: String,
    warehouse: Arc<dyn Warehouse>,
    shape: Arc<dyn TableShape>,
    limits: BatchLimits,
    /// The table as last seen; `None` until the first batch, and after a failed one.
    schema: Option<TableSpec>,
}

impl TableWriter {
    async fn run(mut self, mut receiver: mpsc::Receiver<Pending>) {
        while let Some(first) = receiver.recv().await {
            let deadline = first.queued + self.limits.linger;
            let mut bytes = first.bytes;
            let mut batch = vec![first];
            while batch.len() < self.limits.max_rows && bytes < self.limits.max_bytes {
                match timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(pending)) => {
                        bytes += pending.bytes;
                        batch.push(pending);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.commit(batch).await;
        }
    }

    async fn commit(&mut self, batch: Vec<Pending>) {
        tracing::debug!(table = %self.table, rows = batch.len(), "committing a batch");
        match self.evolve(batch).await {
            Ok(batch) => self.insert(batch).await,
            Err((err, batch)) => {
                self.schema = None;
                fail_all(batch, &err);
            }
        }
    }

    /// Makes sure the table exists with every column the batch needs; answers the rows that
    /// conflict with it and returns the others.
    async fn evolve(
        &mut self,
        batch: Vec<Pending>,
    ) -> Result<Vec<Pending>, (BackendError, Vec<Pending>)> {
        let schema = match self.schema.take() {
            Some(schema) => schema,
            None => {
                let first = &batch[0];
                let spec = self.shape.table_spec(&first.kind, &first.row.values);
                let ensured = match self.warehouse.ensure_table(&spec).await {
                    // Every start ensures the view too, so a table made before views existed
                    // gets one.
                    Ok(schema) => self
                        .warehouse
                        .ensure_unique_view(&schema.name, self.shape.identity())
                        .await
                        .map(|()| schema),
                    Err(err) => Err(err),
                };
                match ensured {
                    Ok(schema) => schema,
                    Err(err) => return Err((err, batch)),
                }
            }
        };
        // Fit every row to the schema as it will be once the earlier rows' columns are added,
        // so two rows that add the same field with different types cannot both pass.
        let mut planned = schema.columns.clone();
        let mut additions: Vec<Addition> = Vec::new();
        let mut fitting = Vec::with_capacity(batch.len());
        for mut pending in batch {
            match fit_row(&planned, &mut pending.row.values) {
                Fit::Fits(new) => {
                    let needs_columns = !new.is_empty();
                    apply_additions(&mut planned, &new);
                    additions.extend(new);
                    fitting.push((pending, needs_columns));
                }
                Fit::Conflict(detail) => {
                    let _ = pending.reply.send(Err(WriteError::Conflict(detail)));
                }
            }
        }
        if additions.is_empty() {
            self.schema = Some(schema);
            return Ok(fitting.into_iter().map(|(pending, _)| pending).collect());
        }
        let shown: Vec<String> = additions.iter().map(ToString::to_string).collect();
        let evolved = match self.warehouse.add_columns(&self.table, &additions).await {
            Ok(evolved) => evolved,
            Err(err) if err.retry == Retry::Permanent => {
                // The warehouse cannot hold these columns (a field inside a list of records, in
                // DuckDB): the rows that need them conflict; the rest go on.
                tracing::warn!(table = %self.table, "cannot add columns {}: {err}", shown.join(", "));
                let detail = format!(
                    "the table cannot take column(s) {}: {}",
                    shown.join(", "),
                    err.message
                );
                let mut rest = Vec::with_capacity(fitting.len());
                for (pending, needs_columns) in fitting {
                    if needs_columns {
                        let _ = pending
                            .reply
                            .send(Err(WriteError::Conflict(detail.clone())));
                    } else {
                        rest.push(pending);
                    }
                }
                self.schema = Some(schema);
                return Ok(rest);
            }
            Err(err) => {
                return Err((
                    err,
                    fitting.into_iter().map(|(pending, _)| pending).collect(),
                ));
            }
        };
        tracing::info!(table = %self.table, "added columns {}", shown.join(", "));
        // Another instance may have added a column first, with another type: fit again.
        let mut rows = Vec::with_capacity(fitting.len());
        for (mut pending, _) in fitting {
            match fit_row(&evolved.columns, &mut pending.row.values) {
                Fit::Fits(missing) if missing.is_empty() => rows.push(pending),
                Fit::Fits(missing) => {
                    let shown: Vec<String> = missing.iter().map(ToString::to_string).collect();
                    fail_all(
                        vec![pending],
                        &BackendError::new(
                            format!("add columns to {}", self.table),
                            Retry::Transient,
                            format!(
                                "column(s) {} still missing after the change",
                                shown.join(", ")
                            ),
                        ),
                    );
                }
                Fit::Conflict(detail) => {
                    let _ = pending.reply.send(Err(WriteError::Conflict(detail)));
                }
            }
        }
        self.schema = Some(evolved);
        Ok(rows)
    }

    /// Inserts the rows (each id once); rows the warehouse refuses are answered as conflicts
    /// and the others written without them.
    async fn insert(&mut self, mut batch: Vec<Pending>) {
        loop {
            if batch.is_empty() {
                return;
            }
            let rows = unique_rows(&batch);
            match self.warehouse.insert_rows(&self.table, &rows).await {
                Ok(()) => {
                    metrics::rows_committed(&self.table, rows.iter().map(|row| &row.values));
                    for pending in batch {
                        let _ = pending.reply.send(Ok(()));
                    }
                    return;
                }
                Err(InsertError::RowsRefused(refused)) => {
                    let refused: HashMap<&str, &str> = refused
                        .iter()
                        .filter_map(|(index, detail)| {
                            Some((rows.get(*index)?.id.as_str(), detail.as_str()))
                        })
                        .collect();
                    let (rejected, rest): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .partition(|p| refused.contains_key(p.row.id.as_str()));
                    for pending in rejected {
                        let detail = refused
                            .get(pending.row.id.as_str())
                            .map_or_else(String::new, |d| (*d).to_owned());
                        let _ = pending.reply.send(Err(WriteError::Conflict(format!(
                            "the warehouse refused the row: {detail}"
                        ))));
                    }
                    batch = rest;
                }
                Err(InsertError::Backend(err)) => {
                    self.schema = None;
                    fail_all(batch, &err);
                    return;
                }
            }
        }
    }
}

/// The batch's rows with each id once (a redelivery racing its original in one batch).
fn unique_rows(batch: &[Pending]) -> Vec<Row> {
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    batch
        .iter()
        .filter(|p| seen.insert(p.row.id.as_str()))
        .map(|p| p.row.clone())
        .collect()
}

fn fail_all(batch: Vec<Pending>, err: &BackendError) {
    tracing::warn!("{err}; {} request(s) answered as retryable", batch.len());
    for pending in batch {
        let _ = pending
            .reply
            .send(Err(WriteError::Backend(BackendError::new(
                err.operation.clone(),
                err.retry,
                &err.message,
            ))));
    }
}
