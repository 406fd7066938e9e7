//! The local dashboard at the control port's root (`http://127.0.0.1:8080/`): pipeline health
//! from the functions' `/metrics`, rows per table and the curated views as charts (read through
//! table-manager's HTTP routes, never from the DuckDB file), and the recent dead letters, each
//! with a button that re-drives it through preprocess's `POST /replay`.

mod charts;
mod health;
mod page;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use maud::Markup;
use preprocess::ReplayReport;
use pulse_shared::delivery::answer::{self, ErrorAnswer};
use pulse_shared::delivery::deadletter::{DeadLetterRecord, DeadLetterStore};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

pub use health::History;

/// How many dead letters the page shows, newest first.
const RECENT_DEAD_LETTERS: usize = 20;

/// What the dashboard reads from, all of it the running stack.
#[derive(Clone)]
pub struct Dashboard {
    http: reqwest::Client,
    preprocess: String,
    table_manager: String,
    dead_letters: DeadLetterStore,
    history: History,
    data_dir: String,
}

impl Dashboard {
    /// A dashboard over the stack's functions; it scrapes their metrics from the returned task
    /// on, until the task is aborted.
    pub fn start(
        preprocess: SocketAddr,
        table_manager: SocketAddr,
        dead_letters: DeadLetterStore,
        data_dir: String,
    ) -> (Self, JoinHandle<()>) {
        let http = reqwest::Client::new();
        let history = History::default();
        let scraper = tokio::spawn(
            history
                .clone()
                .scrape_forever(http.clone(), format!("http://{preprocess}/metrics")),
        );
        let dashboard = Self {
            http,
            preprocess: format!("http://{preprocess}"),
            table_manager: format!("http://{table_manager}"),
            dead_letters,
            history,
            data_dir,
        };
        (dashboard, scraper)
    }

    /// `GET /` (the page) and `POST /dead-letters/replay` (its replay button).
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(show))
            .route("/dead-letters/replay", post(replay))
            .with_state(self)
    }

    /// Reads a JSON answer of table-manager.
    async fn table_manager<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let url = format!("{}{path}", self.table_manager);
        json_answer(self.http.get(&url), &url).await
    }

    /// The rows of a curated view, through table-manager.
    async fn view(&self, name: &str) -> Result<Vec<Map<String, Value>>, String> {
        self.table_manager(&format!("/views/{name}")).await
    }

    /// Dead-letter records by reason (all of them) and the newest ones with their names.
    async fn dead_letters(&self) -> Result<DeadLetters, String> {
        let prefix = self.dead_letters.prefix().to_owned();
        let mut names = self
            .dead_letters
            .list(&prefix)
            .await
            .map_err(|e| e.to_string())?;
        let mut by_reason = BTreeMap::new();
        for name in &names {
            let reason = name[prefix.len()..].split('/').next().unwrap_or_default();
            *by_reason.entry(reason.to_owned()).or_insert(0_u64) += 1;
        }
        // `<reason>/YYYY/MM/DD/<key>.json`: newest day first, then by name.
        names.sort_by_cached_key(|name| {
            let day: Vec<&str> = name[prefix.len()..].split('/').skip(1).take(3).collect();
            (std::cmp::Reverse(day.join("/")), name.clone())
        });
        let mut recent = Vec::new();
        for name in names.into_iter().take(RECENT_DEAD_LETTERS) {
            if let Some(record) = self
                .dead_letters
                .read(&name)
                .await
                .map_err(|e| e.to_string())?
            {
                recent.push((name, record));
            }
        }
        recent.sort_by(|a, b| b.1.dead_lettered_at.cmp(&a.1.dead_lettered_at));
        Ok(DeadLetters { by_reason, recent })
    }
}

/// The dead-letter store as the page shows it.
pub struct DeadLetters {
    pub by_reason: BTreeMap<String, u64>,
    /// Newest first: object name and record.
    pub recent: Vec<(String, DeadLetterRecord)>,
}

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "dashboard", responses((status = 200, description = "The page.", content_type = "text/html", body = String)))]
pub(crate) async fn show(State(dashboard): State<Dashboard>) -> Markup {
    page::render(&dashboard, None).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ReplayForm {
    /// The dead-letter object to re-drive.
    name: String,
}

/// What a replay button did, for the page's status line.
pub enum ReplayResult {
    Done { name: String, report: ReplayReport },
    Failed { name: String, why: String },
}

/// The page's replay button: re-drives one dead letter through preprocess, then shows the page
/// with what happened.
#[utoipa::path(
    post,
    path = "/dead-letters/replay",
    tag = "dashboard",
    request_body(content = ReplayForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The page, with the replay's result.", content_type = "text/html", body = String),
        (status = 400, description = "Not the page's form: no `name`.", body = ErrorAnswer<'static>),
    )
)]
pub(crate) async fn replay(
    State(dashboard): State<Dashboard>,
    form: Result<Form<ReplayForm>, FormRejection>,
) -> Response {
    // Only the page's own form posts here; anything else is told what the form is.
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => {
            return answer::error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected the page's form, `name=<dead-letter object>`: {}",
                    rejection.body_text()
                ),
            );
        }
    };
    let result = match call_replay(&dashboard, &form.name).await {
        Ok(report) => ReplayResult::Done {
            name: form.name,
            report,
        },
        Err(why) => ReplayResult::Failed {
            name: form.name,
            why,
        },
    };
    page::render(&dashboard, Some(result)).await.into_response()
}

/// Re-drives one dead letter: its full name is a prefix that lists only itself.
async fn call_replay(dashboard: &Dashboard, name: &str) -> Result<ReplayReport, String> {
    let url = format!("{}/replay", dashboard.preprocess);
    let request = dashboard
        .http
        .post(&url)
        .json(&json!({ "dead_letter_prefix": name }));
    json_answer(request, &url).await
}

/// The JSON answer to `request` (sent to `url`, which every error names), read when it is a
/// success; otherwise the status and the body the function answered.
async fn json_answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<T, String> {
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{url} answered {status}: {}", body.trim()));
    }
    response.json().await.map_err(|e| format!("{url}: {e}"))
}
