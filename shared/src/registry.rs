//! The event registry: the catalogue of known event types, the identifier rules for any other
//! type, and the validation and normalisation of an event.

pub mod catalogue;
pub mod identifiers;
pub mod normalise;
