//! Verification of the OIDC token Pub/Sub puts on push requests (`Authorization: Bearer …`):
//! an RS256 signature by one of Google's keys (fetched and cached), then `aud`, `iss`, `exp`,
//! `iat`, `email` and `email_verified`.
//!
//! On Cloud Run (`K_SERVICE` set) a service that requires authentication verifies the token
//! itself and hands the container the token with its signature replaced by
//! [`SIGNATURE_REMOVED_BY_GOOGLE`]: there the claims are checked and the signature is not
//! (Cloud Run already did). Anywhere else such a token is refused, since nobody checked it.
//!
//! Cloud Run already refuses a request whose token does not grant `run.invoker` (no Pulse service
//! allows unauthenticated calls); this check is defence in depth: only the push identity, with
//! the audience of this function's subscription, gets through, not any other caller that may
//! invoke the service. It is on when `PULSE_PUSH_AUDIENCE` and `PULSE_PUSH_SERVICE_ACCOUNT` are
//! set (Terraform sets both), and off otherwise, e.g. locally. Every function's trigger route
//! gets [`require_push_token`] through [`crate::delivery::trigger::route`].
//!
//! The push identity is an invoker of the whole service, so IAM alone would let a push token
//! open the manual routes too (`/replay`, `:ensure`, `/predict-replay`, …). With push tokens
//! verified, those routes get [`require_operator_token`] through
//! [`crate::runtime::operator_routes`]: the token's holder must be one of
//! `PULSE_OPERATOR_PRINCIPALS` (Terraform passes the `operators`, and the scheduler's account to
//! table-manager), and is never the push identity. The audience of an operator's token is Cloud
//! Run's to check (it takes the service's URL and the gcloud client's ID), so it is not checked
//! here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::answer;
use crate::error::{ConfigError, RETRY_AFTER};

/// Google's signing keys for the ID tokens it issues, Pub/Sub push tokens among them.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// What Cloud Run puts in place of a token's signature once it has verified it.
pub const SIGNATURE_REMOVED_BY_GOOGLE: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

/// Clock skew allowed on `exp` and `iat`.
const CLOCK_LEEWAY_SECS: u64 = 60;

