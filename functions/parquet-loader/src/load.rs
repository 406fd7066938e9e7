//! One landing object, start to finish: footer, schema check, table changes, the load into the
//! warehouse (and PostgreSQL), or quarantine. Every step may run again for the same object and
//! generation without loading anything twice.

use pulse_shared::error::BackendError;
use pulse_shared::metrics;
use pulse_shared::warehouse::{LoadError, Warehouse};
use serde::Serialize;

use crate::AppState;
use crate::check::{Plan, file_columns, plan};
use crate::footer::{Footer, FooterError, read_footer};
use crate::postgres::CopyError;
use crate::quarantine::{Refusal, RefusalCode, quarantine};
use crate::target::{Target, target};

/// The object to load: the event's view of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LandingObject {
    pub bucket: String,
    pub name: String,
    /// The generation to load; `None` (a manual reload) means the current one.
    pub generation: Option<i64>,
    /// The size the event reported, if any.
    pub size: Option<i64>,
}

/// What happened to an object; every variant is done with (2xx).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The rows are in every destination (now, or by an earlier delivery).
    Loaded {
        bucket: String,
        object: String,
        generation: i64,
        table: String,
        /// Rows in the file, as its footer states them.
        rows: u64,
        /// Bytes read from the object to check it (the footer); the data itself is read by the
        /// warehouse.
        footer_bytes_read: u64,
        destinations: Vec<Destination>,
    },
    /// The file was refused and moved to quarantine; nothing was loaded.
    Quarantined {
        bucket: String,
        object: String,
        generation: i64,
        reason: RefusalCode,
        detail: String,
        quarantine: String,
    },
    /// Not a file for this function (or gone); nothing was done.
    Ignored {
        bucket: String,
        object: String,
        reason: String,
    },
}

/// [`Destination::destination`] of the warehouse.
const WAREHOUSE_DESTINATION: &str = "warehouse";

/// One place the rows went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// `warehouse` or `postgresql`.
    pub destination: &'static str,
    /// The table, qualified as the destination names it.
    pub table: String,
    pub rows: u64,
    /// The load job (BigQuery), or the ledger key (DuckDB, PostgreSQL).
    pub job_id: String,
    /// True when an earlier delivery loaded it and this one loaded nothing.
    pub already_loaded: bool,
}

/// The load id of one generation of one object: BigQuery's job id, the ledgers' key. The same
/// object, name and generation always give the same id, so a redelivered event cannot load twice.
pub fn load_id(bucket: &str, name: &str, generation: i64) -> String {
    let key = format!("gs://{bucket}/{name}#{generation}");
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes());
    format!("pulse_load_{}", id.simple())
}

/// Loads `object`, quarantines it, or ignores it, and counts which. An `Err` is a failure a
/// retry may get past.
pub async fn load_object(
    state: &AppState,
    object: &LandingObject,
) -> Result<Outcome, BackendError> {
    let outcome = decide(state, object).await?;
    match &outcome {
        Outcome::Loaded {
            table,
            rows,
            destinations,
            ..
        } => {
            // Rows count once, in the warehouse, when this delivery committed them.
            let warehouse = destinations
                .iter()
                .find(|d| d.destination == WAREHOUSE_DESTINATION);
            match warehouse {
                Some(d) if d.already_loaded => metrics::load("already_loaded", None),
                _ => metrics::load("loaded", Some((table, *rows))),
            }
        }
        Outcome::Quarantined { .. } => metrics::load("quarantined", None),
        Outcome::Ignored { .. } => metrics::load("ignored", None),
    }
    Ok(outcome)
}

async fn decide(state: &AppState, object: &LandingObject) -> Result<Outcome, BackendError> {
    let settings = &state.inner;
    let config = &settings.config;
    if object.bucket != config.landing_bucket {
        return ignored(object, "not the landing bucket");
    }
    if object.size == Some(0) {
        return ignored(object, "a zero-byte object");
    }
    let table = match target(&config.landing_prefix, &object.name) {
        Target::Ignore(reason) => return ignored(object, reason),
        Target::BadTableName(name) => {
            let refusal = Refusal::new(
                RefusalCode::BadName,
                format!(
                    "table folder `{name}` is not a table name (a lower-case letter, then up to \
                     63 lower-case letters, digits or underscores)"
                ),
            );
            let generation = object.generation.unwrap_or(0);
            return refuse(state, object, generation, refusal).await;
        }
        Target::Table(table) => table,
    };
    let footer = match read_footer(
        &settings.objects,
        &object.bucket,
        &object.name,
        object.generation,
    )
    .await
    {
        Ok(footer) => footer,
        Err(FooterError::Missing) => {
            return ignored(object, "the object (or this generation) is gone");
        }
        Err(FooterError::Empty) => return ignored(object, "a zero-byte object"),
        Err(FooterError::Refused(refusal)) => {
            return refuse(state, object, object.generation.unwrap_or(0), refusal).await;
        }
        Err(FooterError::Backend(err)) => return Err(err),
    };
    match load_checked(state, object, &table, &footer).await? {
        Ok(destinations) => {
            tracing::info!(
                bucket = %object.bucket,
                object = %object.name,
                generation = footer.generation,
                table = %table,
                rows = footer.rows(),
                footer_bytes_read = footer.bytes_read,
                "loaded"
            );
            Ok(Outcome::Loaded {
                bucket: object.bucket.clone(),
                object: object.name.clone(),
                generation: footer.generation,
                table,
                rows: footer.rows(),
                footer_bytes_read: footer.bytes_read,
                destinations,
            })
        }
        Err(refusal) => refuse(state, object, footer.generation, refusal).await,
    }
}

