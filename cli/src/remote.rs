//! How `pulse` talks to the functions of a running stack: the local one (`pulse up`, on its
//! conventional ports) or a deployment (each function's URL, by flag or environment), over the
//! same HTTP routes. Calls to `https://` URLs carry a Google ID token for that URL, as Cloud Run
//! requires: `PULSE_ID_TOKEN` when set (e.g. `$(gcloud auth print-identity-token)`), else one
//! from Application Default Credentials (a service account key, impersonation, the metadata
//! server, or the user of `gcloud auth application-default login`).
//!
//! Failures are typed by what a script should make of them ([`CallError`]): the service could
//! not be reached or failed (exit 3), or it refused the request (exit 4).

use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::idtoken::{self, IDTokenCredentials};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::stack::{
    CONTROL_PORT, INFERENCE_PORT, PARQUET_LOADER_PORT, PREDICTOR_PORT, PREPROCESS_PORT,
    TABLE_MANAGER_PORT,
};

/// The local stack's address of a function on `port`.
pub fn local_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Where table-manager answers.
#[derive(Clone, Debug, clap::Args)]
pub struct TableManagerUrl {
    /// table-manager's base URL (a deployed one: its Cloud Run URL).
    #[arg(id = "table_manager_url", long = "table-manager", env = "PULSE_TABLE_MANAGER_URL", value_name = "URL",
          default_value_t = local_url(TABLE_MANAGER_PORT))]
    pub url: String,
}

/// Where preprocess answers.
#[derive(Clone, Debug, clap::Args)]
pub struct PreprocessUrl {
    /// preprocess's base URL.
    #[arg(id = "preprocess_url", long = "preprocess", env = "PULSE_PREPROCESS_URL", value_name = "URL",
          default_value_t = local_url(PREPROCESS_PORT))]
    pub url: String,
}

/// Where parquet-loader answers.
#[derive(Clone, Debug, clap::Args)]
pub struct ParquetLoaderUrl {
    /// parquet-loader's base URL.
    #[arg(id = "parquet_loader_url", long = "parquet-loader", env = "PULSE_PARQUET_LOADER_URL", value_name = "URL",
          default_value_t = local_url(PARQUET_LOADER_PORT))]
    pub url: String,
}

/// Where every function of a stack answers, for `pulse status`.
#[derive(Clone, Debug, clap::Args)]
pub struct AllUrls {
    #[command(flatten)]
    pub preprocess: PreprocessUrl,
    #[command(flatten)]
    pub table_manager: TableManagerUrl,
    #[command(flatten)]
    pub parquet_loader: ParquetLoaderUrl,
    /// inference's base URL.
    #[arg(long, env = "PULSE_INFERENCE_URL", value_name = "URL",
          default_value_t = local_url(INFERENCE_PORT))]
    pub inference: String,
    /// The predictor's base URL (the local stand-in for Vertex AI; `none` to leave it out).
    #[arg(long, env = "PULSE_PREDICTOR_URL", value_name = "URL",
          default_value_t = local_url(PREDICTOR_PORT))]
    pub predictor: String,
    /// The local stack's own endpoint (dashboard, publish API, bus backlog); `none` for a
    /// deployment.
    #[arg(long, env = "PULSE_CONTROL_URL", value_name = "URL",
          default_value_t = local_url(CONTROL_PORT))]
    pub control: String,
}

/// Why a call to a function gave no answer to use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Nothing answered (connection refused, a timeout): the stack is not running there, or
    /// the network is in the way.
    #[error(
        "{url}: {message} (is the stack running? start it with `pulse up`, or point pulse \
             at a deployment with the function's URL flag)"
    )]
    Unreachable { url: String, message: String },
    /// The function refused the request (4xx): the same request fails again.
    #[error("{url} refused the request ({status}): {body}")]
    Refused {
        url: String,
        status: StatusCode,
        body: String,
    },
    /// The function failed (5xx) or answered something unreadable; it may pass later.
    #[error("{url} failed ({status}): {body}")]
    Failed {
        url: String,
        status: StatusCode,
        body: String,
    },
    /// No ID token for a deployed service.
    #[error("no ID token for {audience}: {message}")]
    NoToken { audience: String, message: String },
}

/// One function's HTTP API.
#[derive(Clone)]
pub struct Remote {
    base: String,
    http: reqwest::Client,
    /// ID tokens for `https://` services, made on first use.
    tokens: Arc<OnceCell<Option<Tokens>>>,
}

#[derive(Clone)]
enum Tokens {
    Fixed(String),
    Adc(IDTokenCredentials),
}

/// How long one call may take: a little over the functions' own request deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(75);

