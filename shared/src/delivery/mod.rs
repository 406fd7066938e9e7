//! The front door every triggered function shares: what Eventarc and Pub/Sub deliver
//! ([`envelope`]), the push-token check ([`oidc`]), the dead-letter records ([`deadletter`]) and
//! the check of a processed event ([`processed`]).

pub mod deadletter;
pub mod envelope;
pub mod oidc;
pub mod processed;
