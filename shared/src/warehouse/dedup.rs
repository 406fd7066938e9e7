//! One row per id as a query sees it: every table whose rows carry an id has a view
//! `unique_<table>` (see [`crate::namespace::unique_view`]) that shows each id once, its first
//! row by a time column; compaction removes the physical repeats from closed partitions; and the
//! per-id row counts a reconciliation compares with the raw archive. Both warehouses run the
//! same statements, apart from quoting and literals.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// How the rows of a table are told apart: the id column, and the time column whose earliest
/// value picks the row that counts when an id was stored more than once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowIdentity {
    pub key: &'static str,
    pub first_by: &'static str,
}

/// Event tables: one row per `event_id`, the first accepted by preprocess.
pub const EVENT_ROWS: RowIdentity = RowIdentity {
    key: "event_id",
    first_by: "ingested_at",
};

/// The predictions table: one prediction per scored `event_id`, the first made.
pub const PREDICTION_ROWS: RowIdentity = RowIdentity {
    key: "event_id",
    first_by: "predicted_at",
};

/// The query of the deduplicated view over `table` (quoted and qualified by the caller). BigQuery
/// accepts `QUALIFY` only beside a `WHERE`, hence `WHERE TRUE`; DuckDB takes it as it is. A row
/// without a time sorts last, so a row that has one is preferred.
pub fn unique_view_query(table: &str, identity: RowIdentity) -> String {
    let RowIdentity { key, first_by } = identity;
    format!(
        "SELECT * FROM {table} WHERE TRUE \
         QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {first_by} NULLS LAST) = 1"
    )
}

/// Partition dates, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// What compacting one table did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    pub table: String,
    #[serde(flatten)]
    pub dates: DateRange,
    /// Ids that had more than one row in the range; each keeps its first.
    pub duplicated_ids: u64,
    /// Rows deleted: the repeats.
    pub rows_removed: u64,
}

/// The rows of an event table whose event time lies in `[from, to)`, as a reconciliation reads
/// them; `event_date` (the partition) is the UTC date of `timestamp`, so it bounds the scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeWindow {
    /// The partitions the window's rows lie in.
    pub fn dates(&self) -> DateRange {
        // `to` is excluded: a window ending at midnight does not reach the next day.
        let last = self.to - chrono::Duration::microseconds(1);
        DateRange {
            from: self.from.date_naive(),
            to: last.date_naive().max(self.from.date_naive()),
        }
    }
}

/// The column holding an event's time, which the raw archive files it under.
pub const EVENT_TIME: &str = "timestamp";
/// The partition column of event tables and predictions.
pub const PARTITION: &str = "event_date";

/// The statements of one compaction, in BigQuery's scripting language; DuckDB runs the same steps
/// one by one. `keep` is a temporary table holding the first row of each repeated id in the
/// range; the ids' rows are deleted and their first rows put back, in one transaction, so a
/// reader sees either the old rows or the new ones, and a repeat of the call finds nothing to do.
pub struct CompactionSql {
    pub keep: String,
    pub create_keep: String,
    pub count_rows: String,
    pub delete: String,
    pub reinsert: String,
}

impl CompactionSql {
    /// `table` is quoted and qualified; `dates` is the warehouse's SQL for the partition filter;
    /// `keep` a name for the temporary table.
    pub fn new(table: &str, identity: RowIdentity, dates: &str, keep: &str) -> Self {
        let RowIdentity { key, first_by } = identity;
        let repeated =
            format!("SELECT {key} FROM {table} WHERE {dates} GROUP BY {key} HAVING COUNT(*) > 1");
        Self {
            keep: keep.to_owned(),
            create_keep: format!(
                "CREATE TEMP TABLE {keep} AS SELECT * FROM {table} \
                 WHERE {dates} AND {key} IN ({repeated}) \
                 QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {first_by} NULLS LAST) = 1"
            ),
            count_rows: format!(
                "SELECT COUNT(*) FROM {table} WHERE {dates} AND {key} IN (SELECT {key} FROM {keep})"
            ),
            delete: format!(
                "DELETE FROM {table} WHERE {dates} AND {key} IN (SELECT {key} FROM {keep})"
            ),
            reinsert: format!("INSERT INTO {table} SELECT * FROM {keep}"),
        }
    }

    /// The whole compaction as one BigQuery script whose result is one row:
    /// `duplicated_ids, rows_removed`.
    pub fn script(&self) -> String {
        let Self {
            keep,
            create_keep,
            count_rows,
            delete,
            reinsert,
        } = self;
        format!(
            "DECLARE duplicated_ids INT64 DEFAULT 0;\n\
             DECLARE rows_removed INT64 DEFAULT 0;\n\
             BEGIN TRANSACTION;\n\
             {create_keep};\n\
             SET duplicated_ids = (SELECT COUNT(*) FROM {keep});\n\
             SET rows_removed = ({count_rows}) - duplicated_ids;\n\
             {delete};\n\
             {reinsert};\n\
             COMMIT TRANSACTION;\n\
             DROP TABLE {keep};\n\
             SELECT duplicated_ids, rows_removed;"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_window_covers_the_dates_of_its_rows() {
        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        let hour = TimeWindow {
            from: at("2026-12-01T23:00:00Z"),
            to: at("2026-12-02T00:00:00Z"),
        };
        assert_eq!(
            hour.dates(),
            DateRange {
                from: day("2026-12-01"),
                to: day("2026-12-01")
            }
        );
        let across = TimeWindow {
            from: at("2026-12-01T23:00:00Z"),
            to: at("2026-12-02T00:00:01Z"),
        };
        assert_eq!(across.dates().to, day("2026-12-02"));
    }
}
