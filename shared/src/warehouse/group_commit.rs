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
use crate::warehouse::schema::{apply_additions, check_columns, fit_row};
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
        // A writer that retired (idle) as this row was sent is replaced once.
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
                    tables: Arc::downgrade(&self.tables),
                    own: sender.downgrade(),
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
    /// Where this writer is registered, to leave when idle (`Weak`: the writers may go first).
    tables: std::sync::Weak<Mutex<HashMap<String, mpsc::Sender<Pending>>>>,
    /// This writer's own channel, to tell its entry from a successor's.
    own: mpsc::WeakSender<Pending>,
}

/// How long a table's writer waits for a row before it stops: every event type ever seen would
/// otherwise keep a task and its cached schema for the life of the instance.
pub const WRITER_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl TableWriter {
    async fn run(mut self, mut receiver: mpsc::Receiver<Pending>) {
        loop {
            let first = match tokio::time::timeout(WRITER_IDLE, receiver.recv()).await {
                Ok(Some(first)) => first,
                Ok(None) => return,
                Err(_idle) => {
                    self.retire();
                    // Rows sent before the entry went are still received, then `None`.
                    receiver.close();
                    continue;
                }
            };
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

    /// Removes this writer's entry (not a successor's), so the next row starts a new writer.
    fn retire(&self) {
        let (Some(tables), Some(own)) = (self.tables.upgrade(), self.own.upgrade()) else {
            return;
        };
        let mut tables = tables.lock().unwrap_or_else(PoisonError::into_inner);
        if tables
            .get(&self.table)
            .is_some_and(|current| current.same_channel(&own))
        {
            tables.remove(&self.table);
            tracing::debug!(table = %self.table, "writer idle for {WRITER_IDLE:?}: stopped");
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
        mut batch: Vec<Pending>,
    ) -> Result<Vec<Pending>, (BackendError, Vec<Pending>)> {
        let schema = match self.schema.take() {
            Some(schema) => schema,
            None => match self.create(&mut batch).await {
                Ok(Some(schema)) => schema,
                Ok(None) => return Ok(Vec::new()),
                Err(err) => return Err((err, batch)),
            },
        };
        // Fit every row to the schema as it will be once the earlier rows' columns are added,
        // so two rows that add the same field with different types cannot both pass.
        let mut planned = schema.columns.clone();
        let mut fitting: Vec<(Pending, Vec<Addition>)> = Vec::with_capacity(batch.len());
        for mut pending in batch {
            match fit_row(&planned, &mut pending.row.values) {
                Fit::Fits(new) => {
                    apply_additions(&mut planned, &new);
                    fitting.push((pending, new));
                }
                Fit::Conflict(detail) => conflict(pending, detail),
            }
        }
        if fitting.iter().all(|(_, new)| new.is_empty()) {
            self.schema = Some(schema);
            return Ok(fitting.into_iter().map(|(pending, _)| pending).collect());
        }
        let additions: Vec<Addition> = fitting.iter().flat_map(|(_, new)| new.clone()).collect();
        let evolved = match self.add_columns(&additions).await {
            Ok(evolved) => evolved,
            // The warehouse refuses some row's columns: each row's are tried alone, so only
            // the rows it cannot take are answered as conflicts.
            Err(err) if err.retry == Retry::InvalidInput => {
                return self.add_columns_row_by_row(schema, fitting, &err).await;
            }
            Err(err) => {
                return Err((
                    err,
                    fitting.into_iter().map(|(pending, _)| pending).collect(),
                ));
            }
        };
        Ok(self.refit(evolved, fitting.into_iter().map(|(pending, _)| pending)))
    }

    /// Creates the table from the batch's first row whose table the warehouse takes; each row
    /// whose table it refuses (a field it cannot hold as a column) is answered alone as a
    /// conflict. `None` when no row is left.
    async fn create(&self, batch: &mut Vec<Pending>) -> Result<Option<TableSpec>, BackendError> {
        while !batch.is_empty() {
            let first = &batch[0];
            let spec = self.shape.table_spec(&first.kind, &first.row.values);
            let refused = match check_columns(&spec.columns) {
                Err(problem) => problem,
                Ok(()) => match self.warehouse.ensure_table(&spec).await {
                    Ok(schema) => {
                        // Every start ensures the view too, so a table made before views
                        // existed gets one.
                        self.warehouse
                            .ensure_unique_view(&schema.name, self.shape.identity())
                            .await?;
                        return Ok(Some(schema));
                    }
                    Err(err) if err.retry == Retry::InvalidInput => err.message,
                    Err(err) => return Err(err),
                },
            };
            conflict(
                batch.remove(0),
                format!("the table cannot be created with this row's fields: {refused}"),
            );
        }
        Ok(None)
    }

    async fn add_columns(&self, additions: &[Addition]) -> Result<TableSpec, BackendError> {
        let result = self.warehouse.add_columns(&self.table, additions).await;
        let shown: Vec<String> = additions.iter().map(ToString::to_string).collect();
        match &result {
            Ok(_) => tracing::info!(table = %self.table, "added columns {}", shown.join(", ")),
            Err(err) => {
                tracing::warn!(table = %self.table, "cannot add columns {}: {err}", shown.join(", "));
            }
        }
        result
    }

    /// After the warehouse refused the batch's new columns together: adds each row's alone.
    async fn add_columns_row_by_row(
        &mut self,
        mut schema: TableSpec,
        fitting: Vec<(Pending, Vec<Addition>)>,
        refusal: &BackendError,
    ) -> Result<Vec<Pending>, (BackendError, Vec<Pending>)> {
        let mut rows = Vec::with_capacity(fitting.len());
        let mut fitting = fitting.into_iter();
        while let Some((mut pending, _)) = fitting.next() {
            // Fit again: the columns of the rows before may have been added by now.
            let additions = match fit_row(&schema.columns, &mut pending.row.values) {
                Fit::Fits(additions) => additions,
                Fit::Conflict(detail) => {
                    conflict(pending, detail);
                    continue;
                }
            };
            if additions.is_empty() {
                rows.push(pending);
                continue;
            }
            match self.add_columns(&additions).await {
                Ok(evolved) => {
                    schema = evolved;
                    rows.push(pending);
                }
                Err(err) if err.retry == Retry::InvalidInput => conflict(
                    pending,
                    format!(
                        "the table cannot take this row's new columns: {}",
                        err.message
                    ),
                ),
                Err(err) => {
                    rows.push(pending);
                    rows.extend(fitting.map(|(pending, _)| pending));
                    return Err((err, rows));
                }
            }
        }
        tracing::info!(
            table = %self.table,
            "columns added row by row after the batch's were refused: {}",
            refusal.message
        );
        Ok(self.refit(schema, rows))
    }

    /// Fits the rows to the table as it now is: another instance may have added a column
    /// first, with another type.
    fn refit(
        &mut self,
        evolved: TableSpec,
        batch: impl IntoIterator<Item = Pending>,
    ) -> Vec<Pending> {
        let mut rows = Vec::new();
        for mut pending in batch {
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
                Fit::Conflict(detail) => conflict(pending, detail),
            }
        }
        self.schema = Some(evolved);
        rows
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

/// Answers a row that can never be written as it is.
fn conflict(pending: Pending, detail: String) {
    let _ = pending.reply.send(Err(WriteError::Conflict(detail)));
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

#[cfg(all(test, feature = "local"))]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;
    use crate::warehouse::{Column, ColumnType, DuckDbWarehouse, Mode};
    use serde_json::json;

    struct OneTable;

    impl TableShape for OneTable {
        fn table_name(&self, kind: &str) -> String {
            kind.to_owned()
        }

        fn identity(&self) -> RowIdentity {
            RowIdentity {
                key: "id",
                first_by: "id",
            }
        }

        fn table_spec(&self, kind: &str, _sample: &Map<String, Value>) -> TableSpec {
            TableSpec {
                name: kind.to_owned(),
                description: None,
                columns: vec![Column::new("id", ColumnType::String, Mode::Required)],
                partition_column: None,
                clustering: Vec::new(),
                row_id_column: Some("id".to_owned()),
            }
        }
    }

    fn running(writers: &Writers) -> usize {
        writers.tables.lock().unwrap().len()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_writer_stops_and_the_next_row_starts_another() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = DuckDbWarehouse::open(&dir.path().join("w.duckdb"), "pulse").unwrap();
        let limits = BatchLimits {
            max_rows: 10,
            max_bytes: 1 << 20,
            linger: std::time::Duration::from_millis(1),
        };
        let writers = Writers::new(Arc::new(warehouse.clone()), Arc::new(OneTable), limits);
        let row = |id: &str| json!({"id": id}).as_object().unwrap().clone();
        for kind in ["a", "b"] {
            writers.write(kind, "1".to_owned(), row("1")).await.unwrap();
        }
        assert_eq!(running(&writers), 2);
        tokio::time::sleep(WRITER_IDLE / 2).await;
        writers.write("a", "2".to_owned(), row("2")).await.unwrap();
        tokio::time::sleep(WRITER_IDLE * 3 / 4).await;
        assert_eq!(running(&writers), 1, "`b` idled out, `a` wrote since");
        tokio::time::sleep(WRITER_IDLE).await;
        assert_eq!(running(&writers), 0);
        writers.write("b", "2".to_owned(), row("2")).await.unwrap();
        assert_eq!(running(&writers), 1);
        let rows = warehouse
            .query("SELECT count(*) AS n FROM pulse.a UNION ALL SELECT count(*) FROM pulse.b")
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r["n"] == 2), "{rows:?}");
    }
}
