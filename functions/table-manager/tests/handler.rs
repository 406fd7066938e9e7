//! table-manager through `app(state).oneshot(…)` against a real DuckDB file in a temporary
//! directory: tables on first sight, evolution, conflicts, duplicates, group commit, failures.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use base64::Engine as _;
use chrono::Utc;
use common::Observed;
use http::{Request, StatusCode};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::delivery::oidc::{MIN_REFRESH_INTERVAL, Operators, PushAuthConfig};
use pulse_shared::registry::normalise::{Provenance, normalise};
use pulse_shared::storage::ObjectStore;
use pulse_shared::testing::files::files_under;
use pulse_shared::testing::harness::send;
use pulse_shared::warehouse::{DuckDbWarehouse, Warehouse};
use serde_json::{Map, Value, json};
use table_manager::{AppState, app};

struct Harness {
    _dir: tempfile::TempDir,
    objects: Arc<dyn ObjectStore>,
    config: Config,
    warehouse: Arc<Observed>,
    state: AppState,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// A harness whose configuration `adjust` changes first.
    fn with_config(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::local(dir.path());
        adjust(&mut config);
        let objects = Backends::local_objects(&config).unwrap();
        let backends = Backends {
            objects: objects.clone(),
            publisher: Arc::new(Backends::local_bus(&config, &objects)),
        };
        let warehouse = Arc::new(Observed::new(
            DuckDbWarehouse::open(&dir.path().join("warehouse.duckdb"), "pulse").unwrap(),
        ));
        let state = AppState::new(config.clone(), &backends, warehouse.clone());
        Self {
            _dir: dir,
            objects,
            config,
            warehouse,
            state,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        send(&app(self.state.clone()), self.objects.as_ref(), request).await
    }

    async fn deliver(&self, message_id: impl AsRef<str>, event: &Value) -> (StatusCode, Value) {
        let message_id = message_id.as_ref();
        self.send(delivery(message_id, &processed(message_id, event)))
            .await
    }

    async fn query(&self, sql: &str) -> Vec<Map<String, Value>> {
        self.warehouse.query(sql).await.unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        let rows = self
            .query(&format!("SELECT count(*) AS n FROM pulse.{table}"))
            .await;
        rows[0]["n"].as_i64().unwrap()
    }

    fn dead_letters(&self, reason: &str) -> usize {
        let dir = self
            .config
            .data_dir
            .join("gcs/pulse-raw/dead-letter")
            .join(reason);
        files_under(&dir).len()
    }
}

/// A raw event as preprocess normalises it: what arrives on the processed topic.
fn processed(message_id: &str, event: &Value) -> Vec<u8> {
    let provenance = Provenance {
        message_id,
        publish_time: Some("2026-11-21T10:00:01Z"),
        ingested_at: Utc::now(),
    };
    normalise(&serde_json::to_vec(event).unwrap(), &provenance, 1 << 20)
        .unwrap()
        .json()
        .to_vec()
}

/// A delivery as Eventarc (or the local bus) sends it: binary-mode CloudEvent.
fn delivery(message_id: &str, data: &[u8]) -> Request<Body> {
    let body = json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "messageId": format!("processed-{message_id}"),
            "publishTime": "2026-11-21T10:00:02Z",
        },
        "subscription": "projects/p/subscriptions/table-manager",
    });
    Request::post("/")
        .header("ce-specversion", "1.0")
        .header("ce-id", message_id)
        .header(
            "ce-source",
            "//pubsub.googleapis.com/projects/p/topics/events-processed",
        )
        .header("ce-type", "google.cloud.pubsub.topic.v1.messagePublished")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn order(event_id: &str) -> Value {
    json!({
        "event_id": event_id, "event_type": "order", "timestamp": "2026-11-21T09:30:00+01:00",
        "order_id": "o-1", "customer_id": "c-1", "status": "paid", "total_amount": 19.0,
        "items": [{"product_id": "p-1", "quantity": 2, "price": 9.5}],
    })
}

