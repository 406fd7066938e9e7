//! Handler tests: `app(state).oneshot(…)` with the local object store on a temporary directory.
//! Publishing is observed through a recording publisher; failures through stores that fail.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use preprocess::{AppState, ReplayReport, app};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::error::{BackendError, Reason, Retry};
use pulse_shared::publish::OutgoingMessage;
use pulse_shared::registry::identifiers::derived_event_id;
use pulse_shared::storage::{ByteRange, Created, LocalObjectStore, ObjectStore, RangeRead};
use pulse_shared::testing::files::names_under;
use pulse_shared::testing::harness::send;
use pulse_shared::testing::publisher::RecordingPublisher;
use serde_json::{Value, json};

/// An object store that is down.
struct FailingStore;

#[async_trait]
impl ObjectStore for FailingStore {
    fn describe(&self) -> String {
        "failing store".to_owned()
    }
    async fn create_if_absent(
        &self,
        bucket: &str,
        name: &str,
        _: Bytes,
        _: &str,
    ) -> Result<Created, BackendError> {
        Err(BackendError::new(
            format!("write {bucket}/{name}"),
            Retry::Transient,
            "503 from storage",
        ))
    }
    async fn read(&self, _: &str, _: &str) -> Result<Option<Bytes>, BackendError> {
        Err(BackendError::new(
            "read",
            Retry::Transient,
            "503 from storage",
        ))
    }
    async fn list(&self, _: &str, _: &str) -> Result<Vec<String>, BackendError> {
        Err(BackendError::new(
            "list",
            Retry::Transient,
            "503 from storage",
        ))
    }
    async fn read_range(
        &self,
        _: &str,
        _: &str,
        _: ByteRange,
        _: Option<i64>,
    ) -> Result<Option<RangeRead>, BackendError> {
        Err(BackendError::new(
            "read",
            Retry::Transient,
            "503 from storage",
        ))
    }
    async fn copy(&self, _: &str, _: &str, _: Option<i64>, _: &str) -> Result<bool, BackendError> {
        Err(BackendError::new(
            "copy",
            Retry::Transient,
            "503 from storage",
        ))
    }
    async fn delete(&self, _: &str, _: &str, _: Option<i64>) -> Result<(), BackendError> {
        Err(BackendError::new(
            "delete",
            Retry::Transient,
            "503 from storage",
        ))
    }
    fn uri(&self, bucket: &str, name: &str) -> String {
        format!("failing://{bucket}/{name}")
    }
}

struct Harness {
    dir: tempfile::TempDir,
    objects: Arc<dyn ObjectStore>,
    publisher: Arc<RecordingPublisher>,
    router: axum::Router,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let objects: Arc<dyn ObjectStore> =
            Arc::new(LocalObjectStore::open(dir.path().join("gcs"), true).unwrap());
        Self::with_store(dir, objects)
    }

    fn with_store(dir: tempfile::TempDir, objects: Arc<dyn ObjectStore>) -> Self {
        let publisher = Arc::new(RecordingPublisher::default());
        let config = Config {
            max_event_bytes: 4096,
            ..Config::local(dir.path())
        };
        let backends = Backends {
            objects: objects.clone(),
            publisher: publisher.clone(),
        };
        let router = app(AppState::new(config, backends));
        Self {
            dir,
            objects,
            publisher,
            router,
        }
    }

    fn raw_bucket_files(&self, prefix: &str) -> Vec<String> {
        names_under(&self.dir.path().join("gcs/pulse-raw"), prefix)
    }

    fn read_raw(&self, name: &str) -> Value {
        serde_json::from_slice(
            &std::fs::read(self.dir.path().join("gcs/pulse-raw").join(name)).unwrap(),
        )
        .unwrap()
    }

    fn published(&self) -> Vec<(String, OutgoingMessage)> {
        self.publisher
            .published()
            .into_iter()
            .map(|published| (published.topic, published.message))
            .collect()
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        send(&self.router, self.objects.as_ref(), request).await
    }

    async fn deliver(&self, message_id: &str, data: &[u8]) -> (StatusCode, Value) {
        self.send(binary_cloudevent(message_id, data)).await
    }

    async fn replay(&self, request: Value) -> (StatusCode, Value) {
        self.send(
            Request::post("/replay")
                .header("content-type", "application/json")
                .body(Body::from(request.to_string()))
                .unwrap(),
        )
        .await
    }
}

