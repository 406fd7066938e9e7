//! PyPI's `bqemulator`, started on a free loopback port through `scripts/bqemulator-offline.py`
//! (offline, the emulator otherwise fails at start fetching DuckDB's spatial extension), with one
//! dataset, and stopped on drop.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use super::server::{Server, free_port};
use crate::warehouse::BigQueryWarehouse;

/// A running bqemulator holding one empty dataset.
pub struct BqEmulator {
    _server: Server,
    _dir: tempfile::TempDir,
    pub endpoint: String,
    pub project: String,
    pub dataset: String,
}

/// The command starting bqemulator with `python` on `port` for `project`.
pub fn bqemulator_command(python: impl AsRef<OsStr>, port: u16, project: &str) -> Command {
    let wrapper =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bqemulator-offline.py");
    let mut command = Command::new(python);
    command
        .arg(wrapper)
        .args([
            "start",
            "--rest-port",
            &port.to_string(),
            "--grpc-port",
            "0",
        ])
        .args(["--project", project, "--log-level", "warning"]);
    command
}

impl BqEmulator {
    /// Starts the emulator found through `PULSE_BQ_EMULATOR_PYTHON` (`scripts/test.sh` sets it)
    /// and creates `project.dataset`; without that variable, prints that `test` was SKIPPED and
    /// returns `None`. Panics when the emulator does not come up: a test must not pass then.
    pub async fn start(test: &str, project: &str, dataset: &str) -> Option<Self> {
        let Ok(python) = std::env::var("PULSE_BQ_EMULATOR_PYTHON") else {
            eprintln!(
                "SKIPPED {test}: set PULSE_BQ_EMULATOR_PYTHON to a Python with `bqemulator` \
                 installed (bash scripts/test.sh does)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        // A free port can be taken by another process before the emulator binds it: an emulator
        // that exits at start is started again on another port.
        let mut attempts = 3;
        let emulator = loop {
            let port = free_port();
            let endpoint = format!("http://127.0.0.1:{port}");
            let started = Server::start(
                bqemulator_command(&python, port, project),
                &dir.path().join(format!("bqemulator-{port}.log")),
                &format!("{endpoint}/bigquery/v2/projects/{project}/datasets"),
            )
            .await;
            match started {
                Ok(server) => {
                    break Self {
                        _server: server,
                        _dir: dir,
                        endpoint,
                        project: project.to_owned(),
                        dataset: dataset.to_owned(),
                    };
                }
                Err(why) => {
                    attempts -= 1;
                    assert!(
                        attempts > 0,
                        "bqemulator did not start in 3 attempts: {why}"
                    );
                }
            }
        };
        let http = reqwest::Client::new();
        let datasets = format!(
            "{}/bigquery/v2/projects/{project}/datasets",
            emulator.endpoint
        );
        let created = http
            .post(&datasets)
            .json(&serde_json::json!({
                "datasetReference": {"projectId": project, "datasetId": dataset}
            }))
            .send()
            .await
            .expect("the emulator answers");
        assert!(
            created.status().is_success(),
            "creating dataset {dataset}: {:?}",
            created.text().await
        );
        Some(emulator)
    }

    /// The dataset as a warehouse.
    pub async fn warehouse(&self) -> BigQueryWarehouse {
        BigQueryWarehouse::connect(&self.project, &self.dataset, Some(&self.endpoint))
            .await
            .expect("a client for the emulator")
    }
}
