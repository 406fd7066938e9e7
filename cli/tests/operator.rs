//! `pulse` as the operator's tool: the real binary against a running local stack (started here,
//! on free ports, as `pulse up` starts it), talking to it over HTTP only. Each command is run
//! for people (tables) and for scripts (`--json`), and its exit codes are checked: 0 done, 1
//! found something wrong, 2 usage, 3 unreachable, 4 refused.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{run, run_json};
use pulse::stack::{LocalStack, PortChoice};
use pulse_shared::config::Config;
use pulse_shared::publish::{OutgoingMessage, Publisher as _};
use serde_json::{Value, json};

/// A running stack holding two orders and one dead letter.
struct Fixture {
    stack: LocalStack,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stack = LocalStack::start(Config::local(dir.path()), PortChoice::Any)
            .await
            .unwrap();
        let fixture = Self { stack, _dir: dir };
        for i in 1..=2 {
            fixture
                .publish(json!({
                    "event_id": format!("o{i}"), "event_type": "order",
                    "timestamp": "2026-12-05T10:00:00Z", "order_id": format!("order-{i}"),
                    "customer_id": "c-1", "status": "paid", "total_amount": 10.5 * f64::from(i),
                    "items": [{"product_id": "p-1", "quantity": 1, "price": 10.5}]
                }))
                .await;
        }
        fixture
            .publish(json!({"event_id": "bad-1", "event_type": "order", "timestamp": "yesterday"}))
            .await;
        fixture.settle().await;
        fixture
    }

    async fn publish(&self, event: Value) {
        let message = OutgoingMessage {
            data: event.to_string().into(),
            attributes: BTreeMap::new(),
        };
        self.stack
            .bus
            .publish(&self.stack.config.raw_topic, message)
            .await
            .unwrap();
    }

    async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(60), self.stack.bus.settled())
            .await
            .expect("the stack settles within 60 s");
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
