//! The curated views: analytics over the event tables (hourly orders and revenue, inventory
//! movement, per-customer summary, activity funnel, device readings with their anomaly
//! predictions), written once in `terraform/views/*.sql` for both warehouses. Terraform renders
//! them for BigQuery with `templatefile`; the local stack renders the same files for DuckDB.
//!
//! Each file's first line is `-- <description>`. The SQL is the subset both dialects share; where
//! they differ it names a template variable: `${dataset}` (the qualified dataset), and the
//! expressions of `terraform/views/dialects.json`, read by Terraform and by this module alike
//! (`${hour_of_timestamp}`, `${p95_latency_ms}`). They read the `unique_<table>` views, not the
//! tables, so a physical duplicate on BigQuery (its `insertId` deduplicates for about a minute
//! only) is counted once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::config::{BackendKind, Config};

/// One curated view.
#[derive(Clone, Copy, Debug)]
pub struct CuratedView {
    pub name: &'static str,
    /// The tables whose `unique_<table>` views it reads: it can be created once they exist.
    pub sources: &'static [&'static str],
    /// The SQL file, with its description line and template variables.
    template: &'static str,
}

/// Every curated view, in the order a person reads them.
pub const CURATED_VIEWS: &[CuratedView] = &[
    CuratedView {
        name: "orders_hourly",
        sources: &["orders"],
        template: include_str!("../../terraform/views/orders_hourly.sql"),
    },
    CuratedView {
        name: "inventory_movement",
        sources: &["inventory"],
        template: include_str!("../../terraform/views/inventory_movement.sql"),
    },
    CuratedView {
        name: "customer_summary",
        sources: &["orders"],
        template: include_str!("../../terraform/views/customer_summary.sql"),
    },
    CuratedView {
        name: "activity_funnel",
        sources: &["user_activity"],
        template: include_str!("../../terraform/views/activity_funnel.sql"),
    },
    CuratedView {
        name: "device_anomalies",
        sources: &["device_telemetry", "predictions"],
        template: include_str!("../../terraform/views/device_anomalies.sql"),
    },
    CuratedView {
        name: "predictions_daily",
        sources: &["predictions"],
        template: include_str!("../../terraform/views/predictions_daily.sql"),
    },
];

/// The expressions that differ by dialect, by template variable.
const DIALECTS: &str = include_str!("../../terraform/views/dialects.json");

#[derive(Deserialize)]
struct DialectExpressions {
    bigquery: BTreeMap<String, String>,
    duckdb: BTreeMap<String, String>,
}

fn dialect_expressions() -> &'static DialectExpressions {
    static PARSED: OnceLock<DialectExpressions> = OnceLock::new();
    PARSED.get_or_init(|| {
        serde_json::from_str(DIALECTS).expect("terraform/views/dialects.json is checked by a test")
    })
}

/// The view named `name`, if it is a curated view.
pub fn curated_view(name: &str) -> Option<&'static CuratedView> {
    CURATED_VIEWS.iter().find(|view| view.name == name)
}

/// Which SQL dialect to render a view in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect<'a> {
    /// BigQuery: tables as `` `project.dataset`.table ``.
    BigQuery { project: &'a str },
    /// DuckDB: tables as `"dataset".table`.
    DuckDb,
}

impl<'a> Dialect<'a> {
    /// The dialect of the warehouse `config` chooses.
    pub fn of(config: &'a Config) -> Self {
        match config.backend {
            BackendKind::Gcp => Dialect::BigQuery {
                project: &config.project,
            },
            BackendKind::Local => Dialect::DuckDb,
        }
    }

    /// `dataset` (a safe identifier) as a qualifier of the tables in it.
    pub fn dataset_ref(self, dataset: &str) -> String {
        match self {
            Dialect::BigQuery { project } => format!("`{project}.{dataset}`"),
            Dialect::DuckDb => format!("\"{dataset}\""),
        }
    }
}

impl CuratedView {
    /// What the view shows, from its file's first line.
    pub fn description(&self) -> &'static str {
        self.template
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("-- "))
            .unwrap_or_default()
    }

    /// The view's `SELECT` for `dataset` (a safe identifier) in `dialect`.
    pub fn sql(&self, dialect: Dialect<'_>, dataset: &str) -> String {
        let expressions = match dialect {
            Dialect::BigQuery { .. } => &dialect_expressions().bigquery,
            Dialect::DuckDb => &dialect_expressions().duckdb,
        };
        let body = self
            .template
            .split_once('\n')
            .map_or(self.template, |(_, body)| body);
        let mut sql = body.replace("${dataset}", &dialect.dataset_ref(dataset));
        for (variable, expression) in expressions {
            sql = sql.replace(&format!("${{{variable}}}"), expression);
        }
        sql.trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_define_the_same_variables() {
        let expressions = dialect_expressions();
        assert!(
            expressions.bigquery.keys().eq(expressions.duckdb.keys()),
            "terraform/views/dialects.json"
        );
    }

    #[test]
    fn every_view_renders_without_template_variables_left() {
        for view in CURATED_VIEWS {
            assert!(!view.description().is_empty(), "{}", view.name);
            for dialect in [Dialect::BigQuery { project: "p" }, Dialect::DuckDb] {
                let sql = view.sql(dialect, "pulse");
                assert!(!sql.contains("${"), "{}: {sql}", view.name);
                assert!(sql.starts_with("SELECT"), "{}: {sql}", view.name);
                for source in view.sources {
                    let unique = crate::namespace::unique_view(source);
                    let table = match dialect {
                        Dialect::BigQuery { .. } => format!("`p.pulse`.{unique}"),
                        Dialect::DuckDb => format!("\"pulse\".{unique}"),
                    };
                    assert!(sql.contains(&table), "{}: {sql}", view.name);
                }
            }
        }
        assert!(curated_view("orders_hourly").is_some());
        assert!(curated_view("orders").is_none());
    }
}