/// The `iss` of a Google-signed ID token (both spellings occur).
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// How long keys are kept when the key set's response says nothing (`Cache-Control: max-age`).
const DEFAULT_KEY_TTL: Duration = Duration::from_secs(3600);
/// Bounds on the cache lifetime a response may ask for.
const MIN_KEY_TTL: Duration = Duration::from_secs(60);
const MAX_KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` fetches the key set again at most this often by default, so tokens with
/// made-up key ids cannot turn into a flood of requests to Google.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Deadline of one key set fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may push: read from the environment, both variables or neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushAuthConfig {
    /// `PULSE_PUSH_AUDIENCE`: the `aud` the push subscription's OIDC token carries.
    pub audience: String,
    /// `PULSE_PUSH_SERVICE_ACCOUNT`: the service account Pub/Sub signs pushes as (`email`).
    pub service_account: String,
    /// `PULSE_PUSH_JWKS_URL`: where the signing keys are (default [`GOOGLE_JWKS_URL`]; tests
    /// point it at a local server).
    pub jwks_url: String,
    /// The shortest time between two fetches of the key set ([`MIN_REFRESH_INTERVAL`]).
    pub min_refresh_interval: Duration,
    /// True on Cloud Run (`K_SERVICE` set): tokens arrive with their signature already
    /// verified and replaced by [`SIGNATURE_REMOVED_BY_GOOGLE`].
    pub behind_cloud_run: bool,
    /// `PULSE_OPERATOR_PRINCIPALS`: who may call the manual routes (none when unset: they are
    /// then closed).
    pub operators: Operators,
}

/// Who may call the manual routes: `PULSE_OPERATOR_PRINCIPALS`, comma-separated IAM members
/// (`user:a@example.com`, `serviceAccount:s@p.iam.gserviceaccount.com`, a bare email, or
/// `domain:example.com`). A token names its holder, not the holder's groups, so `group:` members
/// are refused: list the people, or their domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operators {
    emails: Vec<String>,
    domains: Vec<String>,
}

impl Operators {
    /// Parses a list of IAM members.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut operators = Self::default();
        for member in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let (kind, value) = member.split_once(':').unwrap_or(("user", member));
            let value = value.to_ascii_lowercase();
            match kind {
                "user" | "serviceAccount" if value.contains('@') => operators.emails.push(value),
                "domain" if !value.is_empty() && !value.contains('@') => {
                    operators.domains.push(value);
                }
                "group" => {
                    return Err(format!(
                        "{member}: a token names its holder, not the holder's groups; list the \
                         group's members, or their domain"
                    ));
                }
                _ => {
                    return Err(format!(
                        "{member} is not `user:EMAIL`, `serviceAccount:EMAIL`, an email or \
                         `domain:DOMAIN`"
                    ));
                }
            }
        }
        Ok(operators)
    }

    /// True when the holder of `email` is an operator.
    pub fn admit(&self, email: &str) -> bool {
        let email = email.to_ascii_lowercase();
        self.emails.contains(&email)
            || email
                .rsplit_once('@')
                .is_some_and(|(_, domain)| self.domains.iter().any(|d| d == domain))
    }

    /// True when nobody is an operator.
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty() && self.domains.is_empty()
    }
}

impl PushAuthConfig {
    /// Reads the process environment: `None` when push verification is off.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup`; a half-configured check stops the process rather than running
    /// unverified, naming the variable that is missing.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.is_empty());
        let jwks_url = get("PULSE_PUSH_JWKS_URL").unwrap_or_else(|| GOOGLE_JWKS_URL.to_owned());
        let behind_cloud_run = get("K_SERVICE").is_some();
        let operators = match get("PULSE_OPERATOR_PRINCIPALS") {
            None => Operators::default(),
            Some(list) => Operators::parse(&list).map_err(|reason| ConfigError::Invalid {
                var: "PULSE_OPERATOR_PRINCIPALS",
                value: list.clone(),
                reason,
            })?,
        };
        match (
            get("PULSE_PUSH_AUDIENCE"),
            get("PULSE_PUSH_SERVICE_ACCOUNT"),
        ) {
            (None, None) if !operators.is_empty() => Err(ConfigError::Missing {
                var: "PULSE_PUSH_AUDIENCE",
                reason: "PULSE_OPERATOR_PRINCIPALS is set, but callers are verified only with \
                         push tokens (PULSE_PUSH_AUDIENCE and PULSE_PUSH_SERVICE_ACCOUNT)"
                    .to_owned(),
            }),
            (None, None) => Ok(None),
            (Some(_), Some(service_account)) if operators.admit(&service_account) => {
                Err(ConfigError::Invalid {
                    var: "PULSE_OPERATOR_PRINCIPALS",
                    value: service_account,
                    reason: "the push identity cannot be an operator: a push token would open \
                             the manual routes"
                        .to_owned(),
                })
            }
            (Some(audience), Some(service_account)) => Ok(Some(Self {
                audience,
                service_account,
                jwks_url,
                min_refresh_interval: MIN_REFRESH_INTERVAL,
                behind_cloud_run,
                operators,
            })),
            (Some(_), None) => Err(ConfigError::Missing {
                var: "PULSE_PUSH_SERVICE_ACCOUNT",
                reason: "PULSE_PUSH_AUDIENCE is set, so push tokens are verified, and they must \
                         come from this service account"
                    .to_owned(),
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                var: "PULSE_PUSH_AUDIENCE",
                reason: "PULSE_PUSH_SERVICE_ACCOUNT is set, so push tokens are verified, and \
                         their audience must be known"
                    .to_owned(),
            }),
        }
    }
}

/// Why a push request was refused. Only the status reaches the caller; the detail is logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushAuthError {
    /// No `Authorization: Bearer` header: refused (401).
    #[error("no bearer token")]
    MissingToken,
    /// The token is not a JWT we accept (syntax, algorithm, no `kid`): refused (401).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Signed by a key Google does not list, even after fetching the keys again: refused (401).
    #[error("token signed by unknown key `{0}`")]
    UnknownKey(String),
    /// Bad or removed signature, wrong `aud` or `iss`, expired or issued in the future:
    /// refused (401).
    #[error("token rejected: {0}")]
    Invalid(String),
    /// Signed by Google for another identity: refused (401).
    #[error("token is for `{0}`, not the push service account")]
    WrongAccount(String),
    /// The identity's email is not verified: refused (401).
    #[error("token email is not verified")]
    EmailNotVerified,
    /// Google's keys could not be fetched: answered 503, so Pub/Sub delivers again later.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    /// A valid token of someone who is not an operator (the push identity among them) on a
    /// manual route: refused (403).
    #[error("`{0}` is not one of PULSE_OPERATOR_PRINCIPALS")]
    NotOperator(String),
}

