//! `GcsObjectStore` (the official `google-cloud-storage` SDK) against a real Cloud Storage
//! emulator, PyPI `gcp-storage-emulator` (JSON API), that each test starts on a free loopback
//! port, behind a small proxy in this file that papers over the emulator's known gaps.
//!
//! The emulator is found through `PULSE_GCS_EMULATOR_BIN`, else `gcp-storage-emulator` on `PATH`;
//! without either every test here prints that it was SKIPPED and passes (a variable naming a
//! missing file fails instead). To install it:
//! `python3 -m venv ~/.cache/pulse-venv && ~/.cache/pulse-venv/bin/pip install gcp-storage-emulator`
//! then `export PULSE_GCS_EMULATOR_BIN=~/.cache/pulse-venv/bin/gcp-storage-emulator`.
//!
//! Ranged reads (what parquet-loader reads a Parquet footer with) are checked byte for byte: the
//! proxy counts the media bytes it serves. The emulator only knows `bytes=N-M` ranges; the proxy
//! turns the suffix form `bytes=-N` (a tail, which Cloud Storage serves) into that.
//!
//! Not covered: `list`, `copy` and `delete`, which the SDK does over gRPC (StorageControl) and the emulator does not
//! serve at all; resumable uploads (the store's bodies are far below the SDK's threshold).
//!
//! The emulator ignores `ifGenerationMatch` (it overwrites), so it cannot show create-if-absent
//! by itself: `the_sdk_asks_for_create_if_absent_on_the_wire` checks what it can (the request
//! carries `ifGenerationMatch=0`; what the emulator then does is reported), and
//! `a_json_api_412_is_read_as_already_existed` lets the proxy answer the way Cloud Storage
//! documents (412 `conditionNotMet`) to check how the store reads that answer.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use pulse_shared::error::{BackendError, Retry};
use pulse_shared::storage::{ByteRange, Created, GcsObjectStore, ObjectStore};
use pulse_shared::testing::gcs::{gcs_emulator_bin, gcs_emulator_command, gcs_emulator_ready};
use pulse_shared::testing::server::{AbortOnDrop, Server, free_port};
use reqwest::Url;

const BUCKET: &str = "pulse-raw";
const NAME: &str = "raw/order/2024/05/01/12/00/ord-1.json";
/// Upper bound on one SDK call, so a hang fails the test instead of stalling it.
const CALL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_sdk_asks_for_create_if_absent_on_the_wire() {
    let Some(stack) = Stack::start("the_sdk_asks_for_create_if_absent_on_the_wire").await else {
        return;
    };
    let store = stack.store().await;

    let first = create(&store, BUCKET, "first").await;
    assert_eq!(first.expect("first write"), Created::New);
    let writes = stack.proxy.uploads();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let query: Vec<(String, String)> = writes[0].query_pairs().into_owned().collect();
    assert!(
        query.contains(&("ifGenerationMatch".to_owned(), "0".to_owned())),
        "the write must carry ifGenerationMatch=0: {}",
        writes[0]
    );
    assert!(
        query.contains(&("name".to_owned(), NAME.to_owned())),
        "{}",
        writes[0]
    );

    assert_eq!(
        read(&store, NAME).await.expect("read"),
        Some(Bytes::from_static(b"first"))
    );

    // The same write again. Cloud Storage answers 412 and keeps the first object; this
    // emulator (checked in its source, 2026.7.19) ignores the precondition and overwrites.
    let second = create(&store, BUCKET, "second")
        .await
        .expect("second write");
    let now = read(&store, NAME)
        .await
        .expect("read")
        .expect("object exists");
    match second {
        Created::AlreadyExisted => assert_eq!(now, "first", "a refused write must change nothing"),
        Created::New => {
            eprintln!(
                "NOTE: gcp-storage-emulator ignores ifGenerationMatch=0 (it overwrote the object); \
                 create-if-absent itself is covered by a_json_api_412_is_read_as_already_existed"
            );
            assert_eq!(now, "second", "a write reported as New must have written");
        }
    }

    assert_eq!(
        read(&store, "raw/order/none.json")
            .await
            .expect("read of a missing object"),
        None
    );
}

#[tokio::test]
async fn a_json_api_412_is_read_as_already_existed() {
    let Some(stack) = Stack::start("a_json_api_412_is_read_as_already_existed").await else {
        return;
    };
    // From here on the proxy refuses an `ifGenerationMatch=0` upload of an object the emulator
    // has, with the status and error body Cloud Storage's JSON API sends.
    stack
        .proxy
        .enforce_if_generation_match
        .store(true, Ordering::SeqCst);
    let store = stack.store().await;

    let first = create(&store, BUCKET, "first").await;
    assert_eq!(first.expect("first write"), Created::New);
    let second = create(&store, BUCKET, "second").await;
    assert_eq!(second.expect("second write"), Created::AlreadyExisted);
    assert_eq!(
        stack.proxy.refused(),
        1,
        "exactly the second write was refused"
    );
    assert_eq!(
        read(&store, NAME).await.expect("read"),
        Some(Bytes::from_static(b"first"))
    );
}

