//! Exit codes scripts can rely on (listed in `pulse --help` and the README):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; nothing wrong found |
//! | 1 | done, and what it found is wrong (see each command) |
//! | 2 | usage error: a bad flag or argument (clap's own) |
//! | 3 | could not be done: the stack or a service was unreachable, timed out or failed (5xx), or the local stack did not start |
//! | 4 | the service refused the request (4xx), e.g. a `pulse query` that is not one SELECT |

use std::process::ExitCode;

use crate::remote::CallError;

/// The command ran, and what it found is wrong: exit 1. The report is printed before.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Problems(pub String);

/// What `pulse --help` says about exit codes.
pub const HELP: &str = "\
Exit codes:
  0  done; nothing wrong found
  1  done, and what it found is wrong: verify (rows missing, doubled or unexpected), status (a
     function down), replay (items unreadable, dead-lettered again or quarantined), tables (no
     such table), demo and generate (stored other than planned)
  2  usage error: a bad flag or argument
  3  could not be done: the stack or a service was unreachable, timed out or failed (5xx), or
     the local stack did not start
  4  the service refused the request (4xx), e.g. a query that is not one SELECT

The operator commands (tables, query, dead-letters, replay, status, verify, compact) call a
running stack over HTTP: the local one on its usual ports, or a deployment given each
function's URL (--table-manager, --preprocess, ... or PULSE_TABLE_MANAGER_URL, ...), with a
Google ID token from PULSE_ID_TOKEN or Application Default Credentials.";

/// The exit code for an error that ended a command.
pub fn code(err: &anyhow::Error) -> ExitCode {
    if err.downcast_ref::<Problems>().is_some() {
        return ExitCode::from(1);
    }
    for cause in err.chain() {
        if let Some(call) = cause.downcast_ref::<CallError>() {
            return match call {
                CallError::Refused { .. } => ExitCode::from(4),
                _ => ExitCode::from(3),
            };
        }
    }
    ExitCode::from(3)
}