fn every_known_type(id: &str) -> Vec<Value> {
    vec![
        order(&format!("{id}-order")),
        json!({"event_id": format!("{id}-inventory"), "event_type": "inventory",
               "timestamp": "2026-11-21T10:00:00Z", "product_id": "p-1", "warehouse_id": "w-1",
               "quantity_change": -3}),
        json!({"event_id": format!("{id}-activity"), "event_type": "user_activity",
               "timestamp": "2026-11-21T10:00:00Z", "user_id": "u-1",
               "activity_type": "search", "metadata": {"query": "socks", "filters": [1, "x"]}}),
        json!({"event_id": format!("{id}-telemetry"), "event_type": "device_telemetry",
               "timestamp": "2026-11-21T10:00:00Z", "device_id": "d-1",
               "sensor_type": "temperature", "reading": 21.5, "unit": "C"}),
    ]
}

#[tokio::test]
async fn every_known_type_gets_its_table_with_partitioning_and_clustering() {
    let h = Harness::new();
    for (i, event) in every_known_type("e").iter().enumerate() {
        let (status, body) = h.deliver(format!("m{i}"), event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "written", "{body}");
    }
    for table in ["orders", "inventory", "user_activity", "device_telemetry"] {
        assert_eq!(h.count(table).await, 1, "{table}");
    }
    let (status, tables) = h
        .send(Request::get("/tables").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let orders = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap();
    assert_eq!(orders["partition_column"], "event_date");
    assert_eq!(orders["clustering"], json!(["customer_id", "status"]));
    assert_eq!(orders["rows"], 1);

    let row = &h
        .query("SELECT event_date, \"timestamp\", items, customer_id FROM pulse.orders")
        .await[0];
    assert_eq!(row["event_date"], "2026-11-21");
    assert_eq!(row["items"][0]["quantity"], 2);
    let metadata = &h.query("SELECT metadata FROM pulse.user_activity").await[0];
    assert_eq!(metadata["metadata"]["filters"], json!([1, "x"]));
}

#[tokio::test]
async fn every_delivery_three_times_leaves_one_row_per_event() {
    let h = Harness::new();
    let events = every_known_type("dup");
    for _round in 0..3 {
        let deliveries = events
            .iter()
            .enumerate()
            .map(|(i, event)| h.deliver(format!("m{i}"), event));
        for (status, body) in futures_util::future::join_all(deliveries).await {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    for table in ["orders", "inventory", "user_activity", "device_telemetry"] {
        assert_eq!(h.count(table).await, 1, "{table}");
    }
}

#[tokio::test]
async fn an_unknown_type_gets_an_inferred_table_that_evolves() {
    let h = Harness::new();
    let first = json!({"event_id": "s1", "event_type": "shipment",
        "timestamp": "2026-11-21T10:00:00Z", "carrier": "dhl", "parcels": 2});
    assert_eq!(h.deliver("m1", &first).await.0, StatusCode::OK);
    let drifted = json!({"event_id": "s2", "event_type": "shipment",
        "timestamp": "2026-11-21T11:00:00Z", "carrier": "ups", "parcels": 1,
        "delivered_at": "2026-11-22T08:00:00Z", "dims": {"w": 1.5}});
    let (status, body) = h.deliver("m2", &drifted).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let rows = h
        .query("SELECT event_id, parcels, delivered_at, dims FROM pulse.events_shipment ORDER BY event_id")
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["delivered_at"], Value::Null);
    assert_eq!(rows[1]["dims"]["w"], 1.5);
    let table = h.warehouse.table("events_shipment").await.unwrap().unwrap();
    assert_eq!(
        table.column("delivered_at").unwrap().kind,
        pulse_shared::warehouse::ColumnType::Timestamp
    );
    // A known type drifts too: a new optional field becomes a nullable column.
    let mut coupon = order("o-coupon");
    coupon["coupon"] = json!("WINTER");
    assert_eq!(h.deliver("m3", &coupon).await.0, StatusCode::OK);
    let row = &h.query("SELECT coupon FROM pulse.orders").await[0];
    assert_eq!(row["coupon"], "WINTER");
}

/// Every new event type made a table and a writer task: a type per event grew both without
/// bound. Past `PULSE_MAX_EVENT_TYPES` event tables, a new type is dead-lettered alone, while
/// types that have a table go on being written.
#[tokio::test]
async fn new_event_types_past_the_cap_are_dead_lettered_and_known_ones_still_written() {
    let h = Harness::with_config(|config| config.max_event_types = 2);
    let event = |id: &str, event_type: &str| json!({"event_id": id, "event_type": event_type, "timestamp": "2026-11-21T10:00:00Z", "n": 1});
    assert_eq!(
        h.deliver("m1", &event("a1", "alpha")).await.0,
        StatusCode::OK
    );
    assert_eq!(h.deliver("m2", &order("o-1")).await.0, StatusCode::OK);
    let (status, body) = h.deliver("m3", &event("g1", "gamma")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reason"], "too_many_event_types", "{body}");
    assert!(h.warehouse.table("events_gamma").await.unwrap().is_none());
    assert_eq!(h.dead_letters("too_many_event_types"), 1);

    assert_eq!(
        h.deliver("m4", &event("a2", "alpha")).await.0,
        StatusCode::OK
    );
    assert_eq!(h.deliver("m5", &order("o-2")).await.0, StatusCode::OK);
    assert_eq!(h.count("events_alpha").await, 2);
    assert_eq!(h.count("orders").await, 2);
}

#[tokio::test]
async fn an_event_type_named_like_another_table_cannot_reach_it() {
    let h = Harness::new();
    // Arriving first, these would have defined `orders` and `predictions` with their own schema.
    for (i, event_type) in ["orders", "predictions", "load_orders"].iter().enumerate() {
        let forged = json!({"event_id": format!("f{i}"), "event_type": event_type,
            "timestamp": "2026-11-21T10:00:00Z", "order_id": 7, "score": 0.99});
        let (status, body) = h.deliver(format!("f{i}"), &forged).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["table"], format!("events_{event_type}"), "{body}");
    }
    assert_eq!(h.warehouse.table("orders").await.unwrap(), None);
    assert_eq!(h.warehouse.table("predictions").await.unwrap(), None);
    assert_eq!(h.warehouse.table("load_orders").await.unwrap(), None);
    let (status, body) = h.deliver("o1", &order("o1")).await;
    assert_eq!(
        (status, &body["table"]),
        (StatusCode::OK, &json!("orders")),
        "{body}"
    );
    assert_eq!(h.count("orders").await, 1);
    assert_eq!(h.count("events_orders").await, 1);
}

/// A gadget event, the first of its type: its fields shape the table.
fn gadget(event_id: &str, extra: Value) -> Value {
    let mut event = json!({"event_id": event_id, "event_type": "gadget",
        "timestamp": "2026-11-21T10:00:00Z", "size": 3});
    event
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    event
}

#[tokio::test]
async fn a_poison_row_is_dead_lettered_alone_and_its_batch_mates_are_stored() {
    // A long linger puts every concurrent delivery in one batch.
    let h =
        Harness::with_config(|config| config.batch.linger = std::time::Duration::from_millis(300));
    let poisons = [
        gadget("p1", json!({"Colour": "red", "colour": "blue"})),
        gadget("p2", json!({"_PARTITIONTIME": 1})),
        gadget("p3", json!({"SIZE": 4})),
        gadget("p4", json!({"dims": {"W": 1, "w": 2}, "Dims": 1})),
    ];
    let good: Vec<Value> = (0..6)
        .map(|i| gadget(&format!("g{i}"), json!({"colour": "red"})))
        .collect();
    // The poison rows first, so one of them is the sample the table would be made from.
    let deliveries = poisons
        .iter()
        .chain(&good)
        .enumerate()
        .map(|(i, event)| h.deliver(format!("m{i}"), event));
    let answers = futures_util::future::join_all(deliveries).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "{i}: {body}");
        let expected = if i < poisons.len() {
            "dead_lettered"
        } else {
            "written"
        };
        assert_eq!(body["outcome"], expected, "{i}: {body}");
    }
    assert_eq!(h.dead_letters("schema_conflict"), poisons.len());
    assert_eq!(h.count("events_gadget").await, 6);
}

