//! The warehouse seam: tables that are created and evolved by the functions, rows written with
//! ids so repeats are dropped, and queries. BigQuery on Google Cloud (`bigquery.rs`), DuckDB
//! locally (`duckdb.rs`, in a build with the `local` feature).

pub mod bigquery;
pub mod dedup;
#[cfg(feature = "local")]
pub mod duckdb;
pub mod group_commit;
pub mod read_only;
pub mod schema;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{BackendError, Retry};
pub use bigquery::BigQueryWarehouse;
pub use dedup::{Compaction, DateRange, RowIdentity, TimeWindow};
#[cfg(feature = "local")]
pub use duckdb::DuckDbWarehouse;
pub use read_only::{QueryAnswer, QueryError, QueryLimits, ResultColumn};
pub use schema::{Addition, Column, ColumnType, Fit, Mode, TableSpec};

/// One row to insert: its values as a JSON object, and the id repeats are recognised by.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: String,
    pub values: Map<String, Value>,
}

/// A table as the warehouse reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TableSummary {
    #[serde(flatten)]
    pub spec: TableSpec,
    /// Rows stored, where the warehouse can say cheaply (BigQuery's `numRows` leaves out the
    /// streaming buffer).
    pub rows: Option<u64>,
}

/// What a failed insert did.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// Nothing was written; retrying the same rows may succeed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// These rows (by index) can never be written, for the reason given; nothing was written,
    /// and the other rows may be sent again without them.
    #[error("{} rows refused", .0.len())]
    RowsRefused(Vec<(usize, String)>),
}

/// What a Parquet load did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOutcome {
    /// Rows the load appended (by this call, or by the earlier one when `already_loaded`).
    pub rows: u64,
    /// The load job (BigQuery) or the ledger key (DuckDB): the `load_id` given.
    pub job_id: String,
    /// An earlier load with this id did the work; nothing was loaded now.
    pub already_loaded: bool,
}

/// What a failed load did: nothing.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Nothing was loaded; the same load may succeed later.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The file itself cannot be loaded (unreadable data, values that do not fit their
    /// columns); nothing was loaded, and trying again will not change that.
    #[error("the file was refused: {0}")]
    Refused(String),
}

impl LoadError {
    /// A backend failure that says the file is at fault refuses it; the rest may pass, or are
    /// an operator's to fix.
    pub fn from_backend(err: BackendError) -> Self {
        match err.retry {
            Retry::InvalidInput => LoadError::Refused(err.message),
            _ => LoadError::Backend(err),
        }
    }
}

/// Characters a warehouse's Parquet reader takes as a pattern in a path or URI: DuckDB's
/// `read_parquet` globs on `*`, `?` and `[`; a BigQuery load's source URI on `*`. Neither has an
/// escape, so a path holding one is never handed to them: the loader reads such an object
/// through a copy under a plain name.
pub const PATTERN_CHARS: [char; 3] = ['*', '?', '['];

/// True when `uri` names exactly one file to every warehouse (no pattern character in it).
pub fn is_literal_uri(uri: &str) -> bool {
    !uri.contains(PATTERN_CHARS)
}

/// Refuses a load handed a pattern ([`is_literal_uri`]): permanently, since the same path will
/// glob again.
fn refuse_pattern(uri: &str) -> Result<(), LoadError> {
    if is_literal_uri(uri) {
        return Ok(());
    }
    Err(LoadError::Backend(BackendError::new(
        format!("load {uri}"),
        Retry::Permanent,
        "the path holds `*`, `?` or `[`, which the warehouse would read as a pattern of several \
         files; object names are copied to a plain name before a load, so this comes from the \
         data directory or bucket name: rename it",
    )))
}

/// A table change refused before it reached the warehouse: its columns fail
/// [`schema::check_columns`].
fn refused_columns(operation: String, problem: String) -> BackendError {
    BackendError::new(operation, Retry::InvalidInput, problem)
}

/// Tables, rows and queries.
#[async_trait]
pub trait Warehouse: Send + Sync {
    /// The dataset (schema) every table lives in.
    fn dataset(&self) -> &str;

