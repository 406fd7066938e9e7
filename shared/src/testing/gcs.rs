//! PyPI's `gcp-storage-emulator` (Cloud Storage's JSON API): where it is installed, and the
//! command starting it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `PULSE_GCS_EMULATOR_BIN`, else `gcp-storage-emulator` on `PATH`, else why neither is there.
pub fn gcs_emulator_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("PULSE_GCS_EMULATOR_BIN").filter(|b| !b.is_empty()) {
        // Asked for by name (CI does): not finding it is a failure, not a skip.
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "PULSE_GCS_EMULATOR_BIN={} is not a file",
            bin.display()
        );
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("gcp-storage-emulator"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "gcp-storage-emulator is not installed (set PULSE_GCS_EMULATOR_BIN or put it on PATH; \
             `pip install gcp-storage-emulator`)"
                .to_owned()
        })
}

/// The command starting the emulator `bin` on `port` with `bucket` created.
pub fn gcs_emulator_command(bin: &Path, port: u16, bucket: &str) -> Command {
    let mut command = Command::new(bin);
    command.args([
        "start",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        &format!("--default-bucket={bucket}"),
    ]);
    command
}

/// Where the emulator answers once `bucket` exists: wait for this before using it.
pub fn gcs_emulator_ready(port: u16, bucket: &str) -> String {
    format!("http://127.0.0.1:{port}/storage/v1/b/{bucket}")
}
