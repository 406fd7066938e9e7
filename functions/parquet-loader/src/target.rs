//! Which table a landing object loads into, from its name: `<landing-prefix>/<name>/<…>.parquet`
//! loads into `load_<name>` (`pulse_shared::namespace`), so no landing folder can reach an event
//! table or Pulse's own tables.

use pulse_shared::namespace::{LOAD_NAME_MAX, is_valid_load_name, load_table};

/// What an object name asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Load into this table (already in the load namespace).
    Table(String),
    /// A Parquet file under the landing prefix whose folder is not a load name: it is refused
    /// (quarantined with this reason), so whoever dropped it sees why.
    BadTableName(String),
    /// Not ours to load (another prefix, not Parquet, a marker): acknowledged with a log line.
    Ignore(&'static str),
}

/// Reads the target from `name`. The folder is a safe identifier (`^[a-z][a-z0-9_]*$`, it
/// reaches DDL) short enough that `load_<folder>` is a whole PostgreSQL identifier.
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
    // Writers spell the extension in either case (`part-0.PARQUET`): both are loaded.
    let extension = base
        .len()
        .checked_sub(".parquet".len())
        .and_then(|at| base.get(at..));
    if !extension.is_some_and(|e| e.eq_ignore_ascii_case(".parquet"))
        || base.len() == ".parquet".len()
    {
        return Target::Ignore("not a `.parquet` file");
    }
    if is_valid_load_name(table) {
        Target::Table(load_table(table))
    } else {
        Target::BadTableName(format!(
            "table folder `{table}` is not a load name: a lower-case letter, then lower-case \
             letters, digits or underscores, {LOAD_NAME_MAX} bytes at most (it loads into \
             `load_<folder>`, which PostgreSQL must hold whole)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_choose_a_table_or_are_ignored() {
        let t = |name: &str| target("landing/", name);
        assert_eq!(
            t("landing/orders/2024/part-0.parquet"),
            Target::Table("load_orders".into())
        );
        assert_eq!(
            t("landing/predictions/a.parquet"),
            Target::Table("load_predictions".into())
        );
        for upper in ["landing/orders/a.PARQUET", "landing/orders/a.Parquet"] {
            assert_eq!(t(upper), Target::Table("load_orders".into()), "{upper}");
        }
        let longest = "a".repeat(LOAD_NAME_MAX);
        assert_eq!(
            t(&format!("landing/{longest}/a.parquet")),
            Target::Table(format!("load_{longest}"))
        );
        for bad in ["Orders-X", "x;drop", &format!("{longest}b")] {
            match t(&format!("landing/{bad}/a.parquet")) {
                Target::BadTableName(detail) => {
                    assert!(detail.contains(&format!("`{bad}`")), "{detail}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
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
