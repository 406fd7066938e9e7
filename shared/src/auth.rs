//! OAuth access tokens for the Google REST APIs that have no official Rust client yet
//! (BigQuery through `gcp-bigquery-client`, Vertex AI prediction), from the official
//! `google-cloud-auth` crate: Application Default Credentials, i.e. the service account of the
//! Cloud Run service. Emulators take no token.
//!
//! A Cloud Run service that requires authentication (the built-in predictor) takes no access
//! token: only an ID token whose audience is its URL, which [`MetadataIdTokens`] gets from the
//! metadata server, as a service running on Cloud Run does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use google_cloud_auth::credentials::{AccessTokenCredentials, Builder};
use tokio::sync::Mutex;

use crate::error::{BackendError, Retry};

/// Where access tokens come from.
#[derive(Clone, Debug)]
pub enum AccessTokens {
    /// Application Default Credentials with these scopes (cached and refreshed by the crate).
    Google(AccessTokenCredentials),
    /// A token obtained elsewhere (`gcloud auth print-access-token`, a test), used as is.
    Fixed(String),
    /// An emulator: requests carry no credentials worth the name.
    Anonymous,
    /// ID tokens for one audience from the metadata server: calls to a Cloud Run service.
    IdToken(MetadataIdTokens),
}

impl AccessTokens {
    /// Application Default Credentials for `scopes`, e.g.
    /// `https://www.googleapis.com/auth/cloud-platform`.
    pub fn google(scopes: &[&str]) -> anyhow::Result<Self> {
        let credentials = Builder::default()
            .with_scopes(scopes.iter().copied())
            .build_access_token_credentials()
            .map_err(|e| {
                anyhow::anyhow!(
                    "no Google credentials ({e}); on Cloud Run the service account provides \
                     them, elsewhere run `gcloud auth application-default login`"
                )
            })?;
        Ok(Self::Google(credentials))
    }

    /// A bearer token for the next request.
    pub async fn token(&self) -> Result<String, BackendError> {
        match self {
            AccessTokens::Google(credentials) => credentials
                .access_token()
                .await
                .map(|token| token.token)
                .map_err(|e| {
                    // The metadata server or token endpoint may be briefly unavailable.
                    let retry = if e.is_transient() {
                        Retry::Transient
                    } else {
                        Retry::Permanent
                    };
                    BackendError::new("get an OAuth access token", retry, e)
                }),
            AccessTokens::Fixed(token) => Ok(token.clone()),
            AccessTokens::Anonymous => Ok("anonymous".to_owned()),
            AccessTokens::IdToken(tokens) => tokens.token().await,
        }
    }
}

/// Google ID tokens live an hour; one is reused for this long.
const ID_TOKEN_REUSE: Duration = Duration::from_secs(45 * 60);
/// Deadline of one metadata server request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// ID tokens of the service's own account for `audience`, from the metadata server
/// (`GCE_METADATA_HOST`, else `metadata.google.internal`): what Cloud Run accepts from another
/// service. Off Google Cloud there is no metadata server and every call fails as transient.
#[derive(Clone, Debug)]
pub struct MetadataIdTokens {
    audience: String,
    url: String,
    http: reqwest::Client,
    cached: Arc<Mutex<Option<(String, Instant)>>>,
}

impl MetadataIdTokens {
    /// Tokens for `audience` (a Cloud Run service's URL).
    pub fn new(audience: &str) -> anyhow::Result<Self> {
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| "metadata.google.internal".to_owned());
        let http = reqwest::Client::builder()
            .timeout(METADATA_TIMEOUT)
            .build()?;
        Ok(Self {
            audience: audience.to_owned(),
            url: format!(
                "http://{host}/computeMetadata/v1/instance/service-accounts/default/identity"
            ),
            http,
            cached: Arc::default(),
        })
    }

    async fn token(&self) -> Result<String, BackendError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, at)) = cached.as_ref()
            && at.elapsed() < ID_TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let operation = || {
            format!(
                "get an ID token for {} from the metadata server",
                self.audience
            )
        };
        let response = self
            .http
            .get(&self.url)
            .query(&[("audience", self.audience.as_str())])
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| BackendError::new(operation(), Retry::Transient, e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| BackendError::new(operation(), Retry::Transient, e))?;
        if !status.is_success() {
            let retry = Retry::from_http_status(status.as_u16());
            return Err(BackendError::new(
                operation(),
                retry,
                format!("{status}: {body}"),
            ));
        }
        let token = body.trim().to_owned();
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}