/// A delivery as Eventarc sends it: binary-mode CloudEvent, `MessagePublishedData` body.
fn binary_cloudevent(message_id: &str, data: &[u8]) -> Request<Body> {
    let body = json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "messageId": message_id,
            "publishTime": "2024-05-01T12:00:01Z",
        },
        "subscription": "projects/p/subscriptions/eventarc-raw",
    });
    Request::post("/")
        .header("ce-specversion", "1.0")
        .header("ce-id", message_id)
        .header(
            "ce-source",
            "//pubsub.googleapis.com/projects/p/topics/events-raw",
        )
        .header("ce-type", "google.cloud.pubsub.topic.v1.messagePublished")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn order(event_id: &str, timestamp: &str) -> Value {
    json!({
        "event_id": event_id, "event_type": "order", "timestamp": timestamp,
        "order_id": "o-1", "customer_id": "c-1", "status": "paid", "total_amount": 19.0,
        "items": [{"product_id": "p-1", "quantity": 2, "price": 9.5}],
    })
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[tokio::test]
async fn a_valid_event_is_archived_then_published() {
    let h = Harness::new();
    let (status, body) = h
        .deliver("101", &bytes(&order("ord-1", "2024-05-01T14:05:09+02:00")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"outcome": "accepted", "event_id": "ord-1", "duplicate": false})
    );

    let name = "raw/order/2024/05/01/12/05/ord-1.json";
    assert_eq!(h.raw_bucket_files("raw"), [name]);
    let archived = h.read_raw(name);
    assert_eq!(archived["timestamp"], "2024-05-01T12:05:09Z");
    assert_eq!(archived["event_date"], "2024-05-01");
    assert_eq!(archived["message_id"], "101");
    assert_eq!(archived["publish_time"], "2024-05-01T12:00:01Z");
    assert!(archived["ingested_at"].is_string());

    let published = h.published();
    assert_eq!(published.len(), 1);
    let (topic, message) = &published[0];
    assert_eq!(topic, "events-processed");
    assert_eq!(message.attributes["event_type"], "order");
    assert_eq!(message.attributes["event_id"], "ord-1");
    assert_eq!(
        serde_json::from_slice::<Value>(&message.data).unwrap(),
        archived
    );
}

#[tokio::test]
async fn plain_push_and_structured_deliveries_are_accepted_too() {
    let h = Harness::new();
    let data = base64::engine::general_purpose::STANDARD
        .encode(bytes(&order("ord-2", "2024-05-01T12:00:00Z")));
    let push = json!({"message": {"data": data, "messageId": "7", "message_id": "7"}, "subscription": "s"});
    let structured = json!({
        "specversion": "1.0", "id": "8", "source": "//pubsub.googleapis.com/projects/p/topics/t",
        "type": "google.cloud.pubsub.topic.v1.messagePublished", "datacontenttype": "application/json",
        "data": {"message": {"data": data, "messageId": "8"}, "subscription": "s"},
    });
    for (body, content_type) in [
        (push, "application/json"),
        (structured, "application/cloudevents+json"),
    ] {
        let request = Request::post("/")
            .header("content-type", content_type)
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, answer) = h.send(request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["outcome"], "accepted", "{answer}");
    }
    assert_eq!(
        h.raw_bucket_files("raw").len(),
        1,
        "one event id, one archive object"
    );
    assert_eq!(h.published().len(), 2);
}

#[tokio::test]
async fn every_reason_code_is_dead_lettered_and_acknowledged() {
    let h = Harness::new();
    let mut too_large = order("big", "2024-05-01T12:00:00Z");
    too_large["padding"] = json!("x".repeat(5000));
    let cases: Vec<(Reason, Request<Body>)> = vec![
        (
            Reason::BadEnvelope,
            Request::post("/").body(Body::from("hello")).unwrap(),
        ),
        (Reason::BadBase64, {
            let body = json!({"message": {"data": "%%%", "messageId": "m-b64"}});
            Request::post("/")
                .body(Body::from(body.to_string()))
                .unwrap()
        }),
        (Reason::BadJson, binary_cloudevent("m-json", b"{not json")),
        (
            Reason::MissingField,
            binary_cloudevent(
                "m-missing",
                &bytes(&json!({"event_type": "order", "timestamp": "2024-05-01T12:00:00Z"})),
            ),
        ),
        (
            Reason::BadFieldType,
            binary_cloudevent(
                "m-type",
                &bytes(&{
                    let mut event = order("o", "2024-05-01T12:00:00Z");
                    event["total_amount"] = json!("lots");
                    event
                }),
            ),
        ),
        (
            Reason::BadValue,
            binary_cloudevent(
                "m-value",
                &bytes(&{
                    let mut event = order("o", "2024-05-01T12:00:00Z");
                    event["status"] = json!("lost");
                    event
                }),
            ),
        ),
        (
            Reason::InvalidEventType,
            binary_cloudevent(
                "m-evtype",
                &bytes(&json!({"event_type": "../../etc", "timestamp": "2024-05-01T12:00:00Z"})),
            ),
        ),
        (
            Reason::TooLarge,
            binary_cloudevent("m-large", &bytes(&too_large)),
        ),
    ];
    for (reason, request) in cases {
        let (status, body) = h.send(request).await;
        assert_eq!(status, StatusCode::OK, "{reason}: {body}");
        assert_eq!(body["outcome"], "dead_lettered", "{reason}: {body}");
        assert_eq!(body["reason"], reason.code());
        let object = body["dead_letter"].as_str().unwrap();
        assert!(
            object.starts_with(&format!("dead-letter/{}/", reason.code())),
            "{object}"
        );
        let record = h.read_raw(object);
        assert_eq!(record["reason"], reason.code());
        assert!(!record["detail"].as_str().unwrap().is_empty());
        assert_eq!(record["function"], "preprocess");
        if reason == Reason::BadEnvelope {
            assert_eq!(record["body"], "hello");
        } else {
            assert!(
                record["message"]["messageId"].is_string(),
                "the original message is kept: {record}"
            );
        }
    }
    let record = h.read_raw("dead-letter/bad_value/2024/05/01/m-value.json");
    assert!(
        record["detail"].as_str().unwrap().contains("status"),
        "{record}"
    );
    assert!(
        h.raw_bucket_files("raw").is_empty(),
        "nothing invalid reaches the archive"
    );
    assert!(h.published().is_empty(), "nothing invalid is published");
}

