//! The local warehouse: an embedded DuckDB file (`$PULSE_DATA_DIR/warehouse.duckdb`), one schema
//! per dataset. DuckDB has no partitions or clustering: the table comment records them (as JSON)
//! so `GET /tables` shows what BigQuery would have, and the row-id column is the primary key, so
//! `INSERT OR IGNORE` drops repeats.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use duckdb::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schema::{Addition, Column, ColumnType, Mode, TableSpec, columns_from_arrow};
use super::{InsertError, LoadError, LoadOutcome, Row, TableSummary, Warehouse};
use crate::error::{BackendError, Retry};

/// A DuckDB database shared by every function of the local stack (one process may open the
/// file once; every caller gets its own connection to it).
#[derive(Clone)]
pub struct DuckDbWarehouse {
    inner: Arc<Inner>,
}

struct Inner {
    dataset: String,
    path: String,
    /// The first connection: others are cloned from it (a second `open` of the same file in
    /// one process would be refused by DuckDB's file lock).
    root: Mutex<Connection>,
    /// Idle connections, reused; DuckDB runs statements of different connections in parallel.
    idle: Mutex<Vec<Connection>>,
    /// The `json_transform` structure of each table's rows, built from its columns.
    structures: Mutex<HashMap<String, Arc<String>>>,
}

/// What the table comment holds: what DuckDB itself has no place for.
#[derive(Default, Serialize, Deserialize)]
struct TableComment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition_column: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clustering: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    row_id_column: Option<String>,
}

impl DuckDbWarehouse {
    /// Opens (or creates) the database file and the dataset's schema.
    pub fn open(path: &Path, dataset: &str) -> Result<Self, BackendError> {
        let operation = || format!("open DuckDB {}", path.display());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BackendError::io(operation(), &e))?;
        }
        let connection = Connection::open(path).map_err(|e| classify(operation(), &e))?;
        connection
            .execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {};", quote(dataset)))
            .map_err(|e| classify(operation(), &e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dataset: dataset.to_owned(),
                path: path.display().to_string(),
                root: Mutex::new(connection),
                idle: Mutex::default(),
                structures: Mutex::default(),
            }),
        })
    }

    /// Runs `work` on a pooled connection on the blocking thread pool.
    async fn with_connection<T, F>(&self, operation: String, work: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T, duckdb::Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut connection = inner.checkout().map_err(|e| classify(&operation, &e))?;
            let result = work(&mut connection, &inner).map_err(|e| classify(&operation, &e));
            inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
            result
        });
        task.await.map_err(|e| {
            BackendError::new("run a DuckDB statement", Retry::Transient, e.to_string())
        })?
    }

    fn table_name(&self, table: &str) -> String {
        format!("{}.{}", quote(&self.inner.dataset), quote(table))
    }
}