/// Prepares the table and loads. The inner `Err` is a refusal: nothing was loaded.
async fn load_checked(
    state: &AppState,
    object: &LandingObject,
    table: &str,
    footer: &Footer,
) -> Result<Result<Vec<Destination>, Refusal>, BackendError> {
    let settings = &state.inner;
    let warehouse = &settings.warehouse;
    let columns = match file_columns(&footer.schema) {
        Ok(columns) => columns,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Err(refusal) = prepare_table(warehouse.as_ref(), table, &columns, state).await? {
        return Ok(Err(refusal));
    }
    let staged = match &settings.postgres {
        None => None,
        Some(postgres) => match postgres
            .stage(
                &settings.objects,
                (&object.bucket, &object.name),
                footer,
                table,
                &columns,
            )
            .await
        {
            Ok(staged) => Some(staged),
            Err(CopyError::Refused(refusal)) => return Ok(Err(refusal)),
            Err(CopyError::Backend(err)) => return Err(err),
        },
    };
    let id = load_id(&object.bucket, &object.name, footer.generation);
    let uri = settings.objects.uri(&object.bucket, &object.name);
    let loaded = match warehouse.load_parquet(table, &uri, &id).await {
        Ok(loaded) => loaded,
        Err(LoadError::Refused(detail)) => {
            return Ok(Err(Refusal::new(
                RefusalCode::Corrupt,
                format!("the warehouse could not read the file: {detail}"),
            )));
        }
        Err(LoadError::Backend(err)) => return Err(err),
    };
    let mut destinations = vec![Destination {
        destination: WAREHOUSE_DESTINATION,
        table: format!("{}.{table}", warehouse.dataset()),
        rows: loaded.rows,
        job_id: loaded.job_id,
        already_loaded: loaded.already_loaded,
    }];
    if let Some(staged) = staged {
        // Committed only now: had the warehouse refused the file, the copy would be rolled back.
        let destination = Destination {
            destination: "postgresql",
            table: staged.table.clone(),
            rows: staged.rows,
            job_id: id,
            already_loaded: staged.already_loaded,
        };
        staged.commit().await?;
        destinations.push(destination);
    }
    Ok(Ok(destinations))
}

/// Creates the table or adds the file's new columns. Another loader may create the table at the
/// same moment: the plan is made again against the table that won.
async fn prepare_table(
    warehouse: &dyn Warehouse,
    table: &str,
    columns: &[pulse_shared::warehouse::Column],
    state: &AppState,
) -> Result<Result<(), Refusal>, BackendError> {
    let partition = state.inner.config.landing_partition_column.as_deref();
    let existing = warehouse.table(table).await?;
    let additions = match plan(table, columns, existing.as_ref(), partition) {
        Err(refusal) => return Ok(Err(refusal)),
        Ok(Plan::Evolve(additions)) => additions,
        Ok(Plan::Create(spec)) => {
            let created = warehouse.ensure_table(&spec).await?;
            match plan(table, columns, Some(&created), partition) {
                Err(refusal) => return Ok(Err(refusal)),
                Ok(Plan::Evolve(additions)) => additions,
                Ok(Plan::Create(_)) => Vec::new(),
            }
        }
    };
    if !additions.is_empty() {
        warehouse.add_columns(table, &additions).await?;
    }
    Ok(Ok(()))
}

fn ignored(object: &LandingObject, reason: &str) -> Result<Outcome, BackendError> {
    tracing::info!(bucket = %object.bucket, object = %object.name, "ignored: {reason}");
    Ok(Outcome::Ignored {
        bucket: object.bucket.clone(),
        object: object.name.clone(),
        reason: reason.to_owned(),
    })
}

async fn refuse(
    state: &AppState,
    object: &LandingObject,
    generation: i64,
    refusal: Refusal,
) -> Result<Outcome, BackendError> {
    let config = &state.inner.config;
    let moved = quarantine(
        &state.inner.objects,
        (&config.landing_prefix, &config.quarantine_prefix),
        &object.bucket,
        &object.name,
        generation,
        &refusal,
    )
    .await?;
    tracing::warn!(
        bucket = %object.bucket,
        object = %object.name,
        reason = ?refusal.reason,
        quarantine = %moved,
        "refused: {}",
        refusal.detail
    );
    Ok(Outcome::Quarantined {
        bucket: object.bucket.clone(),
        object: object.name.clone(),
        generation,
        reason: refusal.reason,
        detail: refusal.detail,
        quarantine: moved,
    })
}