    /// Creates the table from `spec` unless it exists (a concurrent creation is success), and
    /// returns the table as it now is, which may differ from `spec` if it existed already.
    /// Columns failing [`schema::check_columns`] are refused (`Retry::InvalidInput`).
    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSpec, BackendError>;

    /// The table as it is, or `None` if it does not exist.
    async fn table(&self, name: &str) -> Result<Option<TableSpec>, BackendError>;

    /// Adds nullable columns (top-level or inside records), skipping any that another writer
    /// added first, and returns the table as it now is. Additions that would leave the table
    /// failing [`schema::check_columns`] are refused (`Retry::InvalidInput`).
    async fn add_columns(
        &self,
        table: &str,
        additions: &[Addition],
    ) -> Result<TableSpec, BackendError>;

    /// Inserts rows; a row whose id was inserted before is dropped, not doubled.
    async fn insert_rows(&self, table: &str, rows: &[Row]) -> Result<(), InsertError>;

    /// Appends every row of the Parquet file at `uri` (`gs://…` for BigQuery, a local path for
    /// DuckDB) to `table`, all or nothing, once per `load_id`: a repeat finds the first load and
    /// loads nothing. The table must already have every column of the file. A `uri` that is not
    /// literal ([`is_literal_uri`]) is refused, never read as a pattern.
    async fn load_parquet(
        &self,
        table: &str,
        uri: &str,
        load_id: &str,
    ) -> Result<LoadOutcome, LoadError>;

    /// Every table in the dataset, with row counts where cheap.
    async fn list_tables(&self) -> Result<Vec<TableSummary>, BackendError>;

    /// The names of every table in the dataset (not views), without reading their schemas.
    async fn table_names(&self) -> Result<Vec<String>, BackendError> {
        Ok(self
            .list_tables()
            .await?
            .into_iter()
            .map(|table| table.spec.name)
            .collect())
    }

    /// Creates the deduplicated view over `table` (`unique_<table>`, each id once) unless it
    /// exists. The view selects every column, so columns added to the table later appear in it.
    async fn ensure_unique_view(
        &self,
        table: &str,
        identity: RowIdentity,
    ) -> Result<(), BackendError>;

    /// Removes the repeats of each id from the partitions `dates` of `table`, keeping each id's
    /// first row, in one transaction; a second call finds nothing to remove.
    async fn compact(
        &self,
        table: &str,
        identity: RowIdentity,
        dates: DateRange,
    ) -> Result<Compaction, BackendError>;

    /// How many rows each id has among the rows of event table `table` whose event time lies in
    /// `window`, in no particular order; ids without rows are absent.
    async fn id_counts(
        &self,
        table: &str,
        window: TimeWindow,
    ) -> Result<Vec<(String, u64)>, BackendError>;

    /// Runs a query (in the warehouse's SQL dialect) and returns its rows as JSON objects.
    async fn query(&self, sql: &str) -> Result<Vec<Map<String, Value>>, BackendError>;

    /// Runs one read-only query for a person or a script, within `limits`; anything but a
    /// single SELECT (or `WITH … SELECT`) is refused by the warehouse's own reading of it
    /// ([`read_only`]). Unqualified table names are the dataset's.
    async fn read_only_query(
        &self,
        _sql: &str,
        _limits: QueryLimits,
    ) -> Result<QueryAnswer, QueryError> {
        Err(QueryError::Refused(format!(
            "{} does not answer ad-hoc queries",
            self.describe()
        )))
    }

    /// Creates or replaces view `name` in the dataset as `select`, in the warehouse's dialect.
    /// Only the local warehouse does: on BigQuery the views are Terraform's, and a function
    /// that rewrote them would fight every `terraform apply`.
    async fn create_view(&self, name: &str, _select: &str) -> Result<(), BackendError> {
        Err(BackendError::new(
            format!("create view {name}"),
            Retry::Permanent,
            format!("{} does not create views; Terraform does", self.describe()),
        ))
    }

    /// Names the implementation, for start-up logs.
    fn describe(&self) -> String;
}