#[tokio::test]
async fn redeliveries_in_any_order_leave_one_archive_object_per_event() {
    let h = Harness::new();
    let events: Vec<Vec<u8>> = (0..5)
        .map(|i| bytes(&order(&format!("ord-{i}"), "2024-05-01T12:00:00Z")))
        .collect();
    let message_ids: Vec<String> = (0..5).map(|i| format!("msg-{i}")).collect();
    let mut deliveries = Vec::new();
    for round in 0..3 {
        for (id, data) in message_ids.iter().zip(&events).rev() {
            deliveries.push(h.deliver(id, data));
        }
        if round == 1 {
            deliveries.reverse();
        }
    }
    let answers = futures_util::future::join_all(deliveries).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));
    let firsts = answers
        .iter()
        .filter(|(_, body)| body["duplicate"] == false)
        .count();
    assert_eq!(firsts, 5, "exactly one delivery per event archived it");
    assert_eq!(h.raw_bucket_files("raw").len(), 5);
    let mut ids: Vec<String> = h
        .published()
        .iter()
        .map(|(_, m)| m.attributes["event_id"].clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "downstream sees each event id");
}

#[tokio::test]
async fn an_event_without_id_gets_the_same_derived_id_on_every_delivery() {
    let h = Harness::new();
    let mut event = order("x", "2024-05-01T12:00:00Z");
    event.as_object_mut().unwrap().remove("event_id");
    let (_, first) = h.deliver("555", &bytes(&event)).await;
    let (_, again) = h.deliver("555", &bytes(&event)).await;
    assert_eq!(first["event_id"], json!(derived_event_id("555")));
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(h.raw_bucket_files("raw").len(), 1);
}

#[tokio::test]
async fn an_unavailable_store_answers_503_and_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::with_store(dir, Arc::new(FailingStore));
    let (status, body) = h
        .deliver("1", &bytes(&order("ord-1", "2024-05-01T12:00:00Z")))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        h.published().is_empty(),
        "nothing is published before it is archived"
    );

    // A permanent failure whose dead-letter write fails is not acknowledged either.
    let (status, _) = h.deliver("2", b"{not json").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_publish_outage_is_503_and_the_redelivery_completes_the_work() {
    let h = Harness::new();
    let data = bytes(&order("ord-9", "2024-05-01T12:00:00Z"));
    h.publisher.refuse(Some(Retry::Transient));
    let (status, _) = h.deliver("9", &data).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    h.publisher.refuse(None);
    let (status, body) = h.deliver("9", &data).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["duplicate"], true, "archived by the first attempt");
    assert_eq!(h.published().len(), 1, "published by the redelivery");
}

