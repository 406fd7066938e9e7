//! `pulse` as the operator's tool: the real binary against a running local stack (started here,
//! on free ports, as `pulse up` starts it), talking to it over HTTP only. Each command is run
//! for people (tables) and for scripts (`--json`), and its exit codes are checked: 0 done, 1
//! found something wrong, 2 usage, 3 unreachable, 4 refused.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{publish_raw, run, run_json, settle, start_stack};
use pulse::stack::LocalStack;
use serde_json::{Value, json};

/// A running stack holding two orders and one dead letter.
struct Fixture {
    stack: LocalStack,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let (stack, dir) = start_stack().await;
        let order = |i: u32| {
            json!({
                "event_id": format!("o{i}"), "event_type": "order",
                "timestamp": "2026-12-05T10:00:00Z", "order_id": format!("order-{i}"),
                "customer_id": "c-1", "status": "paid", "total_amount": 10.5 * f64::from(i),
                "items": [{"product_id": "p-1", "quantity": 1, "price": 10.5}]
            })
        };
        let bad = json!({"event_id": "bad-1", "event_type": "order", "timestamp": "yesterday"});
        publish_raw(&stack, &[order(1), order(2), bad]).await;
        settle(&stack).await;
        Self { stack, _dir: dir }
    }

    fn table_manager(&self) -> String {
        format!("http://{}", self.stack.table_manager)
    }
}

/// Runs the blocking binary off the async runtime that serves the stack.
async fn pulse(args: Vec<String>) -> common::Run {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await
    .unwrap()
}