impl IntoResponse for PushAuthError {
    fn into_response(self) -> Response {
        if let Self::KeysUnavailable(_) = self {
            tracing::error!(error = %self, "push token not checked: answering 503 to be retried");
            let mut response =
                answer::error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable");
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER.as_secs()),
            );
            return response;
        }
        if let Self::NotOperator(_) = self {
            tracing::warn!(error = %self, "manual request refused");
            return answer::error(StatusCode::FORBIDDEN, "forbidden");
        }
        tracing::warn!(error = %self, "push request refused");
        let mut response = answer::error(StatusCode::UNAUTHORIZED, "unauthorized");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// The claims of a verified push token that a handler may want.
#[derive(Clone, Debug, Deserialize)]
pub struct PushClaims {
    /// The push service account.
    pub email: String,
    /// Its unique id.
    pub sub: String,
}

#[derive(Deserialize)]
struct TokenClaims {
    #[serde(default)]
    aud: Audience,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    sub: String,
}

/// `aud` is one string or a list of them (RFC 7519 §4.1.3).
#[derive(Default, Deserialize)]
#[serde(untagged)]
enum Audience {
    #[default]
    Missing,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Self::Missing => false,
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

/// Checks push tokens against one configuration, sharing a cache of Google's keys.
#[derive(Clone)]
pub struct PushVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: PushAuthConfig,
    validation: Validation,
    http: reqwest::Client,
    keys: RwLock<KeyCache>,
    /// Held while fetching, so concurrent requests with a new `kid` fetch once.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    /// When the keys go stale (a request then fetches them again first).
    fresh_until: Option<Instant>,
    fetched_at: Option<Instant>,
}

impl KeyCache {
    fn is_fresh(&self, now: Instant) -> bool {
        self.fresh_until.is_some_and(|until| now < until)
    }

    fn may_refresh(&self, now: Instant, min_interval: Duration) -> bool {
        self.fetched_at
            .is_none_or(|at| now.duration_since(at) >= min_interval)
    }
}