#[tokio::test]
async fn replay_of_posted_events_is_safe_to_call_twice() {
    let h = Harness::new();
    let request = json!({"events": [
        order("r-1", "2024-05-01T12:00:00Z"),
        order("r-2", "2024-05-01T12:00:00Z"),
        {"event_type": "order", "timestamp": "2024-05-01T12:00:00Z"},
    ]});
    let (status, first) = h.replay(request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first: ReplayReport = serde_json::from_value(first).unwrap();
    assert_eq!((first.accepted, first.duplicates), (2, 0));
    assert_eq!(first.dead_lettered["missing_field"], 1);
    let (_, second) = h.replay(request).await;
    let second: ReplayReport = serde_json::from_value(second).unwrap();
    assert_eq!((second.accepted, second.duplicates), (0, 2));
    assert_eq!(h.raw_bucket_files("raw").len(), 2);
    assert_eq!(
        h.raw_bucket_files("dead-letter").len(),
        1,
        "the same bad event is kept once"
    );
}

#[tokio::test]
async fn replay_of_dead_letters_validates_them_again() {
    let h = Harness::new();
    // A message dead-lettered by an older, stricter release: its record holds a valid event.
    let (_, body) = h.deliver("77", b"{not json").await;
    let object = body["dead_letter"].as_str().unwrap().to_owned();
    let path = h.dir.path().join("gcs/pulse-raw").join(&object);
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["message"]["data"] = json!(
        base64::engine::general_purpose::STANDARD
            .encode(bytes(&order("fixed-1", "2024-05-01T12:00:00Z")))
    );
    std::fs::write(&path, record.to_string()).unwrap();
    // And an undecodable envelope, which fails again.
    h.send(Request::post("/").body(Body::from("garbage")).unwrap())
        .await;

    let (status, report) = h
        .replay(json!({"dead_letter_prefix": "dead-letter/"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let report: ReplayReport = serde_json::from_value(report).unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(report.dead_lettered["bad_envelope"], 1);
    let archived = h.read_raw("raw/order/2024/05/01/12/00/fixed-1.json");
    assert_eq!(
        archived["message_id"], "77",
        "replay keeps the original message id"
    );

    let (status, _) = h.replay(json!({"dead_letter_prefix": "raw/"})).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "replay reads only the dead-letter store"
    );
}

#[tokio::test]
async fn replay_of_a_raw_slice_republishes_what_was_archived() {
    let h = Harness::new();
    for (i, ts) in [
        "2024-05-01T11:59:59Z",
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:30:00Z",
        "2024-05-01T13:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        h.deliver(&format!("m{i}"), &bytes(&order(&format!("s-{i}"), ts)))
            .await;
    }
    let before = h.published().len();
    let (status, report) = h
        .replay(json!({"raw": {"event_type": "order", "from": "2024-05-01T12:00:00Z", "to": "2024-05-01T13:00:00Z"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["republished"], 2);
    let republished: Vec<String> = h.published()[before..]
        .iter()
        .map(|(_, m)| m.attributes["event_id"].clone())
        .collect();
    let mut republished = republished;
    republished.sort();
    assert_eq!(republished, ["s-1", "s-2"]);
}

/// A replay listed its whole prefix or slice and worked through all of it in one request, its
/// answer naming every unreadable object: now a page at a time, each answer saying where the
/// next starts, until none is left.
#[tokio::test]
async fn replays_go_a_page_at_a_time() {
    let h = Harness::new();
    for i in 0..5 {
        h.deliver(&format!("bad-{i}"), format!("{{not json {i}").as_bytes())
            .await;
        let ts = format!("2024-05-01T12:0{i}:00Z");
        h.deliver(&format!("ok-{i}"), &bytes(&order(&format!("p-{i}"), &ts)))
            .await;
    }
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let request =
            json!({"dead_letter_prefix": "dead-letter/bad_json/", "limit": 2, "after": after});
        let (status, report) = h.replay(request).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        pages.push(report["dead_lettered"]["bad_json"].as_u64().unwrap_or(0));
        match report["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, [2, 2, 1]);

    let slice = json!({"event_type": "order", "from": "2024-05-01T12:00:00Z", "to": "2024-05-01T13:00:00Z"});
    let (_, first) = h.replay(json!({"raw": slice, "limit": 3})).await;
    assert_eq!(first["republished"], 3, "{first}");
    let next = first["next_after"].as_str().unwrap();
    let (_, second) = h
        .replay(json!({"raw": slice, "limit": 3, "after": next}))
        .await;
    assert_eq!(second["republished"], 2, "{second}");
    assert!(second.get("next_after").is_none(), "{second}");

    let too_many: Vec<Value> = (0..1001).map(|i| json!({"n": i})).collect();
    let (status, answer) = h.replay(json!({"events": too_many})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _) = h
        .replay(json!({"dead_letter_prefix": "dead-letter/", "limit": 5000}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_replay_request_must_name_exactly_one_source() {
    let h = Harness::new();
    for request in [
        json!({}),
        json!({"events": [], "dead_letter_prefix": "dead-letter/"}),
        json!({"nonsense": 1}),
    ] {
        let (status, _) = h.replay(request.clone()).await;
        assert!(status.is_client_error(), "{request}: {status}");
    }
    let (status, _) = h
        .replay(json!({"raw": {"event_type": "Order!", "from": "2024-05-01T12:00:00Z", "to": "2024-05-01T13:00:00Z"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn healthz_answers() {
    let h = Harness::new();
    let (status, body) = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok")));
}
