//! One landing object, start to finish: footer, schema check, table changes, the load into the
//! warehouse (and PostgreSQL), or quarantine. Every step may run again for the same object and
//! generation without loading anything twice.

use pulse_shared::error::{BackendError, Retry};
use pulse_shared::metrics;
use pulse_shared::warehouse::{LoadError, LoadOutcome, Warehouse, is_literal_uri};
use serde::Serialize;

use crate::AppState;
use crate::check::{Plan, file_columns, plan};
use crate::footer::{Footer, FooterError, read_footer};
use crate::postgres::{CopyError, PostgresCopy};
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
        Target::BadTableName(detail) => {
            let refusal = Refusal::new(RefusalCode::BadName, detail);
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
    if settings.postgres.is_some()
        && let Err(refusal) = PostgresCopy::check_columns(&columns)
    {
        return Ok(Err(refusal));
    }
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
    let loaded = match load_literal(state, object, footer.generation, table, &id).await? {
        Ok(loaded) => loaded,
        Err(detail) => {
            return Ok(Err(Refusal::new(
                RefusalCode::Corrupt,
                format!("the warehouse could not read the file: {detail}"),
            )));
        }
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

/// Where an object is copied when its name is not literal to the warehouse: outside the landing
/// prefix and without `.parquet`, so neither the trigger nor the watcher takes it for a drop.
const STAGING_PREFIX: &str = "_pulse_staging/";

/// Loads the object's generation into `table`. An object whose name holds a pattern character
/// (`*`, `?`, `[`) is loaded from a copy named by the load id: the warehouses have no escape for
/// them, and must read this file and no other. The inner `Err` is the warehouse's refusal.
async fn load_literal(
    state: &AppState,
    object: &LandingObject,
    generation: i64,
    table: &str,
    id: &str,
) -> Result<Result<LoadOutcome, String>, BackendError> {
    let settings = &state.inner;
    let objects = &settings.objects;
    let uri = objects.uri(&object.bucket, &object.name);
    if is_literal_uri(&uri) {
        return finish_load(settings.warehouse.load_parquet(table, &uri, id).await);
    }
    let staged = format!("{STAGING_PREFIX}{id}");
    if !objects
        .copy(&object.bucket, &object.name, Some(generation), &staged)
        .await?
    {
        return Err(BackendError::new(
            format!("copy {} to {staged}", object.name),
            Retry::Transient,
            "the generation whose footer was read is gone; the redelivery finds out why",
        ));
    }
    let uri = objects.uri(&object.bucket, &staged);
    let loaded = finish_load(settings.warehouse.load_parquet(table, &uri, id).await)?;
    // Kept while a retry may still need it (a load job that is still running reads it).
    objects.delete(&object.bucket, &staged, None).await?;
    Ok(loaded)
}

fn finish_load(
    loaded: Result<LoadOutcome, LoadError>,
) -> Result<Result<LoadOutcome, String>, BackendError> {
    match loaded {
        Ok(loaded) => Ok(Ok(loaded)),
        Err(LoadError::Refused(detail)) => Ok(Err(detail)),
        Err(LoadError::Backend(err)) => Err(err),
    }
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
            let created = match refused_by_warehouse(warehouse.ensure_table(&spec).await)? {
                Ok(created) => created,
                Err(refusal) => return Ok(Err(refusal)),
            };
            match plan(table, columns, Some(&created), partition) {
                Err(refusal) => return Ok(Err(refusal)),
                Ok(Plan::Evolve(additions)) => additions,
                Ok(Plan::Create(_)) => Vec::new(),
            }
        }
    };
    if !additions.is_empty()
        && let Err(refusal) = refused_by_warehouse(warehouse.add_columns(table, &additions).await)?
    {
        return Ok(Err(refusal));
    }
    Ok(Ok(()))
}

/// A table change the warehouse refuses for what the file brings (a column it cannot hold)
/// refuses the file; any other failure stands.
fn refused_by_warehouse<T>(
    result: Result<T, BackendError>,
) -> Result<Result<T, Refusal>, BackendError> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(err) if err.retry == Retry::InvalidInput => Ok(Err(Refusal::new(
            RefusalCode::SchemaConflict,
            format!(
                "the warehouse cannot make the table hold this file: {}; nothing was loaded",
                err.message
            ),
        ))),
        Err(err) => Err(err),
    }
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
