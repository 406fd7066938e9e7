//! The predictions table (`PULSE_PREDICTIONS_TABLE`): one row per scored event, keyed by
//! `event_id` so a redelivered event adds no row (on BigQuery, its view `unique_predictions`
//! shows each event's first prediction). Terraform creates both on BigQuery with the same
//! columns; locally the first prediction creates them.

use chrono::{DateTime, SecondsFormat, Utc};
use pulse_shared::warehouse::dedup::PREDICTION_ROWS;
use pulse_shared::warehouse::group_commit::TableShape;
use pulse_shared::warehouse::{Column, ColumnType, Mode, RowIdentity, TableSpec};
use serde_json::{Map, Value};

use crate::coalesce::Scored;

/// The predictions table, for the group-commit writers.
pub struct PredictionsTable {
    pub name: String,
}

impl TableShape for PredictionsTable {
    fn table_name(&self, _kind: &str) -> String {
        self.name.clone()
    }

    fn table_spec(&self, _kind: &str, _sample: &Map<String, Value>) -> TableSpec {
        spec(&self.name)
    }

    fn identity(&self) -> RowIdentity {
        PREDICTION_ROWS
    }
}

/// The table: the same columns, partitioning and clustering as `terraform/bigquery.tf`.
pub fn spec(name: &str) -> TableSpec {
    use ColumnType::{Date, Float64, String, Timestamp};
    use Mode::{Nullable, Required};
    let columns = [
        ("event_id", String, Required, "The scored event."),
        ("event_type", String, Required, "Its type."),
        ("event_date", Date, Required, "Its event date (partition)."),
        (
            "score",
            Float64,
            Nullable,
            "The model's score, when it gives one.",
        ),
        (
            "label",
            String,
            Nullable,
            "The model's label, when it gives one.",
        ),
        ("model", String, Nullable, "Model that answered."),
        ("model_version", String, Nullable, "Its version id."),
        (
            "latency_ms",
            Float64,
            Nullable,
            "Time the predict call took.",
        ),
        (
            "predicted_at",
            Timestamp,
            Required,
            "When the prediction was made.",
        ),
    ];
    TableSpec {
        name: name.to_owned(),
        description: Some(
            "One row per scored event (inference), with the model that scored it.".to_owned(),
        ),
        columns: columns
            .into_iter()
            .map(|(name, kind, mode, description)| {
                Column::new(name, kind, mode).described(description)
            })
            .collect(),
        partition_column: Some("event_date".to_owned()),
        clustering: vec!["event_type".to_owned(), "model".to_owned()],
        row_id_column: Some("event_id".to_owned()),
    }
}

/// The row of one scored event.
pub fn row(
    event_id: &str,
    event_type: &str,
    event_date: &str,
    scored: &Scored,
    predicted_at: DateTime<Utc>,
) -> Map<String, Value> {
    let mut row = Map::with_capacity(9);
    row.insert("event_id".into(), event_id.into());
    row.insert("event_type".into(), event_type.into());
    row.insert("event_date".into(), event_date.into());
    row.insert("score".into(), scored.prediction.score.into());
    row.insert("label".into(), scored.prediction.label.clone().into());
    row.insert("model".into(), scored.model.clone().into());
    row.insert("model_version".into(), scored.model_version.clone().into());
    row.insert(
        "latency_ms".into(),
        (scored.latency.as_secs_f64() * 1000.0).into(),
    );
    row.insert(
        "predicted_at".into(),
        predicted_at
            .to_rfc3339_opts(SecondsFormat::Micros, true)
            .into(),
    );
    row
}