impl Inner {
    fn checkout(&self) -> Result<Connection, duckdb::Error> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(connection) => Ok(connection),
            None => self
                .root
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_clone(),
        }
    }

    fn forget_structure(&self, table: &str) {
        self.structures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(table);
    }

    /// Reads a table's columns, descriptions and comment.
    fn describe(
        &self,
        connection: &Connection,
        table: &str,
    ) -> Result<Option<TableSpec>, duckdb::Error> {
        let comment: Option<Option<String>> = connection
            .prepare(
                "SELECT comment FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
            )?
            .query_map(params![self.dataset, table], |row| row.get(0))?
            .next()
            .transpose()?;
        let Some(comment) = comment else {
            return Ok(None);
        };
        let comment: TableComment = comment
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();

        let schema = connection
            .prepare(&format!(
                "SELECT * FROM {}.{} LIMIT 0",
                quote(&self.dataset),
                quote(table)
            ))?
            .query_arrow([])?
            .get_schema();
        let mut columns = columns_from_arrow(schema.fields());

        let mut details = connection.prepare(
            "SELECT column_name, data_type, comment, is_nullable FROM duckdb_columns() \
             WHERE schema_name = ? AND table_name = ?",
        )?;
        let details = details.query_map(params![self.dataset, table], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, bool>(3)?,
            ))
        })?;
        for detail in details {
            let (name, data_type, comment, nullable) = detail?;
            if let Some(column) = columns.iter_mut().find(|c| c.name == name) {
                // Arrow sees JSON as text; the catalogue knows better.
                if data_type == "JSON" || data_type == "JSON[]" {
                    column.kind = ColumnType::Json;
                }
                if !nullable && column.mode == Mode::Nullable {
                    column.mode = Mode::Required;
                }
                column.description = comment.filter(|c| !c.is_empty());
            }
        }
        Ok(Some(TableSpec {
            name: table.to_owned(),
            description: comment.description,
            columns,
            partition_column: comment.partition_column,
            clustering: comment.clustering,
            row_id_column: comment.row_id_column,
        }))
    }

    /// The `json_transform` structure that turns a JSON array of rows into typed rows.
    fn structure(&self, spec: &TableSpec) -> Arc<String> {
        let structure = Arc::new(
            Value::Array(vec![Value::Object(
                spec.columns
                    .iter()
                    .map(|c| (c.name.clone(), json_structure(c)))
                    .collect(),
            )])
            .to_string(),
        );
        self.structures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.name.clone(), structure.clone());
        structure
    }

    fn cached_structure(&self, table: &str) -> Option<Arc<String>> {
        self.structures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
            .cloned()
    }
}

#[async_trait]
impl Warehouse for DuckDbWarehouse {
    fn dataset(&self) -> &str {
        &self.inner.dataset
    }

    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSpec, BackendError> {
        let spec = spec.clone();
        let name = self.table_name(&spec.name);
        self.with_connection(format!("create table {name}"), move |connection, inner| {
            let transaction = connection.transaction()?;
            if let Some(existing) = inner.describe(&transaction, &spec.name)? {
                return Ok(existing);
            }
            transaction.execute_batch(&create_table_sql(&name, &spec))?;
            let comment = TableComment {
                description: spec.description.clone(),
                partition_column: spec.partition_column.clone(),
                clustering: spec.clustering.clone(),
                row_id_column: spec.row_id_column.clone(),
            };
            let comment = serde_json::to_string(&comment).unwrap_or_default();
            transaction.execute_batch(&format!(
                "COMMENT ON TABLE {name} IS {};",
                literal(&comment)
            ))?;
            for column in &spec.columns {
                if let Some(description) = &column.description {
                    transaction.execute_batch(&format!(
                        "COMMENT ON COLUMN {name}.{} IS {};",
                        quote(&column.name),
                        literal(description)
                    ))?;
                }
            }
            let created = inner.describe(&transaction, &spec.name)?;
            transaction.commit()?;
            created.ok_or(duckdb::Error::QueryReturnedNoRows)
        })
        .await
    }

    async fn table(&self, name: &str) -> Result<Option<TableSpec>, BackendError> {
        let table = name.to_owned();
        self.with_connection(
            format!("describe table {}", self.table_name(name)),
            move |connection, inner| inner.describe(connection, &table),
        )
        .await
    }

    async fn add_columns(
        &self,
        table: &str,
        additions: &[Addition],
    ) -> Result<TableSpec, BackendError> {
        let table = table.to_owned();
        let name = self.table_name(&table);
        let additions = additions.to_vec();
        self.with_connection(
            format!("add columns to {name}"),
            move |connection, inner| {
                inner.forget_structure(&table);
                let transaction = connection.transaction()?;
                for addition in &additions {
                    let path: Vec<String> = addition
                        .parents
                        .iter()
                        .chain([&addition.column.name])
                        .map(|part| quote(part))
                        .collect();
                    transaction.execute_batch(&format!(
                        "ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {} {};",
                        path.join("."),
                        sql_type(&addition.column)
                    ))?;
                    if let (true, Some(description)) =
                        (addition.parents.is_empty(), &addition.column.description)
                    {
                        transaction.execute_batch(&format!(
                            "COMMENT ON COLUMN {name}.{} IS {};",
                            path.join("."),
                            literal(description)
                        ))?;
                    }
                }
                transaction.commit()?;
                inner
                    .describe(connection, &table)?
                    .ok_or(duckdb::Error::QueryReturnedNoRows)
            },
        )
        .await
    }

