//! The landing-folder watcher of the local stack: a file copied into the folder is announced
//! once, as Eventarc would, and loaded.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::{Duration, Instant};

use common::{Loader, fixture};
use pulse_shared::testing::harness::serve;

#[tokio::test]
async fn a_dropped_file_is_announced_and_loaded_once() {
    let loader = Loader::new();
    let url = serve(loader.router.clone()).await;
    let watcher = tokio::spawn(parquet_loader::watch_landing(
        loader.config.clone(),
        format!("{url}/"),
    ));

    loader.drop_file(
        "landing/watched/a.parquet",
        &fixture("alltypes_plain.parquet"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while loader.count("load_watched").await < 8 {
        assert!(Instant::now() < deadline, "the file was not loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several polls later the file has not been announced again (a repeat would be a no-op
    // anyway; the ledger shows one load).
    tokio::time::sleep(parquet_loader::POLL * 4).await;
    assert_eq!(loader.count("load_watched").await, 8);
    let loads = loader
        .scalar("SELECT count(*) AS n FROM _pulse.parquet_loads")
        .await;
    assert_eq!(loads, 1);
    watcher.abort();
}
