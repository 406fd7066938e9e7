//! Table schemas as both warehouses see them (BigQuery's column model: a type, a mode, nested
//! records), what a column becomes when it is inferred from a JSON value, and how a row is fitted
//! to a schema: which columns it would add, or which value conflicts with its column.

use std::collections::{HashMap, HashSet};
use std::fmt;

use arrow_schema::{DataType, Field, Fields};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::instant;

/// A column's type. Records hold their own columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    /// An exact decimal (BigQuery NUMERIC; DuckDB DECIMAL(38, 9)).
    Numeric,
    /// A wider exact decimal (BigQuery BIGNUMERIC, 38 digits after the point; DuckDB, whose
    /// decimals stop at 38 digits in all, holds it as DECIMAL(38, 18)).
    BigNumeric,
    Bool,
    /// Base64 in JSON rows.
    Bytes,
    /// An instant, UTC.
    Timestamp,
    /// A wall-clock date and time without a zone.
    Datetime,
    Date,
    /// A time of day without a date or zone.
    Time,
    /// Any JSON document, kept as it came (free-form objects such as `metadata`).
    Json,
    Record(Vec<Column>),
}

impl ColumnType {
    /// BigQuery's name for the type.
    pub fn bigquery_name(&self) -> &'static str {
        match self {
            ColumnType::String => "STRING",
            ColumnType::Int64 => "INTEGER",
            ColumnType::Float64 => "FLOAT",
            ColumnType::Numeric => "NUMERIC",
            ColumnType::BigNumeric => "BIGNUMERIC",
            ColumnType::Bool => "BOOLEAN",
            ColumnType::Bytes => "BYTES",
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::Datetime => "DATETIME",
            ColumnType::Date => "DATE",
            ColumnType::Time => "TIME",
            ColumnType::Json => "JSON",
            ColumnType::Record(_) => "RECORD",
        }
    }
}

/// Whether a column may be null, must be set, or holds a list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    #[default]
    Nullable,
    Required,
    Repeated,
}

/// One column; serialised in BigQuery's `TableFieldSchema` shape
/// (`{"name", "type", "mode", "description", "fields"}`), which `POST /tables/…:ensure` accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireColumn", into = "WireColumn")]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
    pub mode: Mode,
    pub description: Option<String>,
}

impl Column {
    pub fn new(name: impl Into<String>, kind: ColumnType, mode: Mode) -> Self {
        Self {
            name: name.into(),
            kind,
            mode,
            description: None,
        }
    }

