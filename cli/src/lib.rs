//! The local stack behind the `pulse` command: every function with embedded backends, the
//! in-process bus wiring them together, the dashboard, and the demo that shows them working.

pub mod dashboard;
pub mod demo;
pub mod publish_api;
pub mod stack;
