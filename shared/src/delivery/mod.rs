//! The front door every triggered function shares: what Eventarc and Pub/Sub deliver
//! ([`envelope`]), the push-token check ([`oidc`]), the dead-letter records ([`deadletter`]),
//! the check of a processed event ([`processed`]), the trigger route that puts them together
//! and a triggered function's router around it ([`trigger`]), and the one answer shape of every
//! route ([`answer`]).
//!
//! A function implements [`Trigger`]: what it does with one decoded delivery. Decoding, the
//! push token, dead-lettering and the answer are done here, the same for every function.

pub mod answer;
pub mod deadletter;
pub mod envelope;
pub mod oidc;
pub mod processed;
pub mod trigger;

pub use trigger::{Delivery, Handled, Processed, Trigger};
