//! What the `pulse` binary's tests share: running the real binary with an environment that
//! points nowhere else, and reading what it printed and how it exited; a local stack in process,
//! fed through its bus.

#![allow(dead_code)] // each test file uses its own part
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use pulse::stack::{LocalStack, PortChoice};
use pulse_shared::config::Config;
use pulse_shared::publish::{OutgoingMessage, Publisher as _};
use serde_json::Value;

/// The `pulse` binary, with the test's environment minus anything that would point it at
/// another stack, data dir or deployment.
pub fn pulse_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pulse"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PULSE_")
            || name == "K_SERVICE"
            || name == "DATABASE_URL"
            || name == "RUST_LOG"
        {
            command.env_remove(name);
        }
    }
    command
}

/// What one run of the binary printed, and its exit code.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON (what `--json` prints), failing the test with both streams if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| panic!("{err}: {self:#?}"))
    }
}

/// Runs `pulse args…` and collects what it did.
pub fn run(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = pulse_command().args(args).output().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `pulse args… --json` expecting exit 0, and returns the JSON it printed.
pub fn run_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let run = run(&all);
    assert_eq!(run.code, Some(0), "pulse {args:?}: {run:#?}");
    run.json()
}

/// Runs the `pulse` binary on `data_dir` (free ports, JSON output), expecting success, and
/// returns its report. Logs go to stderr: stdout is the report alone, so `pulse demo --json |
/// jq` works.
pub fn pulse(data_dir: &Path, args: &[&str]) -> Value {
    let data_dir = data_dir.display().to_string();
    let mut all = args.to_vec();
    all.extend(["--any-ports", "--data-dir", &data_dir]);
    run_json(&all)
}

/// A local stack on free ports over a fresh data directory, which lives as long as it is held.
pub async fn start_stack() -> (LocalStack, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(Config::local(dir.path()), PortChoice::Any)
        .await
        .unwrap();
    (stack, dir)
}

/// Publishes each event, in order, to the stack's raw topic (each publish a new message).
pub async fn publish_raw(stack: &LocalStack, events: &[Value]) {
    for event in events {
        let message = OutgoingMessage {
            data: event.to_string().into(),
            ..Default::default()
        };
        stack
            .bus
            .publish(&stack.config.raw_topic, message)
            .await
            .unwrap();
    }
}

/// Waits until the stack's bus has finished with everything published.
pub async fn settle(stack: &LocalStack) {
    tokio::time::timeout(Duration::from_secs(60), stack.bus.settled())
        .await
        .expect("the stack settles within 60 s");
}