    pub fn described(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

#[derive(Serialize, Deserialize)]
struct WireColumn {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fields: Vec<Column>,
}

impl TryFrom<WireColumn> for Column {
    type Error = String;
    fn try_from(wire: WireColumn) -> Result<Self, String> {
        if let Some(problem) = column_name_problem(&wire.name) {
            return Err(problem);
        }
        let kind = match wire.kind.to_ascii_uppercase().as_str() {
            "STRING" => ColumnType::String,
            "INTEGER" | "INT64" => ColumnType::Int64,
            "FLOAT" | "FLOAT64" => ColumnType::Float64,
            "NUMERIC" | "DECIMAL" => ColumnType::Numeric,
            "BIGNUMERIC" | "BIGDECIMAL" => ColumnType::BigNumeric,
            "BOOLEAN" | "BOOL" => ColumnType::Bool,
            "BYTES" => ColumnType::Bytes,
            "TIMESTAMP" => ColumnType::Timestamp,
            "DATETIME" => ColumnType::Datetime,
            "DATE" => ColumnType::Date,
            "TIME" => ColumnType::Time,
            "JSON" => ColumnType::Json,
            "RECORD" | "STRUCT" if !wire.fields.is_empty() => ColumnType::Record(wire.fields),
            "RECORD" | "STRUCT" => {
                return Err(format!("record column `{}` needs `fields`", wire.name));
            }
            // GEOGRAPHY, INTERVAL, RANGE, …: refused by name rather than guessed at, so a schema
            // read never loses a column (a schema patch built from it would drop it).
            other => {
                return Err(format!(
                    "column `{}` has type {other}, which Pulse does not support",
                    wire.name
                ));
            }
        };
        Ok(Self {
            name: wire.name,
            kind,
            mode: wire.mode.unwrap_or_default(),
            description: wire.description,
        })
    }
}

impl From<Column> for WireColumn {
    fn from(column: Column) -> Self {
        let kind = column.kind.bigquery_name().to_owned();
        let fields = match column.kind {
            ColumnType::Record(fields) => fields,
            _ => Vec::new(),
        };
        Self {
            name: column.name,
            kind,
            mode: Some(column.mode),
            description: column.description,
            fields,
        }
    }
}

/// The longest column name BigQuery takes.
pub const MAX_COLUMN_NAME: usize = 300;

/// Prefixes BigQuery keeps for its own pseudo-columns (compared without case).
const RESERVED_COLUMN_PREFIXES: &[&str] = &[
    "_table_",
    "_file_",
    "_partition",
    "_row_timestamp",
    "__root__",
    "_colon_",
];

/// True for a name every warehouse takes as a column: `^[A-Za-z_][A-Za-z0-9_]{0,299}$`
/// (BigQuery's rule, which DuckDB and PostgreSQL take quoted), outside BigQuery's reserved
/// prefixes.
pub fn is_valid_column_name(name: &str) -> bool {
    column_name_problem(name).is_none()
}

/// Why `name` cannot be a column, or `None` when it can.
pub fn column_name_problem(name: &str) -> Option<String> {
    let shown = || {
        let mut shown: String = name.chars().take(64).collect();
        if shown.len() < name.len() {
            shown.push('…');
        }
        format!("{shown:?}")
    };
    let well_formed = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Some(format!(
            "column name {} must be letters, digits and underscores, starting with a letter or \
             `_`",
            shown()
        ));
    }
    if name.len() > MAX_COLUMN_NAME {
        return Some(format!(
            "column name {} has {} characters; at most {MAX_COLUMN_NAME}",
            shown(),
            name.len()
        ));
    }
    let lower = name.to_ascii_lowercase();
    if let Some(prefix) = RESERVED_COLUMN_PREFIXES
        .iter()
        .find(|prefix| lower.starts_with(**prefix))
    {
        return Some(format!(
            "column name {} starts with `{prefix}`, which BigQuery keeps for its own columns",
            shown()
        ));
    }
    None
}

/// Checks every column name of a table, nested ones too: each a valid name, and unique at its
/// level without regard to case (BigQuery and DuckDB compare column names without case, so `Foo`
/// beside `foo` fails the CREATE, and an `ADD COLUMN` of one beside the other does nothing),
/// and at most [`MAX_TABLE_COLUMNS`] in all. The one check of table-manager, inference and parquet-loader, and of both warehouses before
/// they create or change a table.
pub fn check_columns(columns: &[Column]) -> Result<(), String> {
    let width = count_columns(columns);
    if width > MAX_TABLE_COLUMNS {
        return Err(format!(
            "the table would have {width} columns (nested ones included); BigQuery holds at most \
             {MAX_TABLE_COLUMNS}"
        ));
    }
    check_level(columns, &mut Vec::new())
}

fn check_level(columns: &[Column], path: &mut Vec<String>) -> Result<(), String> {
    let mut seen: HashMap<String, &str> = HashMap::with_capacity(columns.len());
    for column in columns {
        if let Some(problem) = column_name_problem(&column.name) {
            return Err(at(path, problem));
        }
        if let Some(earlier) = seen.insert(column.name.to_ascii_lowercase(), &column.name) {
            return Err(at(
                path,
                format!(
                    "columns `{earlier}` and `{}` differ only in case, which the warehouses \
                     take as one name",
                    column.name
                ),
            ));
        }
        if let ColumnType::Record(fields) = &column.kind {
            if fields.is_empty() {
                return Err(at(
                    path,
                    format!("record column `{}` has no fields", column.name),
                ));
            }
            path.push(column.name.clone());
            check_level(fields, path)?;
            path.pop();
        }
    }
    Ok(())
}

fn at(path: &[String], problem: String) -> String {
    if path.is_empty() {
        problem
    } else {
        format!("in record `{}`: {problem}", path.join("."))
    }
}

/// Everything a table is created from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub columns: Vec<Column>,
    /// A DATE (or TIMESTAMP) column the table is partitioned on by day.
    #[serde(default)]
    pub partition_column: Option<String>,
    #[serde(default)]
    pub clustering: Vec<String>,
    /// The column whose value is each row's insert id: BigQuery drops repeats carrying the same
    /// `insertId`; the local warehouse makes it the primary key and ignores repeats.
    #[serde(default)]
    pub row_id_column: Option<String>,
}

impl TableSpec {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A column to add: `parents` names the records it sits in (empty for a top-level column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addition {
    pub parents: Vec<String>,
    pub column: Column,
}

impl fmt::Display for Addition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for parent in &self.parents {
            write!(f, "{parent}.")?;
        }
        write!(
            f,
            "{} {}",
            self.column.name,
            self.column.kind.bigquery_name()
        )
    }
}

