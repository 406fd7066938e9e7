//! A read-only query on DuckDB, on a connection of its own:
//! 1. DuckDB's parser reads the text (`json_serialize_sql`, passed as a parameter, never
//!    spliced): it must be exactly one statement, and a SELECT. The parse tree is walked: tables
//!    are read by name only (no file paths, which DuckDB would scan), and table functions only
//!    from a short list (no `read_csv`, `read_text`, …), so the route reads the warehouse, not
//!    the machine.
//! 2. The statement wrapped for its row limit is parsed again, so what runs is itself one SELECT
//!    (the Rust crate's `prepare` would execute every statement but the last).
//! 3. It runs in a `BEGIN TRANSACTION READ ONLY` transaction that is rolled back, with an
//!    interrupt armed for the time limit.

use std::sync::mpsc;
use std::time::Duration;

use duckdb::Connection;
use serde_json::{Map, Value};

use super::{error_type, literal};
use crate::warehouse::read_only::{
    QueryAnswer, QueryError, QueryLimits, ResultColumn, not_a_query, statement,
};

/// The alias of the wrapped query's row (unlikely to be one of its columns).
const ROW: &str = "__pulse_row";

/// Table functions a query may call: they make rows, they read no files.
const TABLE_FUNCTIONS: [&str; 5] = [
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
];