impl PushVerifier {
    /// A verifier for `config`; keys are fetched on first use.
    pub fn new(config: PushAuthConfig) -> anyhow::Result<Self> {
        // Names the provider outright, in case feature unification ever enables a second one
        // (jsonwebtoken then cannot pick by itself). An `Err` means one is installed already.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        // The library checks the signature; the claims are checked in one place for both kinds
        // of token ([`check_claims`]), since a token whose signature Cloud Run removed cannot go
        // through the library's checks.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims::<&str>(&[]);
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for Google's keys: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                validation,
                http,
                keys: RwLock::new(KeyCache::default()),
                fetching: Mutex::new(()),
            }),
        })
    }

    /// Verifies the `Authorization` header of a push request.
    pub async fn verify(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<PushClaims, PushAuthError> {
        let claims = self.claims(authorization).await?;
        check_claims(claims, &self.inner.config, unix_now())
    }

    /// Verifies the `Authorization` header of a manual request: a Google ID token of one of
    /// the operators, never of the push identity.
    pub async fn verify_operator(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<PushClaims, PushAuthError> {
        let claims = self.claims(authorization).await?;
        check_operator_claims(claims, &self.inner.config, unix_now())
    }

    /// The claims of a Google ID token: its signature checked against Google's keys, or
    /// removed by Cloud Run after Cloud Run checked it.
    async fn claims(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<TokenClaims, PushAuthError> {
        let token = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(PushAuthError::MissingToken)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| PushAuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(PushAuthError::Malformed(format!(
                "algorithm {:?}, expected RS256",
                header.alg
            )));
        }
        let claims = if token.rsplit('.').next() == Some(SIGNATURE_REMOVED_BY_GOOGLE) {
            if !self.inner.config.behind_cloud_run {
                return Err(PushAuthError::Invalid(
                    "the signature was removed, and only Cloud Run removes it after checking \
                     it: this process is not on Cloud Run (K_SERVICE unset)"
                        .to_owned(),
                ));
            }
            jsonwebtoken::dangerous::insecure_decode::<TokenClaims>(token)
                .map_err(|e| PushAuthError::Malformed(e.to_string()))?
                .claims
        } else {
            let kid = header
                .kid
                .ok_or_else(|| PushAuthError::Malformed("no `kid` in the header".to_owned()))?;
            let key = self.key(&kid).await?;
            jsonwebtoken::decode::<TokenClaims>(token, &key, &self.inner.validation)
                .map_err(|e| PushAuthError::Invalid(e.to_string()))?
                .claims
        };
        Ok(claims)
    }

    /// The key `kid`: from the cache while it is fresh; else after fetching the key set again,
    /// at most once per `min_refresh_interval` (a failed fetch leaves the stale keys in use).
    async fn key(&self, kid: &str) -> Result<DecodingKey, PushAuthError> {
        let min_refresh = self.inner.config.min_refresh_interval;
        {
            let cache = self.inner.keys.read().await;
            if let Some(key) = cache.keys.get(kid)
                && cache.is_fresh(Instant::now())
            {
                return Ok(key.clone());
            }
        }
        // One fetch at a time; whoever waited here finds the result in the cache.
        let _fetching = self.inner.fetching.lock().await;
        let now = Instant::now();
        {
            let cache = self.inner.keys.read().await;
            let recently_fetched = !cache.may_refresh(now, min_refresh);
            match cache.keys.get(kid) {
                Some(key) if recently_fetched || cache.is_fresh(now) => return Ok(key.clone()),
                None if recently_fetched && cache.keys.is_empty() => {
                    return Err(PushAuthError::KeysUnavailable(
                        "the last fetch of the key set failed".to_owned(),
                    ));
                }
                None if recently_fetched => {
                    return Err(PushAuthError::UnknownKey(kid.to_owned()));
                }
                _ => {}
            }
        }
        match self.fetch().await {
            Ok(fetched) => {
                let key = fetched.keys.get(kid).cloned();
                *self.inner.keys.write().await = fetched;
                key.ok_or_else(|| PushAuthError::UnknownKey(kid.to_owned()))
            }
            Err(error) => {
                // Stale keys are better than none while Google is unreachable: a rotated key
                // stays listed for days after it stops signing.
                let mut cache = self.inner.keys.write().await;
                cache.fetched_at = Some(now);
                match cache.keys.get(kid) {
                    Some(key) => {
                        tracing::warn!(%error, "push signing keys not refreshed; using cached keys");
                        Ok(key.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<KeyCache, PushAuthError> {
        let unavailable = |e: reqwest::Error| PushAuthError::KeysUnavailable(e.to_string());
        let response = self
            .inner
            .http
            .get(&self.inner.config.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?;
        let ttl = response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_KEY_TTL)
            .clamp(MIN_KEY_TTL, MAX_KEY_TTL);
        let set: JwkSet = response.json().await.map_err(unavailable)?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect::<HashMap<_, _>>();
        if keys.is_empty() {
            return Err(PushAuthError::KeysUnavailable(
                "the key set holds no usable key".to_owned(),
            ));
        }
        let now = Instant::now();
        Ok(KeyCache {
            keys,
            fresh_until: Some(now + ttl),
            fetched_at: Some(now),
        })
    }
}

/// The claims a push token must carry, signed or with its signature removed by Cloud Run.
fn check_claims(
    claims: TokenClaims,
    config: &PushAuthConfig,
    now: u64,
) -> Result<PushClaims, PushAuthError> {
    if !claims.aud.contains(&config.audience) {
        return Err(PushAuthError::Invalid(format!(
            "audience is not `{}`",
            config.audience
        )));
    }
    check_issued(&claims, now)?;
    let email = claims.email.unwrap_or_default();
    if !email.eq_ignore_ascii_case(&config.service_account) {
        return Err(PushAuthError::WrongAccount(email));
    }
    if claims.email_verified != Some(true) {
        return Err(PushAuthError::EmailNotVerified);
    }
    Ok(PushClaims {
        email,
        sub: claims.sub,
    })
}

/// The claims an operator's token must carry: issued by Google, in date, for a verified email
/// of an operator that is not the push identity.
fn check_operator_claims(
    claims: TokenClaims,
    config: &PushAuthConfig,
    now: u64,
) -> Result<PushClaims, PushAuthError> {
    check_issued(&claims, now)?;
    let email = claims.email.unwrap_or_default();
    if email.eq_ignore_ascii_case(&config.service_account) || !config.operators.admit(&email) {
        return Err(PushAuthError::NotOperator(email));
    }
    if claims.email_verified != Some(true) {
        return Err(PushAuthError::EmailNotVerified);
    }
    Ok(PushClaims {
        email,
        sub: claims.sub,
    })
}

/// Issued by Google, not expired, not issued in the future.
fn check_issued(claims: &TokenClaims, now: u64) -> Result<(), PushAuthError> {
    let invalid = |why: String| Err(PushAuthError::Invalid(why));
    if !claims
        .iss
        .as_deref()
        .is_some_and(|iss| ISSUERS.contains(&iss))
    {
        return invalid(format!("issuer {:?} is not Google", claims.iss));
    }
    match claims.exp {
        Some(exp) if exp + CLOCK_LEEWAY_SECS > now => {}
        Some(exp) => return invalid(format!("expired at {exp}, now {now}")),
        None => return invalid("no `exp`".to_owned()),
    }
    match claims.iat {
        Some(iat) if iat <= now + CLOCK_LEEWAY_SECS => {}
        Some(iat) => return invalid(format!("issued in the future ({iat}, now {now})")),
        None => return invalid("no `iat`".to_owned()),
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `max-age` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        value.trim().parse().ok().map(Duration::from_secs)
    })
}

/// Middleware that lets a request through only with a valid push token, e.g.
/// `post(handler).route_layer(from_fn_with_state(verifier, require_push_token))`.
/// The verified claims are put in the request's extensions.
pub async fn require_push_token(
    State(verifier): State<PushVerifier>,
    mut request: Request,
    next: Next,
) -> Response {
    match verifier
        .verify(request.headers().get(header::AUTHORIZATION))
        .await
    {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// Middleware that lets a manual request through only with an operator's token
/// ([`PushVerifier::verify_operator`]); the verified claims are put in the request's extensions.
pub async fn require_operator_token(
    State(verifier): State<PushVerifier>,
    mut request: Request,
    next: Next,
) -> Response {
    match verifier
        .verify_operator(request.headers().get(header::AUTHORIZATION))
        .await
    {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Option<PushAuthConfig>, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        PushAuthConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn off_unless_configured() {
        assert_eq!(load(&[]).unwrap(), None);
    }

    #[test]
    fn both_variables_turn_it_on() {
        let config = load(&[
            ("PULSE_PUSH_AUDIENCE", "pulse-preprocess-push"),
            (
                "PULSE_PUSH_SERVICE_ACCOUNT",
                "push@p.iam.gserviceaccount.com",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.audience, "pulse-preprocess-push");
        assert_eq!(config.jwks_url, GOOGLE_JWKS_URL);
        assert!(!config.behind_cloud_run);
    }

    #[test]
    fn k_service_says_cloud_run_checked_the_signature() {
        let config = load(&[
            ("PULSE_PUSH_AUDIENCE", "a"),
            ("PULSE_PUSH_SERVICE_ACCOUNT", "s"),
            ("K_SERVICE", "pulse-preprocess"),
        ])
        .unwrap()
        .unwrap();
        assert!(config.behind_cloud_run);
    }

    #[test]
    fn half_a_configuration_names_what_is_missing() {
        let err = load(&[("PULSE_PUSH_AUDIENCE", "a")]).unwrap_err();
        assert!(
            err.to_string().contains("PULSE_PUSH_SERVICE_ACCOUNT"),
            "{err}"
        );
        let err = load(&[("PULSE_PUSH_SERVICE_ACCOUNT", "s")]).unwrap_err();
        assert!(err.to_string().contains("PULSE_PUSH_AUDIENCE"), "{err}");
    }

    #[test]
    fn operators_are_people_service_accounts_or_domains_never_the_push_identity() {
        let push = [
            ("PULSE_PUSH_AUDIENCE", "a"),
            (
                "PULSE_PUSH_SERVICE_ACCOUNT",
                "push@p.iam.gserviceaccount.com",
            ),
        ];
        let with = |operators: &str| {
            let mut vars = push.to_vec();
            vars.push(("PULSE_OPERATOR_PRINCIPALS", operators));
            load(&vars)
        };
        let config = with("user:Ann@example.com, serviceAccount:sched@p.iam.gserviceaccount.com,domain:ops.example")
            .unwrap()
            .unwrap();
        for email in [
            "ann@example.com",
            "sched@p.iam.gserviceaccount.com",
            "bo@ops.example",
        ] {
            assert!(config.operators.admit(email), "{email}");
        }
        for email in [
            "push@p.iam.gserviceaccount.com",
            "eve@example.com",
            "x@evil.ops.example",
        ] {
            assert!(!config.operators.admit(email), "{email}");
        }
        assert!(load(&push).unwrap().unwrap().operators.is_empty());
        let err = with("group:data-eng@example.com").unwrap_err();
        assert!(err.to_string().contains("groups"), "{err}");
        let err = with("serviceAccount:push@p.iam.gserviceaccount.com").unwrap_err();
        assert!(err.to_string().contains("push identity"), "{err}");
        let err = load(&[("PULSE_OPERATOR_PRINCIPALS", "user:a@b.c")]).unwrap_err();
        assert!(err.to_string().contains("PULSE_PUSH_AUDIENCE"), "{err}");
    }

    #[test]
    fn cache_control_max_age() {
        let google = "public, max-age=20723, must-revalidate, no-transform";
        assert_eq!(max_age(google), Some(Duration::from_secs(20723)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}