/// Adds `additions` to `columns` in place (what a warehouse does on `add_columns`). An addition
/// whose column already exists is skipped.
pub fn apply_additions(columns: &mut Vec<Column>, additions: &[Addition]) {
    // The names at each level touched, gathered once: checking each addition against a scan of
    // its level was quadratic in a wide row's new fields.
    let mut names: HashMap<&[String], HashSet<String>> = HashMap::new();
    for addition in additions {
        let Some(level) = columns_at(columns, &addition.parents) else {
            continue;
        };
        let known = names
            .entry(&addition.parents)
            .or_insert_with(|| level.iter().map(|c| c.name.clone()).collect());
        if known.insert(addition.column.name.clone()) {
            level.push(addition.column.clone());
        }
    }
}

/// The most columns a table may have, nested ones included: BigQuery's limit, kept on every
/// warehouse ([`check_columns`]), so a row or file that would widen its table past it is refused
/// alone, and the width every later row is fitted against stays bounded.
pub const MAX_TABLE_COLUMNS: usize = 10_000;

/// How many columns `columns` hold, nested ones included.
fn count_columns(columns: &[Column]) -> usize {
    columns
        .iter()
        .map(|column| match &column.kind {
            ColumnType::Record(fields) => 1 + count_columns(fields),
            _ => 1,
        })
        .sum()
}

/// The columns of the record at `parents` (the top level when empty).
fn columns_at<'a>(columns: &'a mut Vec<Column>, parents: &[String]) -> Option<&'a mut Vec<Column>> {
    match parents.split_first() {
        None => Some(columns),
        Some((first, rest)) => match columns.iter_mut().find(|c| &c.name == first) {
            Some(Column {
                kind: ColumnType::Record(fields),
                ..
            }) => columns_at(fields, rest),
            _ => None,
        },
    }
}

/// The column a field becomes when its table has none for it. `None` for values that say
/// nothing about their type (null, `[]`, `{}`): they are left out of the row until they do.
pub fn infer_column(name: &str, value: &Value) -> Option<Column> {
    let (kind, mode) = match value {
        Value::Array(items) => {
            let element = infer_element(name, items)?;
            (element, Mode::Repeated)
        }
        other => (infer_scalar(name, other)?, Mode::Nullable),
    };
    Some(Column::new(name, kind, mode))
}

fn infer_scalar(name: &str, value: &Value) -> Option<ColumnType> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => ColumnType::Bool,
        Value::Number(n) if n.is_i64() || n.is_u64() => ColumnType::Int64,
        Value::Number(_) => ColumnType::Float64,
        Value::String(s) if is_timestamp_like(name) && instant::parse_storable(s).is_ok() => {
            ColumnType::Timestamp
        }
        Value::String(_) => ColumnType::String,
        Value::Object(fields) => {
            let columns: Vec<Column> = fields
                .iter()
                .filter(|(key, _)| is_valid_column_name(key))
                .filter_map(|(key, value)| infer_column(key, value))
                .collect();
            if columns.is_empty()
                || columns.len() != fields.len()
                || check_columns(&columns).is_err()
            {
                // Empty, or with keys that cannot be column names (or only apart in case): keep
                // it whole as JSON.
                return if fields.is_empty() {
                    None
                } else {
                    Some(ColumnType::Json)
                };
            }
            ColumnType::Record(columns)
        }
        // Arrays of arrays have no column type of their own: JSON keeps them.
        Value::Array(_) => ColumnType::Json,
    })
}

/// The element type of an array: the type every non-null element agrees on, else JSON.
fn infer_element(name: &str, items: &[Value]) -> Option<ColumnType> {
    let mut kinds = items.iter().filter_map(|item| infer_scalar(name, item));
    let first = kinds.next()?;
    let widened = kinds.try_fold(first, |acc, kind| match (acc, kind) {
        (a, b) if a == b => Some(a),
        (ColumnType::Int64, ColumnType::Float64) | (ColumnType::Float64, ColumnType::Int64) => {
            Some(ColumnType::Float64)
        }
        _ => None,
    });
    Some(widened.unwrap_or(ColumnType::Json))
}

/// The columns of an Arrow schema (what DuckDB reports, and what a Parquet file holds).
pub fn columns_from_arrow(fields: &Fields) -> Vec<Column> {
    fields
        .iter()
        .map(|field| column_from_arrow(field))
        .collect()
}

