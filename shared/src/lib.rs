//! Common core of the Pulse functions: configuration, telemetry, the HTTP runtime, envelope
//! decoding, the failure classification, the event registry, and the backends (object storage,
//! publishing, the warehouse) with their Google Cloud implementations and, with the `local`
//! feature, their embedded local ones.

pub mod archive;
pub mod auth;
pub mod backends;
pub mod config;
pub mod delivery;
pub mod error;
#[cfg(feature = "local")]
pub mod faults;
pub mod instant;
pub mod jobs;
mod json;
pub mod metrics;
pub mod namespace;
pub mod openapi;
pub mod publish;
pub mod registry;
pub mod retry;
pub mod runtime;
pub mod storage;
pub mod telemetry;
#[cfg(feature = "test-kit")]
pub mod testing;
pub mod views;
pub mod warehouse;