impl Remote {
    /// The function at `base` (e.g. `http://127.0.0.1:8082`, `https://table-manager-….run.app`).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            tokens: Arc::default(),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, read as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        let request = self.http.get(self.url(path));
        self.json(path, request).await
    }

    /// `GET path` with a query string, read as JSON.
    pub async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &impl Serialize,
    ) -> Result<T, CallError> {
        let request = self.http.get(self.url(path)).query(query);
        self.json(path, request).await
    }

    /// `POST path` with `body` as JSON, read as JSON.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, CallError> {
        let request = self.http.post(self.url(path)).json(body);
        self.json(path, request).await
    }

    /// `GET path` as text, whatever the status: `(status, body)`.
    pub async fn get_text(&self, path: &str) -> Result<(StatusCode, String), CallError> {
        let request = self.authorised(self.http.get(self.url(path))).await?;
        let url = self.url(path);
        let response = request
            .send()
            .await
            .map_err(|err| unreachable(&url, &err))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| unreachable(&url, &err))?;
        Ok((status, text))
    }

    /// Sends `request` and reads the answer: `(status, JSON)` for a 2xx, else the error.
    pub async fn send(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, String), CallError> {
        let url = self.url(path);
        let response = self
            .authorised(request)
            .await?
            .send()
            .await
            .map_err(|err| unreachable(&url, &err))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .map_err(|err| unreachable(&url, &err))?;
        if status.is_client_error() {
            return Err(CallError::Refused {
                url,
                status,
                body: body.trim().to_owned(),
            });
        }
        if !status.is_success() {
            return Err(CallError::Failed {
                url,
                status,
                body: body.trim().to_owned(),
            });
        }
        Ok((status, headers, body))
    }

    /// A request builder for `POST path` (for callers that read the status themselves).
    pub fn post_request(&self, path: &str, body: &impl Serialize) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).json(body)
    }

    /// A request builder for `GET path`.
    pub fn get_request(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let (status, _, body) = self.send(path, request).await?;
        parse(&self.url(path), status, &body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Adds an ID token to calls to an `https://` service.
    async fn authorised(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, CallError> {
        if !self.base.starts_with("https://") {
            return Ok(request);
        }
        let audience = self.base.clone();
        let tokens = self
            .tokens
            .get_or_try_init(|| async { id_tokens(&audience).map(Some) })
            .await?;
        let token = match tokens {
            Some(Tokens::Fixed(token)) => token.clone(),
            Some(Tokens::Adc(credentials)) => {
                credentials
                    .id_token()
                    .await
                    .map_err(|err| CallError::NoToken {
                        audience: audience.clone(),
                        message: err.to_string(),
                    })?
            }
            None => return Ok(request),
        };
        Ok(request.bearer_auth(token))
    }
}

/// Reads a 2xx body as `T`; a body that is not what the route answers is a failure.
pub fn parse<T: DeserializeOwned>(
    url: &str,
    status: StatusCode,
    body: &str,
) -> Result<T, CallError> {
    serde_json::from_str(body).map_err(|err| CallError::Failed {
        url: url.to_owned(),
        status,
        body: format!("the answer is not what pulse expects ({err}): {body}"),
    })
}

fn unreachable(url: &str, err: &reqwest::Error) -> CallError {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    CallError::Unreachable {
        url: url.to_owned(),
        message,
    }
}

/// ID tokens for `audience`: `PULSE_ID_TOKEN`, else Application Default Credentials.
fn id_tokens(audience: &str) -> Result<Tokens, CallError> {
    if let Some(token) = std::env::var("PULSE_ID_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Tokens::Fixed(token.trim().to_owned()));
    }
    let no_token = |message: String| CallError::NoToken {
        audience: audience.to_owned(),
        message: format!(
            "{message}; run `gcloud auth application-default login`, or set PULSE_ID_TOKEN to \
             `$(gcloud auth print-identity-token)`"
        ),
    };
    // `gcloud auth application-default login` leaves user credentials, which the ADC builder
    // leaves to the user-account builder.
    if let Some(user) = user_credentials() {
        return idtoken::user_account::Builder::new(user)
            .build()
            .map(Tokens::Adc)
            .map_err(|err| no_token(err.to_string()));
    }
    idtoken::Builder::new(audience)
        .build()
        .map(Tokens::Adc)
        .map_err(|err| no_token(err.to_string()))
}

/// The ADC file's contents when they are a user's credentials (`authorized_user`).
fn user_credentials() -> Option<serde_json::Value> {
    let path = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let config = std::env::var_os("CLOUDSDK_CONFIG")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|home| std::path::PathBuf::from(home).join(".config/gcloud"))
                })?;
            Some(config.join("application_default_credentials.json"))
        })?;
    let contents: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (contents["type"] == "authorized_user").then_some(contents)
}
