//! Arrow columns as PostgreSQL binary COPY values: each warehouse column type cast to one Arrow
//! type, then written in PostgreSQL's binary format. Lists, records and maps become `jsonb`.

use std::error::Error;
use std::sync::Arc;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::{BufMut as _, BytesMut};
use pulse_shared::warehouse::{Column, ColumnType, Mode};
use serde_json::{Map, Value};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between the Unix epoch and PostgreSQL's.
const PG_EPOCH_DAYS: i32 = 10_957;
/// NUMERIC(38, 9): the warehouse's exact decimal.
const SCALE: i8 = 9;
/// BIGNUMERIC as the local warehouse holds it: DECIMAL(38, 18).
const BIG_SCALE: i8 = 18;

/// A column's PostgreSQL type.
pub fn pg_type(column: &Column) -> (Type, &'static str) {
    if column.mode == Mode::Repeated {
        return (Type::JSONB, "jsonb");
    }
    match column.kind {
        ColumnType::String => (Type::TEXT, "text"),
        ColumnType::Int64 => (Type::INT8, "bigint"),
        ColumnType::Float64 => (Type::FLOAT8, "double precision"),
        ColumnType::Numeric => (Type::NUMERIC, "numeric(38, 9)"),
        ColumnType::BigNumeric => (Type::NUMERIC, "numeric(38, 18)"),
        ColumnType::Bool => (Type::BOOL, "boolean"),
        ColumnType::Bytes => (Type::BYTEA, "bytea"),
        ColumnType::Timestamp => (Type::TIMESTAMPTZ, "timestamptz"),
        ColumnType::Datetime => (Type::TIMESTAMP, "timestamp"),
        ColumnType::Date => (Type::DATE, "date"),
        ColumnType::Time => (Type::TIME, "time"),
        ColumnType::Json | ColumnType::Record(_) => (Type::JSONB, "jsonb"),
    }
}

/// One column of a batch, ready to write.
pub enum Cells {
    Int(ArrayRef),
    Float(ArrayRef),
    /// Decimal128 values with the given scale.
    Numeric(ArrayRef, i8),
    Bool(ArrayRef),
    Text(ArrayRef),
    Bytes(ArrayRef),
    /// Microseconds since the Unix epoch (timestamptz and timestamp alike).
    Micros(ArrayRef),
    Date(ArrayRef),
    /// Microseconds since midnight.
    Time(ArrayRef),
    Json(Vec<Option<Value>>),
}

impl Cells {
    /// Casts `array` (the file's column) to what `column` is written from.
    pub fn new(column: &Column, array: &ArrayRef) -> Result<Self, Box<dyn Error + Send + Sync>> {
        let cast = |to: DataType| arrow_cast::cast(array, &to);
        if column.mode == Mode::Repeated
            || matches!(column.kind, ColumnType::Json | ColumnType::Record(_))
        {
            return Ok(Cells::Json(json_values(&column.name, array)?));
        }
        Ok(match column.kind {
            ColumnType::Int64 => Cells::Int(cast(DataType::Int64)?),
            ColumnType::Float64 => Cells::Float(cast(DataType::Float64)?),
            ColumnType::Numeric => Cells::Numeric(cast(DataType::Decimal128(38, SCALE))?, SCALE),
            ColumnType::BigNumeric => {
                Cells::Numeric(cast(DataType::Decimal128(38, BIG_SCALE))?, BIG_SCALE)
            }
            ColumnType::Bool => Cells::Bool(cast(DataType::Boolean)?),
            ColumnType::String => Cells::Text(cast(DataType::Utf8)?),
            ColumnType::Bytes => Cells::Bytes(cast(DataType::Binary)?),
            ColumnType::Timestamp | ColumnType::Datetime => {
                // The zone only labels the values: they are instants (or wall times) already.
                let naive = match array.data_type() {
                    DataType::Timestamp(unit, Some(_)) => {
                        arrow_cast::cast(array, &DataType::Timestamp(*unit, None))?
                    }
                    _ => array.clone(),
                };
                let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
                Cells::Micros(arrow_cast::cast(&naive, &micros)?)
            }
            ColumnType::Date => Cells::Date(cast(DataType::Date32)?),
            ColumnType::Time => Cells::Time(cast(DataType::Time64(TimeUnit::Microsecond))?),
            ColumnType::Json | ColumnType::Record(_) => Cells::Json(Vec::new()),
        })
    }

    /// The value at `row`.
    pub fn at(&self, row: usize) -> Cell<'_> {
        Cell { cells: self, row }
    }
}

/// Nested values as JSON, through Arrow's JSON writer (one object per row).
fn json_values(
    name: &str,
    array: &ArrayRef,
) -> Result<Vec<Option<Value>>, Box<dyn Error + Send + Sync>> {
    // JSON object keys are text: map keys of other types are cast to text first.
    let keyed = text_keys(array.data_type());
    let array = if &keyed == array.data_type() {
        array.clone()
    } else {
        arrow_cast::cast(array, &keyed)?
    };
    let field = Field::new(name, keyed, true);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![array])?;
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let rows: Vec<Map<String, Value>> = serde_json::from_slice(&writer.into_inner())?;
    Ok(rows
        .into_iter()
        .map(|mut row| row.remove(name).filter(|v| !v.is_null()))
        .collect())
}

