//! OAuth access tokens for the Google REST APIs that have no official Rust client yet
//! (BigQuery through `gcp-bigquery-client`, Vertex AI prediction), from the official
//! `google-cloud-auth` crate: Application Default Credentials, i.e. the service account of the
//! Cloud Run service. Emulators take no token.

use google_cloud_auth::credentials::{AccessTokenCredentials, Builder};

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
        }
    }
}
