//! What the loader makes of a landed file before any table is touched: the table it would create
//! in an empty warehouse, or why it would be quarantined. The same footer read and schema checks
//! as a load, without a warehouse: the entry point of the `parquet_footer` fuzz target (`fuzz/`).

use std::sync::Arc;

use pulse_shared::storage::ObjectStore;
use pulse_shared::warehouse::TableSpec;

use crate::check::{Plan, file_columns, plan};
use crate::footer::{FooterError, read_footer};
use crate::quarantine::Refusal;

/// The verdict on `bucket/name` loaded as `table` into an empty warehouse. `Err` when there is no
/// verdict to give: the object is gone or empty, or the store failed.
pub async fn inspect(
    objects: &Arc<dyn ObjectStore>,
    bucket: &str,
    name: &str,
    table: &str,
) -> anyhow::Result<Result<TableSpec, Refusal>> {
    let footer = match read_footer(objects, bucket, name, None).await {
        Ok(footer) => footer,
        Err(FooterError::Refused(refusal)) => return Ok(Err(refusal)),
        Err(FooterError::Missing) => anyhow::bail!("{bucket}/{name} is gone"),
        Err(FooterError::Empty) => anyhow::bail!("{bucket}/{name} is empty: nothing to load"),
        Err(FooterError::Backend(err)) => return Err(err.into()),
    };
    let columns = match file_columns(&footer.schema) {
        Ok(columns) => columns,
        Err(refusal) => return Ok(Err(refusal)),
    };
    match plan(table, &columns, None, None) {
        Ok(Plan::Create(spec)) => Ok(Ok(spec)),
        Ok(Plan::Evolve(_)) => anyhow::bail!("a plan to change `{table}`, which does not exist"),
        Err(refusal) => Ok(Err(refusal)),
    }
}
