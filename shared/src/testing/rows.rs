//! What tests read off the rows a warehouse query returned.

use serde_json::{Map, Value};

/// The `event_id` of each row, in the rows' order (panics on a row without a text one).
pub fn event_ids(rows: &[Map<String, Value>]) -> Vec<&str> {
    rows.iter()
        .map(|row| row["event_id"].as_str().expect("a text event_id"))
        .collect()
}
