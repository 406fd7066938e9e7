//! The stack having a bad day, in short: `scripts/chaos.py` against this build's `pulse`.
//!
//! - **crash**: `kill -9` of the whole stack (`pulse up`) three times at random moments while
//!   `pulse generate --stack` publishes, restarting it each time;
//! - **faults**: the backends fail 30 % of their calls (and stall a few) for 25 s, then recover.
//!
//! Each ends with the script's check: every event whose publish the stack acknowledged is in
//! the raw archive, and `pulse verify` finds every archived event stored exactly once. Longer
//! runs (`scripts/chaos.py crash --rounds 20 --rate 2000`) are recorded in docs/benchmarks.md;
//! here the debug build runs at a few hundred events per second.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::process::Command;

fn chaos(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/chaos.py");
    // The script removes its work dir when all is well and keeps it (logs, data) otherwise.
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let output = Command::new("python3")
        .arg(script)
        .args(args)
        .args(["--pulse", env!("CARGO_BIN_EXE_pulse")])
        .args(["--work-dir", work.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/chaos.py {args:?} failed:\n{stdout}\n{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["problems"], serde_json::json!([]), "{summary}");
    assert!(summary["acknowledged"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["acknowledged_not_archived"], 0, "{summary}");
    println!("{summary}");
}

#[test]
fn every_acknowledged_event_is_stored_once_across_kill_9_of_the_stack() {
    chaos(&[
        "crash", "--rounds", "3", "--rate", "300", "--min-up", "2", "--max-up", "6",
    ]);
}

#[test]
fn nothing_is_lost_or_doubled_when_backends_fail_30_percent_of_calls_then_recover() {
    chaos(&[
        "faults",
        "--rate",
        "200",
        "--fault-rate",
        "0.3",
        "--fault-seconds",
        "25",
        "--recovery-seconds",
        "5",
    ]);
}
