//! The PostgreSQL copy against a real PostgreSQL that each test starts itself (`initdb` and
//! `postgres` from `PULSE_PG_BIN`, else `/usr/lib/postgresql/<version>/bin`, on a free loopback
//! port in a temporary directory). Without them every test prints that it was SKIPPED and passes.
//! Run as root (CI containers), the server runs as `nobody` through `runuser`: PostgreSQL
//! refuses to run as root.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Loader, fixture, integers, written};
use http::StatusCode;
use serde_json::Value;
use tokio_postgres::NoTls;

struct Postgres {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binaries() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PULSE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

/// Runs a PostgreSQL binary, as `nobody` when this process is root.
fn command(bin: &Path, program: &str, as_nobody: bool) -> Command {
    if as_nobody {
        let mut command = Command::new("runuser");
        command.args(["-u", "nobody", "--"]).arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

impl Postgres {
    async fn start(test: &str) -> Option<Self> {
        let Some(bin) = binaries() else {
            eprintln!("SKIPPED {test}: no PostgreSQL binaries (set PULSE_PG_BIN)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let as_nobody = is_root();
        if as_nobody {
            let status = Command::new("chown")
                .args(["nobody"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let initdb = command(&bin, "initdb", as_nobody)
            .args([
                "-U",
                "pulse",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = command(&bin, "postgres", as_nobody)
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("postgresql://pulse@127.0.0.1:{port}/postgres");
        let server = Self {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio_postgres::connect(&server.url, NoTls).await.is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(server)
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

#[tokio::test]
async fn rows_are_copied_to_postgres_once_per_generation() {
    let Some(server) = Postgres::start("rows_are_copied_to_postgres_once_per_generation").await
    else {
        return;
    };
    let loader = Loader::with(|config| config.database_url = Some(server.url.clone()));
    let pg = server.client().await;
    let count = |table: &'static str| {
        let pg = &pg;
        async move {
            let row = pg
                .query_one(&format!("SELECT count(*) FROM pulse.load_{table}"), &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };

    let name = "landing/alltypes/a.parquet";
    let generation = loader.drop_file(name, &fixture("alltypes_plain.parquet"));
    for attempt in 0..3 {
        let (status, body) = loader.finalize(name, generation).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let postgres = &body["destinations"][1];
        assert_eq!(postgres["destination"], "postgresql", "{body}");
        assert_eq!(postgres["rows"], 8, "{body}");
        assert_eq!(postgres["already_loaded"], attempt > 0, "{body}");
    }
    assert_eq!(count("alltypes").await, 8);
    let row = pg
        .query_one(
            "SELECT sum(id)::bigint, min(timestamp_col)::text, string_agg(encode(string_col, 'escape'), '' ORDER BY id)
             FROM pulse.load_alltypes",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 28);
    assert_eq!(row.get::<_, String>(1), "2009-01-01 00:00:00+00");
    assert_eq!(row.get::<_, String>(2), "01010101");

    // A new generation of the same name is a new object.
    let newer = loader.drop_file(name, &fixture("alltypes_plain.parquet"));
    loader.finalize(name, newer).await;
    assert_eq!(count("alltypes").await, 16);
    let ledger = pg
        .query_one("SELECT count(*) FROM pulse._pulse_parquet_loads", &[])
        .await
        .unwrap();
    assert_eq!(ledger.get::<_, i64>(0), 2);
}

#[tokio::test]
async fn types_reach_postgres_with_their_values() {
    let Some(server) = Postgres::start("types_reach_postgres_with_their_values").await else {
        return;
    };
    let loader = Loader::with(|config| config.database_url = Some(server.url.clone()));
    let pg = server.client().await;
    for (path, table) in [
        (fixture("fixed_length_decimal.parquet"), "decimals"),
        (fixture("list_columns.parquet"), "lists"),
        (fixture("nested_maps.snappy.parquet"), "maps"),
        (fixture("single_nan.parquet"), "nan"),
        (written("pyarrow_nested.parquet"), "pyarrow_nested"),
        (written("duckdb_copy.parquet"), "duckdb_copy"),
    ] {
        let name = format!("landing/{table}/f.parquet");
        let generation = loader.drop_file(&name, &path);
        let (status, body) = loader.finalize(&name, generation).await;
        assert_eq!(
            (status, &body["outcome"]),
            (StatusCode::OK, &Value::from("loaded")),
            "{table}: {body}"
        );
    }
    let text = |sql: &'static str| {
        let pg = &pg;
        async move { pg.query_one(sql, &[]).await.unwrap().get::<_, String>(0) }
    };
    assert_eq!(
        text("SELECT sum(value)::text FROM pulse.load_decimals").await,
        "300.000000000"
    );
    assert_eq!(
        text("SELECT int64_list::text FROM pulse.load_lists WHERE utf8_list IS NULL").await,
        "[null, 1]"
    );
    assert_eq!(
        text("SELECT a::text FROM pulse.load_maps LIMIT 1").await,
        r#"{"a": {"1": true, "2": false}}"#
    );
    // Called a NaN by its README; every reader finds a null.
    assert_eq!(
        text("SELECT coalesce(mycol::text, 'null') FROM pulse.load_nan").await,
        "null"
    );
    assert_eq!(
        text("SELECT sum(price)::text FROM pulse.load_pyarrow_nested").await,
        "44985.000000000"
    );
    assert_eq!(
        text("SELECT max(seen_at)::text FROM pulse.load_pyarrow_nested").await,
        "2024-05-01 00:49:59+00"
    );
    assert_eq!(
        text("SELECT max(local_time)::text FROM pulse.load_pyarrow_nested").await,
        "2024-05-03 01:59:00"
    );
    assert_eq!(
        text("SELECT max(day)::text FROM pulse.load_pyarrow_nested").await,
        "2024-05-30"
    );
    assert_eq!(
        text("SELECT (point->>'x') FROM pulse.load_pyarrow_nested WHERE id = 3").await,
        "3.0"
    );
    assert_eq!(
        text("SELECT sum((rec->>'a')::int)::text FROM pulse.load_duckdb_copy").await,
        "4498500"
    );
}

#[tokio::test]
async fn a_refused_file_leaves_nothing_in_postgres() {
    let Some(server) = Postgres::start("a_refused_file_leaves_nothing_in_postgres").await else {
        return;
    };
    let loader = Loader::with(|config| config.database_url = Some(server.url.clone()));
    let mut corrupt = std::fs::read(fixture("delta_byte_array.parquet")).unwrap();
    for byte in &mut corrupt[200..20_000] {
        *byte ^= 0x5a;
    }
    let name = "landing/refused/corrupt.parquet";
    let generation = loader.drop_bytes(name, &corrupt);
    let (status, body) = loader.finalize(name, generation).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "quarantined", "{body}");
    let pg = server.client().await;
    let ledger = pg
        .query_one("SELECT count(*) FROM pulse._pulse_parquet_loads", &[])
        .await
        .unwrap();
    assert_eq!(ledger.get::<_, i64>(0), 0, "the copy was rolled back");
    let table = pg
        .query_opt("SELECT 1 FROM pulse.load_refused LIMIT 1", &[])
        .await;
    assert!(!matches!(table, Ok(Some(_))), "no rows: {table:?}");
}

#[tokio::test]
async fn a_column_name_postgres_would_cut_short_is_refused() {
    let Some(server) = Postgres::start("a_column_name_postgres_would_cut_short_is_refused").await
    else {
        return;
    };
    let loader = Loader::with(|config| config.database_url = Some(server.url.clone()));
    // 64 bytes: PostgreSQL keeps 63, and `…_a`, `…_b` would become one column.
    let long = format!("{}_a", "x".repeat(62));
    let name = "landing/long_names/a.parquet";
    let generation = loader.drop_bytes(name, &integers(&[&long]));
    let (status, body) = loader.finalize(name, generation).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "quarantined", "{body}");
    assert_eq!(body["reason"], "bad_name", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("64 bytes"),
        "{body}"
    );
    assert_eq!(
        loader.warehouse.table("load_long_names").await.unwrap(),
        None
    );
    // Without the copy, BigQuery's 300 characters are the limit.
    let alone = Loader::new();
    let generation = alone.drop_bytes(name, &integers(&[&long]));
    let (_, body) = alone.finalize(name, generation).await;
    assert_eq!(body["outcome"], "loaded", "{body}");
}
