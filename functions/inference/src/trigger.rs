//! `POST /`: a processed event becomes a prediction row ([`crate::score`]), or nothing when its
//! type is not scored; one that can never be scored is handed back to be dead-lettered
//! (`missing_feature`, `bad_prediction`, …). Answered only when the row is committed.

use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::delivery::{Handled, Processed, Trigger};
use pulse_shared::error::BackendError;

use crate::score::{Outcome, score_event};
use crate::{AppState, FUNCTION};

impl Trigger for AppState {
    type Delivery = Processed;
    type Done = Outcome;
    const FUNCTION: &'static str = FUNCTION;

    fn dead_letters(&self) -> &DeadLetterStore {
        &self.inner.dead_letters
    }

    async fn handle(&self, delivery: &mut Processed) -> Result<Handled<Outcome>, BackendError> {
        score_event(self, &delivery.event).await
    }
}