async fn pulse_json(args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_json(&args)
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pulse_tables_lists_the_running_stacks_tables() {
    let fixture = Fixture::start().await;
    let tm = fixture.table_manager();

    let listed = pulse_json(args(&["tables", "--table-manager", &tm])).await;
    let orders = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap_or_else(|| panic!("no orders table: {listed:#}"));
    assert_eq!(orders["rows"], 2);
    assert_eq!(orders["partition_column"], "event_date");
    assert_eq!(orders["clustering"], json!(["customer_id", "status"]));
    assert!(
        orders["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "total_amount" && c["type"] == "FLOAT")
    );

    // For people: one line per table; a table's columns when it is named.
    let text = pulse(args(&["tables", "--table-manager", &tm])).await;
    assert_eq!(text.code, Some(0), "{text:#?}");
    let line = text
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("orders "))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(line.contains("day of event_date"), "{line}");
    assert!(line.contains("customer_id, status"), "{line}");
    let one = pulse(args(&["tables", "orders", "--table-manager", &tm])).await;
    assert_eq!(one.code, Some(0), "{one:#?}");
    assert!(one.stdout.contains("total_amount"), "{}", one.stdout);
    assert!(one.stdout.contains("REQUIRED"), "{}", one.stdout);

    // A table that is not there is a finding (1), a stack that is not there a failure (3).
    let missing = pulse(args(&["tables", "nope", "--table-manager", &tm])).await;
    assert_eq!(missing.code, Some(1), "{missing:#?}");
    assert!(
        missing.stderr.contains("no table \"nope\""),
        "{}",
        missing.stderr
    );
    let down = pulse(args(&["tables", "--table-manager", "http://127.0.0.1:9"])).await;
    assert_eq!(down.code, Some(3), "{down:#?}");
    assert!(down.stderr.contains("pulse up"), "{}", down.stderr);
    fixture.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulse_query_reads_through_table_manager_and_refuses_anything_but_a_select() {
    let fixture = Fixture::start().await;
    let tm = fixture.table_manager();

    let answer = pulse_json(args(&[
        "query",
        "SELECT event_id, total_amount FROM unique_orders ORDER BY event_id",
        "--table-manager",
        &tm,
    ]))
    .await;
    assert_eq!(
        answer["columns"],
        json!([{"name": "event_id", "type": "VARCHAR"}, {"name": "total_amount", "type": "DOUBLE"}])
    );
    assert_eq!(
        answer["rows"],
        json!([{"event_id": "o1", "total_amount": 10.5}, {"event_id": "o2", "total_amount": 21.0}])
    );
    assert_eq!(answer["truncated"], false);

    // For people: a table and the count; a cut result says so.
    let text = pulse(args(&[
        "query",
        "SELECT event_id FROM orders ORDER BY event_id",
        "--max-rows",
        "1",
        "--table-manager",
        &tm,
    ]))
    .await;
    assert_eq!(text.code, Some(0), "{text:#?}");
    assert!(text.stdout.contains("event_id"), "{}", text.stdout);
    assert!(text.stdout.contains("o1"), "{}", text.stdout);
    assert!(!text.stdout.contains("o2"), "{}", text.stdout);
    assert!(
        text.stdout.contains("1 row (the query has more"),
        "{}",
        text.stdout
    );

    // Anything but one SELECT is refused by table-manager: exit 4, the reason on stderr.
    for sql in [
        "DELETE FROM orders",
        "SELECT 1; DROP TABLE orders",
        "SELECT * FROM read_csv('/etc/passwd')",
    ] {
        let refused = pulse(args(&["query", sql, "--table-manager", &tm])).await;
        assert_eq!(refused.code, Some(4), "{sql}: {refused:#?}");
        assert!(refused.stdout.is_empty(), "{refused:#?}");
        assert!(
            refused.stderr.contains("refused the request (400"),
            "{refused:#?}"
        );
    }
    let still = pulse_json(args(&[
        "query",
        "SELECT count(*) AS n FROM orders",
        "--table-manager",
        &tm,
    ]))
    .await;
    assert_eq!(still["rows"][0]["n"], 2, "nothing was deleted");

    // Usage errors are clap's: exit 2, before anything is called.
    let usage = pulse(args(&["query"])).await;
    assert_eq!(usage.code, Some(2), "{usage:#?}");
    let usage = pulse(args(&["query", "SELECT 1", "--max-rows", "many"])).await;
    assert_eq!(usage.code, Some(2), "{usage:#?}");
    fixture.stack.stop().await;
}

impl Fixture {
    fn url(address: std::net::SocketAddr) -> String {
        format!("http://{address}")
    }

    /// Every function's URL flag, as `pulse status` takes them.
    fn all_urls(&self) -> Vec<String> {
        let stack = &self.stack;
        args(&[
            "--preprocess",
            &Self::url(stack.preprocess),
            "--table-manager",
            &Self::url(stack.table_manager),
            "--parquet-loader",
            &Self::url(stack.parquet_loader),
            "--inference",
            &Self::url(stack.inference),
            "--predictor",
            &Self::url(stack.predictor),
            "--control",
            &Self::url(stack.control),
        ])
    }
}

fn with(mut list: Vec<String>, more: &[String]) -> Vec<String> {
    list.extend_from_slice(more);
    list
}

#[tokio::test(flavor = "multi_thread")]
async fn pulse_dead_letters_counts_by_reason_shows_one_and_replay_redrives_them() {
    let fixture = Fixture::start().await;
    let preprocess = [
        "--preprocess".to_owned(),
        Fixture::url(fixture.stack.preprocess),
    ];

    let summary = pulse_json(with(args(&["dead-letters"]), &preprocess)).await;
    assert_eq!(summary["total"], 1, "{summary:#}");
    let reason = &summary["reasons"][0];
    assert_eq!(reason["count"], 1);
    let reason_code = reason["reason"].as_str().unwrap().to_owned();
    let newest = &reason["newest"][0];
    assert_eq!(newest["function"], "preprocess");
    assert!(
        newest["detail"].as_str().unwrap().contains("timestamp"),
        "{newest}"
    );
    let id = newest["id"].as_str().unwrap().to_owned();

    let text = pulse(with(args(&["dead-letters"]), &preprocess)).await;
    assert_eq!(text.code, Some(0), "{text:#?}");
    assert!(text.stdout.contains(&reason_code), "{}", text.stdout);
    assert!(text.stdout.contains(&id), "{}", text.stdout);

    // One record, by id or by name, with its event decoded.
    let shown = pulse_json(with(args(&["dead-letters", "--show", &id]), &preprocess)).await;
    assert_eq!(shown["record"]["reason"], reason_code.as_str());
    assert_eq!(shown["data"]["event_id"], "bad-1");
    let name = shown["name"].as_str().unwrap().to_owned();
    let by_name = pulse(with(args(&["dead-letters", "--show", &name]), &preprocess)).await;
    assert_eq!(by_name.code, Some(0), "{by_name:#?}");
    assert!(
        by_name.stdout.contains("\"event_id\": \"bad-1\""),
        "{}",
        by_name.stdout
    );
    let unknown = pulse(with(
        args(&["dead-letters", "--show", "no-such-id"]),
        &preprocess,
    ))
    .await;
    assert_eq!(unknown.code, Some(4), "{unknown:#?}");

    // Replayed unfixed, the event is dead-lettered again: the replay says so and exits 1.
    let again = pulse(with(
        args(&["replay", "dead-letters", &reason_code, "--json"]),
        &preprocess,
    ))
    .await;
    assert_eq!(again.code, Some(1), "{again:#?}");
    let report = again.json();
    assert_eq!(report["replayed"], "events");
    assert_eq!(report["dead_lettered"][&reason_code], 1, "{report:#}");
    assert!(
        again.stderr.contains("dead-lettered again"),
        "{}",
        again.stderr
    );

    // A raw slice is re-published as archived; table-manager keeps each event once.
    let raw = pulse_json(with(
        args(&[
            "replay",
            "raw",
            "--event-type",
            "order",
            "--from",
            "2026-12-05T00:00:00Z",
            "--to",
            "2026-12-06T00:00:00Z",
        ]),
        &preprocess,
    ))
    .await;
    assert_eq!(raw["republished"], 2, "{raw:#}");
    settle(&fixture.stack).await;
    let rows = pulse_json(args(&[
        "query",
        "SELECT count(*) AS n FROM orders",
        "--table-manager",
        &fixture.table_manager(),
    ]))
    .await;
    assert_eq!(rows["rows"][0]["n"], 2);
    fixture.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulse_replay_object_loads_a_landing_file_once() {
    let fixture = Fixture::start().await;
    let stack = &fixture.stack;
    let name = "landing/sample/alltypes_plain.parquet";
    let fixture_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/alltypes_plain.parquet");
    stack
        .objects
        .create_if_absent(
            &stack.config.landing_bucket,
            name,
            std::fs::read(fixture_file).unwrap().into(),
            "application/octet-stream",
        )
        .await
        .unwrap();
    let loader = [
        "--parquet-loader".to_owned(),
        Fixture::url(stack.parquet_loader),
    ];
    for _ in 0..2 {
        // The watcher may have loaded it first: either way it is loaded, once.
        let outcome = pulse_json(with(args(&["replay", "object", name]), &loader)).await;
        assert_eq!(outcome["replayed"], "object");
        assert_eq!(outcome["outcome"]["outcome"], "loaded", "{outcome:#}");
        assert_eq!(outcome["outcome"]["rows"], 8);
    }
    let rows = pulse_json(args(&[
        "query",
        "SELECT count(*) AS n FROM load_sample",
        "--table-manager",
        &fixture.table_manager(),
    ]))
    .await;
    assert_eq!(rows["rows"][0]["n"], 8, "loaded once");
    let missing = pulse(with(
        args(&["replay", "object", "landing/sample/none.parquet"]),
        &loader,
    ))
    .await;
    assert_eq!(missing.code, Some(1), "{missing:#?}");
    fixture.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulse_status_shows_each_functions_health_backlog_and_recent_errors() {
    let fixture = Fixture::start().await;
    let status = pulse_json(with(args(&["status"]), &fixture.all_urls())).await;
    let functions = status["functions"].as_array().unwrap();
    let names: Vec<&str> = functions
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "preprocess",
            "table-manager",
            "parquet-loader",
            "inference",
            "predictor"
        ]
    );
    assert!(functions.iter().all(|f| f["healthy"] == true), "{status:#}");
    let preprocess = &functions[0];
    assert_eq!(preprocess["acknowledged"], 3, "{status:#}");
    assert_eq!(preprocess["dead_lettered"], 1);
    assert_eq!(functions[1]["acknowledged"], 2, "two orders stored");
    assert_eq!(status["backlog"]["undelivered"], 0);
    assert_eq!(status["backlog"]["published"]["events-raw"], 3);
    assert_eq!(status["recent_errors"][0]["function"], "preprocess");

    let text = pulse(with(args(&["status"]), &fixture.all_urls())).await;
    assert_eq!(text.code, Some(0), "{text:#?}");
    assert!(text.stdout.contains("table-manager"), "{}", text.stdout);
    assert!(text.stdout.contains("recent errors"), "{}", text.stdout);

    // A function that does not answer is a finding: exit 1, named.
    let mut urls = fixture.all_urls();
    let at = urls.iter().position(|a| a == "--inference").unwrap();
    urls[at + 1] = "http://127.0.0.1:9".to_owned();
    let down = pulse(with(args(&["status", "--json"]), &urls)).await;
    assert_eq!(down.code, Some(1), "{down:#?}");
    let report = down.json();
    assert_eq!(report["functions"][3]["healthy"], false);
    assert!(down.stderr.contains("inference is down"), "{}", down.stderr);
    fixture.stack.stop().await;
}
