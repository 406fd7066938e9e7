//! The local stack's stand-in for the Eventarc storage trigger: polls the landing folder
//! (`$PULSE_DATA_DIR/gcs/<landing-bucket>/<landing-prefix>`) and sends parquet-loader the
//! `google.cloud.storage.object.v1.finalized` CloudEvent Cloud Storage would, once per file and
//! generation. A file is announced once it has stopped changing between two polls (a copy in
//! progress is not a finished upload); an answer other than 2xx is retried at the next poll.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pulse_shared::config::Config;
use pulse_shared::delivery::envelope::STORAGE_FINALIZED;
use pulse_shared::storage::local_generation;
use serde_json::json;

/// How often the folder is looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// What a file looked like at the last poll.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    generation: i64,
    size: u64,
    announced: bool,
}

/// Watches the landing folder and posts each new file's finalize event to `url`, until the
/// task is dropped.
pub async fn watch_landing(config: Config, url: String) {
    let bucket_dir = config.data_dir.join("gcs").join(&config.landing_bucket);
    let client = reqwest::Client::new();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    tracing::info!(folder = %bucket_dir.join(&config.landing_prefix).display(), %url, "watching the landing folder");
    loop {
        let root = bucket_dir.clone();
        let prefix = config.landing_prefix.clone();
        let files = tokio::task::spawn_blocking(move || files_under(&root, &prefix))
            .await
            .unwrap_or_default();
        seen.retain(|name, _| files.iter().any(|(n, ..)| n == name));
        for (name, generation, size) in files {
            let previous = seen.get(&name).copied();
            let stable = previous.is_some_and(|p| p.generation == generation && p.size == size);
            let mut state = Seen {
                generation,
                size,
                announced: stable && previous.is_some_and(|p| p.announced),
            };
            if stable && !state.announced {
                state.announced = announce(&client, &url, &config, &name, generation, size).await;
            }
            seen.insert(name, state);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Posts one finalize event; true when it was acknowledged.
async fn announce(
    client: &reqwest::Client,
    url: &str,
    config: &Config,
    name: &str,
    generation: i64,
    size: u64,
) -> bool {
    let bucket = &config.landing_bucket;
    let data = json!({
        "bucket": bucket,
        "name": name,
        "generation": generation.to_string(),
        "metageneration": "1",
        "size": size.to_string(),
        "contentType": "application/octet-stream",
    });
    let response = client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-type", STORAGE_FINALIZED)
        .header(
            "ce-source",
            format!("//storage.googleapis.com/projects/_/buckets/{bucket}"),
        )
        .header("ce-subject", format!("objects/{name}"))
        .header("ce-id", format!("{bucket}/{name}/{generation}"))
        .header("ce-time", chrono::Utc::now().to_rfc3339())
        .header("content-type", "application/json")
        .body(data.to_string())
        .send()
        .await;
    match response {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            tracing::warn!(object = name, status = %response.status(), "finalize event not acknowledged; sent again at the next poll");
            false
        }
        Err(err) => {
            tracing::warn!(
                object = name,
                "finalize event not delivered ({err}); sent again at the next poll"
            );
            false
        }
    }
}

/// Every file under `root/prefix` as (object name, generation, size), skipping the object
/// store's temporary files.
fn files_under(root: &Path, prefix: &str) -> Vec<(String, i64, u64)> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = vec![root.join(prefix)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with(".tmp-")
                && let Ok(relative) = path.strip_prefix(root)
            {
                let name = relative.to_string_lossy().into_owned();
                files.push((name, local_generation(&metadata), metadata.len()));
            }
        }
    }
    files
}
