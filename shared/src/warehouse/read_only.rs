//! Ad-hoc read-only queries for people and scripts (table-manager's `POST /query`, `pulse
//! query`): one SELECT (or `WITH … SELECT`) statement, bounded in rows, time and (on BigQuery)
//! bytes. Each warehouse decides what the statement is with its own parser, never by matching
//! the text: DuckDB parses it (`json_serialize_sql`) and runs it in a read-only transaction;
//! BigQuery dry-runs it and runs it only when the dry run's `statementType` is `SELECT`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::BackendError;

/// What one query may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Rows returned at most; a result with more is cut there and marked `truncated`.
    pub max_rows: usize,
    /// How long the query may run before it is stopped (DuckDB: interrupted; BigQuery: the
    /// job is cancelled).
    pub timeout: Duration,
    /// Bytes a BigQuery query may bill (`maximumBytesBilled`); DuckDB bills nothing.
    pub max_bytes_billed: u64,
}

/// One column of a result, in the order the query selects it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultColumn {
    pub name: String,
    /// The warehouse's own type name (`BIGINT`, `TIMESTAMP WITH TIME ZONE`; `INTEGER`,
    /// `TIMESTAMP`).
    #[serde(rename = "type")]
    pub kind: String,
}

/// The rows a read-only query returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswer {
    pub columns: Vec<ResultColumn>,
    /// Each row as an object keyed by column name (`columns` gives their order).
    pub rows: Vec<Map<String, Value>>,
    /// The query had more rows than `max_rows`; only the first `max_rows` are here.
    pub truncated: bool,
    /// Bytes BigQuery processed (what it billed, at least 10 MB a query); none on DuckDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_processed: Option<u64>,
}

/// Why a read-only query gave no rows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The statement is not one read-only query, does not parse, reads what it may not, or
    /// would exceed a limit: the same text fails again. Answered 400 with this reason.
    #[error("{0}")]
    Refused(String),
    /// The warehouse failed; the same query may pass later.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The statement both warehouses run: `sql` without the semicolons and blanks that may end it;
/// refused when nothing is left.
pub fn statement(sql: &str) -> Result<&str, QueryError> {
    match trim_statement(sql) {
        "" => Err(not_a_query("the query is empty")),
        sql => Ok(sql),
    }
}

/// The statement without the semicolons and blanks that may end it: the warehouses take one
/// statement, and a query wrapped for its row limit must not end in `;`.
fn trim_statement(sql: &str) -> &str {
    let mut sql = sql.trim();
    while let Some(rest) = sql.strip_suffix(';') {
        sql = rest.trim_end();
    }
    sql
}

/// The refusal of a statement that is not a query, in the words both warehouses share.
pub fn not_a_query(what: &str) -> QueryError {
    QueryError::Refused(format!(
        "only a single read-only query (SELECT, or WITH … SELECT) is run here; {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_semicolons_and_blanks_go() {
        assert_eq!(trim_statement(" SELECT 1 ;; \n"), "SELECT 1");
        assert_eq!(trim_statement("SELECT ';'"), "SELECT ';'");
        assert_eq!(trim_statement(" ; "), "");
    }
}