fn column_from_arrow(field: &Field) -> Column {
    let mode = if field.is_nullable() {
        Mode::Nullable
    } else {
        Mode::Required
    };
    match field.data_type() {
        DataType::List(element)
        | DataType::LargeList(element)
        | DataType::ListView(element)
        | DataType::LargeListView(element)
        | DataType::FixedSizeList(element, _) => {
            let kind = match element.data_type() {
                // A list of lists has no BigQuery column type: JSON keeps it.
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
                    ColumnType::Json
                }
                _ => column_from_arrow(element).kind,
            };
            Column::new(field.name(), kind, Mode::Repeated)
        }
        other => Column::new(field.name(), arrow_type(other), mode),
    }
}

fn arrow_type(data_type: &DataType) -> ColumnType {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::String,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => ColumnType::Int64,
        DataType::UInt64 => ColumnType::Numeric,
        DataType::Decimal32(precision, scale)
        | DataType::Decimal64(precision, scale)
        | DataType::Decimal128(precision, scale)
        | DataType::Decimal256(precision, scale) => decimal_type(*precision, *scale),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float64,
        DataType::Boolean => ColumnType::Bool,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => ColumnType::Bytes,
        DataType::Timestamp(_, Some(_)) => ColumnType::Timestamp,
        DataType::Timestamp(_, None) => ColumnType::Datetime,
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Time32(_) | DataType::Time64(_) => ColumnType::Time,
        DataType::Struct(fields) => ColumnType::Record(columns_from_arrow(fields)),
        DataType::Dictionary(_, values) => arrow_type(values),
        // Maps, unions, intervals, durations: kept whole as JSON.
        _ => ColumnType::Json,
    }
}

/// A decimal's column type, as BigQuery chooses it for a Parquet DECIMAL: NUMERIC when at most
/// 29 digits come before the point and 9 after, else BIGNUMERIC.
fn decimal_type(precision: u8, scale: i8) -> ColumnType {
    let integer_digits = i16::from(precision) - i16::from(scale);
    if (0..=9).contains(&scale) && integer_digits <= 29 {
        ColumnType::Numeric
    } else {
        ColumnType::BigNumeric
    }
}

/// Field names whose RFC 3339 strings become TIMESTAMP columns.
fn is_timestamp_like(name: &str) -> bool {
    name == "timestamp"
        || name.ends_with("_at")
        || name.ends_with("_time")
        || name.ends_with("_ts")
        || name.ends_with("_timestamp")
}

/// How a row fits its table.
#[derive(Debug, PartialEq)]
pub enum Fit {
    /// The row fits once these columns exist (none in steady state). The row has been cleaned:
    /// nulls, `[]` and `{}` without a column are left out.
    Fits(Vec<Addition>),
    /// A value conflicts with its column: the row cannot be written.
    Conflict(String),
}

/// Fits `row` to `columns`, cleaning it in place.
pub fn fit_row(columns: &[Column], row: &mut Map<String, Value>) -> Fit {
    let mut additions = Vec::new();
    match fit_record(columns, row, &mut Vec::new(), &mut additions) {
        Ok(()) => Fit::Fits(additions),
        Err(conflict) => Fit::Conflict(conflict),
    }
}

/// The columns of one record level, found by name: a scan for the few columns most records have,
/// a hash map past that, so fitting a row of n fields to m columns costs O(n + m), not O(n·m)
/// (a wide event took seconds of an async worker).
struct Level<'c> {
    columns: &'c [Column],
    by_name: Option<HashMap<&'c str, &'c Column>>,
    /// Lower-cased names of the columns and of the new fields so far, made at the first new
    /// field (steady-state rows have none).
    folded: Option<HashMap<String, String>>,
}

/// Levels of up to this many columns are scanned.
const SCAN_MAX: usize = 16;

impl<'c> Level<'c> {
    fn new(columns: &'c [Column]) -> Self {
        let by_name = (columns.len() > SCAN_MAX)
            .then(|| columns.iter().map(|c| (c.name.as_str(), c)).collect());
        Self {
            columns,
            by_name,
            folded: None,
        }
    }

