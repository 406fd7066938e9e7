//! `pulse ddl`: the BigQuery DDL of every table and view Pulse knows, generated from the same
//! registry and SQL files the functions and Terraform use, so the DDL cannot disagree with them.
//! Tables of event types Pulse has not seen yet are made by table-manager on first sight.

use std::fmt::Write as _;

use pulse_shared::registry::catalogue::KNOWN_TYPES;
use pulse_shared::views::{CURATED_VIEWS, Dialect};
use pulse_shared::warehouse::{Column, ColumnType, Mode, TableSpec};
use serde_json::Map;

/// Options of `pulse ddl`.
#[derive(clap::Args, Debug)]
pub struct DdlArgs {
    /// The Google Cloud project of the dataset.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT", default_value = "my-project")]
    pub project: String,
    /// The BigQuery dataset.
    #[arg(long, env = "PULSE_DATASET", default_value = "pulse")]
    pub dataset: String,
    /// The predictions table's name.
    #[arg(long, env = "PULSE_PREDICTIONS_TABLE", default_value = "predictions")]
    pub predictions_table: String,
}

/// The DDL: the known event tables, the predictions table, then the curated views.
pub fn render(args: &DdlArgs) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- Pulse: BigQuery DDL of project `{}`, dataset `{}` (from the registry; `pulse ddl`).",
        args.project, args.dataset
    );
    let mut tables: Vec<TableSpec> = KNOWN_TYPES
        .iter()
        .map(|spec| table_manager::table_spec(spec.name, &Map::new()))
        .collect();
    tables.push(inference::predictions_table_spec(&args.predictions_table));
    for spec in &tables {
        out.push('\n');
        out.push_str(&table(&args.project, &args.dataset, spec));
    }
    let dialect = Dialect::BigQuery {
        project: &args.project,
    };
    for view in CURATED_VIEWS {
        let _ = write!(
            out,
            "\nCREATE OR REPLACE VIEW `{}.{}.{}`\nOPTIONS (description = {})\nAS\n{};\n",
            args.project,
            args.dataset,
            view.name,
            string(view.description()),
            view.sql(dialect, &args.dataset)
        );
    }
    out
}

fn table(project: &str, dataset: &str, spec: &TableSpec) -> String {
    let mut out = format!(
        "CREATE TABLE IF NOT EXISTS `{project}.{dataset}.{}` (\n",
        spec.name
    );
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|column| format!("  {}", column_ddl(column, true)))
        .collect();
    out.push_str(&columns.join(",\n"));
    out.push_str("\n)");
    if let Some(partition) = &spec.partition_column {
        let _ = write!(out, "\nPARTITION BY {partition}");
    }
    if !spec.clustering.is_empty() {
        let _ = write!(out, "\nCLUSTER BY {}", spec.clustering.join(", "));
    }
    if let Some(description) = &spec.description {
        let _ = write!(out, "\nOPTIONS (description = {})", string(description));
    }
    out.push_str(";\n");
    out
}

/// `name TYPE [NOT NULL] [OPTIONS(description)]`; inside a STRUCT only name and type.
fn column_ddl(column: &Column, top_level: bool) -> String {
    let mut kind = type_ddl(&column.kind);
    if column.mode == Mode::Repeated {
        kind = format!("ARRAY<{kind}>");
    }
    let mut out = format!("{} {kind}", column.name);
    if top_level {
        if column.mode == Mode::Required {
            out.push_str(" NOT NULL");
        }
        if let Some(description) = &column.description {
            let _ = write!(out, " OPTIONS (description = {})", string(description));
        }
    }
    out
}

/// The GoogleSQL name of a column type.
fn type_ddl(kind: &ColumnType) -> String {
    match kind {
        ColumnType::String => "STRING".to_owned(),
        ColumnType::Int64 => "INT64".to_owned(),
        ColumnType::Float64 => "FLOAT64".to_owned(),
        ColumnType::Bool => "BOOL".to_owned(),
        ColumnType::Record(fields) => {
            let fields: Vec<String> = fields.iter().map(|f| column_ddl(f, false)).collect();
            format!("STRUCT<{}>", fields.join(", "))
        }
        other => other.bigquery_name().to_owned(),
    }
}

/// A GoogleSQL string literal.
fn string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_carry_partitioning_clustering_and_descriptions() {
        let ddl = render(&DdlArgs {
            project: "p".to_owned(),
            dataset: "d".to_owned(),
            predictions_table: "predictions".to_owned(),
        });
        let orders = ddl
            .split("\n\n")
            .find(|part| part.starts_with("CREATE TABLE IF NOT EXISTS `p.d.orders`"))
            .unwrap_or_else(|| panic!("no orders table in\n{ddl}"));
        assert!(orders.contains("  event_id STRING NOT NULL OPTIONS (description = "));
        assert!(
            orders
                .contains("items ARRAY<STRUCT<product_id STRING, quantity INT64, price FLOAT64>>"),
            "{orders}"
        );
        assert!(orders.contains("\nPARTITION BY event_date\nCLUSTER BY customer_id, status\n"));
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS `p.d.predictions`"));
        for view in CURATED_VIEWS {
            assert!(
                ddl.contains(&format!("CREATE OR REPLACE VIEW `p.d.{}`", view.name)),
                "{}",
                view.name
            );
        }
        assert!(!ddl.contains("${"), "every template variable is filled");
        assert_eq!(string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