    async fn insert_rows(&self, table: &str, rows: &[Row]) -> Result<(), InsertError> {
        let table_owned = table.to_owned();
        let name = self.table_name(table);
        let rows: Vec<String> = rows
            .iter()
            .map(|row| Value::Object(row.values.clone()).to_string())
            .collect();
        let outcome = self
            .with_connection(format!("insert into {name}"), move |connection, inner| {
                let structure = match inner.cached_structure(&table_owned) {
                    Some(structure) => structure,
                    None => match inner.describe(connection, &table_owned)? {
                        Some(spec) => inner.structure(&spec),
                        None => return Err(duckdb::Error::QueryReturnedNoRows),
                    },
                };
                let sql = format!(
                    "INSERT OR IGNORE INTO {name} BY NAME \
                     SELECT unnest(r) FROM (SELECT unnest(json_transform(?::JSON, {})) AS r)",
                    literal(&structure)
                );
                let batch = format!("[{}]", rows.join(","));
                match connection.execute(&sql, params![batch]) {
                    Ok(_) => Ok(Vec::new()),
                    Err(err) if classify("", &err).retry == Retry::Permanent => {
                        refused_rows(connection, &sql, &rows, err)
                    }
                    Err(err) => Err(err),
                }
            })
            .await;
        match outcome {
            Ok(refused) if refused.is_empty() => Ok(()),
            Ok(refused) => Err(InsertError::RowsRefused(refused)),
            Err(err) => {
                self.inner.forget_structure(table);
                Err(err.into())
            }
        }
    }

    async fn load_parquet(
        &self,
        table: &str,
        uri: &str,
        load_id: &str,
    ) -> Result<LoadOutcome, LoadError> {
        let name = self.table_name(table);
        let (table, uri, load_id) = (table.to_owned(), uri.to_owned(), load_id.to_owned());
        let operation = format!("load {uri} into {name}");
        self.with_connection(operation, move |connection, _| {
            connection.execute_batch(LOAD_LEDGER)?;
            let loaded = |connection: &Connection| -> Result<Option<u64>, duckdb::Error> {
                connection
                    .prepare("SELECT rows FROM _pulse.parquet_loads WHERE load_id = ?")?
                    .query_map(params![load_id], |row| row.get::<_, u64>(0))?
                    .next()
                    .transpose()
            };
            let outcome = |rows, already_loaded| LoadOutcome {
                rows,
                job_id: load_id.clone(),
                already_loaded,
            };
            if let Some(rows) = loaded(connection)? {
                return Ok(outcome(rows, true));
            }
            let result = (|| -> Result<u64, duckdb::Error> {
                let transaction = connection.transaction()?;
                let rows = transaction.execute(
                    &format!("INSERT INTO {name} BY NAME SELECT * FROM read_parquet({})", literal(&uri)),
                    [],
                )?;
                let rows = u64::try_from(rows).unwrap_or(u64::MAX);
                transaction.execute(
                    "INSERT INTO _pulse.parquet_loads (load_id, table_name, uri, rows) VALUES (?, ?, ?, ?)",
                    params![load_id, table, uri, rows],
                )?;
                transaction.commit()?;
                Ok(rows)
            })();
            match result {
                Ok(rows) => Ok(outcome(rows, false)),
                // A concurrent load of the same id committed first: its rows stand.
                Err(err) => match loaded(connection)? {
                    Some(rows) => Ok(outcome(rows, true)),
                    None => Err(err),
                },
            }
        })
        .await
        .map_err(LoadError::from_backend)
    }

