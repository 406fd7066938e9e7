//! The PostgreSQL copy (Cloud SQL in production, `DATABASE_URL`): the file's rows streamed with
//! binary `COPY` in record batches, inside one transaction that also records the load in a
//! ledger keyed by (bucket, object, generation). The transaction is committed only after the
//! warehouse load succeeded, so a refused file leaves nothing here either.

mod cells;

use std::pin::pin;
use std::sync::Arc;

use futures_util::TryStreamExt as _;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use pulse_shared::error::{BackendError, Retry};
use pulse_shared::namespace::POSTGRES_IDENTIFIER_MAX;
use pulse_shared::storage::ObjectStore;
use pulse_shared::warehouse::Column;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::footer::Footer;
use crate::object_reader::ObjectReader;
use crate::quarantine::{Refusal, RefusalCode};
use cells::{Cells, pg_type};

/// Rows per record batch: bounded memory whatever the file size.
const BATCH_ROWS: usize = 8192;

/// Where the copies go.
#[derive(Clone)]
pub struct PostgresCopy {
    config: tokio_postgres::Config,
    schema: String,
}

/// A copy that is written but not yet committed; dropping it rolls it back.
pub struct Staged {
    client: Client,
    pub table: String,
    pub rows: u64,
    pub already_loaded: bool,
}

/// Why a copy did not happen.
pub enum CopyError {
    Refused(Refusal),
    Backend(BackendError),
}

impl From<BackendError> for CopyError {
    fn from(err: BackendError) -> Self {
        CopyError::Backend(err)
    }
}

impl PostgresCopy {
    /// Parses `DATABASE_URL`; tables go in the schema named like the warehouse dataset, which
    /// must then be a name PostgreSQL keeps whole (it cuts identifiers at 63 bytes).
    pub fn new(url: &str, schema: &str) -> anyhow::Result<Self> {
        if schema.len() > POSTGRES_IDENTIFIER_MAX {
            anyhow::bail!(
                "PULSE_DATASET {schema:?} has {} bytes: with DATABASE_URL set it names the \
                 PostgreSQL schema too, and PostgreSQL keeps only the first \
                 {POSTGRES_IDENTIFIER_MAX} bytes of a name",
                schema.len()
            );
        }
        let config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a PostgreSQL URL: {e}"))?;
        Ok(Self {
            config,
            schema: schema.to_owned(),
        })
    }

    /// Refuses a file with a column name PostgreSQL would cut short: it keeps the first 63
    /// bytes of an identifier, so two long names could meet in one column. Nested fields are
    /// `jsonb` keys there, of any length.
    pub fn check_columns(columns: &[Column]) -> Result<(), Refusal> {
        match columns
            .iter()
            .find(|c| c.name.len() > POSTGRES_IDENTIFIER_MAX)
        {
            Some(long) => Err(Refusal::new(
                RefusalCode::BadName,
                format!(
                    "column `{}` has {} bytes; the rows are copied to PostgreSQL, which keeps the \
                     first {POSTGRES_IDENTIFIER_MAX} bytes of a name (shorten it in the writer)",
                    long.name,
                    long.name.len()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Where the rows go, for start-up logs (no credentials).
    pub fn describe(&self) -> String {
        format!(
            "PostgreSQL (schema {}, database {:?})",
            self.schema,
            self.config.get_dbname()
        )
    }

    /// Copies the rows of the object into `table` (created or widened from `columns`) in an open
    /// transaction, unless the ledger shows this generation loaded already.
    pub async fn stage(
        &self,
        objects: &Arc<dyn ObjectStore>,
        (bucket, name): (&str, &str),
        footer: &Footer,
        table: &str,
        columns: &[Column],
    ) -> Result<Staged, CopyError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| backend("connect to PostgreSQL", &e))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!("PostgreSQL connection ended: {err}");
            }
        });
        let qualified = format!("{}.{}", quote(&self.schema), quote(table));
        let operation = format!("copy into {qualified}");
        let sql_failed = |e: tokio_postgres::Error| sql_error(&operation, &e);
        // The ledger outlives any one copy: created outside the copy's transaction.
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {schema}._pulse_parquet_loads (
                     bucket text NOT NULL, object text NOT NULL, generation bigint NOT NULL,
                     table_name text NOT NULL, rows bigint NOT NULL,
                     loaded_at timestamptz NOT NULL DEFAULT now(),
                     PRIMARY KEY (bucket, object, generation));",
                schema = quote(&self.schema)
            ))
            .await
            .map_err(sql_failed)?;
        client.batch_execute("BEGIN").await.map_err(sql_failed)?;
        // The ledger row first: a concurrent copy of the same generation waits here for the
        // first to commit, then finds it done.
        let claimed = client
            .query_opt(
                &format!(
                    "INSERT INTO {}._pulse_parquet_loads (bucket, object, generation, table_name, rows)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING rows",
                    quote(&self.schema)
                ),
                &[&bucket, &name, &footer.generation, &table, &i64::try_from(footer.rows()).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(sql_failed)?;
        if claimed.is_none() {
            let rows: i64 = client
                .query_one(
                    &format!(
                        "SELECT rows FROM {}._pulse_parquet_loads
                         WHERE bucket = $1 AND object = $2 AND generation = $3",
                        quote(&self.schema)
                    ),
                    &[&bucket, &name, &footer.generation],
                )
                .await
                .map_err(sql_failed)?
                .get(0);
            return Ok(Staged {
                client,
                table: qualified,
                rows: u64::try_from(rows).unwrap_or(0),
                already_loaded: true,
            });
        }
        client
            .batch_execute(&table_ddl(&qualified, columns))
            .await
            .map_err(sql_failed)?;
        let rows = copy_rows(
            &client,
            objects,
            (bucket, name),
            footer,
            &qualified,
            columns,
        )
        .await?;
        Ok(Staged {
            client,
            table: qualified,
            rows,
            already_loaded: false,
        })
    }
}

