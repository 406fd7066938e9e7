//! A cap on the event types table-manager makes tables for. Every new type costs a table in the
//! warehouse and a writer task while it is written, so inputs naming a new type each would grow
//! both without bound. A type whose table exists always passes; a new one passes while fewer than
//! `PULSE_MAX_EVENT_TYPES` event tables exist; past that its events are dead-lettered
//! (`too_many_event_types`), and no table, writer or warehouse call is made for them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pulse_shared::error::{BackendError, Reason, Rejection};
use pulse_shared::namespace;
use pulse_shared::warehouse::Warehouse;

/// The tables are listed again at most this often when a new type finds the cap reached: other
/// instances make tables too, and an operator may drop some.
const RELIST: Duration = Duration::from_secs(60);

/// Which event types may have a table.
pub struct EventTypes {
    warehouse: Arc<dyn Warehouse>,
    max: usize,
    /// The event tables known to exist (or admitted by this instance), and when the warehouse
    /// was last listed.
    known: Mutex<(HashSet<String>, Option<Instant>)>,
    /// Held while listing, so that a burst of new types lists once.
    listing: tokio::sync::Mutex<()>,
}

impl EventTypes {
    pub fn new(warehouse: Arc<dyn Warehouse>, max: usize) -> Self {
        Self {
            warehouse,
            max,
            known: Mutex::new((HashSet::new(), None)),
            listing: tokio::sync::Mutex::new(()),
        }
    }

    /// Admits `event_type`, or says why its events cannot be stored.
    pub async fn admit(&self, event_type: &str) -> Result<Result<(), Rejection>, BackendError> {
        let table = namespace::event_table(event_type);
        if let Some(admitted) = self.admit_known(&table, false) {
            return Ok(admitted);
        }
        let _listing = self.listing.lock().await;
        if let Some(admitted) = self.admit_known(&table, false) {
            return Ok(admitted);
        }
        let tables: HashSet<String> = self
            .warehouse
            .table_names()
            .await?
            .into_iter()
            .filter(|name| namespace::is_event_table(name))
            .collect();
        *self.lock() = (tables, Some(Instant::now()));
        Ok(self.admit_known(&table, true).unwrap_or(Ok(())))
    }

    /// The answer from what is known, or `None` when the warehouse must be listed first (never
    /// listed, or the cap is reached and the list is older than [`RELIST`]).
    fn admit_known(&self, table: &str, listed: bool) -> Option<Result<(), Rejection>> {
        let mut known = self.lock();
        let (tables, listed_at) = &mut *known;
        if tables.contains(table) {
            return Some(Ok(()));
        }
        let fresh = listed || listed_at.is_some_and(|at| at.elapsed() < RELIST);
        if listed_at.is_none() || (tables.len() >= self.max && !fresh) {
            return None;
        }
        if tables.len() < self.max {
            tables.insert(table.to_owned());
            return Some(Ok(()));
        }
        Some(Err(Rejection::new(
            Reason::TooManyEventTypes,
            format!(
                "table {table} would be a new event table past the {} that may exist \
                 (PULSE_MAX_EVENT_TYPES); raise it, or drop tables of types no longer sent",
                self.max
            ),
        )))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<String>, Option<Instant>)> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
