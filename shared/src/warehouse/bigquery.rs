//! BigQuery through `gcp-bigquery-client`: tables partitioned by day and clustered, columns
//! added by patching the schema, rows streamed with `insertAll` carrying `insertId`, queries with
//! `jobs.query`. Credentials come from `google-cloud-auth` (the crate's own authenticators pull
//! in a second OAuth stack).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, Retryable};
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_load::JobConfigurationLoad;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_list::TableList;
use gcp_bigquery_client::model::table_reference::TableReference;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use gcp_bigquery_client::model::view_definition::ViewDefinition;
use gcp_bigquery_client::table::ListOptions;
use serde_json::{Map, Value};

mod read_only;

use super::dedup::{CompactionSql, EVENT_TIME, PARTITION, unique_view_query};
use super::schema::{
    Addition, Column, ColumnType, Mode, TableSpec, apply_additions, check_columns,
};
use super::{
    Compaction, DateRange, InsertError, LoadError, LoadOutcome, QueryAnswer, QueryError,
    QueryLimits, Row, RowIdentity, TableSummary, TimeWindow, Warehouse, refused_columns,
};
use crate::auth::AccessTokens;
use crate::error::{BackendError, Retry};
use crate::namespace;
use crate::retry;

/// Why a schema patch failed.
#[derive(Debug, thiserror::Error)]
enum PatchFailure {
    /// Refused as it would drop a column added since the read: a fresh read may pass.
    #[error("{0}")]
    Stale(BQError),
    #[error(transparent)]
    Failed(#[from] BackendError),
}

/// How long a column added by a schema patch may take to reach the streaming back end; rows
/// naming it are retried with backoff meanwhile.
const COLUMN_PROPAGATION: Duration = Duration::from_secs(60);

/// How long a load waits for its job: under the functions' 60 s request deadline. A job still
/// running then is answered as a transient failure; the redelivery finds the same job.
const LOAD_WAIT: Duration = Duration::from_secs(50);
/// Job ids tried per load: a job that failed for a passing reason uses its id up, so the next
/// attempt takes `<load id>_2`, then `_3`.
const LOAD_ATTEMPTS: u32 = 3;

/// A BigQuery dataset.
#[derive(Clone)]
pub struct BigQueryWarehouse {
    client: Arc<Client>,
    project: String,
    dataset: String,
    /// Load jobs are inserted without the client: its `JobConfigurationLoad` has no
    /// `parquetOptions` (see [`BigQueryWarehouse::insert_load_job`]).
    jobs: JobInserter,
}

#[derive(Clone)]
struct JobInserter {
    http: reqwest::Client,
    /// `…/bigquery/v2/projects/<project>/jobs`.
    url: String,
    tokens: AccessTokens,
}

#[derive(Clone)]
struct Tokens(AccessTokens);

#[async_trait]
impl Authenticator for Tokens {
    async fn access_token(&self) -> Result<String, BQError> {
        self.0.token().await.map_err(|_| BQError::NoToken)
    }
}

impl BigQueryWarehouse {
    /// Connects to BigQuery, or to an emulator at `endpoint` (then without credentials).
    pub async fn connect(
        project: &str,
        dataset: &str,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut builder = ClientBuilder::new();
        let (tokens, base_url) = match endpoint {
            Some(endpoint) => {
                let base_url = format!("{}/bigquery/v2", endpoint.trim_end_matches('/'));
                builder.with_v2_base_url(base_url.clone());
                (AccessTokens::Anonymous, base_url)
            }
            None => (
                AccessTokens::google(&["https://www.googleapis.com/auth/bigquery"])?,
                "https://bigquery.googleapis.com/bigquery/v2".to_owned(),
            ),
        };
        let client = builder
            .build_from_authenticator(Arc::new(Tokens(tokens.clone())))
            .await?;
        Ok(Self {
            client: Arc::new(client),
            project: project.to_owned(),
            dataset: dataset.to_owned(),
            jobs: JobInserter {
                http: reqwest::Client::new(),
                url: format!("{base_url}/projects/{project}/jobs"),
                tokens,
            },
        })
    }

    fn path(&self, table: &str) -> String {
        format!("{}.{}.{table}", self.project, self.dataset)
    }

    /// The table as a query names it.
    fn quoted(&self, table: &str) -> String {
        format!("`{}`", self.path(table))
    }