/// `data_type` with every map key as text.
fn text_keys(data_type: &DataType) -> DataType {
    let field = |f: &Field| f.clone().with_data_type(text_keys(f.data_type()));
    match data_type {
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return data_type.clone();
            };
            let fields: Vec<Field> = kv
                .iter()
                .enumerate()
                .map(|(i, f)| match i {
                    0 => f.as_ref().clone().with_data_type(DataType::Utf8),
                    _ => field(f),
                })
                .collect();
            let entries = entries
                .as_ref()
                .clone()
                .with_data_type(DataType::Struct(fields.into()));
            DataType::Map(Arc::new(entries), *sorted)
        }
        DataType::List(f) => DataType::List(Arc::new(field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(field(f))),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| field(f)).collect::<Vec<_>>().into())
        }
        other => other.clone(),
    }
}

/// One value in a batch.
#[derive(Clone, Copy)]
pub struct Cell<'a> {
    cells: &'a Cells,
    row: usize,
}

impl std::fmt::Debug for Cell<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cell {}", self.row)
    }
}

impl ToSql for Cell<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let row = self.row;
        let null = match self.cells {
            Cells::Int(a) | Cells::Float(a) | Cells::Numeric(a, _) | Cells::Bool(a) => {
                a.is_null(row)
            }
            Cells::Text(a) | Cells::Bytes(a) | Cells::Micros(a) | Cells::Date(a) => a.is_null(row),
            Cells::Time(a) => a.is_null(row),
            Cells::Json(values) => values.get(row).is_none_or(Option::is_none),
        };
        if null {
            return Ok(IsNull::Yes);
        }
        match self.cells {
            Cells::Int(a) => out.put_i64(a.as_primitive::<Int64Type>().value(row)),
            Cells::Float(a) => out.put_f64(a.as_primitive::<Float64Type>().value(row)),
            Cells::Numeric(a, scale) => {
                put_numeric(a.as_primitive::<Decimal128Type>().value(row), *scale, out)
            }
            Cells::Bool(a) => out.put_u8(u8::from(a.as_boolean().value(row))),
            Cells::Text(a) => out.put_slice(a.as_string::<i32>().value(row).as_bytes()),
            Cells::Bytes(a) => out.put_slice(a.as_binary::<i32>().value(row)),
            Cells::Micros(a) => {
                let micros = a.as_primitive::<TimestampMicrosecondType>().value(row);
                out.put_i64(micros - PG_EPOCH_MICROS);
            }
            Cells::Date(a) => {
                out.put_i32(a.as_primitive::<Date32Type>().value(row) - PG_EPOCH_DAYS)
            }
            Cells::Time(a) => out.put_i64(a.as_primitive::<Time64MicrosecondType>().value(row)),
            Cells::Json(values) => {
                out.put_u8(1); // jsonb's binary format: a version byte, then the text
                if let Some(Some(value)) = values.get(row) {
                    serde_json::to_writer((&mut *out).writer(), value)?;
                }
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        // Each column's cells are cast to its table column's type before they get here.
        true
    }

    to_sql_checked!();
}

/// PostgreSQL's binary NUMERIC: base-10000 digits with a weight, a sign and a display scale.
/// `value` is the decimal's unscaled integer, `scale` (0 to 38) its digits after the point.
fn put_numeric(value: i128, scale: i8, out: &mut BytesMut) {
    let scale = u32::from(scale.unsigned_abs());
    let magnitude = value.unsigned_abs();
    let scale_factor = 10u128.pow(scale);
    let (mut integer, fraction) = (magnitude / scale_factor, magnitude % scale_factor);
    let mut integer_groups = Vec::new();
    while integer > 0 {
        integer_groups.push(i16::try_from(integer % 10_000).unwrap_or(0));
        integer /= 10_000;
    }
    integer_groups.reverse();
    // The fractional digits, padded to whole groups of four (nine become twelve).
    let groups = scale.div_ceil(4);
    let mut padded = fraction * 10u128.pow(groups * 4 - scale);
    let mut fraction_groups = vec![0i16; groups as usize];
    for group in fraction_groups.iter_mut().rev() {
        *group = i16::try_from(padded % 10_000).unwrap_or(0);
        padded /= 10_000;
    }
    let mut weight = i16::try_from(integer_groups.len()).unwrap_or(0) - 1;
    let mut digits: Vec<i16> = integer_groups.into_iter().chain(fraction_groups).collect();
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    out.put_i16(i16::try_from(digits.len()).unwrap_or(0));
    out.put_i16(weight);
    out.put_u16(if value < 0 && !digits.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(u16::try_from(scale).unwrap_or(0));
    for digit in digits {
        out.put_i16(digit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(value: i128) -> Vec<i16> {
        numeric_at(value, SCALE)
    }

    fn numeric_at(value: i128, scale: i8) -> Vec<i16> {
        let mut out = BytesMut::new();
        put_numeric(value, scale, &mut out);
        out.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numerics_encode_as_postgres_does() {
        // 12345.67: digits 1, 2345, 6700; weight 1; dscale 9.
        assert_eq!(numeric(12_345_670_000_000), [3, 1, 0, 9, 1, 2345, 6700]);
        // -0.000000001: one digit 10 at weight -3 (0.0000|0000|1000).
        assert_eq!(numeric(-1), [1, -3, 0x4000, 9, 1000]);
        assert_eq!(numeric(0), [0, 0, 0, 9]);
        // 10000: one digit 1 at weight 1.
        assert_eq!(numeric(10_000_000_000_000), [1, 1, 0, 9, 1]);
        // BIGNUMERIC's 18 places: 1.5 is digits 1, 5000 at weight 0; -0.000000000000000001 is
        // one digit 100 at weight -5 (0.0000|0000|0000|0000|0100).
        assert_eq!(
            numeric_at(1_500_000_000_000_000_000, BIG_SCALE),
            [2, 0, 0, 18, 1, 5000]
        );
        assert_eq!(numeric_at(-1, BIG_SCALE), [1, -5, 0x4000, 18, 100]);
    }
}
