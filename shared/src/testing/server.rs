//! A child process serving a test (an emulator, a database): its output kept in a log file for
//! the failure message, killed when dropped.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to come up on a busy machine (the emulators start Python or Java).
pub const STARTUP: Duration = Duration::from_secs(60);

/// A loopback port nothing listens on right now (the server binds it a moment later, and another
/// process may take it first: a caller that cares starts again on another).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// A running child process, killed when dropped.
pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Spawns `command` with its output in `log`.
    pub fn spawn(mut command: Command, log: &Path) -> Self {
        let file = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let output = file
            .try_clone()
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        Self {
            child,
            log: log.to_owned(),
        }
    }

    /// Spawns `command` (output to `log`) and waits until `ready` answers 2xx. `Err` with the
    /// log when the process exits first; panics when it neither answers nor exits in [`STARTUP`].
    pub async fn start(command: Command, log: &Path, ready: &str) -> Result<Self, String> {
        let mut server = Self::spawn(command, log);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = server.exited() {
                return Err(format!(
                    "exited ({status}) before it was ready:\n{}",
                    server.log()
                ));
            }
            let answer = client.get(ready).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            assert!(
                Instant::now() < deadline,
                "{ready} did not answer within {STARTUP:?}:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the child's status")
    }

    /// What the process has printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Aborts a spawned task (a test's proxy, a function's server) when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