#[tokio::test]
async fn a_field_differing_from_its_column_only_in_case_is_dead_lettered_not_retried() {
    let h = Harness::new();
    assert_eq!(
        h.deliver("m1", &gadget("g1", json!({"colour": "red"})))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = h
        .deliver("m2", &gadget("g2", json!({"Colour": "blue"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    assert_eq!(h.dead_letters("schema_conflict"), 1);
    // A field inside a list of records is one DuckDB cannot add: that row alone is refused.
    let listed = |id: &str, item: Value| gadget(id, json!({"parts": [item]}));
    assert_eq!(
        h.deliver("m3", &listed("g3", json!({"a": 1}))).await.0,
        StatusCode::OK
    );
    let (wider, other) = (
        listed("g4", json!({"a": 1, "b": 2})),
        gadget("g5", json!({"weight": 2.5})),
    );
    let deliveries = [h.deliver("m4", &wider), h.deliver("m5", &other)];
    let answers = futures_util::future::join_all(deliveries).await;
    assert_eq!(answers[0].1["outcome"], "dead_lettered", "{}", answers[0].1);
    assert_eq!(answers[1].1["outcome"], "written", "{}", answers[1].1);
    assert_eq!(h.count("events_gadget").await, 3);
}

#[tokio::test]
async fn a_conflicting_field_is_dead_lettered_and_the_table_is_untouched() {
    let h = Harness::new();
    let first = json!({"event_id": "s1", "event_type": "shipment",
        "timestamp": "2026-11-21T10:00:00Z", "parcels": 2});
    assert_eq!(h.deliver("m1", &first).await.0, StatusCode::OK);
    let before = h.warehouse.table("events_shipment").await.unwrap().unwrap();
    let conflicting = json!({"event_id": "s2", "event_type": "shipment",
        "timestamp": "2026-11-21T10:00:00Z", "parcels": "two"});
    let (status, body) = h.deliver("m2", &conflicting).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "dead_lettered");
    assert_eq!(body["reason"], "schema_conflict");
    assert_eq!(h.dead_letters("schema_conflict"), 1);
    assert_eq!(h.count("events_shipment").await, 1);
    assert_eq!(
        h.warehouse.table("events_shipment").await.unwrap().unwrap(),
        before
    );
}

#[tokio::test]
async fn concurrent_requests_share_writes_and_steady_state_costs_no_metadata_call() {
    let h = Harness::new();
    assert_eq!(h.deliver("warm", &order("warm")).await.0, StatusCode::OK);
    let metadata_after_first = h.warehouse.metadata_calls.load(Ordering::SeqCst);
    let inserts_before = h.warehouse.inserts.load(Ordering::SeqCst);

    let events: Vec<Value> = (0..200).map(|i| order(&format!("o{i}"))).collect();
    let deliveries = events
        .iter()
        .enumerate()
        .map(|(i, e)| h.deliver(format!("m{i}"), e));
    for (status, body) in futures_util::future::join_all(deliveries).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let inserts = h.warehouse.inserts.load(Ordering::SeqCst) - inserts_before;
    assert!(inserts < 50, "200 concurrent rows took {inserts} writes");
    assert_eq!(h.count("orders").await, 201);
    assert_eq!(
        h.warehouse.metadata_calls.load(Ordering::SeqCst),
        metadata_after_first,
        "steady state must not touch table metadata"
    );
}

#[tokio::test]
async fn a_failed_batch_fails_its_requests_with_503_and_the_redelivery_writes_once() {
    let h = Harness::new();
    assert_eq!(h.deliver("warm", &order("warm")).await.0, StatusCode::OK);
    h.warehouse.failing.store(true, Ordering::SeqCst);
    let events: Vec<Value> = (0..20).map(|i| order(&format!("o{i}"))).collect();
    let deliveries = events
        .iter()
        .enumerate()
        .map(|(i, e)| h.deliver(format!("m{i}"), e));
    for (status, _) in futures_util::future::join_all(deliveries).await {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(h.count("orders").await, 1);

    h.warehouse.failing.store(false, Ordering::SeqCst);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(h.deliver(format!("m{i}"), event).await.0, StatusCode::OK);
    }
    assert_eq!(h.count("orders").await, 21);
}

#[tokio::test]
async fn undecodable_deliveries_are_dead_lettered() {
    let h = Harness::new();
    let not_json = delivery("m1", b"not json");
    let (status, body) = h.send(not_json).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["reason"], "bad_json");
    let unsafe_type = delivery(
        "m2",
        br#"{"event_id":"x","event_type":"Robert'); DROP TABLE orders;--"}"#,
    );
    assert_eq!(h.send(unsafe_type).await.1["reason"], "invalid_event_type");
    let no_id = delivery("m3", br#"{"event_type":"order"}"#);
    assert_eq!(h.send(no_id).await.1["reason"], "missing_field");
    let (status, body) = h
        .send(Request::post("/").body(Body::from("{}")).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["reason"], "bad_envelope");
}

#[tokio::test]
async fn ensure_creates_and_evolves_a_table_by_hand() {
    let h = Harness::new();
    let ensure = |body: Value| {
        Request::post("/tables/shipment:ensure")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, report) = h
        .send(ensure(json!({"sample": {"carrier": "dhl", "parcels": 1}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["table"]["name"], "events_shipment");
    let (status, report) = h
        .send(ensure(json!({"columns": [
            {"name": "carrier", "type": "STRING"},
            {"name": "insured", "type": "BOOLEAN", "mode": "NULLABLE"}]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["added"], json!(["insured BOOLEAN"]));
    let (status, report) = h
        .send(ensure(
            json!({"columns": [{"name": "parcels", "type": "STRING"}]}),
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        report["conflicts"][0],
        "parcels is INTEGER in the table, STRING in the request"
    );
    let bad = Request::post("/tables/Bad-Name:ensure")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(bad).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn with_push_auth_configured_the_trigger_needs_a_push_token_and_manual_routes_an_operators() {
    // Nothing listens on port 1: a token that gets as far as a key lookup finds no keys.
    let h = Harness::with_config(|config| {
        config.push_auth = Some(PushAuthConfig {
            audience: "pulse-table-manager-push".to_owned(),
            service_account: "push@p.iam.gserviceaccount.com".to_owned(),
            jwks_url: "http://127.0.0.1:1/certs".to_owned(),
            min_refresh_interval: MIN_REFRESH_INTERVAL,
            behind_cloud_run: false,
            operators: Operators::parse("user:ops@acme.example").unwrap(),
        });
    });
    let event = order("o1");
    let (status, _) = h.deliver("m1", &event).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");

    let mut forged = delivery("m1", &processed("m1", &event));
    forged
        .headers_mut()
        .insert("authorization", "Bearer not.a.jwt".parse().unwrap());
    assert_eq!(h.send(forged).await.0, StatusCode::UNAUTHORIZED);

    // A well-formed token is checked against Google's keys: unreachable, so 503 and Pub/Sub
    // delivers again later, rather than a refusal it would not retry.
    let b64 =
        |json: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string());
    let token = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})),
        b64(json!({"aud": "pulse-table-manager-push"}))
    );
    let mut signed = delivery("m1", &processed("m1", &event));
    signed
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(h.send(signed).await.0, StatusCode::SERVICE_UNAVAILABLE);

    assert_eq!(
        h.warehouse.inserts.load(Ordering::SeqCst),
        0,
        "nothing got through"
    );
    let health = Request::get("/healthz").body(Body::empty()).unwrap();
    assert_eq!(h.send(health).await.0, StatusCode::OK);
    // Manual routes need an operator's token: without one, or with the push identity's (whose
    // key lookup fails here), nothing gets through.
    let tables = Request::get("/tables").body(Body::empty()).unwrap();
    assert_eq!(h.send(tables).await.0, StatusCode::UNAUTHORIZED);
    let ensure = Request::post("/tables/orders:ensure")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(ensure).await.0, StatusCode::SERVICE_UNAVAILABLE);

    let unconfigured = Harness::new();
    let (status, body) = unconfigured.deliver("m1", &event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(unconfigured.count("orders").await, 1);
}

#[tokio::test]
async fn every_route_is_described() {
    let h = Harness::new();
    let problems =
        pulse_shared::openapi::disagreements(app(h.state.clone()), &table_manager::openapi()).await;
    assert!(problems.is_empty(), "{problems:#?}");
}
