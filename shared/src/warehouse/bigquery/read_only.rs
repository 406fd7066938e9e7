//! A read-only query on BigQuery: a dry-run job first, whose `statistics.query.statementType`
//! (BigQuery's own reading of the text) must be `SELECT` and whose byte estimate must fit the
//! limit; then a query job with `maximumBytesBilled` and `jobTimeoutMs`, whose first
//! `maxResults` rows are read (a job not done by the timeout is cancelled). Unqualified tables
//! are the dataset's (`defaultDataset`).

use gcp_bigquery_client::model::dataset_reference::DatasetReference;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_query::JobConfigurationQuery;

use super::{BigQueryWarehouse, classify, columns, record_from_cells, status};
use crate::warehouse::read_only::{
    QueryAnswer, QueryError, QueryLimits, ResultColumn, not_a_query, statement,
};

impl BigQueryWarehouse {
    fn default_dataset(&self) -> DatasetReference {
        DatasetReference {
            dataset_id: self.dataset.clone(),
            project_id: self.project.clone(),
        }
    }

    pub(super) async fn run_read_only(
        &self,
        sql: &str,
        limits: QueryLimits,
    ) -> Result<QueryAnswer, QueryError> {
        let sql = statement(sql)?;
        let estimate = self.dry_run(sql).await?;
        if estimate > limits.max_bytes_billed {
            return Err(QueryError::Refused(format!(
                "the query would process {estimate} bytes, more than the {} allowed; narrow it \
                 (a WHERE on event_date reads fewer partitions, fewer columns read less)",
                limits.max_bytes_billed
            )));
        }
        let job = self.query_job(sql, Some(limits));
        let job = self
            .client
            .job()
            .insert(&self.project, job)
            .await
            .map_err(|err| refused_or_backend("start a query job", &err))?;
        if let Some(error) = job.status.as_ref().and_then(|s| s.error_result.as_ref()) {
            return Err(QueryError::Refused(format!(
                "BigQuery could not run the query: {}",
                error.message.as_deref().unwrap_or("unknown error")
            )));
        }
        let reference = job.job_reference.unwrap_or_default();
        let job_id = reference.job_id.clone().unwrap_or_default();
        let response = self
            .client
            .job()
            .get_query_results(
                &self.project,
                &job_id,
                GetQueryResultsParameters {
                    location: reference.location.clone(),
                    max_results: Some(
                        i32::try_from(limits.max_rows.saturating_add(1)).unwrap_or(i32::MAX),
                    ),
                    timeout_ms: Some(i32::try_from(limits.timeout.as_millis()).unwrap_or(i32::MAX)),
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| refused_or_backend("read a query's results", &err))?;
        // The emulator answers a failed query with 200 and `errors`.
        if let Some(errors) = response.errors.filter(|e| !e.is_empty()) {
            let messages: Vec<String> = errors.into_iter().filter_map(|e| e.message).collect();
            return Err(QueryError::Refused(format!(
                "BigQuery could not run the query: {}",
                messages.join("; ")
            )));
        }
        if response.job_complete == Some(false) {
            let cancelled = self
                .client
                .job()
                .cancel_job(&self.project, &job_id, reference.location.as_deref())
                .await;
            if let Err(err) = cancelled {
                tracing::warn!(job_id, "the timed-out query job was not cancelled: {err}");
            }
            return Err(QueryError::Refused(format!(
                "the query ran longer than {} s and its job was cancelled; narrow it or allow \
                 it more time (`timeout_ms`)",
                limits.timeout.as_secs_f64()
            )));
        }
        let fields = response
            .schema
            .and_then(|schema| schema.fields)
            .unwrap_or_default();
        let columns = columns(&fields).map_err(|detail| {
            QueryError::Refused(format!(
                "{detail}; cast that column in the query, e.g. to STRING"
            ))
        })?;
        let mut rows: Vec<_> = response
            .rows
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                let cells = row.columns.unwrap_or_default();
                record_from_cells(&columns, cells.into_iter().map(|c| c.value))
            })
            .collect();
        let total: Option<u64> = response.total_rows.and_then(|n| n.parse().ok());
        let truncated = rows.len() > limits.max_rows
            || total.is_some_and(|total| total > limits.max_rows as u64);
        rows.truncate(limits.max_rows);
        Ok(QueryAnswer {
            columns: columns
                .iter()
                .map(|column| ResultColumn {
                    name: column.name.clone(),
                    kind: column.kind.bigquery_name().to_owned(),
                })
                .collect(),
            rows,
            truncated,
            bytes_processed: response.total_bytes_processed.and_then(|n| n.parse().ok()),
        })
    }

    /// A query job for `sql` on the dataset: a dry run (`None`), or a run billed at most
    /// `limits.max_bytes_billed` and stopped by BigQuery after `limits.timeout`.
    fn query_job(&self, sql: &str, run: Option<QueryLimits>) -> Job {
        Job {
            configuration: Some(JobConfiguration {
                dry_run: Some(run.is_none()),
                job_timeout_ms: run.map(|limits| limits.timeout.as_millis().to_string()),
                query: Some(JobConfigurationQuery {
                    query: sql.to_owned(),
                    use_legacy_sql: Some(false),
                    default_dataset: Some(self.default_dataset()),
                    maximum_bytes_billed: run.map(|limits| limits.max_bytes_billed.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Dry-runs `sql` as a query job: refused unless BigQuery calls it a SELECT; otherwise the
    /// bytes it would process.
    async fn dry_run(&self, sql: &str) -> Result<u64, QueryError> {
        let job = self.query_job(sql, None);
        let job = self
            .client
            .job()
            .insert(&self.project, job)
            .await
            .map_err(|err| refused_or_backend("dry-run a query", &err))?;
        if let Some(error) = job.status.as_ref().and_then(|s| s.error_result.as_ref()) {
            return Err(QueryError::Refused(format!(
                "BigQuery cannot run the query: {}",
                error.message.as_deref().unwrap_or("unknown error")
            )));
        }
        let statistics = job.statistics.as_ref().and_then(|s| s.query.as_ref());
        match statistics.and_then(|s| s.statement_type.as_deref()) {
            Some("SELECT") => {}
            Some(other) => {
                return Err(not_a_query(&format!(
                    "BigQuery's dry run says this is a {other} statement"
                )));
            }
            None => {
                return Err(not_a_query(
                    "BigQuery's dry run did not say what kind of statement this is",
                ));
            }
        }
        Ok(statistics
            .and_then(|s| s.total_bytes_processed.as_deref())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}

/// A 400 or 404 from BigQuery refuses the text (a syntax error, a table that is not there, the
/// byte limit); the rest are the backend's.
fn refused_or_backend(operation: &str, err: &gcp_bigquery_client::error::BQError) -> QueryError {
    if matches!(status(err), Some(400 | 404)) {
        let message = match err {
            gcp_bigquery_client::error::BQError::ResponseError { error } => {
                error.error.message.clone()
            }
            other => other.to_string(),
        };
        QueryError::Refused(format!("BigQuery refused the query: {message}"))
    } else {
        QueryError::Backend(classify(operation, err))
    }
}
