#![allow(clippy::unwrap_used)]
//! Push token verification against a key set served on loopback, signed with the test-only keys
//! in `tests/fixtures/oidc` (see its README): what Google's tokens look like, and every way one
//! can be wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pulse_shared::delivery::oidc::{
    Operators, PushAuthConfig, PushAuthError, PushVerifier, SIGNATURE_REMOVED_BY_GOOGLE,
    require_operator_token, require_push_token,
};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tower::ServiceExt as _;

const AUDIENCE: &str = "pulse-preprocess-push";
const PUSH_ACCOUNT: &str = "pulse-push@acme.iam.gserviceaccount.com";
const OPERATOR: &str = "ops@acme.example";
const KEY_1: &str = include_str!("fixtures/oidc/test-key-1.pem");
const KEY_2: &str = include_str!("fixtures/oidc/test-key-2.pem");
const JWKS_1: &str = include_str!("fixtures/oidc/jwks-1.json");
const JWKS_BOTH: &str = include_str!("fixtures/oidc/jwks-both.json");

/// A stand-in for `https://www.googleapis.com/oauth2/v3/certs` that counts its fetches.
#[derive(Clone)]
struct KeyServer {
    answer: Arc<Mutex<(StatusCode, &'static str)>>,
    fetches: Arc<AtomicUsize>,
    url: String,
}

impl KeyServer {
    async fn start(jwks: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            answer: Arc::new(Mutex::new((StatusCode::OK, jwks))),
            fetches: Arc::new(AtomicUsize::new(0)),
            url: format!("http://{}/oauth2/v3/certs", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/oauth2/v3/certs", get(serve_keys))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
    }

    async fn answer(&self, status: StatusCode, jwks: &'static str) {
        *self.answer.lock().await = (status, jwks);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn config(&self, min_refresh_interval: Duration) -> PushAuthConfig {
        PushAuthConfig {
            audience: AUDIENCE.to_owned(),
            service_account: PUSH_ACCOUNT.to_owned(),
            jwks_url: self.url.clone(),
            min_refresh_interval,
            behind_cloud_run: false,
            operators: Operators::parse(&format!("user:{OPERATOR}")).unwrap(),
        }
    }

    fn verifier(&self) -> PushVerifier {
        PushVerifier::new(self.config(Duration::ZERO)).unwrap()
    }

    /// A verifier in a process Cloud Run started (`K_SERVICE` set).
    fn cloud_run_verifier(&self) -> PushVerifier {
        PushVerifier::new(PushAuthConfig {
            behind_cloud_run: true,
            ..self.config(Duration::ZERO)
        })
        .unwrap()
    }
}

async fn serve_keys(State(server): State<KeyServer>) -> impl IntoResponse {
    server.fetches.fetch_add(1, Ordering::SeqCst);
    let (status, body) = *server.answer.lock().await;
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CACHE_CONTROL,
                "public, max-age=20723, must-revalidate, no-transform",
            ),
        ],
        body,
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a Pub/Sub push token as Google issues them.
fn google_claims() -> Value {
    json!({
        "aud": AUDIENCE,
        "azp": "112233445566778899000",
        "email": PUSH_ACCOUNT,
        "email_verified": true,
        "exp": now() + 3600,
        "iat": now(),
        "iss": "https://accounts.google.com",
        "sub": "112233445566778899000",
    })
}

fn sign(claims: &Value, kid: &str, pem: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The token as Cloud Run hands it to the container after checking it.
fn strip_signature(token: &str) -> String {
    let (message, _signature) = token.rsplit_once('.').unwrap();
    format!("{message}.{SIGNATURE_REMOVED_BY_GOOGLE}")
}

fn with(changes: &[(&str, Value)]) -> Value {
    let mut claims = google_claims();
    for (name, value) in changes {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(*name);
        } else {
            claims[*name] = value.clone();
        }
    }
    claims
}

/// A trigger route behind the middleware, as a function would mount it.
fn app(verifier: PushVerifier) -> Router {
    Router::new().route(
        "/",
        post(|| async { "delivered" })
            .route_layer(from_fn_with_state(verifier, require_push_token)),
    )
}

async fn push(app: Router, token: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::post("/");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .oneshot(request.body(Body::from("{}")).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A manual route behind the operator middleware, as `runtime::operator_routes` mounts it.
fn manual_app(verifier: PushVerifier) -> Router {
    Router::new().route(
        "/",
        post(|| async { "replayed" })
            .route_layer(from_fn_with_state(verifier, require_operator_token)),
    )
}

/// The push identity may invoke the whole service, so a push token opened `/replay`, `:ensure`
/// and `/predict-replay` too: a manual route now takes an operator's token only.
#[tokio::test]
async fn manual_routes_take_an_operators_token_and_never_a_push_token() {
    let keys = KeyServer::start(JWKS_1).await;
    let push_token = sign(&google_claims(), "test-key-1", KEY_1);
    let (status, body) = push(manual_app(keys.verifier()), Some(&push_token)).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::FORBIDDEN,
            r#"{"outcome":"error","error":"forbidden"}"#
        )
    );

    // An operator's token from gcloud: another audience, which Cloud Run checks.
    let operator = with(&[
        ("email", json!(OPERATOR)),
        ("aud", json!("32555940559.apps.googleusercontent.com")),
    ]);
    let token = sign(&operator, "test-key-1", KEY_1);
    let (status, body) = push(manual_app(keys.verifier()), Some(&token)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "replayed"));
    // ... which opens no trigger route.
    assert_eq!(
        push(app(keys.verifier()), Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = push(
        manual_app(keys.cloud_run_verifier()),
        Some(&strip_signature(&token)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "Cloud Run checked the signature");

    for (what, claims) in [
        (
            "another person",
            with(&[("email", json!("eve@acme.example"))]),
        ),
        (
            "an unverified email",
            with(&[("email", json!(OPERATOR)), ("email_verified", json!(false))]),
        ),
        (
            "an expired token",
            with(&[("email", json!(OPERATOR)), ("exp", json!(now() - 3600))]),
        ),
    ] {
        let token = sign(&claims, "test-key-1", KEY_1);
        let (status, _) = push(manual_app(keys.verifier()), Some(&token)).await;
        assert!(status.is_client_error(), "{what}: {status}");
    }
    assert_eq!(
        push(manual_app(keys.verifier()), None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_google_push_token_gets_through() {
    let keys = KeyServer::start(JWKS_1).await;
    let token = sign(&google_claims(), "test-key-1", KEY_1);
    let (status, body) = push(app(keys.verifier()), Some(&token)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "delivered"));

    // The short issuer spelling is Google's too.
    let token = sign(
        &with(&[("iss", json!("accounts.google.com"))]),
        "test-key-1",
        KEY_1,
    );
    let claims = keys
        .verifier()
        .verify(Some(&format!("Bearer {token}").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(claims.email, PUSH_ACCOUNT);
}

#[tokio::test]
async fn every_wrong_token_is_refused_with_401_and_no_detail() {
    let keys = KeyServer::start(JWKS_1).await;
    let verifier = keys.verifier();
    let hs256 = jsonwebtoken::encode(
        &Header {
            kid: Some("test-key-1".to_owned()),
            ..Header::new(Algorithm::HS256)
        },
        &google_claims(),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let cases = [
        ("no token", None),
        ("not a JWT", Some("not-a-jwt".to_owned())),
        ("HS256", Some(hs256)),
        (
            "other audience",
            Some(sign(
                &with(&[("aud", json!("https://pulse-preprocess-xyz.a.run.app"))]),
                "test-key-1",
                KEY_1,
            )),
        ),
        (
            "no audience",
            Some(sign(&with(&[("aud", Value::Null)]), "test-key-1", KEY_1)),
        ),
        (
            "other issuer",
            Some(sign(
                &with(&[("iss", json!("https://evil.example.com"))]),
                "test-key-1",
                KEY_1,
            )),
        ),
        (
            "issued in the future",
            Some(sign(
                &with(&[("iat", json!(now() + 600))]),
                "test-key-1",
                KEY_1,
            )),
        ),
        (
            "no iat",
            Some(sign(&with(&[("iat", Value::Null)]), "test-key-1", KEY_1)),
        ),
        (
            "signature removed, but not on Cloud Run",
            Some(strip_signature(&sign(
                &google_claims(),
                "test-key-1",
                KEY_1,
            ))),
        ),
        (
            "expired",
            Some(sign(
                &with(&[("exp", json!(now() - 3600)), ("iat", json!(now() - 7200))]),
                "test-key-1",
                KEY_1,
            )),
        ),
        (
            "another account",
            Some(sign(
                &with(&[("email", json!("someone@acme.iam.gserviceaccount.com"))]),
                "test-key-1",
                KEY_1,
            )),
        ),
        (
            "no email",
            Some(sign(&with(&[("email", Value::Null)]), "test-key-1", KEY_1)),
        ),
        (
            "email not verified",
            Some(sign(
                &with(&[("email_verified", json!(false))]),
                "test-key-1",
                KEY_1,
            )),
        ),
        (
            "signed by another key under a listed kid",
            Some(sign(&google_claims(), "test-key-1", KEY_2)),
        ),
        (
            "signed by an unlisted key",
            Some(sign(&google_claims(), "test-key-2", KEY_2)),
        ),
    ];
    for (case, token) in cases {
        let (status, body) = push(app(verifier.clone()), token.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(
            body, r#"{"outcome":"error","error":"unauthorized"}"#,
            "{case}: the body must say nothing more"
        );
    }
}

#[tokio::test]
async fn keys_are_fetched_once_and_cached() {
    let keys = KeyServer::start(JWKS_1).await;
    let verifier = keys.verifier();
    for _ in 0..5 {
        let token = sign(&google_claims(), "test-key-1", KEY_1);
        let (status, _) = push(app(verifier.clone()), Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(keys.fetches(), 1);
}

#[tokio::test]
async fn a_new_key_id_fetches_the_keys_again() {
    let keys = KeyServer::start(JWKS_1).await;
    let verifier = keys.verifier();
    let (status, _) = push(
        app(verifier.clone()),
        Some(&sign(&google_claims(), "test-key-1", KEY_1)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Google rotates: the new key is listed, and tokens signed with it get through.
    keys.answer(StatusCode::OK, JWKS_BOTH).await;
    let (status, _) = push(
        app(verifier),
        Some(&sign(&google_claims(), "test-key-2", KEY_2)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys.fetches(), 2);
}

#[tokio::test]
async fn made_up_key_ids_do_not_flood_the_key_server() {
    let keys = KeyServer::start(JWKS_1).await;
    let verifier = PushVerifier::new(keys.config(Duration::from_secs(3600))).unwrap();
    let (status, _) = push(
        app(verifier.clone()),
        Some(&sign(&google_claims(), "test-key-1", KEY_1)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..10 {
        let (status, _) = push(
            app(verifier.clone()),
            Some(&sign(&google_claims(), "test-key-2", KEY_2)),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        keys.fetches(),
        1,
        "an unknown kid refetches at most once per interval"
    );
}

#[tokio::test]
async fn unreachable_keys_answer_503_so_pubsub_retries() {
    let keys = KeyServer::start(JWKS_1).await;
    keys.answer(StatusCode::INTERNAL_SERVER_ERROR, "oops").await;
    let verifier = keys.verifier();
    let token = sign(&google_claims(), "test-key-1", KEY_1);
    let (status, body) = push(app(verifier.clone()), Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.contains("oops") && !body.contains("500"), "{body}");

    let error = verifier
        .verify(Some(&format!("Bearer {token}").parse().unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PushAuthError::KeysUnavailable(_)),
        "{error}"
    );

    // Once Google answers again, so does the function.
    keys.answer(StatusCode::OK, JWKS_1).await;
    let (status, _) = push(app(verifier), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn on_cloud_run_a_token_whose_signature_google_removed_is_checked_by_its_claims() {
    let keys = KeyServer::start(JWKS_1).await;
    let verifier = keys.cloud_run_verifier();
    let token = strip_signature(&sign(&google_claims(), "test-key-1", KEY_1));
    let (status, body) = push(app(verifier.clone()), Some(&token)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "delivered"));
    assert_eq!(
        keys.fetches(),
        0,
        "Cloud Run checked the signature: no key is needed"
    );

    // A list audience naming ours is fine too.
    let token = strip_signature(&sign(
        &with(&[("aud", json!(["https://other.example", AUDIENCE]))]),
        "test-key-1",
        KEY_1,
    ));
    let (status, _) = push(app(verifier.clone()), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);

    // Every claim still counts.
    for (case, claims) in [
        (
            "other audience",
            with(&[("aud", json!("https://x.a.run.app"))]),
        ),
        (
            "other issuer",
            with(&[("iss", json!("https://evil.example.com"))]),
        ),
        (
            "expired",
            with(&[("exp", json!(now() - 3600)), ("iat", json!(now() - 7200))]),
        ),
        ("issued in the future", with(&[("iat", json!(now() + 600))])),
        (
            "another account",
            with(&[("email", json!("someone@acme.iam.gserviceaccount.com"))]),
        ),
        (
            "email not verified",
            with(&[("email_verified", json!(false))]),
        ),
    ] {
        let token = strip_signature(&sign(&claims, "test-key-1", KEY_1));
        let (status, _) = push(app(verifier.clone()), Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
    }

    // A signed token (a direct call that did not go through Cloud Run's check) is still
    // verified against Google's keys.
    let (status, _) = push(
        app(verifier),
        Some(&sign(&google_claims(), "test-key-1", KEY_2)),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