    fn get(&self, name: &str) -> Option<&'c Column> {
        match &self.by_name {
            Some(by_name) => by_name.get(name).copied(),
            None => self.columns.iter().find(|c| c.name == name),
        }
    }

    /// The column or earlier new field that `name` (not a column) differs from only in case.
    fn same_but_case(&mut self, name: &str) -> Option<&str> {
        let columns = self.columns;
        self.folded
            .get_or_insert_with(|| {
                columns
                    .iter()
                    .map(|c| (c.name.to_ascii_lowercase(), c.name.clone()))
                    .collect()
            })
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Records a new field that becomes a column (after [`Self::same_but_case`] found none).
    fn add_new(&mut self, name: &str) {
        if let Some(folded) = &mut self.folded {
            folded.insert(name.to_ascii_lowercase(), name.to_owned());
        }
    }
}

fn fit_record(
    columns: &[Column],
    row: &mut Map<String, Value>,
    path: &mut Vec<String>,
    additions: &mut Vec<Addition>,
) -> Result<(), String> {
    for column in columns {
        if column.mode == Mode::Required && row.get(&column.name).is_none_or(Value::is_null) {
            return Err(format!(
                "field `{}` is required by its column but missing",
                dotted(path, &column.name)
            ));
        }
    }
    let mut uninferable = Vec::new();
    let mut level = Level::new(columns);
    for (name, value) in row.iter_mut() {
        match level.get(name) {
            Some(column) => {
                path.push(name.clone());
                fit_value(column, value, path, additions)?;
                path.pop();
            }
            None => {
                if let Some(problem) = column_name_problem(name) {
                    return Err(format!(
                        "field `{}` cannot be a column: {problem}",
                        dotted(path, name)
                    ));
                }
                if value.is_null() {
                    uninferable.push(name.clone());
                    continue;
                }
                if let Some(same) = level.same_but_case(name) {
                    return Err(format!(
                        "field `{}` differs from `{same}` only in case, which the warehouses \
                         take as one column name",
                        dotted(path, name)
                    ));
                }
                match infer_column(name, value) {
                    Some(column) => {
                        level.add_new(name);
                        additions.push(Addition {
                            parents: path.clone(),
                            column,
                        });
                    }
                    None => uninferable.push(name.clone()),
                }
            }
        }
    }
    for name in uninferable {
        row.remove(&name);
    }
    Ok(())
}

fn fit_value(
    column: &Column,
    value: &mut Value,
    path: &mut Vec<String>,
    additions: &mut Vec<Addition>,
) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    if column.mode == Mode::Repeated {
        let Value::Array(items) = value else {
            return Err(conflict(path, column, value));
        };
        for item in items.iter_mut() {
            if item.is_null() {
                return Err(format!(
                    "field `{}` holds a null in a list, which a REPEATED column cannot store",
                    path.join(".")
                ));
            }
            fit_scalar(column, item, path, additions)?;
        }
        return Ok(());
    }
    fit_scalar(column, value, path, additions)
}

