//! `push_token`: the `Authorization` header of a trigger and of a manual request, checked as on
//! Cloud Run (a token whose signature Cloud Run removed has its claims read and checked). Google's
//! keys are never fetched: the key set's address refuses connections, so no signed token can pass.
//! A token that passes is one whose claims, decoded here independently, are what the route
//! admits: issued by Google to the push identity for this audience (trigger) or to an operator
//! (manual routes), verified, unexpired; and no token opens both.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderValue;
use pulse_shared::delivery::oidc::{
    Operators, PushAuthConfig, PushClaims, PushVerifier, SIGNATURE_REMOVED_BY_GOOGLE,
};
use serde_json::{Map, Value};

const AUDIENCE: &str = "pulse-preprocess-push";
const PUSH_ACCOUNT: &str = "push@p.iam.gserviceaccount.com";
const OPERATOR: &str = "ops@acme.example";
/// The clock skew the verifier allows on `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;

fn verifier() -> &'static PushVerifier {
    static VERIFIER: OnceLock<PushVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        PushVerifier::new(PushAuthConfig {
            audience: AUDIENCE.to_owned(),
            service_account: PUSH_ACCOUNT.to_owned(),
            jwks_url: "http://127.0.0.1:9/certs".to_owned(),
            min_refresh_interval: Duration::from_secs(24 * 3600),
            behind_cloud_run: true,
            operators: Operators::parse(&format!("user:{OPERATOR}")).expect("valid operators"),
        })
        .expect("a verifier")
    })
}

/// Checks one token; true when a route admitted it.
pub fn check(token: &[u8]) -> bool {
    let mut header = b"Bearer ".to_vec();
    header.extend_from_slice(token);
    let Ok(value) = HeaderValue::from_bytes(&header) else {
        return false;
    };
    let (push, operator) = super::runtime().block_on(async {
        (
            verifier().verify(Some(&value)).await,
            verifier().verify_operator(Some(&value)).await,
        )
    });
    assert!(
        push.is_err() || operator.is_err(),
        "one token opened both the trigger and the manual routes"
    );
    if let Ok(admitted) = &push {
        let claims = admitted_claims(&value, admitted);
        let audience = claims.get("aud");
        assert!(
            audience == Some(&Value::from(AUDIENCE))
                || audience
                    .and_then(Value::as_array)
                    .is_some_and(|many| many.contains(&Value::from(AUDIENCE))),
            "a push token for audience {audience:?} was admitted"
        );
        assert!(
            admitted.email.eq_ignore_ascii_case(PUSH_ACCOUNT),
            "a push token of {} was admitted",
            admitted.email
        );
    }
    if let Ok(admitted) = &operator {
        admitted_claims(&value, admitted);
        assert!(
            admitted.email.eq_ignore_ascii_case(OPERATOR),
            "an operator token of {} was admitted",
            admitted.email
        );
    }
    push.is_ok() || operator.is_ok()
}

/// The claims of an admitted token, decoded here: the ones every admitted token must have.
fn admitted_claims(value: &HeaderValue, admitted: &PushClaims) -> Map<String, Value> {
    let token = value
        .to_str()
        .expect("an admitted header is text")
        .strip_prefix("Bearer ")
        .expect("the header this check made")
        .trim();
    let (message, signature) = token.rsplit_once('.').expect("a token of three parts");
    assert_eq!(
        signature, SIGNATURE_REMOVED_BY_GOOGLE,
        "a signed token was admitted, though no key can be fetched"
    );
    let (_, payload) = message.rsplit_once('.').expect("a token of three parts");
    let lenient = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let json = lenient.decode(payload).expect("the claims are base64url");
    let claims: Map<String, Value> =
        serde_json::from_slice(&json).expect("the claims are a JSON object");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    assert!(
        matches!(
            text("iss"),
            Some("accounts.google.com" | "https://accounts.google.com")
        ),
        "issued by {:?}",
        claims.get("iss")
    );
    assert_eq!(text("email"), Some(admitted.email.as_str()));
    assert_eq!(claims.get("email_verified"), Some(&Value::Bool(true)));
    let exp = claims.get("exp").and_then(Value::as_u64);
    assert!(
        exp.is_some_and(|exp| exp + LEEWAY_SECS > now),
        "exp {exp:?}"
    );
    let iat = claims.get("iat").and_then(Value::as_u64);
    assert!(
        iat.is_some_and(|iat| iat <= now + LEEWAY_SECS),
        "iat {iat:?}"
    );
    claims
}
