//! `POST /query`: one read-only query of the warehouse for a person or a script (`pulse query`),
//! through the function that owns the warehouse, so nobody opens it behind the stack's back.
//! Bounded in rows, time and billed bytes; anything but a single SELECT (or `WITH … SELECT`) is
//! refused 400 with the reason, by the warehouse's own reading of the statement
//! (`pulse_shared::warehouse::read_only`). Unqualified table names are the dataset's.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use pulse_shared::delivery::answer::{self, ErrorAnswer};
use pulse_shared::error::FunctionError;
use pulse_shared::warehouse::{QueryAnswer, QueryError, QueryLimits};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;

/// Rows returned when the request names no limit.
pub const DEFAULT_ROWS: usize = 1_000;
/// Rows returned at most, whatever the request asks.
pub const MAX_ROWS: usize = 10_000;
/// Time a query may take when the request names no limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time left to the rest of the request (serialising the rows) within its deadline.
const MARGIN: Duration = Duration::from_secs(5);

/// The body of `POST /query`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One SELECT (or `WITH … SELECT`) statement in the warehouse's dialect.
    pub sql: String,
    /// Rows to return at most (default 1,000, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// Milliseconds the query may run (default 30,000; at most the request deadline,
    /// `PULSE_REQUEST_TIMEOUT_SECS`, less 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Bytes a BigQuery query may bill, below `PULSE_QUERY_MAX_BYTES_BILLED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_billed: Option<u64>,
}

/// Runs one read-only query of the warehouse.
#[utoipa::path(
    post,
    path = "/query",
    tag = "query",
    request_body = QueryRequest,
    responses(
        (status = 200, description = "The rows: `columns` (name and type, in order), `rows` (objects keyed by column name), `truncated`, and `bytes_processed` on BigQuery.", body = Object),
        (status = 400, description = "Not one read-only query, or a limit out of range: what to fix.", body = ErrorAnswer<'static>),
        (status = 503, description = "The warehouse is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn handle(
    State(state): State<AppState>,
    answer::Json(request): answer::Json<QueryRequest>,
) -> Result<Json<QueryAnswer>, FunctionError> {
    let config = &state.inner.config;
    let limits = limits(
        &request,
        config.request_timeout,
        config.query_max_bytes_billed,
    )?;
    let answer = state
        .inner
        .warehouse
        .read_only_query(&request.sql, limits)
        .await
        .map_err(|err| match err {
            QueryError::Refused(reason) => FunctionError::BadRequest(reason),
            QueryError::Backend(err) => FunctionError::Backend(err),
            other => FunctionError::BadRequest(other.to_string()),
        })?;
    tracing::info!(
        rows = answer.rows.len(),
        truncated = answer.truncated,
        bytes_processed = answer.bytes_processed,
        "answered a read-only query"
    );
    Ok(Json(answer))
}

/// The request's limits within the function's own.
fn limits(
    request: &QueryRequest,
    request_timeout: Duration,
    max_bytes_billed: u64,
) -> Result<QueryLimits, FunctionError> {
    let max_rows = request.max_rows.unwrap_or(DEFAULT_ROWS);
    if max_rows == 0 || max_rows > MAX_ROWS {
        return Err(FunctionError::BadRequest(format!(
            "max_rows {max_rows} is outside 1..={MAX_ROWS}"
        )));
    }
    let longest = request_timeout
        .saturating_sub(MARGIN)
        .max(Duration::from_secs(1));
    let timeout = request
        .timeout_ms
        .map_or(DEFAULT_TIMEOUT.min(longest), Duration::from_millis);
    if timeout.is_zero() || timeout > longest {
        return Err(FunctionError::BadRequest(format!(
            "timeout_ms {} is outside 1..={} (the request deadline less {} s)",
            timeout.as_millis(),
            longest.as_millis(),
            MARGIN.as_secs()
        )));
    }
    let bytes = request.max_bytes_billed.unwrap_or(max_bytes_billed);
    if bytes > max_bytes_billed {
        return Err(FunctionError::BadRequest(format!(
            "max_bytes_billed {bytes} is above this function's limit, \
             PULSE_QUERY_MAX_BYTES_BILLED={max_bytes_billed}"
        )));
    }
    Ok(QueryLimits {
        max_rows,
        timeout,
        max_bytes_billed: bytes,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;

    fn request(max_rows: Option<usize>, timeout_ms: Option<u64>) -> QueryRequest {
        QueryRequest {
            sql: "SELECT 1".to_owned(),
            max_rows,
            timeout_ms,
            max_bytes_billed: None,
        }
    }

    #[test]
    fn limits_default_and_stay_within_the_functions_own() {
        let deadline = Duration::from_secs(60);
        let limits = limits(&request(None, None), deadline, 1_000).unwrap();
        assert_eq!(limits.max_rows, DEFAULT_ROWS);
        assert_eq!(limits.timeout, DEFAULT_TIMEOUT);
        assert_eq!(limits.max_bytes_billed, 1_000);
        assert!(super::limits(&request(Some(0), None), deadline, 1).is_err());
        assert!(super::limits(&request(Some(MAX_ROWS + 1), None), deadline, 1).is_err());
        assert!(super::limits(&request(None, Some(55_001)), deadline, 1).is_err());
        assert!(super::limits(&request(None, Some(55_000)), deadline, 1).is_ok());
        // A short request deadline shortens the default.
        let short = super::limits(&request(None, None), Duration::from_secs(10), 1).unwrap();
        assert_eq!(short.timeout, Duration::from_secs(5));
    }
}