    /// The spec of `table` as found. A column whose type Pulse does not know fails the read,
    /// permanently: dropping it would hide it from every check, and a schema patch built from
    /// the result would remove it from the table.
    fn spec(&self, table: &str, found: &Table) -> Result<TableSpec, BackendError> {
        spec_from_table(table, found).map_err(|detail| {
            BackendError::new(
                format!("read the schema of table {}", self.path(table)),
                Retry::Permanent,
                format!(
                    "{detail}; Pulse writes nothing to this table until that column's type \
                     changes (or the data goes to another table)"
                ),
            )
        })
    }

    async fn get(&self, table: &str) -> Result<Option<Table>, BackendError> {
        match self
            .client
            .table()
            .get(&self.project, &self.dataset, table, None)
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(err) if status(&err) == Some(404) => Ok(None),
            Err(err) => Err(classify(format!("get table {}", self.path(table)), &err)),
        }
    }

    fn load_job(&self, table: &str, uri: &str, job_id: &str) -> Job {
        Job {
            job_reference: Some(JobReference {
                job_id: Some(job_id.to_owned()),
                project_id: Some(self.project.clone()),
                ..Default::default()
            }),
            configuration: Some(JobConfiguration {
                load: Some(JobConfigurationLoad {
                    source_uris: Some(vec![uri.to_owned()]),
                    source_format: Some("PARQUET".to_owned()),
                    write_disposition: Some("WRITE_APPEND".to_owned()),
                    create_disposition: Some("CREATE_NEVER".to_owned()),
                    destination_table: Some(TableReference {
                        project_id: self.project.clone(),
                        dataset_id: self.dataset.clone(),
                        table_id: table.to_owned(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The load job as sent: [`Self::load_job`] with `parquetOptions.enableListInference`, so a
    /// Parquet LIST column loads as the REPEATED column the loader planned (without it BigQuery
    /// reads the LIST's `list.element` wrapper as nested records, the file no longer matches
    /// its table, and every file with a list column was refused).
    fn load_job_json(&self, table: &str, uri: &str, job_id: &str) -> Value {
        let mut job =
            serde_json::to_value(self.load_job(table, uri, job_id)).expect("a job serialises");
        if let Some(load) = job
            .pointer_mut("/configuration/load")
            .and_then(Value::as_object_mut)
        {
            load.insert(
                "parquetOptions".to_owned(),
                serde_json::json!({ "enableListInference": true }),
            );
        }
        job
    }

    /// Inserts a load job, as the client's `job().insert` would, with the fields it lacks.
    async fn insert_load_job(&self, job: &Value) -> Result<Job, BQError> {
        let token = self
            .jobs
            .tokens
            .token()
            .await
            .map_err(|_| BQError::NoToken)?;
        let response = self
            .jobs
            .http
            .post(&self.jobs.url)
            .bearer_auth(token)
            .json(job)
            .send()
            .await?;
        if response.status().is_success() {
            Ok(response.json().await?)
        } else {
            Err(BQError::ResponseError {
                error: response.json().await?,
            })
        }
    }

    /// Polls `job` until it is done or `deadline` passes.
    async fn wait(
        &self,
        mut job: Job,
        job_id: &str,
        deadline: Instant,
    ) -> Result<Job, BackendError> {
        let operation = || format!("wait for load job {job_id}");
        // A load finishes within seconds: polled at most 4 s apart, the wait outlasts it little.
        let mut pauses = retry::within_request()
            .with_max_delay(Duration::from_secs(4))
            .build();
        while job.status.as_ref().and_then(|s| s.state.as_deref()) != Some("DONE") {
            let pause = pauses
                .next()
                .filter(|pause| Instant::now() + *pause <= deadline)
                .ok_or_else(|| {
                    BackendError::new(
                        operation(),
                        Retry::Transient,
                        "still running; the redelivery waits for the same job",
                    )
                })?;
            tokio::time::sleep(pause).await;
            let location = job.job_reference.as_ref().and_then(|r| r.location.clone());
            job = self
                .client
                .job()
                .get_job(&self.project, job_id, location.as_deref())
                .await
                .map_err(|e| classify(operation(), &e))?;
        }
        Ok(job)
    }

    /// Reads `table`, adds `additions` to its schema and patches it; a refusal that a fresh read
    /// may cure (the schema changed meanwhile) is told apart.
    async fn patch_columns(
        &self,
        table: &str,
        additions: &[Addition],
    ) -> Result<TableSpec, PatchFailure> {
        let operation = || format!("add columns to {}", self.path(table));
        let mut current = self.get(table).await?.ok_or_else(|| {
            BackendError::new(operation(), Retry::Transient, "the table does not exist")
        })?;
        // A column this cannot read fails here: a patch without it would drop it.
        let mut spec = self.spec(table, &current)?;
        let before = spec.columns.clone();
        apply_additions(&mut spec.columns, additions);
        if spec.columns == before {
            return Ok(spec);
        }
        check_columns(&spec.columns).map_err(|problem| refused_columns(operation(), problem))?;
        current.schema = TableSchema::new(fields(&self.path(table), &spec.columns)?);
        match self
            .client
            .table()
            .patch(&self.project, &self.dataset, table, current)
            .await
        {
            Ok(patched) => Ok(self.spec(table, &patched)?),
            Err(err) if matches!(status(&err), Some(400 | 412)) => Err(PatchFailure::Stale(err)),
            Err(err) => Err(PatchFailure::Failed(classify(operation(), &err))),
        }
    }

    /// One `insertAll`; rows naming a column that has not reached the streaming back end yet
    /// come back as `invalid` with "no such field".
    async fn insert_once(&self, table: &str, rows: &[Row]) -> Result<(), InsertError> {
        let mut request = TableDataInsertAllRequest::new();
        for row in rows {
            request
                .add_row(Some(row.id.clone()), &row.values)
                .map_err(|e| classify(format!("encode rows for {}", self.path(table)), &e))?;
        }
        let response = self
            .client
            .tabledata()
            .insert_all(&self.project, &self.dataset, table, request)
            .await
            .map_err(|e| classify(format!("insert into {}", self.path(table)), &e))?;
        let row_errors = response.insert_errors.unwrap_or_default();
        // A row failing for a passing reason (`backendError`, `timeout`) is not refused: the
        // request is retried, as its ids let BigQuery drop the rows it took.
        let passing = row_errors
            .iter()
            .flat_map(|row| row.errors.iter().flatten())
            .filter_map(|e| e.reason.as_deref().and_then(retry_of_reason))
            .find(|retry| retry.may_pass());
        if let Some(retry) = passing {
            return Err(InsertError::Backend(BackendError::new(
                format!("insert into {}", self.path(table)),
                retry,
                "BigQuery failed some rows for a passing reason",
            )));
        }
        let refused: Vec<(usize, String)> = row_errors
            .into_iter()
            .filter_map(|row_errors| {
                let index = usize::try_from(row_errors.index?).ok()?;
                // `stopped` rows were fine; they fell with the request.
                let messages: Vec<String> = row_errors
                    .errors
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| e.reason.as_deref() != Some("stopped"))
                    .map(|e| e.message.unwrap_or_else(|| e.reason.unwrap_or_default()))
                    .collect();
                (!messages.is_empty()).then(|| (index, messages.join("; ")))
            })
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(InsertError::RowsRefused(refused))
        }
    }
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    fn dataset(&self) -> &str {
        &self.dataset
    }

    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSpec, BackendError> {
        check_columns(&spec.columns).map_err(|problem| {
            refused_columns(format!("create table {}", self.path(&spec.name)), problem)
        })?;
        if let Some(existing) = self.get(&spec.name).await? {
            return self.spec(&spec.name, &existing);
        }
        let mut table = Table::new(
            &self.project,
            &self.dataset,
            &spec.name,
            TableSchema::new(fields(&self.path(&spec.name), &spec.columns)?),
        );
        if let Some(description) = &spec.description {
            table = table.description(description);
        }
        if let Some(column) = &spec.partition_column {
            table = table.time_partitioning(TimePartitioning::per_day().field(column));
        }
        if !spec.clustering.is_empty() {
            table = table.clustering(Clustering {
                fields: Some(spec.clustering.clone()),
            });
        }
        match self.client.table().create(table).await {
            Ok(created) => self.spec(&spec.name, &created),
            // Another instance created it between our look and our create: theirs stands.
            Err(err) if status(&err) == Some(409) => match self.get(&spec.name).await? {
                Some(existing) => self.spec(&spec.name, &existing),
                None => Err(BackendError::new(
                    format!("create table {}", self.path(&spec.name)),
                    Retry::Transient,
                    "it already exists, yet cannot be read back",
                )),
            },
            Err(err) => Err(classify(
                format!("create table {}", self.path(&spec.name)),
                &err,
            )),
        }
    }

    async fn table(&self, name: &str) -> Result<Option<TableSpec>, BackendError> {
        self.get(name)
            .await?
            .map(|table| self.spec(name, &table))
            .transpose()
    }

    async fn add_columns(
        &self,
        table: &str,
        additions: &[Addition],
    ) -> Result<TableSpec, BackendError> {
        // A patch replaces the whole schema. If another writer added a column between our read
        // and our patch, ours lacks it and BigQuery refuses to drop it: read again and retry,
        // twice, after a pause so that writers that raced once do not race again.
        let patched = (|| self.patch_columns(table, additions))
            .retry(retry::within_request().with_max_times(2))
            .when(|failure| matches!(failure, PatchFailure::Stale(_)))
            .notify(|failure, pause| {
                tracing::info!(
                    table,
                    "schema patch refused ({failure}); reading the table again in {pause:?}"
                );
            })
            .await;
        match patched {
            Ok(spec) => Ok(spec),
            Err(PatchFailure::Stale(err)) => Err(classify(
                format!("add columns to {}", self.path(table)),
                &err,
            )),
            Err(PatchFailure::Failed(err)) => Err(err),
        }
    }

    async fn insert_rows(&self, table: &str, rows: &[Row]) -> Result<(), InsertError> {
        (|| self.insert_once(table, rows))
            .retry(retry::within_request().with_total_delay(Some(COLUMN_PROPAGATION)))
            .when(|err| awaiting_columns(err).is_some())
            .notify(|err, pause| {
                tracing::info!(
                    table,
                    rows = awaiting_columns(err).unwrap_or_default(),
                    "a new column is still propagating; retrying in {pause:?}"
                );
            })
            .await
    }

    async fn load_parquet(
        &self,
        table: &str,
        uri: &str,
        load_id: &str,
    ) -> Result<LoadOutcome, LoadError> {
        super::refuse_pattern(uri)?;
        let deadline = Instant::now() + LOAD_WAIT;
        for attempt in 1..=LOAD_ATTEMPTS {
            let job_id = match attempt {
                1 => load_id.to_owned(),
                n => format!("{load_id}_{n}"),
            };
            let operation = || format!("load {uri} into {} (job {job_id})", self.path(table));
            let inserted = self
                .insert_load_job(&self.load_job_json(table, uri, &job_id))
                .await;
            let (job, already_loaded) = match inserted {
                Ok(job) => (job, false),
                // A job with this id exists: an earlier delivery started it.
                Err(err) if status(&err) == Some(409) => {
                    let job = self
                        .client
                        .job()
                        .get_job(&self.project, &job_id, None)
                        .await
                        .map_err(|e| classify(operation(), &e))?;
                    (job, true)
                }
                Err(err) => return Err(LoadError::Backend(classify(operation(), &err))),
            };
            let job = self.wait(job, &job_id, deadline).await?;
            let error = job.status.as_ref().and_then(|s| s.error_result.clone());
            match error {
                None => {
                    let rows = job
                        .statistics
                        .and_then(|s| s.load)
                        .and_then(|l| l.output_rows)
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    return Ok(LoadOutcome {
                        rows,
                        job_id,
                        already_loaded,
                    });
                }
                Some(error)
                    if matches!(error.reason.as_deref(), Some("invalid" | "invalidQuery")) =>
                {
                    return Err(LoadError::Refused(error.message.unwrap_or_default()));
                }
                Some(error) => tracing::warn!(
                    job_id,
                    reason = ?error.reason,
                    "load job failed for a passing reason; trying a new job id: {}",
                    error.message.unwrap_or_default()
                ),
            }
        }
        Err(LoadError::Backend(BackendError::new(
            format!("load {uri} into {}", self.path(table)),
            Retry::Transient,
            format!("{LOAD_ATTEMPTS} load jobs failed"),
        )))
    }

    async fn list_tables(&self) -> Result<Vec<TableSummary>, BackendError> {
        let listed: TableList = self
            .client
            .table()
            .list(&self.project, &self.dataset, ListOptions::default())
            .await
            .map_err(|e| classify(format!("list tables of {}", self.dataset), &e))?;
        let mut tables = Vec::new();
        // Views (the deduplicated ones, the curated ones) hold no rows of their own.
        let entries = listed
            .tables
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| entry.r#type.as_deref() != Some("VIEW"));
        for entry in entries {
            let name = entry.table_reference.table_id;
            if let Some(table) = self.get(&name).await? {
                tables.push(TableSummary {
                    rows: table.num_rows.as_deref().and_then(|n| n.parse().ok()),
                    spec: self.spec(&name, &table)?,
                });
            }
        }
        Ok(tables)
    }

    /// Listed page by page, without reading each table (which `list_tables` does).
    async fn table_names(&self) -> Result<Vec<String>, BackendError> {
        let mut names = Vec::new();
        let mut page_token = None;
        loop {
            let mut options = ListOptions::default().max_results(1000);
            if let Some(token) = page_token.take() {
                options = options.page_token(token);
            }
            let listed: TableList = self
                .client
                .table()
                .list(&self.project, &self.dataset, options)
                .await
                .map_err(|e| classify(format!("list tables of {}", self.dataset), &e))?;
            names.extend(
                listed
                    .tables
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|entry| entry.r#type.as_deref() != Some("VIEW"))
                    .map(|entry| entry.table_reference.table_id),
            );
            match listed.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => return Ok(names),
            }
        }
    }

    async fn ensure_unique_view(
        &self,
        table: &str,
        identity: RowIdentity,
    ) -> Result<(), BackendError> {
        let view = namespace::unique_view(table);
        let operation = || format!("create view {}", self.path(&view));
        // Created blind, an existing view answering 409: reading a view back through the
        // client's `Table` model fails to decode on the emulator, and one call is cheaper anyway.
        let definition = Table {
            table_reference: TableReference {
                project_id: self.project.clone(),
                dataset_id: self.dataset.clone(),
                table_id: view.clone(),
            },
            description: Some(format!(
                "`{table}` with each {} once (its first row by {}); query this, not the table.",
                identity.key, identity.first_by
            )),
            view: Some(ViewDefinition {
                query: unique_view_query(&self.quoted(table), identity),
                use_legacy_sql: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.client.table().create(definition).await {
            Ok(_) => Ok(()),
            // It exists: made by an earlier start or another instance, from the same query.
            Err(err) if status(&err) == Some(409) => Ok(()),
            Err(err) => Err(classify(operation(), &err)),
        }
    }

    async fn compact(
        &self,
        table: &str,
        identity: RowIdentity,
        dates: DateRange,
    ) -> Result<Compaction, BackendError> {
        let filter = format!(
            "{PARTITION} BETWEEN DATE '{}' AND DATE '{}'",
            dates.from, dates.to
        );
        // A script's temporary tables are its own on BigQuery; the name is unique anyway, as
        // the emulator keeps them in the dataset.
        let keep = format!("pulse_keep_{}", uuid::Uuid::new_v4().simple());
        let script = CompactionSql::new(&self.quoted(table), identity, &filter, &keep).script();
        let rows = self.query(&script).await.map_err(|err| {
            if err.message.contains("streaming buffer") {
                BackendError::new(
                    format!("compact {}", self.path(table)),
                    Retry::Transient,
                    format!(
                        "{}; rows streamed in the last 30 to 90 minutes cannot be changed: \
                         compact this range later",
                        err.message
                    ),
                )
            } else {
                err
            }
        })?;
        let count = |name: &str| {
            rows.first()
                .and_then(|row| row.get(name))
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    BackendError::new(
                        format!("compact {}", self.path(table)),
                        Retry::Permanent,
                        format!("the compaction script returned no `{name}`"),
                    )
                })
        };
        Ok(Compaction {
            table: table.to_owned(),
            dates,
            duplicated_ids: count("duplicated_ids")?,
            rows_removed: count("rows_removed")?,
        })
    }

    async fn id_counts(
        &self,
        table: &str,
        window: TimeWindow,
    ) -> Result<Vec<(String, u64)>, BackendError> {
        let dates = window.dates();
        let instant = |t: chrono::DateTime<chrono::Utc>| {
            format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f+00"))
        };
        let sql = format!(
            "SELECT event_id, COUNT(*) AS copies FROM {} \
             WHERE {PARTITION} BETWEEN DATE '{}' AND DATE '{}' \
             AND `{EVENT_TIME}` >= {} AND `{EVENT_TIME}` < {} GROUP BY event_id",
            self.quoted(table),
            dates.from,
            dates.to,
            instant(window.from),
            instant(window.to),
        );
        let rows = self.query(&sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = row.get("event_id")?.as_str()?.to_owned();
                Some((id, row.get("copies")?.as_u64()?))
            })
            .collect())
    }

    async fn query(&self, sql: &str) -> Result<Vec<Map<String, Value>>, BackendError> {
        let mut request = QueryRequest::new(sql);
        request.timeout_ms = Some(30_000);
        let response = self
            .client
            .job()
            .query(&self.project, request)
            .await
            .map_err(|e| classify("run a query", &e))?;
        // The emulator answers a failed query with 200 and `errors`.
        if let Some(errors) = response.errors.filter(|e| !e.is_empty()) {
            let messages: Vec<String> = errors.into_iter().filter_map(|e| e.message).collect();
            return Err(BackendError::new(
                "run a query",
                Retry::Permanent,
                messages.join("; "),
            ));
        }
        if response.job_complete == Some(false) {
            return Err(BackendError::new(
                "run a query",
                Retry::Transient,
                "the query did not finish within 30 s",
            ));
        }
        let columns = match response.schema.and_then(|schema| schema.fields) {
            Some(fields) => columns(&fields).map_err(|detail| {
                BackendError::new(
                    "run a query",
                    Retry::Permanent,
                    format!("{detail}; cast that column in the query, e.g. to STRING"),
                )
            })?,
            None => Vec::new(),
        };
        let record = |row: gcp_bigquery_client::model::table_row::TableRow| {
            let cells = row.columns.unwrap_or_default();
            record_from_cells(&columns, cells.into_iter().map(|c| c.value))
        };
        let mut records: Vec<Map<String, Value>> = response
            .rows
            .unwrap_or_default()
            .into_iter()
            .map(record)
            .collect();
        // A result larger than one response (about 10 MB) comes in pages.
        let mut page_token = response.page_token;
        let job = response.job_reference.unwrap_or_default();
        while let Some(token) = page_token.take() {
            let job_id = job.job_id.as_deref().unwrap_or_default();
            let page = self
                .client
                .job()
                .get_query_results(
                    &self.project,
                    job_id,
                    GetQueryResultsParameters {
                        page_token: Some(token),
                        location: job.location.clone(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| classify("read a page of query results", &e))?;
            records.extend(page.rows.unwrap_or_default().into_iter().map(record));
            page_token = page.page_token;
        }
        Ok(records)
    }

    async fn read_only_query(
        &self,
        sql: &str,
        limits: QueryLimits,
    ) -> Result<QueryAnswer, QueryError> {
        self.run_read_only(sql, limits).await
    }

    fn describe(&self) -> String {
        format!("BigQuery dataset {}.{}", self.project, self.dataset)
    }
}

/// Our columns as BigQuery's field schemas (the same JSON shape, so serde converts). Every
/// column or an error: a table created or patched without one of them would silently differ.
fn fields(table: &str, columns: &[Column]) -> Result<Vec<TableFieldSchema>, BackendError> {
    columns
        .iter()
        .map(|column| {
            serde_json::to_value(column)
                .and_then(serde_json::from_value)
                .map_err(|err| {
                    BackendError::new(
                        format!("write the schema of table {table}"),
                        Retry::Permanent,
                        format!(
                            "column `{}` of type {} has no BigQuery field schema: {err}",
                            column.name,
                            column.kind.bigquery_name()
                        ),
                    )
                })
        })
        .collect()
}

/// BigQuery's field schemas as our columns; the error names the column and its type.
fn columns(fields: &[TableFieldSchema]) -> Result<Vec<Column>, String> {
    fields
        .iter()
        .map(|field| {
            serde_json::to_value(field)
                .and_then(serde_json::from_value)
                .map_err(|err| err.to_string())
        })
        .collect()
}

/// The spec of table `name`, or which column Pulse cannot read, and why.
fn spec_from_table(name: &str, found: &Table) -> Result<TableSpec, String> {
    let columns = columns(found.schema.fields.as_deref().unwrap_or_default())?;
    Ok(TableSpec {
        name: name.to_owned(),
        description: found.description.clone(),
        columns,
        partition_column: found
            .time_partitioning
            .as_ref()
            .and_then(|p| p.field.clone()),
        clustering: found
            .clustering
            .as_ref()
            .and_then(|c| c.fields.clone())
            .unwrap_or_default(),
        // BigQuery keeps no row id: `insertId` is per request. Event tables use `event_id`.
        row_id_column: None,
    })
}

/// A query row (`{"f": [{"v": …}]}` cells, every scalar a string) as a JSON object.
fn record_from_cells(
    columns: &[Column],
    cells: impl Iterator<Item = Option<Value>>,
) -> Map<String, Value> {
    columns
        .iter()
        .zip(cells)
        .map(|(column, cell)| {
            let value = cell.map_or(Value::Null, |v| typed_value(column, v));
            (column.name.clone(), value)
        })
        .collect()
}

fn typed_value(column: &Column, value: Value) -> Value {
    if column.mode == Mode::Repeated {
        let Value::Array(items) = value else {
            return Value::Null;
        };
        let element = Column {
            mode: Mode::Nullable,
            ..column.clone()
        };
        return Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(mut cell) => {
                        typed_value(&element, cell.remove("v").unwrap_or(Value::Null))
                    }
                    other => typed_value(&element, other),
                })
                .collect(),
        );
    }
    match (&column.kind, value) {
        (ColumnType::Record(fields), Value::Object(mut record)) => {
            let cells = match record.remove("f") {
                Some(Value::Array(cells)) => cells,
                _ => Vec::new(),
            };
            let cells = cells.into_iter().map(|cell| match cell {
                Value::Object(mut cell) => cell.remove("v"),
                _ => None,
            });
            Value::Object(record_from_cells(fields, cells))
        }
        (ColumnType::Int64, Value::String(s)) => s
            .parse::<i64>()
            .map_or(Value::String(s), |n| Value::Number(n.into())),
        (ColumnType::Float64, Value::String(s)) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(s), Value::Number),
        (ColumnType::Bool, Value::String(s)) => match s.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(s),
        },
        (ColumnType::Json, Value::String(s)) => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        (_, other) => other,
    }
}

/// How many rows were refused, when every refusal names a column that has not reached the
/// streaming back end yet (they pass once it has).
fn awaiting_columns(err: &InsertError) -> Option<usize> {
    match err {
        InsertError::RowsRefused(refused)
            if refused.iter().all(|(_, m)| m.contains("no such field")) =>
        {
            Some(refused.len())
        }
        _ => None,
    }
}

fn status(err: &BQError) -> Option<i64> {
    match err {
        BQError::ResponseError { error } => Some(error.error.code),
        _ => None,
    }
}

/// BigQuery's error reason decides where it says more than the status (a 403 is a rate limit
/// as often as a missing permission), then the HTTP status; a request that got no answer may
/// pass.
fn classify(operation: impl Into<String>, err: &BQError) -> BackendError {
    let retry = match err {
        BQError::ResponseError { error } => error
            .error
            .errors
            .iter()
            .filter_map(|e| e.get("reason"))
            .find_map(|reason| retry_of_reason(reason))
            .unwrap_or_else(|| {
                u16::try_from(error.error.code).map_or(Retry::Transient, Retry::from_http_status)
            }),
        BQError::RequestError(_) | BQError::NoToken | BQError::ConnectionPoolError(_) => {
            Retry::Transient
        }
        _ => Retry::Permanent,
    };
    BackendError::new(operation, retry, err)
}

/// What an error reason of BigQuery's (`errors[].reason`, "Error messages" in its docs) says
/// about retrying, where the status alone would mislead.
///
/// `rateLimitExceeded` is a short-term rate (requests or updates per second): throttled.
/// `quotaExceeded` is a quota over a day or set by the project (load jobs per table per day, bytes
/// a user may query): retrying within the hour cannot pass, so it is permanent, answered 500
/// without retries here; Pub/Sub redelivers it with backoff until its dead-letter policy moves
/// it to the hold subscription, and the raw archive keeps every event for a replay once the quota
/// resets or is raised (docs/delivery.md).
fn retry_of_reason(reason: &str) -> Option<Retry> {
    match reason {
        "rateLimitExceeded" | "jobRateLimitExceeded" => Some(Retry::Throttled),
        "quotaExceeded" => Some(Retry::Permanent),
        "backendError" | "internalError" | "timeout" => Some(Retry::Transient),
        "invalid" | "invalidQuery" | "billingTierLimitExceeded" | "resourcesExceeded" => {
            Some(Retry::InvalidInput)
        }
        "accessDenied" | "billingNotEnabled" | "notFound" => Some(Retry::Permanent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rate_limit_is_retried_whatever_its_status() {
        let error = |code: i64, reason: &str| BQError::ResponseError {
            error: gcp_bigquery_client::error::ResponseError {
                error: gcp_bigquery_client::error::NestedResponseError {
                    code,
                    errors: vec![std::collections::HashMap::from([(
                        "reason".to_owned(),
                        reason.to_owned(),
                    )])],
                    message: "m".to_owned(),
                    status: String::new(),
                },
            },
        };
        let retry = |code, reason| classify("x", &error(code, reason)).retry;
        assert_eq!(retry(403, "rateLimitExceeded"), Retry::Throttled);
        // A daily quota does not pass on retry within Pub/Sub's redeliveries.
        assert_eq!(retry(403, "quotaExceeded"), Retry::Permanent);
        assert_eq!(retry(403, "accessDenied"), Retry::Permanent);
        assert_eq!(retry(400, "invalid"), Retry::InvalidInput);
        assert_eq!(retry(500, "backendError"), Retry::Transient);
        assert_eq!(retry(404, "somethingNew"), Retry::Permanent);
        assert_eq!(retry(503, "somethingNew"), Retry::Transient);
    }

    #[test]
    fn columns_convert_to_bigquery_field_schemas_and_back() {
        let ours = vec![
            Column::new("event_id", ColumnType::String, Mode::Required).described("Event id."),
            Column::new(
                "items",
                ColumnType::Record(vec![
                    Column::new("quantity", ColumnType::Int64, Mode::Nullable),
                    Column::new("price", ColumnType::Float64, Mode::Nullable),
                ]),
                Mode::Repeated,
            ),
            Column::new("metadata", ColumnType::Json, Mode::Nullable),
            Column::new("event_date", ColumnType::Date, Mode::Required),
            Column::new("amount", ColumnType::BigNumeric, Mode::Nullable),
            Column::new("opens", ColumnType::Time, Mode::Nullable),
        ];
        let theirs = fields("p.d.t", &ours).unwrap();
        assert_eq!(theirs.len(), ours.len());
        assert_eq!(
            serde_json::to_value(&theirs[1]).unwrap()["fields"][0]["type"],
            json!("INTEGER")
        );
        assert_eq!(
            serde_json::to_value(&theirs[4]).unwrap()["type"],
            json!("BIGNUMERIC")
        );
        assert_eq!(columns(&theirs).unwrap(), ours);
    }

    #[test]
    fn a_column_of_an_unknown_type_fails_the_schema_read() {
        let table = |fields| Table::new("p", "d", "places", TableSchema::new(fields));
        let spec = spec_from_table(
            "places",
            &table(vec![
                TableFieldSchema::string("id"),
                TableFieldSchema::time("opens"),
                TableFieldSchema::big_numeric("area"),
            ]),
        )
        .unwrap();
        let kinds: Vec<_> = spec.columns.iter().map(|c| c.kind.clone()).collect();
        assert_eq!(
            kinds,
            [ColumnType::String, ColumnType::Time, ColumnType::BigNumeric]
        );

        let detail = spec_from_table(
            "places",
            &table(vec![
                TableFieldSchema::string("id"),
                TableFieldSchema::record("site", vec![TableFieldSchema::geography("outline")]),
            ]),
        )
        .unwrap_err();
        assert!(
            detail.contains("column `outline` has type GEOGRAPHY"),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn a_source_uri_with_a_wildcard_is_never_sent() {
        // Nothing listens on port 1: a request sent would fail as transient, not permanent.
        let warehouse = BigQueryWarehouse::connect("p", "d", Some("http://127.0.0.1:1"))
            .await
            .unwrap();
        let err = warehouse
            .load_parquet("t", "gs://b/landing/x/a*.parquet", "id")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LoadError::Backend(e) if e.retry == Retry::Permanent
                && e.message.contains("pattern")),
            "{err}"
        );
    }

    #[test]
    fn query_cells_become_typed_json() {
        let columns = vec![
            Column::new("n", ColumnType::Int64, Mode::Nullable),
            Column::new("tags", ColumnType::String, Mode::Repeated),
            Column::new(
                "geo",
                ColumnType::Record(vec![Column::new(
                    "lat",
                    ColumnType::Float64,
                    Mode::Nullable,
                )]),
                Mode::Nullable,
            ),
            Column::new("ok", ColumnType::Bool, Mode::Nullable),
        ];
        let cells = [
            json!("42"),
            json!([{"v": "a"}, {"v": "b"}]),
            json!({"f": [{"v": "1.5"}]}),
            json!("true"),
        ];
        let row = record_from_cells(&columns, cells.into_iter().map(Some));
        assert_eq!(
            Value::Object(row),
            json!({"n": 42, "tags": ["a", "b"], "geo": {"lat": 1.5}, "ok": true})
        );
    }
}