fn fit_scalar(
    column: &Column,
    value: &mut Value,
    path: &mut Vec<String>,
    additions: &mut Vec<Addition>,
) -> Result<(), String> {
    let fits = match (&column.kind, &mut *value) {
        (ColumnType::Json, _) => true,
        (ColumnType::String | ColumnType::Bytes, Value::String(_)) => true,
        (ColumnType::Int64, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (ColumnType::Float64 | ColumnType::Numeric | ColumnType::BigNumeric, Value::Number(_)) => {
            true
        }
        (ColumnType::Bool, Value::Bool(_)) => true,
        (ColumnType::Timestamp, Value::String(s)) => instant::parse_storable(s).is_ok(),
        (ColumnType::Datetime, Value::String(s)) => {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
                || NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok()
        }
        (ColumnType::Date, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        (ColumnType::Time, Value::String(s)) => NaiveTime::parse_from_str(s, "%H:%M:%S%.f").is_ok(),
        (ColumnType::Record(fields), Value::Object(object)) => {
            fit_record(fields, object, path, additions)?;
            true
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(conflict(path, column, value))
    }
}

fn conflict(path: &[String], column: &Column, value: &Value) -> String {
    let what = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a fractional number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    let mode = if column.mode == Mode::Repeated {
        "REPEATED "
    } else {
        ""
    };
    format!(
        "field `{}` is {what}, which does not fit its {mode}{} column; the table is left as \
         it is (change the producer, or replay after migrating the column)",
        path.join("."),
        column.kind.bigquery_name()
    )
}

fn dotted(path: &[String], name: &str) -> String {
    path.iter()
        .map(String::as_str)
        .chain([name])
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        serde_json::from_value(value).expect("a JSON object")
    }

    #[test]
    fn inference_covers_every_json_shape() {
        let infer = |name: &str, value: Value| infer_column(name, &value).map(|c| (c.kind, c.mode));
        assert_eq!(
            infer("n", json!(3)),
            Some((ColumnType::Int64, Mode::Nullable))
        );
        assert_eq!(
            infer("x", json!(3.5)),
            Some((ColumnType::Float64, Mode::Nullable))
        );
        assert_eq!(
            infer("ok", json!(true)),
            Some((ColumnType::Bool, Mode::Nullable))
        );
        assert_eq!(
            infer("s", json!("a")),
            Some((ColumnType::String, Mode::Nullable))
        );
        let instant = json!("2026-11-21T10:00:00Z");
        assert_eq!(
            infer("seen_at", instant.clone()),
            Some((ColumnType::Timestamp, Mode::Nullable))
        );
        assert_eq!(
            infer("label", instant),
            Some((ColumnType::String, Mode::Nullable))
        );
        assert_eq!(
            infer("tags", json!(["a", "b"])),
            Some((ColumnType::String, Mode::Repeated))
        );
        assert_eq!(
            infer("xs", json!([1, 2.5])),
            Some((ColumnType::Float64, Mode::Repeated))
        );
        assert_eq!(
            infer("mixed", json!([1, "a"])),
            Some((ColumnType::Json, Mode::Repeated))
        );
        assert_eq!(
            infer("nested", json!([[1]])),
            Some((ColumnType::Json, Mode::Repeated))
        );
        assert_eq!(infer("none", json!(null)), None);
        assert_eq!(infer("empty", json!([])), None);
        assert_eq!(infer("empty", json!({})), None);
        assert_eq!(
            infer("odd", json!({"not a name": 1})),
            Some((ColumnType::Json, Mode::Nullable))
        );
        assert_eq!(
            infer("geo", json!({"lat": 1.5, "tags": ["x"]})),
            Some((
                ColumnType::Record(vec![
                    Column::new("lat", ColumnType::Float64, Mode::Nullable),
                    Column::new("tags", ColumnType::String, Mode::Repeated),
                ]),
                Mode::Nullable
            ))
        );
    }

    fn columns() -> Vec<Column> {
        vec![
            Column::new("id", ColumnType::String, Mode::Required),
            Column::new("n", ColumnType::Int64, Mode::Nullable),
            Column::new("x", ColumnType::Float64, Mode::Nullable),
            Column::new(
                "geo",
                ColumnType::Record(vec![Column::new(
                    "lat",
                    ColumnType::Float64,
                    Mode::Nullable,
                )]),
                Mode::Nullable,
            ),
            Column::new("meta", ColumnType::Json, Mode::Nullable),
        ]
    }

    #[test]
    fn a_fitting_row_needs_nothing_and_is_cleaned() {
        let mut row =
            object(json!({"id": "a", "n": 1, "x": 2, "meta": {"k": []}, "gone": null, "none": []}));
        assert_eq!(fit_row(&columns(), &mut row), Fit::Fits(vec![]));
        assert_eq!(
            row,
            object(json!({"id": "a", "n": 1, "x": 2, "meta": {"k": []}}))
        );
    }

    #[test]
    fn new_fields_become_additions_at_their_depth() {
        let mut row = object(json!({"id": "a", "color": "red", "geo": {"lat": 1.0, "lon": 2.0}}));
        let Fit::Fits(additions) = fit_row(&columns(), &mut row) else {
            panic!("conflict")
        };
        let shown: Vec<String> = additions.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["color STRING", "geo.lon FLOAT"]);
        let mut evolved = columns();
        apply_additions(&mut evolved, &additions);
        assert_eq!(fit_row(&evolved, &mut row), Fit::Fits(vec![]));
    }

    #[test]
    fn conflicts_name_the_field_and_the_column() {
        for (row, field) in [
            (json!({"id": "a", "n": "one"}), "`n` is a string"),
            (json!({"id": "a", "n": 1.5}), "`n` is a fractional number"),
            (
                json!({"id": "a", "geo": {"lat": "north"}}),
                "`geo.lat` is a string",
            ),
            (json!({"id": "a", "geo": [1]}), "`geo` is a list"),
            (json!({"n": 1}), "`id` is required"),
            (
                json!({"id": "a", "bad-name": 1}),
                "`bad-name` cannot be a column",
            ),
        ] {
            match fit_row(&columns(), &mut object(row)) {
                Fit::Conflict(detail) => assert!(detail.contains(field), "{detail}"),
                fits => panic!("{field}: {fits:?}"),
            }
        }
    }

    #[test]
    fn names_differing_only_in_case_or_reserved_conflict() {
        for (row, field) in [
            (json!({"id": "a", "ID": "b"}), "`ID` differs from `id`"),
            (
                json!({"id": "a", "Color": 1, "color": 2}),
                "`color` differs from `Color`",
            ),
            (
                json!({"id": "a", "geo": {"LAT": 1.0}}),
                "`geo.LAT` differs from `lat`",
            ),
            (json!({"id": "a", "_PARTITIONTIME": 1}), "BigQuery keeps"),
            (json!({"id": "a", "": 1}), "must be letters"),
            (json!({"id": "a", "x\u{0}": 1}), "must be letters"),
            (json!({"id": "a", "a".repeat(301): 1}), "at most 300"),
        ] {
            match fit_row(&columns(), &mut object(row)) {
                Fit::Conflict(detail) => assert!(detail.contains(field), "{detail}"),
                fits => panic!("{field}: {fits:?}"),
            }
        }
        // A null under a clashing name says nothing, and is left out.
        let mut row = object(json!({"id": "a", "ID": null}));
        assert_eq!(fit_row(&columns(), &mut row), Fit::Fits(vec![]));
        // Objects whose keys clash in case stay whole, as JSON.
        assert_eq!(
            infer_column("o", &json!({"k": 1, "K": 2})).unwrap().kind,
            ColumnType::Json
        );
    }

    #[test]
    fn tables_are_checked_at_every_level() {
        check_columns(&columns()).unwrap();
        let mut twice = columns();
        twice.push(Column::new("N", ColumnType::Int64, Mode::Nullable));
        assert!(check_columns(&twice).unwrap_err().contains("`n` and `N`"));
        let nested = vec![Column::new(
            "r",
            ColumnType::Record(vec![
                Column::new("a", ColumnType::Int64, Mode::Nullable),
                Column::new("A", ColumnType::Int64, Mode::Nullable),
            ]),
            Mode::Nullable,
        )];
        assert!(
            check_columns(&nested)
                .unwrap_err()
                .contains("in record `r`")
        );
        let empty = vec![Column::new("r", ColumnType::Record(vec![]), Mode::Nullable)];
        assert!(check_columns(&empty).unwrap_err().contains("no fields"));
        let bad = vec![Column::new("bad name", ColumnType::Int64, Mode::Nullable)];
        assert!(check_columns(&bad).unwrap_err().contains("must be letters"));
    }

    #[test]
    fn columns_round_trip_through_bigquery_json() {
        let json = json!([{"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
            {"name": "price", "type": "FLOAT64"}]}]);
        let parsed: Vec<Column> = serde_json::from_value(json).unwrap();
        assert_eq!(
            parsed[0].kind,
            ColumnType::Record(vec![Column::new(
                "price",
                ColumnType::Float64,
                Mode::Nullable
            )])
        );
        let again: Vec<Column> =
            serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
        let bad: Result<Vec<Column>, _> =
            serde_json::from_value(json!([{"name": "x; drop", "type": "STRING"}]));
        assert!(bad.unwrap_err().to_string().contains("must be letters"));
    }

    #[test]
    fn wide_decimals_and_times_of_day_round_trip_and_unknown_types_are_named() {
        let json = json!([
            {"name": "amount", "type": "BIGNUMERIC", "mode": "NULLABLE"},
            {"name": "opens", "type": "TIME", "mode": "REQUIRED"},
            {"name": "legs", "type": "RECORD", "mode": "REPEATED", "fields": [
                {"name": "at", "type": "TIME", "mode": "NULLABLE"}]},
        ]);
        let parsed: Vec<Column> = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            parsed,
            [
                Column::new("amount", ColumnType::BigNumeric, Mode::Nullable),
                Column::new("opens", ColumnType::Time, Mode::Required),
                Column::new(
                    "legs",
                    ColumnType::Record(vec![Column::new("at", ColumnType::Time, Mode::Nullable)]),
                    Mode::Repeated
                ),
            ]
        );
        assert_eq!(serde_json::to_value(&parsed).unwrap(), json);

        for (kind, nested) in [("GEOGRAPHY", false), ("INTERVAL", false), ("RANGE", true)] {
            let column = json!({"name": "odd", "type": kind});
            let wire = if nested {
                json!([{"name": "outer", "type": "RECORD", "fields": [column]}])
            } else {
                json!([column])
            };
            let err = serde_json::from_value::<Vec<Column>>(wire).unwrap_err();
            assert!(
                err.to_string().contains(&format!(
                    "column `odd` has type {kind}, which Pulse does not"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn arrow_decimals_follow_bigquerys_choice_and_times_are_times() {
        let kind = |data_type: DataType| column_from_arrow(&Field::new("c", data_type, true)).kind;
        assert_eq!(kind(DataType::Decimal128(38, 9)), ColumnType::Numeric);
        assert_eq!(kind(DataType::Decimal64(18, 2)), ColumnType::Numeric);
        assert_eq!(kind(DataType::Decimal128(38, 18)), ColumnType::BigNumeric);
        assert_eq!(kind(DataType::Decimal128(31, 0)), ColumnType::BigNumeric);
        assert_eq!(kind(DataType::Decimal256(76, 38)), ColumnType::BigNumeric);
        assert_eq!(
            kind(DataType::Time64(arrow_schema::TimeUnit::Microsecond)),
            ColumnType::Time
        );
        assert_eq!(
            kind(DataType::Time32(arrow_schema::TimeUnit::Second)),
            ColumnType::Time
        );
    }

    #[test]
    fn times_of_day_fit_time_columns() {
        let columns = [Column::new("opens", ColumnType::Time, Mode::Nullable)];
        for ok in ["09:30:00", "23:59:59.123456"] {
            assert_eq!(
                fit_row(&columns, &mut object(json!({"opens": ok}))),
                Fit::Fits(vec![])
            );
        }
        assert!(matches!(
            fit_row(&columns, &mut object(json!({"opens": "9 o'clock"}))),
            Fit::Conflict(_)
        ));
    }

    /// A row as wide as a table may be, against a table as wide: every field is matched by
    /// name, new ones are found and checked for case clashes, all by lookup (this was a scan of
    /// the columns per field, and of the new fields per new field, on an async worker).
    #[test]
    fn wide_rows_are_fitted_by_name() {
        let table: Vec<Column> = (0..MAX_TABLE_COLUMNS / 2)
            .map(|i| Column::new(format!("c{i}"), ColumnType::Int64, Mode::Nullable))
            .collect();
        let mut row: Map<String, Value> = (0..MAX_TABLE_COLUMNS)
            .map(|i| (format!("c{i}"), json!(i)))
            .collect();
        let Fit::Fits(additions) = fit_row(&table, &mut row) else {
            panic!("a wide row fits");
        };
        assert_eq!(additions.len(), MAX_TABLE_COLUMNS / 2);
        let mut evolved = table.clone();
        apply_additions(&mut evolved, &additions);
        apply_additions(&mut evolved, &additions);
        assert_eq!(evolved.len(), MAX_TABLE_COLUMNS, "each column added once");
        assert_eq!(check_columns(&evolved), Ok(()));

        row.insert("C9999".to_owned(), json!(1));
        row.insert("C7".to_owned(), json!(1));
        match fit_row(&table, &mut row) {
            Fit::Conflict(detail) => assert!(detail.contains("`C7` differs from `c7`"), "{detail}"),
            fit => panic!("{fit:?}"),
        }
    }

    #[test]
    fn no_table_is_wider_than_bigquery_holds() {
        let mut columns: Vec<Column> = (0..MAX_TABLE_COLUMNS - 1)
            .map(|i| Column::new(format!("c{i}"), ColumnType::Int64, Mode::Nullable))
            .collect();
        columns.push(Column::new(
            "r",
            ColumnType::Record(vec![Column::new("a", ColumnType::Int64, Mode::Nullable)]),
            Mode::Nullable,
        ));
        let problem = check_columns(&columns).unwrap_err();
        assert!(problem.contains("10001 columns"), "{problem}");
    }

    /// A leap second or a year past 9999 in UTC parses as RFC 3339 but fails both warehouses:
    /// it makes no TIMESTAMP column, and does not fit one (the row is refused alone).
    #[test]
    fn timestamps_no_warehouse_stores_are_not_timestamps() {
        for text in ["2016-12-31T23:59:60Z", "9999-12-31T23:59:59-01:00"] {
            let column = infer_column("seen_at", &json!(text)).unwrap();
            assert_eq!(column.kind, ColumnType::String, "{text}");
            let table = vec![Column::new(
                "seen_at",
                ColumnType::Timestamp,
                Mode::Nullable,
            )];
            let mut row = object(json!({ "seen_at": text }));
            assert!(
                matches!(fit_row(&table, &mut row), Fit::Conflict(_)),
                "{text}"
            );
        }
        let column = infer_column("seen_at", &json!("2016-12-31T23:59:59Z")).unwrap();
        assert_eq!(column.kind, ColumnType::Timestamp);
    }
}