/// Runs `sql` on `connection` (a connection of its own, dropped afterwards).
pub(super) fn run(
    connection: &Connection,
    dataset: &str,
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryAnswer, QueryError> {
    let sql = statement(sql)?;
    let tree = one_select(connection, sql)?;
    check_sources(&tree, dataset)?;
    // The text as sent, or when wrapping it does not parse (a `;` before a last comment), as
    // DuckDB renders the statement it parsed.
    let (columns_sql, rows_sql) = match wrap(connection, sql, limits) {
        Ok(wrapped) => wrapped,
        Err(_) => wrap(connection, &render(connection, sql)?, limits)?,
    };

    let backend = |err: &duckdb::Error| QueryError::Backend(super::classify("run a query", err));
    connection
        .execute_batch(&format!("SET search_path = {};", literal(dataset)))
        .map_err(|e| backend(&e))?;
    connection
        .execute_batch("BEGIN TRANSACTION READ ONLY;")
        .map_err(|e| backend(&e))?;
    let deadline = Deadline::arm(connection, limits.timeout);
    let result = read(connection, &columns_sql, &rows_sql);
    let timed_out = deadline.disarm();
    // Nothing was written (the transaction could not), and the connection is dropped next.
    let _ = connection.execute_batch("ROLLBACK;");
    let (columns, texts) = result.map_err(|err| match error_type(&err) {
        Some("INTERRUPT") if timed_out => QueryError::Refused(format!(
            "the query ran longer than {} s and was stopped; narrow it (a WHERE on event_date, \
             fewer columns) or allow it more time (`timeout_ms`)",
            limits.timeout.as_secs_f64()
        )),
        Some("TransactionContext") => {
            not_a_query(&format!("DuckDB refused to run it read-only: {err}"))
        }
        // Binder, Catalog, Conversion, …: the query names something that is not there or mixes
        // types; the same text fails again.
        Some("FATAL" | "INTERNAL" | "IO" | "Out of Memory" | "Connection") | None => backend(&err),
        Some(_) => QueryError::Refused(format!("DuckDB could not run the query: {err}")),
    })?;
    let mut rows = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            serde_json::from_str::<Map<String, Value>>(text).map_err(|err| {
                QueryError::Refused(format!(
                    "row {index} of the result is not a JSON object ({err}): DuckDB writes NaN \
                     and Infinity as they are, which JSON cannot hold; cast them in the query, \
                     e.g. CASE WHEN isnan(x) THEN NULL ELSE x END"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let truncated = rows.len() > limits.max_rows;
    rows.truncate(limits.max_rows);
    Ok(QueryAnswer {
        columns,
        rows,
        truncated,
        bytes_processed: None,
    })
}

/// The statements that read the columns and the rows of `sql`, each checked to be one SELECT.
/// Newlines around the query: a `--` comment at its end cannot swallow the closing bracket.
fn wrap(
    connection: &Connection,
    sql: &str,
    limits: QueryLimits,
) -> Result<(String, String), QueryError> {
    let columns_sql = format!("DESCRIBE SELECT * FROM (\n{sql}\n) AS {ROW}");
    let rows_sql = format!(
        "SELECT to_json({ROW})::VARCHAR FROM (\n{sql}\n) AS {ROW} LIMIT {}",
        limits.max_rows.saturating_add(1)
    );
    one_select(connection, &columns_sql)?;
    one_select(connection, &rows_sql)?;
    Ok((columns_sql, rows_sql))
}

/// The one SELECT of `sql` as DuckDB writes it back from its parse tree.
fn render(connection: &Connection, sql: &str) -> Result<String, QueryError> {
    connection
        .query_row(
            "SELECT json_deserialize_sql(json_serialize_sql(?::VARCHAR))",
            [sql],
            |row| row.get(0),
        )
        .map_err(|err| QueryError::Refused(format!("DuckDB cannot restate the query: {err}")))
}

/// The result's columns, then its rows as JSON texts.
fn read(
    connection: &Connection,
    columns_sql: &str,
    rows_sql: &str,
) -> Result<(Vec<ResultColumn>, Vec<String>), duckdb::Error> {
    let columns = connection
        .prepare(columns_sql)?
        .query_map([], |row| {
            Ok(ResultColumn {
                name: row.get(0)?,
                kind: row.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let rows = connection
        .prepare(rows_sql)?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((columns, rows))
}

/// DuckDB's parse tree of `sql`, when it is exactly one SELECT statement.
fn one_select(connection: &Connection, sql: &str) -> Result<Value, QueryError> {
    let parsed: String = connection
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |row| {
            row.get(0)
        })
        .map_err(|err| QueryError::Backend(super::classify("parse a query", &err)))?;
    let mut parsed: Value = serde_json::from_str(&parsed).map_err(|err| {
        QueryError::Refused(format!("DuckDB's parse of the query is unreadable: {err}"))
    })?;
    if parsed["error"] == Value::Bool(true) {
        let message = parsed["error_message"].as_str().unwrap_or("unknown error");
        return Err(if message.starts_with("Only SELECT statements") {
            not_a_query("DuckDB parses this as another kind of statement")
        } else {
            QueryError::Refused(format!("DuckDB cannot parse the query: {message}"))
        });
    }
    match parsed["statements"].as_array_mut() {
        Some(statements) if statements.len() == 1 => Ok(statements.remove(0)),
        Some(statements) => Err(not_a_query(&format!(
            "DuckDB parses {} statements here; send one at a time",
            statements.len()
        ))),
        None => Err(QueryError::Refused(
            "DuckDB's parse of the query holds no statement".to_owned(),
        )),
    }
}

/// Every table reference in the parse tree reads the warehouse: a table or view by name (of the
/// dataset, DuckDB's catalogue or a CTE), or a table function that reads no files.
fn check_sources(tree: &Value, dataset: &str) -> Result<(), QueryError> {
    match tree {
        Value::Object(node) => {
            match node.get("type").and_then(Value::as_str) {
                Some("BASE_TABLE") => check_table(node, dataset)?,
                Some("TABLE_FUNCTION") => check_table_function(node)?,
                _ => {}
            }
            node.values()
                .try_for_each(|child| check_sources(child, dataset))
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_sources(item, dataset)),
        _ => Ok(()),
    }
}

fn check_table(node: &Map<String, Value>, dataset: &str) -> Result<(), QueryError> {
    let text = |key: &str| node.get(key).and_then(Value::as_str).unwrap_or_default();
    let (catalog, schema, table) = (
        text("catalog_name"),
        text("schema_name"),
        text("table_name"),
    );
    // DuckDB reads a "table" named like a file (`FROM 'x.csv'`) as that file.
    if table.contains(['.', '/', '\\', ':', '*', '?']) {
        return Err(QueryError::Refused(format!(
            "{table:?} names a file, which DuckDB would read; this route reads the warehouse's \
             tables only"
        )));
    }
    let known_schema = ["", dataset, "information_schema", "pg_catalog", "main"].contains(&schema);
    if !catalog.is_empty() || !known_schema {
        return Err(QueryError::Refused(format!(
            "{}: only the dataset {dataset:?} and DuckDB's catalogue are read here",
            [catalog, schema, table]
                .iter()
                .filter(|part| !part.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(".")
        )));
    }
    Ok(())
}

fn check_table_function(node: &Map<String, Value>) -> Result<(), QueryError> {
    let name = node
        .get("function")
        .and_then(|function| function.get("function_name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let catalogue = name.starts_with("duckdb_") && name != "duckdb_secrets";
    if catalogue || TABLE_FUNCTIONS.contains(&name) {
        return Ok(());
    }
    Err(QueryError::Refused(format!(
        "the table function {name}() is not run here: it may read files or settings; this \
         route reads the warehouse's tables (and {}, duckdb_tables() and the like)",
        TABLE_FUNCTIONS.join("(), ") + "()"
    )))
}

/// Interrupts the connection's statement when the time limit passes, unless disarmed first.
struct Deadline {
    disarm: mpsc::Sender<()>,
    timer: std::thread::JoinHandle<bool>,
}

impl Deadline {
    fn arm(connection: &Connection, timeout: Duration) -> Self {
        let interrupt = connection.interrupt_handle();
        let (disarm, disarmed) = mpsc::channel::<()>();
        let timer = std::thread::spawn(move || match disarmed.recv_timeout(timeout) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                interrupt.interrupt();
                true
            }
            _ => false,
        });
        Self { disarm, timer }
    }

    /// Stops the timer, waiting for it, so that no interrupt can come later; true when it fired.
    fn disarm(self) -> bool {
        let Self { disarm, timer } = self;
        drop(disarm);
        timer.join().unwrap_or(true)
    }
}