    async fn list_tables(&self) -> Result<Vec<TableSummary>, BackendError> {
        let dataset = self.inner.dataset.clone();
        self.with_connection(
            format!("list tables of {dataset}"),
            move |connection, inner| {
                let names: Vec<String> = connection
                    .prepare(
                        "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? \
                     ORDER BY table_name",
                    )?
                    .query_map(params![dataset], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut tables = Vec::with_capacity(names.len());
                for name in names {
                    let Some(spec) = inner.describe(connection, &name)? else {
                        continue;
                    };
                    let rows: i64 = connection.query_row(
                        &format!("SELECT count(*) FROM {}.{}", quote(&dataset), quote(&name)),
                        [],
                        |row| row.get(0),
                    )?;
                    tables.push(TableSummary {
                        spec,
                        rows: u64::try_from(rows).ok(),
                    });
                }
                Ok(tables)
            },
        )
        .await
    }

    async fn query(&self, sql: &str) -> Result<Vec<Map<String, Value>>, BackendError> {
        // `to_json` of each row keeps nested types and the warehouse's own formatting.
        let wrapped = format!("SELECT to_json(q)::VARCHAR FROM ({sql}) AS q");
        let texts: Vec<String> = self
            .with_connection("run a query".to_owned(), move |connection, _| {
                connection
                    .prepare(&wrapped)?
                    .query_map([], |row| row.get(0))?
                    .collect()
            })
            .await?;
        // Every row or an error: a result that silently lost rows would be believed.
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                serde_json::from_str(text).map_err(|err| {
                    BackendError::new(
                        "run a query",
                        Retry::Permanent,
                        format!(
                            "row {index} of the result is not a JSON object ({err}): DuckDB \
                             writes NaN and Infinity as they are, which JSON cannot hold; \
                             leave them out or cast them in the query, e.g. \
                             CASE WHEN isnan(x) THEN NULL ELSE x END"
                        ),
                    )
                })
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "DuckDB {} (dataset {})",
            self.inner.path, self.inner.dataset
        )
    }
}

/// The ledger of Parquet loads, one row per load id, outside the dataset so that it is not
/// listed among its tables.
const LOAD_LEDGER: &str = "CREATE SCHEMA IF NOT EXISTS _pulse;
    CREATE TABLE IF NOT EXISTS _pulse.parquet_loads (
        load_id VARCHAR PRIMARY KEY, table_name VARCHAR NOT NULL, uri VARCHAR NOT NULL,
        rows UBIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp);";

/// After a permanent batch failure: which rows fail on their own (each tried in a transaction
/// that is rolled back, so nothing is written). If none does alone, the batch error stands.
fn refused_rows(
    connection: &mut Connection,
    sql: &str,
    rows: &[String],
    batch_error: duckdb::Error,
) -> Result<Vec<(usize, String)>, duckdb::Error> {
    let mut refused = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let transaction = connection.transaction()?;
        if let Err(err) = transaction.execute(sql, params![format!("[{row}]")]) {
            refused.push((index, err.to_string()));
        }
        transaction.rollback()?;
    }
    if refused.is_empty() {
        Err(batch_error)
    } else {
        Ok(refused)
    }
}

fn create_table_sql(name: &str, spec: &TableSpec) -> String {
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|column| {
            let mut definition = format!("{} {}", quote(&column.name), sql_type(column));
            if spec.row_id_column.as_deref() == Some(column.name.as_str()) {
                definition.push_str(" PRIMARY KEY");
            } else if column.mode == Mode::Required {
                definition.push_str(" NOT NULL");
            }
            definition
        })
        .collect();
    format!("CREATE TABLE {name} ({});", columns.join(", "))
}

/// A column's DuckDB type, lists included.
fn sql_type(column: &Column) -> String {
    let element = match &column.kind {
        ColumnType::String => "VARCHAR".to_owned(),
        ColumnType::Int64 => "BIGINT".to_owned(),
        ColumnType::Float64 => "DOUBLE".to_owned(),
        ColumnType::Numeric => "DECIMAL(38, 9)".to_owned(),
        // DuckDB's widest decimal has 38 digits: BIGNUMERIC keeps 18 of them after the point.
        ColumnType::BigNumeric => "DECIMAL(38, 18)".to_owned(),
        ColumnType::Bool => "BOOLEAN".to_owned(),
        ColumnType::Bytes => "BLOB".to_owned(),
        ColumnType::Timestamp => "TIMESTAMPTZ".to_owned(),
        ColumnType::Datetime => "TIMESTAMP".to_owned(),
        ColumnType::Date => "DATE".to_owned(),
        ColumnType::Time => "TIME".to_owned(),
        ColumnType::Json => "JSON".to_owned(),
        ColumnType::Record(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", quote(&f.name), sql_type(f)))
                .collect();
            format!("STRUCT({})", fields.join(", "))
        }
    };
    if column.mode == Mode::Repeated {
        format!("{element}[]")
    } else {
        element
    }
}

