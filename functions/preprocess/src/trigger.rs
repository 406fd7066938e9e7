//! `POST /`: one raw event from Pub/Sub is archived and published ([`crate::ingest`]); the
//! delivery module decodes it and dead-letters what can never succeed.

use pulse_shared::delivery::envelope::PubsubDelivery;
use pulse_shared::delivery::{Handled, Trigger};
use pulse_shared::error::BackendError;

use crate::ingest::{Ingested, ingest};
use crate::{AppState, FUNCTION};

impl Trigger for AppState {
    type Delivery = PubsubDelivery;
    type Done = Ingested;
    const FUNCTION: &'static str = FUNCTION;

    fn dead_letters(&self) -> &pulse_shared::delivery::deadletter::DeadLetterStore {
        &self.inner.dead_letters
    }

    async fn handle(
        &self,
        delivery: &mut PubsubDelivery,
    ) -> Result<Handled<Ingested>, BackendError> {
        ingest(self, &delivery.message).await
    }
}
