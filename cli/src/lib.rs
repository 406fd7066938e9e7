//! The local stack behind the `pulse` command: every function with embedded backends, the
//! in-process bus wiring them together, the dashboard, the demo that shows them working, the
//! checks that prove what it stored, and the operator's commands that call a running stack
//! (local or deployed) over HTTP.

pub mod dashboard;
pub mod dead_letters;
pub mod demo;
pub mod exit;
pub mod inspect;
pub mod publish_api;
pub mod remote;
pub mod render;
pub mod replay;
pub mod stack;
pub mod status;
pub mod verify;