/// A column's shape for `json_transform`.
fn json_structure(column: &Column) -> Value {
    let element = match &column.kind {
        ColumnType::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|f| (f.name.clone(), json_structure(f)))
                .collect(),
        ),
        _ => Value::String(sql_type(&Column {
            mode: Mode::Nullable,
            ..column.clone()
        })),
    };
    if column.mode == Mode::Repeated {
        Value::Array(vec![element])
    } else {
        element
    }
}

/// A quoted identifier. Names are validated before they get here; quoting is the second guard.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// DuckDB's transaction conflicts and I/O troubles may pass; anything else (a binder,
/// conversion or constraint error) will fail the same way again.
fn classify(operation: impl Into<String>, err: &duckdb::Error) -> BackendError {
    let message = err.to_string();
    let transient = [
        "Conflict",
        "TransactionContext",
        "IO Error",
        "Out of Memory",
        "lock",
    ]
    .iter()
    .any(|marker| message.contains(marker));
    let retry = if transient {
        Retry::Transient
    } else {
        Retry::Permanent
    };
    BackendError::new(operation, retry, message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;
    use serde_json::json;

    fn open() -> (tempfile::TempDir, DuckDbWarehouse) {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = DuckDbWarehouse::open(&dir.path().join("w.duckdb"), "pulse").unwrap();
        (dir, warehouse)
    }

    #[tokio::test]
    async fn a_row_that_is_not_json_fails_the_query_instead_of_vanishing() {
        let (_dir, warehouse) = open();
        let rows = warehouse
            .query("SELECT * FROM (VALUES (1, 1.5), (2, 'NaN'::DOUBLE)) AS t(n, x) ORDER BY n")
            .await;
        let err = rows.unwrap_err();
        assert_eq!(err.retry, Retry::Permanent);
        assert!(err.to_string().contains("row 1 of the result"), "{err}");
        let rows = warehouse
            .query("SELECT 1 AS n, 'x' AS s UNION ALL SELECT 2, 'y' ORDER BY n")
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[tokio::test]
    async fn bignumeric_and_time_columns_round_trip() {
        let (_dir, warehouse) = open();
        let spec = TableSpec {
            name: "prices".to_owned(),
            description: None,
            columns: vec![
                Column::new("id", ColumnType::String, Mode::Required),
                Column::new("amount", ColumnType::BigNumeric, Mode::Nullable),
                Column::new("opens", ColumnType::Time, Mode::Nullable),
                Column::new("price", ColumnType::Numeric, Mode::Nullable),
            ],
            partition_column: None,
            clustering: Vec::new(),
            row_id_column: Some("id".to_owned()),
        };
        assert_eq!(warehouse.ensure_table(&spec).await.unwrap(), spec);
        assert_eq!(warehouse.table("prices").await.unwrap(), Some(spec));
        let values = json!({"id": "a", "amount": 12.345678901234567, "opens": "09:30:15.5"});
        let row = Row {
            id: "a".to_owned(),
            values: serde_json::from_value(values).unwrap(),
        };
        warehouse.insert_rows("prices", &[row]).await.unwrap();
        let rows = warehouse
            .query("SELECT amount::VARCHAR AS amount, opens FROM pulse.prices")
            .await
            .unwrap();
        assert_eq!(
            Value::Object(rows[0].clone()),
            json!({"amount": "12.345678901234567000", "opens": "09:30:15.5"})
        );
    }
}
