//! What tests of several crates share (feature `test-kit`): PyPI's `bqemulator`, started on a
//! free loopback port through `scripts/bqemulator-offline.py` (offline, the emulator otherwise
//! fails at start fetching DuckDB's spatial extension), with one dataset, and stopped on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::warehouse::BigQueryWarehouse;

/// A running bqemulator holding one empty dataset.
pub struct BqEmulator {
    child: Child,
    pub endpoint: String,
    pub project: String,
    pub dataset: String,
}

impl Drop for BqEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        let wrapper =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bqemulator-offline.py");
        let http = reqwest::Client::new();
        // A free port can be taken by another process before the emulator binds it: an emulator
        // that exits at start is started again on another port.
        let mut attempts = 3;
        let emulator = loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map(|address| address.port())
                .expect("a free loopback port");
            let child = Command::new(&python)
                .arg(&wrapper)
                .args([
                    "start",
                    "--rest-port",
                    &port.to_string(),
                    "--grpc-port",
                    "0",
                ])
                .args(["--project", project, "--log-level", "warning"])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {python} {}: {e}", wrapper.display()));
            let mut emulator = Self {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                project: project.to_owned(),
                dataset: dataset.to_owned(),
            };
            if emulator.answers(&http).await {
                break emulator;
            }
            attempts -= 1;
            assert!(
                attempts > 0,
                "bqemulator did not start on a free port in 3 attempts"
            );
        };
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

    /// Waits until the emulator answers (true) or its process has exited (false); panics when it
    /// neither answers nor exits within 60 s.
    async fn answers(&mut self, http: &reqwest::Client) -> bool {
        let datasets = format!(
            "{}/bigquery/v2/projects/{}/datasets",
            self.endpoint, self.project
        );
        let started = Instant::now();
        loop {
            if http
                .get(&datasets)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "bqemulator did not answer on {} within 60 s",
                self.endpoint
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The dataset as a warehouse.
    pub async fn warehouse(&self) -> BigQueryWarehouse {
        BigQueryWarehouse::connect(&self.project, &self.dataset, Some(&self.endpoint))
            .await
            .expect("a client for the emulator")
    }
}
