//! `POST /`: a processed event becomes a row in the table of its type; an event whose type is
//! not admitted, or whose row conflicts with its table, is handed back to be dead-lettered.

use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::delivery::{Handled, Processed, Trigger};
use pulse_shared::error::{BackendError, Reason, Rejection};
use pulse_shared::warehouse::group_commit::WriteError;
use serde::Serialize;

use crate::{AppState, FUNCTION, event_table};

/// What became of an event.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Written {
    /// The row is committed (or was already there: repeats are dropped by id).
    Written { table: String, event_id: String },
}

impl Trigger for AppState {
    type Delivery = Processed;
    type Done = Written;
    const FUNCTION: &'static str = FUNCTION;

    fn dead_letters(&self) -> &DeadLetterStore {
        &self.inner.dead_letters
    }

    async fn handle(&self, delivery: &mut Processed) -> Result<Handled<Written>, BackendError> {
        let event = &mut delivery.event;
        if let Err(rejection) = self.inner.event_types.admit(&event.event_type).await? {
            return Ok(Handled::Rejected(rejection));
        }
        let values = std::mem::take(&mut event.values);
        let written = self
            .inner
            .writers
            .write(&event.event_type, event.event_id.clone(), values)
            .await;
        match written {
            Ok(()) => Ok(Handled::Done(Written::Written {
                table: event_table::table_name(&event.event_type),
                event_id: event.event_id.clone(),
            })),
            Err(WriteError::Conflict(detail)) => Ok(Handled::Rejected(Rejection::new(
                Reason::SchemaConflict,
                detail,
            ))),
            Err(WriteError::Backend(err)) => Err(err),
        }
    }
}
