//! Which table an event goes to (its namespace: `pulse_shared::namespace::event_table`), and
//! what that table looks like when the event is the first of its type: the registry's columns
//! for the known types, columns inferred from the event for any other type; always the ingest
//! metadata, daily partitions on `event_date`, `event_id` as the row id.

use std::collections::HashSet;

use pulse_shared::namespace;
use pulse_shared::registry::catalogue::{FieldKind, FieldSpec, known_type};
use pulse_shared::warehouse::dedup::EVENT_ROWS;
use pulse_shared::warehouse::group_commit::TableShape;
use pulse_shared::warehouse::schema::infer_column;
use pulse_shared::warehouse::{Column, ColumnType, Mode, RowIdentity, TableSpec};
use serde_json::{Map, Value};

/// The columns every event table starts with or ends with, set by preprocess.
const METADATA: &[(&str, ColumnType, Mode, &str)] = &[
    (
        "event_id",
        ColumnType::String,
        Mode::Required,
        "Event identifier; one row per id.",
    ),
    (
        "event_type",
        ColumnType::String,
        Mode::Required,
        "Event type.",
    ),
    (
        "timestamp",
        ColumnType::Timestamp,
        Mode::Required,
        "When the event happened (UTC).",
    ),
    (
        "event_date",
        ColumnType::Date,
        Mode::Required,
        "UTC date of `timestamp`; the partition.",
    ),
    (
        "ingested_at",
        ColumnType::Timestamp,
        Mode::Nullable,
        "When preprocess accepted the event.",
    ),
    (
        "message_id",
        ColumnType::String,
        Mode::Nullable,
        "Pub/Sub message that carried it.",
    ),
    (
        "publish_time",
        ColumnType::Timestamp,
        Mode::Nullable,
        "When Pub/Sub received the message.",
    ),
];

/// Where the metadata columns sit: the identifying ones first, the ingest ones last.
const LEADING_METADATA: usize = 4;

/// The table of an event type: the registry's name for the known types, `events_<type>`
/// otherwise, so no event type can reach a known type's, a load's or Pulse's own table.
pub fn table_name(event_type: &str) -> String {
    namespace::event_table(event_type)
}

/// The event tables, for the group-commit writers: one per event type.
pub struct EventTables;

impl TableShape for EventTables {
    fn table_name(&self, event_type: &str) -> String {
        table_name(event_type)
    }

    fn table_spec(&self, event_type: &str, sample: &Map<String, Value>) -> TableSpec {
        table_spec(event_type, sample)
    }

    fn identity(&self) -> RowIdentity {
        EVENT_ROWS
    }
}

/// The table to create for `event_type`, shaped by `sample` where the registry says nothing.
pub fn table_spec(event_type: &str, sample: &Map<String, Value>) -> TableSpec {
    let known = known_type(event_type);
    let mut columns: Vec<Column> = METADATA[..LEADING_METADATA]
        .iter()
        .map(metadata_column)
        .collect();
    if let Some(spec) = known {
        columns.extend(spec.fields.iter().map(registry_column));
    }
    // Looked up, not scanned: a wide first event made this quadratic.
    let taken: HashSet<&str> = columns
        .iter()
        .map(|c| c.name.as_str())
        .chain(METADATA.iter().map(|(metadata, ..)| *metadata))
        .collect();
    let inferred: Vec<Column> = sample
        .iter()
        .filter(|(name, _)| !taken.contains(name.as_str()))
        .filter_map(|(name, value)| infer_column(name, value))
        .collect();
    columns.extend(inferred);
    columns.extend(METADATA[LEADING_METADATA..].iter().map(metadata_column));
    TableSpec {
        name: table_name(event_type),
        description: Some(match known {
            Some(spec) => spec.description.to_owned(),
            None => {
                format!("`{event_type}` events; columns inferred from the events by table-manager.")
            }
        }),
        columns,
        partition_column: Some("event_date".to_owned()),
        clustering: known
            .map(|spec| spec.clustering.iter().map(|c| (*c).to_owned()).collect())
            .unwrap_or_default(),
        row_id_column: Some("event_id".to_owned()),
    }
}

