//! `POST /`: an object finalized in the landing bucket is loaded, quarantined or ignored
//! ([`crate::load`]); an event for an object the loader cannot address is handed back to be
//! dead-lettered (the event is kept for a person).

use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::delivery::envelope::StorageEvent;
use pulse_shared::delivery::{Handled, Trigger};
use pulse_shared::error::{BackendError, Reason, Rejection};
use pulse_shared::storage::is_safe_object_name;

use crate::load::{LandingObject, Outcome, load_object};
use crate::{AppState, FUNCTION};

impl Trigger for AppState {
    type Delivery = StorageEvent;
    type Done = Outcome;
    const FUNCTION: &'static str = FUNCTION;

    fn dead_letters(&self) -> &DeadLetterStore {
        &self.inner.dead_letters
    }

    async fn handle(&self, event: &mut StorageEvent) -> Result<Handled<Outcome>, BackendError> {
        let object = &event.object;
        if !is_safe_object_name(&object.name) {
            // Neither loadable nor movable to quarantine by its name.
            return Ok(Handled::Rejected(Rejection::new(
                Reason::BadValue,
                format!(
                    "object name {:?} has an empty, `.` or `..` part, which the loader does not \
                     address; rename the object",
                    object.name
                ),
            )));
        }
        let object = LandingObject {
            bucket: object.bucket.clone(),
            name: object.name.clone(),
            generation: Some(object.generation),
            size: object.size,
        };
        Ok(Handled::Done(load_object(self, &object).await?))
    }
}
