//! The local stack behind the `pulse` command: every function with embedded backends, the
//! in-process bus wiring them together, the dashboard, the demo that shows them working, and the
//! checks that prove what it stored.

pub mod dashboard;
pub mod demo;
pub mod exit;
pub mod inspect;
pub mod publish_api;
pub mod remote;
pub mod render;
pub mod stack;
pub mod verify;
