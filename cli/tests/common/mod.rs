//! What the `pulse` binary's tests share: running the real binary with an environment that
//! points nowhere else, and reading what it printed and how it exited.

#![allow(dead_code)] // each test file uses its own part
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::process::{Command, Output};

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
