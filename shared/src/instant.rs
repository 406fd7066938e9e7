//! Which instants Pulse stores. Both warehouses hold a TIMESTAMP from year 0001 to 9999 (UTC),
//! and neither holds a leap second (`23:59:60`, which RFC 3339 and chrono accept). An event's own
//! time is narrower still, 1960-01-01 to 2159-12-31 UTC: it chooses the event's daily partition,
//! and BigQuery's daily partitions cover exactly those days (a row outside them lands in one
//! `__UNPARTITIONED__` heap that compaction and reconciliation, which work by partition, never
//! reach); it also names the event's raw archive folder (`YYYY/…`, four digits, so lexical order
//! is time order for replays). Anything else is refused at preprocess with its reason.

use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Timelike, Utc};

/// The event times Pulse accepts: `[1960-01-01T00:00:00Z, 2160-01-01T00:00:00Z)`.
pub fn event_time_range() -> Range<DateTime<Utc>> {
    let day = |year| {
        NaiveDate::from_ymd_opt(year, 1, 1)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .expect("a valid date")
            .and_utc()
    };
    day(1960)..day(2160)
}

/// Parses an RFC 3339 timestamp that both warehouses store: no leap second, and a UTC year from
/// 0001 to 9999. The error says why not, for a person.
pub fn parse_storable(text: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("not an RFC 3339 timestamp: {e}"))?
        .with_timezone(&Utc);
    if t.nanosecond() >= 1_000_000_000 {
        return Err("a leap second (`:60`), which neither warehouse stores".to_owned());
    }
    let year = t.year();
    if !(1..=9999).contains(&year) {
        return Err(format!(
            "in year {year} in UTC; a stored timestamp lies in years 0001 to 9999"
        ));
    }
    Ok(t)
}

/// [`parse_storable`], within [`event_time_range`]: an event's own time.
pub fn parse_event_time(text: &str) -> Result<DateTime<Utc>, String> {
    let t = parse_storable(text)?;
    let range = event_time_range();
    if !range.contains(&t) {
        return Err(format!(
            "{} in UTC, outside the event times Pulse accepts (1960-01-01 to 2159-12-31, the days \
             BigQuery partitions by)",
            rfc3339(t)
        ));
    }
    Ok(t)
}

/// Formats a time the way every Pulse record does: RFC 3339, UTC, `Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_seconds_and_years_past_either_end_are_refused() {
        for (text, why) in [
            ("2016-12-31T23:59:60Z", "leap second"),
            ("9999-12-31T23:59:59-01:00", "year 10000"),
            ("0000-01-01T00:30:00+01:00", "year -1"),
            ("0000-06-01T00:00:00Z", "year 0 "),
        ] {
            let err = parse_storable(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        for text in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"] {
            assert!(parse_storable(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn event_times_are_the_days_bigquery_partitions() {
        for text in [
            "1960-01-01T00:00:00Z",
            "1960-01-01T01:00:00+01:00",
            "2159-12-31T23:59:59.999Z",
            "2026-12-05T10:00:00+05:30",
        ] {
            assert!(parse_event_time(text).is_ok(), "{text}");
        }
        for text in [
            "1959-12-31T23:59:59Z",
            "1960-01-01T00:30:00+01:00",
            "2160-01-01T00:00:00Z",
            "2159-12-31T23:30:00-01:00",
        ] {
            let err = parse_event_time(text).unwrap_err();
            assert!(err.contains("1960-01-01 to 2159-12-31"), "{text}: {err}");
        }
    }
}