/// The table for `event_type` with exactly `columns` beyond the metadata (manual `:ensure`).
pub fn table_spec_from_columns(event_type: &str, extra: Vec<Column>) -> TableSpec {
    let mut spec = table_spec(event_type, &Map::new());
    let trailing = spec
        .columns
        .split_off(spec.columns.len() - (METADATA.len() - LEADING_METADATA));
    for column in extra {
        if !spec
            .columns
            .iter()
            .chain(&trailing)
            .any(|c| c.name == column.name)
        {
            spec.columns.push(column);
        }
    }
    spec.columns.extend(trailing);
    spec
}

fn metadata_column(
    &(name, ref kind, mode, description): &(&str, ColumnType, Mode, &str),
) -> Column {
    Column::new(name, kind.clone(), mode).described(description)
}

fn registry_column(field: &FieldSpec) -> Column {
    let (kind, mode) = match field.kind {
        FieldKind::String => (ColumnType::String, Mode::Nullable),
        FieldKind::Integer => (ColumnType::Int64, Mode::Nullable),
        FieldKind::Number => (ColumnType::Float64, Mode::Nullable),
        FieldKind::Boolean => (ColumnType::Bool, Mode::Nullable),
        FieldKind::Timestamp => (ColumnType::Timestamp, Mode::Nullable),
        FieldKind::Object => (ColumnType::Json, Mode::Nullable),
        FieldKind::Records(items) => (
            ColumnType::Record(items.iter().map(registry_column).collect()),
            Mode::Repeated,
        ),
    };
    let mode = if field.required && mode == Mode::Nullable {
        Mode::Required
    } else {
        mode
    };
    Column::new(field.name, kind, mode).described(field.description)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        serde_json::from_value(value).expect("a JSON object")
    }

    #[test]
    fn known_types_take_the_registry_schema_and_clustering() {
        let spec = table_spec("order", &object(json!({"coupon": "X1"})));
        assert_eq!(spec.name, "orders");
        assert_eq!(spec.clustering, ["customer_id", "status"]);
        assert_eq!(spec.partition_column.as_deref(), Some("event_date"));
        assert_eq!(spec.row_id_column.as_deref(), Some("event_id"));
        let names: Vec<&str> = spec.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "event_id",
                "event_type",
                "timestamp",
                "event_date",
                "order_id",
                "customer_id",
                "items",
                "total_amount",
                "status",
                "currency",
                "coupon",
                "ingested_at",
                "message_id",
                "publish_time"
            ]
        );
        let items = spec.column("items").unwrap();
        assert_eq!(items.mode, Mode::Repeated);
        assert!(matches!(&items.kind, ColumnType::Record(fields) if fields.len() == 3));
        assert_eq!(spec.column("customer_id").unwrap().mode, Mode::Required);
        assert_eq!(spec.column("currency").unwrap().mode, Mode::Nullable);
        assert_eq!(spec.column("coupon").unwrap().kind, ColumnType::String);
    }

    #[test]
    fn other_types_are_inferred_from_the_event() {
        let event = object(json!({
            "event_id": "e1", "event_type": "shipment", "timestamp": "2026-11-21T10:00:00Z",
            "event_date": "2026-11-21", "carrier": "dhl", "parcels": 2, "weight_kg": 1.5,
            "delivered_at": "2026-11-22T08:00:00Z", "dims": {"w": 1, "h": 2}, "tags": ["a"]
        }));
        let spec = table_spec("shipment", &event);
        assert_eq!(spec.name, "events_shipment");
        assert!(spec.clustering.is_empty());
        let kind = |name: &str| spec.column(name).unwrap().kind.clone();
        assert_eq!(kind("carrier"), ColumnType::String);
        assert_eq!(kind("parcels"), ColumnType::Int64);
        assert_eq!(kind("weight_kg"), ColumnType::Float64);
        assert_eq!(kind("delivered_at"), ColumnType::Timestamp);
        assert_eq!(kind("event_date"), ColumnType::Date);
        assert!(matches!(kind("dims"), ColumnType::Record(_)));
        assert_eq!(spec.column("tags").unwrap().mode, Mode::Repeated);
    }

    #[test]
    fn explicit_columns_sit_between_the_metadata() {
        let spec = table_spec_from_columns(
            "shipment",
            vec![Column::new("carrier", ColumnType::String, Mode::Nullable)],
        );
        let names: Vec<&str> = spec.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "event_id",
                "event_type",
                "timestamp",
                "event_date",
                "carrier",
                "ingested_at",
                "message_id",
                "publish_time"
            ]
        );
    }
}