/// The emulator answers 404 with an empty body, which the SDK reports as a transport error that
/// carries the status: it must not be taken for an outage (preprocess would answer 503 and have
/// the message redelivered forever).
#[tokio::test]
async fn a_missing_bucket_is_a_permanent_error_not_a_duplicate() {
    let Some(stack) = Stack::start("a_missing_bucket_is_a_permanent_error_not_a_duplicate").await
    else {
        return;
    };
    let store = stack.store().await;
    let err = create(&store, "no-such-bucket", "x")
        .await
        .expect_err("a write into a missing bucket must fail");
    assert_eq!(err.retry, Retry::Permanent, "{err}");
    assert!(err.operation.contains("gs://no-such-bucket/"), "{err}");
}

#[tokio::test]
async fn ranged_reads_fetch_only_their_range() {
    let Some(stack) = Stack::start("ranged_reads_fetch_only_their_range").await else {
        return;
    };
    let store = stack.store().await;
    // A Parquet-shaped object: data, then a footer ending in its length and `PAR1`.
    let mut body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    body.extend_from_slice(&1000u32.to_le_bytes());
    body.extend_from_slice(b"PAR1");
    let name = "landing/orders/part-0.parquet";
    let written = call(store.create_if_absent(
        BUCKET,
        name,
        Bytes::from(body.clone()),
        "application/octet-stream",
    ))
    .await;
    assert_eq!(written.expect("write"), Created::New);
    let served_before = stack.proxy.served();

    let tail = call(store.read_range(BUCKET, name, ByteRange::Tail(8), None))
        .await
        .expect("tail read")
        .expect("object exists");
    assert_eq!(&tail.bytes[..], &body[body.len() - 8..]);
    assert_eq!(tail.size, body.len() as u64);
    assert!(tail.generation > 0, "{tail:?}");
    let segment = ByteRange::Segment {
        offset: body.len() as u64 - 1008,
        len: 1000,
    };
    let footer = call(store.read_range(BUCKET, name, segment, Some(tail.generation)))
        .await
        .expect("segment read")
        .expect("object exists");
    assert_eq!(&footer.bytes[..], &body[body.len() - 1008..body.len() - 8]);
    assert_eq!(
        stack.proxy.served() - served_before,
        1008,
        "only the two ranges crossed the wire"
    );
    let missing =
        call(store.read_range(BUCKET, "landing/none.parquet", ByteRange::Tail(8), None)).await;
    assert_eq!(missing.expect("read of a missing object"), None);
}

/// `create_if_absent` of `NAME`.
async fn create(
    store: &GcsObjectStore,
    bucket: &str,
    body: &'static str,
) -> Result<Created, BackendError> {
    call(store.create_if_absent(
        bucket,
        NAME,
        Bytes::from_static(body.as_bytes()),
        "application/json",
    ))
    .await
}

async fn read(store: &GcsObjectStore, name: &str) -> Result<Option<Bytes>, BackendError> {
    call(store.read(BUCKET, name)).await
}

async fn call<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(CALL, future)
        .await
        .expect("an SDK call hung for a minute")
}

/// The emulator and the proxy in front of it; both stop when this is dropped.
struct Stack {
    _emulator: Server,
    proxy: Arc<Proxy>,
    proxy_url: String,
    _server: AbortOnDrop,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Starts both, or says why the test is skipped and returns `None`.
    async fn start(test: &str) -> Option<Self> {
        let bin = match gcs_emulator_bin() {
            Ok(bin) => bin,
            Err(why) => {
                eprintln!("SKIPPED {test}: {why}");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let mut command = gcs_emulator_command(&bin, port, BUCKET);
        command.arg("--in-memory");
        let emulator = Server::start(
            command,
            &dir.path().join("gcs-emulator.log"),
            &gcs_emulator_ready(port, BUCKET),
        )
        .await
        .unwrap_or_else(|why| panic!("gcp-storage-emulator {why}"));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let proxy = Arc::new(Proxy {
            client: reqwest::Client::new(),
            upstream: format!("http://127.0.0.1:{port}"),
            host: HeaderValue::from_str(&address.to_string()).expect("host header"),
            enforce_if_generation_match: AtomicBool::new(false),
            uploads: Mutex::default(),
            refused: Mutex::default(),
            served: Mutex::default(),
        });
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("proxy server");
        });
        Some(Self {
            _emulator: emulator,
            proxy,
            proxy_url: format!("http://{address}"),
            _server: AbortOnDrop(server),
            _dir: dir,
        })
    }

    async fn store(&self) -> GcsObjectStore {
        GcsObjectStore::connect(Some(&self.proxy_url), true)
            .await
            .expect("build the Cloud Storage clients")
    }
}

