//! Where each kind of input is stored. Event types, Parquet loads and Pulse's own tables get
//! table names from disjoint namespaces, so no input can choose a table that belongs to another
//! kind: known event types keep the registry's names, any other event type is `events_<type>`, a
//! Parquet load into `<name>` is `load_<name>`, Pulse's own tables are a fixed list, and the
//! deduplicated view of table `T` is `unique_T`.

use crate::registry::catalogue::{KNOWN_TYPES, known_type};
use crate::registry::identifiers::is_valid_event_type;

/// Prefix of the tables of event types the registry does not know.
pub const DISCOVERED_EVENT_PREFIX: &str = "events_";
/// Prefix of the tables Parquet loads create and fill.
pub const LOAD_PREFIX: &str = "load_";
/// Prefix of the deduplicated view over a table (each `event_id` once).
pub const UNIQUE_VIEW_PREFIX: &str = "unique_";
/// Pulse's own tables: written only by Pulse, never chosen by an input.
pub const OWN_TABLES: &[&str] = &["predictions"];

/// The table an event of `event_type` (already a safe identifier) is stored in.
pub fn event_table(event_type: &str) -> String {
    match known_type(event_type) {
        Some(spec) => spec.table.to_owned(),
        None => format!("{DISCOVERED_EVENT_PREFIX}{event_type}"),
    }
}

/// True when `table` holds an event type's rows: a known type's table or `events_<type>`.
pub fn is_event_table(table: &str) -> bool {
    KNOWN_TYPES.iter().any(|spec| spec.table == table)
        || table
            .strip_prefix(DISCOVERED_EVENT_PREFIX)
            .is_some_and(|event_type| {
                is_valid_event_type(event_type) && known_type(event_type).is_none()
            })
}

/// The longest identifier PostgreSQL keeps whole: it truncates longer ones, so two long names
/// could meet in one table. Parquet loads are copied to PostgreSQL, so their tables fit it.
pub const POSTGRES_IDENTIFIER_MAX: usize = 63;
/// The longest name a Parquet load may give: `load_<name>` stays within PostgreSQL's limit.
pub const LOAD_NAME_MAX: usize = POSTGRES_IDENTIFIER_MAX - LOAD_PREFIX.len();

/// True when `name` may name a Parquet load's table: a safe identifier (the event-type rule)
/// of at most [`LOAD_NAME_MAX`] bytes.
pub fn is_valid_load_name(name: &str) -> bool {
    is_valid_event_type(name) && name.len() <= LOAD_NAME_MAX
}

/// The table a Parquet load naming `name` (already a valid load name) is stored in.
pub fn load_table(name: &str) -> String {
    format!("{LOAD_PREFIX}{name}")
}

/// The deduplicated view over `table`.
pub fn unique_view(table: &str) -> String {
    format!("{UNIQUE_VIEW_PREFIX}{table}")
}

/// True when `table` is a name Pulse may choose for its own tables: not a known event table and
/// not under any prefix that inputs or views use.
pub fn is_own_table_name(table: &str) -> bool {
    !KNOWN_TYPES.iter().any(|spec| spec.table == table) && !has_reserved_prefix(table)
}

fn has_reserved_prefix(table: &str) -> bool {
    [DISCOVERED_EVENT_PREFIX, LOAD_PREFIX, UNIQUE_VIEW_PREFIX]
        .iter()
        .any(|prefix| table.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_names_sit_outside_every_prefix() {
        for spec in KNOWN_TYPES {
            assert!(!has_reserved_prefix(spec.table), "{}", spec.table);
            assert!(!OWN_TABLES.contains(&spec.table), "{}", spec.table);
        }
        for own in OWN_TABLES {
            assert!(is_own_table_name(own), "{own}");
        }
    }

    #[test]
    fn inputs_cannot_reach_each_others_tables() {
        assert_eq!(event_table("order"), "orders");
        assert_eq!(event_table("orders"), "events_orders");
        assert_eq!(event_table("predictions"), "events_predictions");
        assert_eq!(load_table("orders"), "load_orders");
        assert_eq!(load_table("predictions"), "load_predictions");
        assert_eq!(unique_view("orders"), "unique_orders");
        assert!(!is_own_table_name("orders"));
        assert!(!is_own_table_name("events_x"));
        assert!(!is_own_table_name("load_x"));
        assert!(!is_own_table_name("unique_predictions"));
    }

    #[test]
    fn load_tables_fit_postgres_identifiers() {
        let longest = "a".repeat(LOAD_NAME_MAX);
        assert!(is_valid_load_name(&longest));
        assert_eq!(load_table(&longest).len(), POSTGRES_IDENTIFIER_MAX);
        assert!(!is_valid_load_name(&format!("{longest}b")));
        assert!(!is_valid_load_name("Orders"));
        assert!(!is_valid_load_name(""));
    }
}
