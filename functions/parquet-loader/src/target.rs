//! Which table a landing object loads into, from its name: `<landing-prefix>/<table>/<…>.parquet`.

use pulse_shared::registry::is_valid_event_type;

/// What an object name asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Load into this table.
    Table(String),
    /// A Parquet file under the landing prefix whose table name is not a safe identifier: it is
    /// refused (quarantined with the reason), so whoever dropped it sees why.
    BadTableName(String),
    /// Not ours to load (another prefix, not Parquet, a marker): acknowledged with a log line.
    Ignore(&'static str),
}

/// Reads the target from `name`. The table name follows the event-type rule
/// (`^[a-z][a-z0-9_]{0,63}$`): both kinds of table share one dataset, and the name reaches DDL.
pub fn target(landing_prefix: &str, name: &str) -> Target {
    let Some(rest) = name.strip_prefix(landing_prefix) else {
        return Target::Ignore("outside the landing prefix");
    };
    let Some((table, file)) = rest.split_once('/') else {
        return Target::Ignore("not in a table folder (<landing-prefix>/<table>/<file>.parquet)");
    };
    let base = file.rsplit('/').next().unwrap_or(file);
    if base.starts_with('_') || base.starts_with('.') {
        return Target::Ignore("a marker or hidden file (`_SUCCESS`, `_metadata`, `.…`)");
    }
    if !base.ends_with(".parquet") || base.len() == ".parquet".len() {
        return Target::Ignore("not a `.parquet` file");
    }
    if is_valid_event_type(table) {
        Target::Table(table.to_owned())
    } else {
        Target::BadTableName(table.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_choose_a_table_or_are_ignored() {
        let t = |name| target("landing/", name);
        assert_eq!(
            t("landing/orders/2024/part-0.parquet"),
            Target::Table("orders".into())
        );
        assert_eq!(
            t("landing/orders/a.parquet"),
            Target::Table("orders".into())
        );
        assert_eq!(
            t("landing/Orders-X/a.parquet"),
            Target::BadTableName("Orders-X".into())
        );
        assert_eq!(
            t("landing/x;drop/a.parquet"),
            Target::BadTableName("x;drop".into())
        );
        for ignored in [
            "quarantine/orders/a.parquet",
            "landing/a.parquet",
            "landing/orders/_SUCCESS",
            "landing/orders/dt=1/_metadata",
            "landing/orders/.a.parquet",
            "landing/orders/a.csv",
            "landing/orders/.parquet",
            "landing/orders/a.parquet.error.json",
        ] {
            assert!(matches!(t(ignored), Target::Ignore(_)), "{ignored}");
        }
    }
}