/// Forwards every request to the emulator, fixing what the SDK and the emulator disagree on:
/// - `Host`: the SDK sends one without the port, and the emulator builds the URLs it returns
///   (resumable upload sessions, media links) from it; the proxy sends its own address.
/// - media downloads: the SDK requires `x-goog-generation` (and reads `x-goog-metageneration`,
///   `x-goog-stored-content-length`, `x-goog-hash`), which the emulator does not send; the proxy
///   adds them from the object's metadata.
struct Proxy {
    client: reqwest::Client,
    upstream: String,
    host: HeaderValue,
    /// When set, refuse `ifGenerationMatch=0` uploads of existing objects as Cloud Storage does.
    enforce_if_generation_match: AtomicBool,
    uploads: Mutex<Vec<Url>>,
    refused: Mutex<usize>,
    /// Media bytes sent back to the SDK.
    served: Mutex<u64>,
}

impl Proxy {
    fn uploads(&self) -> Vec<Url> {
        self.uploads.lock().expect("uploads").clone()
    }

    fn refused(&self) -> usize {
        *self.refused.lock().expect("refused")
    }

    fn served(&self) -> u64 {
        *self.served.lock().expect("served")
    }

    /// The emulator's JSON metadata of an object, if it exists.
    async fn metadata(&self, bucket: &str, name: &str) -> Option<serde_json::Value> {
        let mut url = Url::parse(&self.upstream).expect("upstream URL");
        url.path_segments_mut()
            .expect("base URL")
            .extend(["storage", "v1", "b", bucket, "o", name]);
        self.metadata_at(url).await
    }

    /// The JSON metadata at `url` (`/storage/v1/b/{bucket}/o/{name}`), if the object exists.
    async fn metadata_at(&self, url: Url) -> Option<serde_json::Value> {
        let response = self.client.get(url).send().await.expect("metadata request");
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "metadata: {}",
            response.status()
        );
        Some(response.json().await.expect("metadata JSON"))
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("request body");
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = Url::parse(&format!("{}{path_and_query}", proxy.upstream)).expect("upstream URL");
    let query = |key: &str| {
        url.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_owned).collect())
        .unwrap_or_default();

    // Uploads: `POST /upload/storage/v1/b/{bucket}/o?name=…`.
    if parts.method == Method::POST && segments.first().is_some_and(|s| s == "upload") {
        proxy.uploads.lock().expect("uploads").push(url.clone());
        if proxy.enforce_if_generation_match.load(Ordering::SeqCst)
            && query("ifGenerationMatch").as_deref() == Some("0")
            && let (Some(bucket), Some(name)) = (segments.get(4), query("name"))
            && proxy.metadata(bucket, &name).await.is_some()
        {
            *proxy.refused.lock().expect("refused") += 1;
            return condition_not_met();
        }
    }

    // Media downloads: `GET /storage/v1/b/{bucket}/o/{name}?alt=media`.
    let media = parts.method == Method::GET
        && query("alt").as_deref() == Some("media")
        && segments.len() == 6
        && segments[..3] == ["storage", "v1", "b"]
        && segments[4] == "o";
    let mut headers = parts.headers;
    // A suffix range (the last N bytes) in the form the emulator knows: from size - N.
    let suffix = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes=-"))
        .and_then(|n| n.parse::<u64>().ok());
    if let (true, Some(n)) = (media, suffix) {
        let mut metadata = url.clone();
        metadata.set_query(None);
        if let Some(object) = proxy.metadata_at(metadata).await {
            let size: u64 = object["size"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let range = format!("bytes={}-", size.saturating_sub(n));
            headers.insert(header::RANGE, HeaderValue::from_str(&range).expect("range"));
        }
    }
    for hop in [
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(hop);
    }
    headers.insert(header::HOST, proxy.host.clone());
    let upstream = proxy
        .client
        .request(parts.method.clone(), url.clone())
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("forward to the emulator");
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    let body = upstream.bytes().await.expect("emulator response body");
    for hop in [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(hop);
    }

    if media && status.is_success() {
        *proxy.served.lock().expect("served") += body.len() as u64;
        let mut metadata = url.clone();
        metadata.set_query(None);
        if let Some(object) = proxy.metadata_at(metadata).await {
            add_object_headers(&mut headers, &object);
        }
    }

    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The headers Cloud Storage sends with object media, from the object's JSON metadata.
fn add_object_headers(headers: &mut HeaderMap, object: &serde_json::Value) {
    let field = |name: &str| object[name].as_str().map(str::to_owned);
    let mut set = |name: &'static str, value: Option<String>| {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.entry(name).or_insert(value);
        }
    };
    set("x-goog-generation", field("generation"));
    set("x-goog-metageneration", field("metageneration"));
    set("x-goog-stored-content-length", field("size"));
    set("x-goog-storage-class", field("storageClass"));
    set(
        "x-goog-hash",
        field("crc32c")
            .zip(field("md5Hash"))
            .map(|(crc, md5)| format!("crc32c={crc},md5={md5}")),
    );
}

/// Cloud Storage's answer to a failed `ifGenerationMatch`.
fn condition_not_met() -> Response {
    let message = "At least one of the pre-conditions you specified did not hold.";
    let body = serde_json::json!({
        "error": {
            "code": 412,
            "message": message,
            "errors": [{
                "message": message, "domain": "global", "reason": "conditionNotMet",
                "locationType": "header", "location": "If-Match",
            }],
        }
    });
    (StatusCode::PRECONDITION_FAILED, axum::Json(body)).into_response()
}
