//! What the tests of every crate share (feature `test-kit`): emulators started as child
//! processes, a function's router driven as a push would drive it, a recording publisher, and a
//! walk of the files a local store wrote, the event ids of query rows; the open-loop driver of
//! the load benchmarks.

pub mod bigquery;
pub mod files;
pub mod gcs;
pub mod harness;
pub mod load;
pub mod publisher;
pub mod rows;
pub mod server;
