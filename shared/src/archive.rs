//! Slices of the raw archive (`<raw prefix><event_type>/YYYY/MM/DD/HH/MM/<event_id>.json`, see
//! preprocess): which objects hold the events of one type in a time range, or only the named
//! events among them. Replays and the reconciliation read them.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FunctionError;
use crate::registry::identifiers::is_valid_event_type;
use crate::storage::ObjectStore;

/// The most archive objects, dead-letter records or posted events one replay request
/// (preprocess `/replay`, inference `/predict-replay`) works on, and its default page: a
/// request's time and its answer stay bounded however much a slice or prefix holds.
pub const MAX_REPLAY_PAGE: usize = 1_000;

/// The page a replay asked for: `limit`, 1 to [`MAX_REPLAY_PAGE`] (the default).
pub fn replay_page(limit: Option<usize>) -> Result<usize, FunctionError> {
    match limit {
        None => Ok(MAX_REPLAY_PAGE),
        Some(limit) if (1..=MAX_REPLAY_PAGE).contains(&limit) => Ok(limit),
        Some(limit) => Err(FunctionError::BadRequest(format!(
            "limit must be between 1 and {MAX_REPLAY_PAGE}, not {limit}"
        ))),
    }
}

/// Refuses more posted events than one page.
pub fn check_posted(count: usize) -> Result<(), FunctionError> {
    if count > MAX_REPLAY_PAGE {
        return Err(FunctionError::BadRequest(format!(
            "{count} events posted; at most {MAX_REPLAY_PAGE} per request"
        )));
    }
    Ok(())
}

/// The names a replay gives `count` posted events: their positions, in names that sort in order.
pub fn posted_names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{i:010}")).collect()
}

/// The posted event a name from [`posted_names`] stands for.
pub fn posted_event<'a, T>(events: &'a [T], name: &str) -> Option<&'a T> {
    events.get(name.parse::<usize>().ok()?)
}

/// A slice of the raw archive: one event type, event time in `[from, to)`; when `event_ids` is
/// given, only those events of the slice (a repair re-drives just the missing ones).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSlice {
    /// E.g. `order`.
    pub event_type: String,
    /// Event time, inclusive.
    pub from: DateTime<Utc>,
    /// Event time, exclusive.
    pub to: DateTime<Utc>,
    /// Only these events of the slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<BTreeSet<String>>,
}

impl RawSlice {
    /// Refuses a malformed slice as a bad request.
    pub fn check(&self) -> Result<(), FunctionError> {
        self.type_prefix("").map(drop)
    }

    /// What the slice holds, for people: `archived order events from … to …`.
    pub fn describe(&self) -> String {
        let picked = self
            .event_ids
            .as_ref()
            .map_or_else(String::new, |ids| format!(" ({} picked)", ids.len()));
        format!(
            "archived {} events from {} to {}{picked}",
            self.event_type,
            self.from.to_rfc3339(),
            self.to.to_rfc3339()
        )
    }

    /// The archive objects in the slice (an event counts when the minute it is filed under
    /// starts inside the slice). A malformed slice is a bad request.
    pub async fn list(
        &self,
        objects: &dyn ObjectStore,
        bucket: &str,
        raw_prefix: &str,
    ) -> Result<Vec<String>, FunctionError> {
        let type_prefix = self.type_prefix(raw_prefix)?;
        let names = objects
            .list(bucket, &self.shared_prefix(&type_prefix))
            .await?;
        Ok(names
            .into_iter()
            .filter(|name| self.holds(&type_prefix, name))
            .collect())
    }

    /// A page of [`Self::list`]: the slice's objects among the next `max` archive names after
    /// `after` (from the slice's first minute when `None`), and where the next page starts, if
    /// any may follow. Names sort by time (four-digit years), so a page starts where the slice
    /// does and the paging stops where it ends.
    pub async fn list_page(
        &self,
        objects: &dyn ObjectStore,
        bucket: &str,
        raw_prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<String>, Option<String>), FunctionError> {
        let type_prefix = self.type_prefix(raw_prefix)?;
        if after.is_some_and(|after| !after.starts_with(&type_prefix)) {
            return Err(FunctionError::BadRequest(format!(
                "`after` must be an archive name under {type_prefix:?}, as a previous page gave"
            )));
        }
        // Every name filed in the slice's first minute sorts after that minute's folder.
        let start = format!("{type_prefix}{}", minute_path(self.from));
        let after = after.map_or(start.clone(), |after| after.max(&start).to_owned());
        let listed = objects
            .list_page(bucket, &self.shared_prefix(&type_prefix), Some(&after), max)
            .await?;
        let next = match listed.last() {
            Some(last) if listed.len() == max && self.before_end(&type_prefix, last) => {
                Some(last.clone())
            }
            _ => None,
        };
        let names = listed
            .into_iter()
            .filter(|name| self.holds(&type_prefix, name))
            .collect();
        Ok((names, next))
    }