impl Staged {
    /// Makes the copy durable.
    pub async fn commit(self) -> Result<(), BackendError> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| backend(&format!("commit the copy into {}", self.table), &e))
    }
}

/// Creates the table from the file's columns, and adds those an existing table lacks.
fn table_ddl(qualified: &str, columns: &[Column]) -> String {
    let definitions: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), pg_type(c).1))
        .collect();
    let mut ddl = format!(
        "CREATE TABLE IF NOT EXISTS {qualified} ({});",
        definitions.join(", ")
    );
    for definition in definitions {
        ddl.push_str(&format!(
            "ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS {definition};"
        ));
    }
    ddl
}

async fn copy_rows(
    client: &Client,
    objects: &Arc<dyn ObjectStore>,
    (bucket, name): (&str, &str),
    footer: &Footer,
    qualified: &str,
    columns: &[Column],
) -> Result<u64, CopyError> {
    let operation = format!("copy into {qualified}");
    let corrupt = |e: &dyn std::fmt::Display| {
        CopyError::Refused(Refusal::new(
            RefusalCode::Corrupt,
            format!("the rows could not be read for PostgreSQL: {e}"),
        ))
    };
    let reader = ObjectReader {
        objects: objects.clone(),
        bucket: bucket.to_owned(),
        name: name.to_owned(),
        generation: footer.generation,
        metadata: footer.metadata.clone(),
    };
    let metadata = ArrowReaderMetadata::try_new(footer.metadata.clone(), ArrowReaderOptions::new())
        .map_err(|e| corrupt(&e))?;
    let mut batches = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| corrupt(&e))?;
    let names: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
    let sink = client
        .copy_in(&format!(
            "COPY {qualified} ({}) FROM STDIN (FORMAT binary)",
            names.join(", ")
        ))
        .await
        .map_err(|e| sql_error(&operation, &e))?;
    let types: Vec<_> = columns.iter().map(|c| pg_type(c).0).collect();
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    while let Some(batch) = batches.try_next().await.map_err(|e| match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<BackendError>() {
            Ok(err) => CopyError::Backend(*err),
            Err(other) => corrupt(&other),
        },
        other => corrupt(&other),
    })? {
        let cells: Vec<Cells> = columns
            .iter()
            .zip(batch.columns())
            .map(|(column, array)| Cells::new(column, array))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(&e))?;
        for row in 0..batch.num_rows() {
            let values: Vec<cells::Cell<'_>> = cells.iter().map(|c| c.at(row)).collect();
            writer
                .as_mut()
                .write_raw(values)
                .await
                .map_err(|e| sql_error(&operation, &e))?;
        }
    }
    writer
        .as_mut()
        .finish()
        .await
        .map_err(|e| sql_error(&operation, &e))
}

/// A PostgreSQL error: data the table cannot take refuses the file; a lost connection or a
/// server under pressure may pass; anything else waits for an operator (500).
fn sql_error(operation: &str, err: &tokio_postgres::Error) -> CopyError {
    let Some(code) = err.code() else {
        return CopyError::Backend(backend(operation, err));
    };
    let class = &code.code()[..2];
    match class {
        "22" | "23" => CopyError::Refused(Refusal::new(
            RefusalCode::Corrupt,
            format!("PostgreSQL refused the rows: {}", db_message(err)),
        )),
        _ if *code == SqlState::T_R_SERIALIZATION_FAILURE => {
            CopyError::Backend(backend(operation, err))
        }
        "08" | "40" | "53" | "57" | "58" => CopyError::Backend(backend(operation, err)),
        _ => CopyError::Backend(BackendError::new(
            operation,
            Retry::Permanent,
            db_message(err),
        )),
    }
}

fn db_message(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map_or_else(|| err.to_string(), |db| db.message().to_owned())
}

fn backend(operation: &str, err: &tokio_postgres::Error) -> BackendError {
    BackendError::new(operation, Retry::Transient, db_message(err))
}

/// A quoted identifier (names are checked before they get here; quoting is the second guard).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_name_postgresql_would_cut_short_stops_the_start() {
        let url = "postgres://loader@127.0.0.1/pulse";
        assert!(PostgresCopy::new(url, &"d".repeat(POSTGRES_IDENTIFIER_MAX)).is_ok());
        let Err(err) = PostgresCopy::new(url, &"d".repeat(POSTGRES_IDENTIFIER_MAX + 1)) else {
            panic!("a 64-byte schema name was taken");
        };
        assert!(err.to_string().contains("PULSE_DATASET"), "{err}");
    }
}
