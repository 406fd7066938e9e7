//! `pulse tables` and `pulse query`: the warehouse of a running stack, read through
//! table-manager (`GET /tables`, `POST /query`), never by opening its DuckDB file, which the
//! running stack holds.

use std::fmt::Write as _;

use pulse_shared::warehouse::{QueryAnswer, TableSpec};
use serde::{Deserialize, Serialize};
use table_manager::QueryRequest;

use crate::remote::{Remote, TableManagerUrl};
use crate::render::{align_right, cell, spinner, table};

/// `pulse tables`.
#[derive(Clone, Debug, clap::Args)]
pub struct TablesArgs {
    /// One table: its columns (name, type, mode, description) as well.
    pub table: Option<String>,
    #[command(flatten)]
    pub url: TableManagerUrl,
}

/// `pulse query`.
#[derive(Clone, Debug, clap::Args)]
pub struct QueryArgs {
    /// One SELECT (or WITH … SELECT) in the warehouse's dialect (DuckDB locally, BigQuery
    /// deployed); unqualified table names are the dataset's, e.g. `SELECT * FROM unique_orders`.
    pub sql: String,
    /// Rows to return at most (table-manager allows 1 to 10,000).
    #[arg(long, default_value_t = 1_000)]
    pub max_rows: usize,
    /// Seconds the query may run before it is stopped (default 30).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Bytes a BigQuery query may bill (default and ceiling: table-manager's
    /// PULSE_QUERY_MAX_BYTES_BILLED).
    #[arg(long, value_name = "BYTES")]
    pub max_bytes_billed: Option<u64>,
    #[command(flatten)]
    pub url: TableManagerUrl,
}

/// A table as `GET /tables` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListedTable {
    #[serde(flatten)]
    pub spec: TableSpec,
    pub rows: Option<u64>,
}

/// The tables of the stack's dataset, or the one asked for (an error when it is not there).
pub async fn tables(args: &TablesArgs, quiet: bool) -> anyhow::Result<Vec<ListedTable>> {
    let remote = Remote::new(&args.url.url);
    let waiting = spinner("listing the tables", quiet);
    let listed: Vec<ListedTable> = remote.get("/tables").await?;
    waiting.finish_and_clear();
    match &args.table {
        None => Ok(listed),
        Some(name) => {
            let found: Vec<ListedTable> = listed
                .iter()
                .filter(|table| &table.spec.name == name)
                .cloned()
                .collect();
            if found.is_empty() {
                let names: Vec<&str> = listed.iter().map(|t| t.spec.name.as_str()).collect();
                anyhow::bail!(crate::exit::Problems(format!(
                    "there is no table {name:?}; the tables are {}",
                    names.join(", ")
                )));
            }
            Ok(found)
        }
    }
}

/// The tables as text: one line per table, and each one's columns when a single table was
/// asked for.
pub fn tables_text(tables: &[ListedTable], columns: bool) -> String {
    let mut listing = table(["table", "rows", "partitioned by", "clustered by", "columns"]);
    for listed in tables {
        let spec = &listed.spec;
        listing.add_row([
            spec.name.clone(),
            listed
                .rows
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            spec.partition_column
                .as_deref()
                .map_or_else(String::new, |c| format!("day of {c}")),
            spec.clustering.join(", "),
            spec.columns.len().to_string(),
        ]);
    }
    align_right(&mut listing, [1, 4]);
    let mut text = format!("{listing}\n");
    if columns {
        for listed in tables {
            let spec = &listed.spec;
            let mut detail = table(["column", "type", "mode", "description"]);
            for column in &spec.columns {
                let value = serde_json::to_value(column).unwrap_or_default();
                detail.add_row([
                    column.name.clone(),
                    cell(&value["type"]),
                    cell(&value["mode"]),
                    column.description.clone().unwrap_or_default(),
                ]);
            }
            let _ = writeln!(text, "\n{}", spec.name);
            if let Some(description) = &spec.description {
                let _ = writeln!(text, "{description}");
            }
            let _ = writeln!(text, "{detail}");
        }
    }
    text
}

/// Runs the query through table-manager's `POST /query`.
pub async fn query(args: &QueryArgs, quiet: bool) -> anyhow::Result<QueryAnswer> {
    let remote = Remote::new(&args.url.url);
    let request = QueryRequest {
        sql: args.sql.clone(),
        max_rows: Some(args.max_rows),
        timeout_ms: args.timeout.map(|seconds| seconds.saturating_mul(1_000)),
        max_bytes_billed: args.max_bytes_billed,
    };
    let waiting = spinner("running the query", quiet);
    let answer = remote.post("/query", &request).await;
    waiting.finish_and_clear();
    Ok(answer?)
}

/// The rows as a table, and how many there are.
pub fn answer_text(answer: &QueryAnswer) -> String {
    let mut rows = table(answer.columns.iter().map(|c| c.name.clone()));
    for row in &answer.rows {
        rows.add_row(
            answer
                .columns
                .iter()
                .map(|column| cell(row.get(&column.name).unwrap_or(&serde_json::Value::Null))),
        );
    }
    let numeric = answer
        .columns
        .iter()
        .enumerate()
        .filter_map(|(index, column)| {
            let kind = column.kind.to_ascii_uppercase();
            let number = [
                "INT", "FLOAT", "DOUBLE", "DECIMAL", "NUMERIC", "REAL", "HUGEINT",
            ]
            .iter()
            .any(|name| kind.contains(name));
            (number && !kind.ends_with("[]")).then_some(index)
        });
    align_right(&mut rows, numeric);
    let count = answer.rows.len();
    let mut text = format!("{rows}\n{count} row{}", if count == 1 { "" } else { "s" });
    if answer.truncated {
        text.push_str(" (the query has more: add a LIMIT or raise --max-rows)");
    }
    if let Some(bytes) = answer.bytes_processed {
        let _ = write!(text, ", {bytes} bytes processed");
    }
    text
}