    /// `<raw prefix><event_type>/`, once the slice is known to be well formed.
    fn type_prefix(&self, raw_prefix: &str) -> Result<String, FunctionError> {
        if !is_valid_event_type(&self.event_type) {
            return Err(FunctionError::BadRequest(format!(
                "raw.event_type {:?} is not a valid event type",
                self.event_type
            )));
        }
        if self.from >= self.to {
            return Err(FunctionError::BadRequest(
                "raw.from must be before raw.to".to_owned(),
            ));
        }
        Ok(format!("{raw_prefix}{}/", self.event_type))
    }

    /// The longest date path that `from` and `to` share, under the type's prefix: all that
    /// needs listing.
    fn shared_prefix(&self, type_prefix: &str) -> String {
        let (from, to) = (minute_path(self.from), minute_path(self.to));
        let shared: String = from
            .split_inclusive('/')
            .zip(to.split_inclusive('/'))
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect();
        format!("{type_prefix}{shared}")
    }

    /// True when archive object `name` is in the slice.
    fn holds(&self, type_prefix: &str, name: &str) -> bool {
        object_time(name.strip_prefix(type_prefix).unwrap_or_default())
            .is_some_and(|t| self.from.naive_utc() <= t && t < self.to.naive_utc())
            && self
                .event_ids
                .as_ref()
                .is_none_or(|ids| event_id_of(name).is_some_and(|id| ids.contains(id)))
    }

    /// True when archive object `name` is filed before the slice's end (more may follow it).
    fn before_end(&self, type_prefix: &str, name: &str) -> bool {
        object_time(name.strip_prefix(type_prefix).unwrap_or_default())
            .is_some_and(|t| t < self.to.naive_utc())
    }
}

/// The event id an archive object is named after (`…/<event_id>.json`).
pub fn event_id_of(name: &str) -> Option<&str> {
    name.rsplit_once('/')
        .map_or(name, |(_, file)| file)
        .strip_suffix(".json")
}

/// The directories an event of time `t` is filed under: `YYYY/MM/DD/HH/MM/`, four-digit years
/// for every event time preprocess accepts ([`crate::instant::event_time_range`]), so names sort
/// by time.
pub fn minute_path(t: DateTime<Utc>) -> String {
    t.format("%Y/%m/%d/%H/%M/").to_string()
}

/// The minute an archive object is filed under, from `YYYY/MM/DD/HH/MM/<id>.json`.
fn object_time(relative: &str) -> Option<NaiveDateTime> {
    let (dated, _id) = relative.rsplit_once('/')?;
    NaiveDateTime::parse_from_str(&format!("{dated}/00"), "%Y/%m/%d/%H/%M/%S").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_after_their_event() {
        assert_eq!(
            event_id_of("raw/order/2026/12/01/10/05/e-1.json"),
            Some("e-1")
        );
        assert_eq!(
            event_id_of("raw/order/2026/12/01/10/05/e.1.json"),
            Some("e.1")
        );
        assert_eq!(event_id_of("raw/order/2026/12/01/10/05/e-1"), None);
    }

    /// The first and last minutes of the event times preprocess accepts, and one between, are
    /// filed under paths a replay reads back to the same minute.
    #[test]
    fn filed_paths_read_back_to_their_minute() {
        for (year, month, day, hour, minute) in [
            (1960, 1, 1, 0, 0),
            (2026, 11, 21, 13, 45),
            (2159, 12, 31, 23, 59),
        ] {
            let t = chrono::NaiveDate::from_ymd_opt(year, month, day)
                .and_then(|date| date.and_hms_opt(hour, minute, 0))
                .unwrap()
                .and_utc();
            let filed = format!("{}e-1.json", minute_path(t));
            assert_eq!(object_time(&filed), Some(t.naive_utc()), "{filed}");
        }
    }

    #[test]
    fn posted_events_are_found_by_the_names_they_were_given() {
        let events = ["a", "b", "c"];
        let names = posted_names(events.len());
        assert!(names.is_sorted(), "{names:?}");
        let found: Vec<_> = names
            .iter()
            .filter_map(|n| posted_event(&events, n))
            .collect();
        assert_eq!(found, [&"a", &"b", &"c"]);
        for stranger in ["0000000003", "x", "-1", ""] {
            assert_eq!(posted_event(&events, stranger), None, "{stranger}");
        }
    }
}
