//! Manual table management over HTTP: `GET /tables` lists the dataset's tables (schema,
//! partitioning, clustering, rows where cheap); `POST /tables/{event_type}:ensure` creates or
//! evolves an event type's table (and its deduplicated view) from a sample event or from
//! BigQuery-style columns.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pulse_shared::delivery::answer;
use pulse_shared::delivery::answer::ErrorAnswer;
use pulse_shared::error::FunctionError;
use pulse_shared::registry::identifiers::is_valid_event_type;
use pulse_shared::warehouse::dedup::EVENT_ROWS;
use pulse_shared::warehouse::{Addition, Column, Mode, TableSpec, TableSummary};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::{AppState, event_table};

/// Lists the dataset's tables: columns (BigQuery's JSON schema shape), partitioning,
/// clustering, and rows where the warehouse says cheaply.
#[utoipa::path(
    get,
    path = "/tables",
    tag = "tables",
    responses(
        (status = 200, description = "One object per table: `name`, `description`, `columns`, `partition_column`, `clustering`, `row_id_column`, `rows`.", body = [Object]),
        (status = 503, description = "The warehouse is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<TableSummary>>, FunctionError> {
    Ok(Json(state.inner.warehouse.list_tables().await?))
}

/// The body of `POST /tables/{event_type}:ensure`: one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsureRequest {
    /// An event of the type: columns are taken from the registry and inferred from its fields.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub sample: Option<Map<String, Value>>,
    /// Columns in BigQuery's JSON schema shape, beyond the ingest metadata columns.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub columns: Option<Vec<Column>>,
}

/// What `:ensure` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnsureReport {
    /// The table as it is now.
    #[schema(value_type = Object)]
    pub table: TableSpec,
    /// Columns added by this call.
    pub added: Vec<String>,
    /// Requested columns that exist with another type or mode, left as they are.
    pub conflicts: Vec<String>,
}

/// Creates or evolves an event type's table (and its deduplicated view) from a sample event or
/// from columns; never changes a column's type.
#[utoipa::path(
    post,
    path = "/tables/{action}",
    tag = "tables",
    params(("action" = String, Path, description = "`{event_type}:ensure`, e.g. `order:ensure`.")),
    request_body(content = Option<EnsureRequest>, description = "Optional: without a body, the registry's columns."),
    responses(
        (status = 200, description = "The table holds the requested columns.", body = EnsureReport),
        (status = 400, description = "Not an event type, or a bad body: what to fix.", body = ErrorAnswer<'static>),
        (status = 409, description = "Some requested columns exist with another type; the rest were added.", body = EnsureReport),
        (status = 503, description = "The warehouse is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn ensure(
    State(state): State<AppState>,
    Path(action): Path<String>,
    body: Option<answer::Json<EnsureRequest>>,
) -> Result<(StatusCode, Json<EnsureReport>), FunctionError> {
    let Some(event_type) = action.strip_suffix(":ensure") else {
        return Err(FunctionError::BadRequest(format!(
            "unknown action {action:?}: use POST /tables/{{event_type}}:ensure"
        )));
    };
    if !is_valid_event_type(event_type) {
        return Err(FunctionError::BadRequest(format!(
            "{event_type:?} is not an event type (lower-case letter, then up to 63 lower-case \
             letters, digits or underscores)"
        )));
    }
    let request = body
        .map(|answer::Json(body)| body)
        .unwrap_or(EnsureRequest {
            sample: None,
            columns: None,
        });
    let wanted = match (request.sample, request.columns) {
        (Some(sample), None) => event_table::table_spec(event_type, &sample),
        (None, Some(columns)) => event_table::table_spec_from_columns(event_type, columns),
        (None, None) => event_table::table_spec(event_type, &Map::new()),
        (Some(_), Some(_)) => {
            return Err(FunctionError::BadRequest(
                "send either `sample` or `columns`, not both".to_owned(),
            ));
        }
    };
    let warehouse = &state.inner.warehouse;
    let mut table = warehouse.ensure_table(&wanted).await?;
    warehouse
        .ensure_unique_view(&table.name, EVENT_ROWS)
        .await?;

    let mut additions = Vec::new();
    let mut conflicts = Vec::new();
    for column in &wanted.columns {
        match table.column(&column.name) {
            None => additions.push(Addition {
                parents: Vec::new(),
                // A column added to a table with rows cannot be REQUIRED.
                column: Column {
                    mode: if column.mode == Mode::Required {
                        Mode::Nullable
                    } else {
                        column.mode
                    },
                    ..column.clone()
                },
            }),
            Some(existing) if existing.kind != column.kind => conflicts.push(format!(
                "{} is {} in the table, {} in the request",
                column.name,
                existing.kind.bigquery_name(),
                column.kind.bigquery_name()
            )),
            Some(_) => {}
        }
    }
    let added: Vec<String> = additions.iter().map(ToString::to_string).collect();
    if !additions.is_empty() {
        table = warehouse.add_columns(&table.name, &additions).await?;
        tracing::info!(table = %table.name, "added columns {} by request", added.join(", "));
    }
    let status = if conflicts.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((
        status,
        Json(EnsureReport {
            table,
            added,
            conflicts,
        }),
    ))
}
