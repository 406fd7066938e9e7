//! The file's schema against its table: what to create or add before loading, or why the file
//! cannot go in. New tables are partitioned by day on a date or timestamp column.

use arrow_schema::{DataType, Field, Schema};
use pulse_shared::warehouse::schema::{check_columns, column_name_problem, columns_from_arrow};
use pulse_shared::warehouse::{Addition, Column, ColumnType, Mode, TableSpec};

use crate::quarantine::{Refusal, RefusalCode};

/// What the table needs before the file can be loaded.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// The table does not exist: create it from the file.
    Create(TableSpec),
    /// The table exists; these nullable columns are missing (none in steady state).
    Evolve(Vec<Addition>),
}

/// The warehouse columns of a file, or why it has none: a name that cannot be a column, or a
/// type the warehouse has no column for.
pub fn file_columns(schema: &Schema) -> Result<Vec<Column>, Refusal> {
    if schema.fields().is_empty() {
        return Err(Refusal::new(
            RefusalCode::BadName,
            "the file has no columns: there is nothing a table could hold",
        ));
    }
    for field in schema.fields() {
        check_field(field, &mut Vec::new())?;
    }
    let columns = columns_from_arrow(schema.fields());
    check_columns(&columns).map_err(|problem| {
        Refusal::new(
            RefusalCode::BadName,
            format!("{problem} (rename it in the writer)"),
        )
    })?;
    Ok(columns)
}

fn check_field(field: &Field, path: &mut Vec<String>) -> Result<(), Refusal> {
    path.push(field.name().clone());
    let dotted = || path.join(".");
    if let Some(problem) = column_name_problem(field.name()) {
        return Err(Refusal::new(
            RefusalCode::BadName,
            format!(
                "column `{}` cannot be a warehouse column: {problem} (rename it in the writer)",
                dotted()
            ),
        ));
    }
    let unsupported = |what: &str| {
        Err(Refusal::new(
            RefusalCode::UnsupportedType,
            format!(
                "column `{}` is {what}, which the warehouse tables do not hold",
                dotted()
            ),
        ))
    };
    match field.data_type() {
        // NUMERIC holds 38 digits, 9 of them after the point.
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale)
            if *scale > 9 || i16::from(*precision) - i16::from(*scale) > 29 =>
        {
            return unsupported(&format!(
                "DECIMAL({precision}, {scale}), wider than NUMERIC (29 digits before the point, 9 \
                 after)"
            ));
        }
        DataType::Time32(_) | DataType::Time64(_) => return unsupported("a time of day"),
        DataType::Duration(_) | DataType::Interval(_) => return unsupported("an interval"),
        DataType::Union(..) => return unsupported("a union"),
        DataType::Struct(fields) => {
            for child in fields {
                check_field(child, path)?;
            }
        }
        DataType::List(element)
        | DataType::LargeList(element)
        | DataType::FixedSizeList(element, _) => {
            if let DataType::Struct(fields) = element.data_type() {
                for child in fields {
                    check_field(child, path)?;
                }
            }
        }
        _ => {}
    }
    path.pop();
    Ok(())
}

/// The plan for loading a file with `columns` into `table` (`existing` when it exists).
/// `partition` names the preferred partition column of a new table.
pub fn plan(
    table: &str,
    columns: &[Column],
    existing: Option<&TableSpec>,
    partition: Option<&str>,
) -> Result<Plan, Refusal> {
    let Some(existing) = existing else {
        return Ok(Plan::Create(TableSpec {
            name: table.to_owned(),
            description: Some("Loaded from Parquet files by parquet-loader".to_owned()),
            columns: columns.to_vec(),
            partition_column: partition_column(columns, partition),
            clustering: Vec::new(),
            row_id_column: None,
        }));
    };
    let mut additions = Vec::new();
    fit(&existing.columns, columns, &mut Vec::new(), &mut additions)?;
    Ok(Plan::Evolve(additions))
}

/// The configured column if the file has it as a date or timestamp, else the first such column.
fn partition_column(columns: &[Column], preferred: Option<&str>) -> Option<String> {
    let usable = |c: &&Column| {
        c.mode != Mode::Repeated
            && matches!(
                c.kind,
                ColumnType::Date | ColumnType::Timestamp | ColumnType::Datetime
            )
    };
    preferred
        .and_then(|name| columns.iter().filter(usable).find(|c| c.name == name))
        .or_else(|| columns.iter().find(usable))
        .map(|c| c.name.clone())
}

fn fit(
    table: &[Column],
    file: &[Column],
    path: &mut Vec<String>,
    additions: &mut Vec<Addition>,
) -> Result<(), Refusal> {
    for column in file {
        path.push(column.name.clone());
        match table
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(&column.name))
        {
            None => additions.push(Addition {
                parents: path[..path.len() - 1].to_vec(),
                column: nullable(column.clone()),
            }),
            Some(existing) if existing.name != column.name => {
                return Err(Refusal::new(
                    RefusalCode::BadName,
                    format!(
                        "column `{}` differs from the table's `{}` only in case, which the \
                         warehouses take as one name; nothing was loaded (use the table's \
                         spelling)",
                        path.join("."),
                        existing.name
                    ),
                ));
            }
            Some(existing) => fit_column(existing, column, path, additions)?,
        }
        path.pop();
    }
    for existing in table {
        if existing.mode == Mode::Required && !file.iter().any(|c| c.name == existing.name) {
            path.push(existing.name.clone());
            let refusal = conflict(path, "is missing from the file but REQUIRED in the table");
            return Err(refusal);
        }
    }
    Ok(())
}

fn fit_column(
    table: &Column,
    file: &Column,
    path: &mut Vec<String>,
    additions: &mut Vec<Addition>,
) -> Result<(), Refusal> {
    if (table.mode == Mode::Repeated) != (file.mode == Mode::Repeated) {
        let what = if file.mode == Mode::Repeated {
            "is a list in the file but not in the table"
        } else {
            "is a list in the table but not in the file"
        };
        return Err(conflict(path, what));
    }
    if table.mode == Mode::Required && file.mode == Mode::Nullable {
        return Err(conflict(
            path,
            "may be null in the file but is REQUIRED in the table",
        ));
    }
    match (&table.kind, &file.kind) {
        (ColumnType::Record(table_fields), ColumnType::Record(file_fields)) => {
            fit(table_fields, file_fields, path, additions)
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(conflict(
            path,
            &format!(
                "is {} in the file but {} in the table",
                b.bigquery_name(),
                a.bigquery_name()
            ),
        )),
    }
}

fn conflict(path: &[String], what: &str) -> Refusal {
    Refusal::new(
        RefusalCode::SchemaConflict,
        format!(
            "column `{}` {what}; nothing was loaded (fix the writer, or load into another table \
             folder)",
            path.join(".")
        ),
    )
}

/// Columns added to an existing table must be nullable (lists stay lists); their nested fields
/// too.
fn nullable(mut column: Column) -> Column {
    if column.mode == Mode::Required {
        column.mode = Mode::Nullable;
    }
    if let ColumnType::Record(fields) = column.kind {
        column.kind = ColumnType::Record(fields.into_iter().map(nullable).collect());
    }
    column
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::TimeUnit;

    fn schema(fields: Vec<Field>) -> Schema {
        Schema::new(fields)
    }

    fn spec(columns: Vec<Column>) -> TableSpec {
        TableSpec {
            name: "t".into(),
            description: None,
            columns,
            partition_column: None,
            clustering: vec![],
            row_id_column: None,
        }
    }

    #[test]
    fn a_new_table_is_partitioned_on_the_configured_or_first_date_column() {
        let columns = file_columns(&schema(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
        ]))
        .unwrap();
        let Plan::Create(first) = plan("t", &columns, None, None).unwrap() else {
            panic!()
        };
        assert_eq!(first.partition_column.as_deref(), Some("at"));
        assert_eq!(first.columns[0].mode, Mode::Required);
        let Plan::Create(named) = plan("t", &columns, None, Some("day")).unwrap() else {
            panic!()
        };
        assert_eq!(named.partition_column.as_deref(), Some("day"));
        let Plan::Create(fallback) = plan("t", &columns, None, Some("id")).unwrap() else {
            panic!()
        };
        assert_eq!(fallback.partition_column.as_deref(), Some("at"));
    }

    #[test]
    fn new_columns_are_added_nullable_and_conflicts_refuse() {
        let table = spec(vec![
            Column::new("id", ColumnType::Int64, Mode::Required),
            Column::new("name", ColumnType::String, Mode::Nullable),
        ]);
        let file = vec![
            Column::new("id", ColumnType::Int64, Mode::Required),
            Column::new("extra", ColumnType::Float64, Mode::Required),
        ];
        let Plan::Evolve(additions) = plan("t", &file, Some(&table), None).unwrap() else {
            panic!()
        };
        assert_eq!(additions.len(), 1);
        assert_eq!(additions[0].column.mode, Mode::Nullable);

        for (file, detail) in [
            (
                vec![Column::new("id", ColumnType::String, Mode::Required)],
                "is STRING in the file but INTEGER",
            ),
            (
                vec![Column::new("id", ColumnType::Int64, Mode::Nullable)],
                "may be null",
            ),
            (
                vec![Column::new("id", ColumnType::Int64, Mode::Repeated)],
                "is a list in the file",
            ),
            (
                vec![Column::new("name", ColumnType::String, Mode::Nullable)],
                "`id` is missing",
            ),
        ] {
            let refusal = plan("t", &file, Some(&table), None).unwrap_err();
            assert_eq!(refusal.reason, RefusalCode::SchemaConflict);
            assert!(refusal.detail.contains(detail), "{}", refusal.detail);
        }
    }

    #[test]
    fn names_and_types_the_warehouse_cannot_hold_are_refused() {
        for (field, reason) in [
            (
                Field::new("bad name", DataType::Int64, true),
                RefusalCode::BadName,
            ),
            (
                Field::new("d", DataType::Decimal128(38, 10), true),
                RefusalCode::UnsupportedType,
            ),
            (
                Field::new("d", DataType::Decimal128(38, 2), true),
                RefusalCode::UnsupportedType,
            ),
            (
                Field::new("t", DataType::Time64(TimeUnit::Microsecond), true),
                RefusalCode::UnsupportedType,
            ),
        ] {
            assert_eq!(
                file_columns(&schema(vec![field])).unwrap_err().reason,
                reason
            );
        }
        assert!(
            file_columns(&schema(vec![Field::new(
                "d",
                DataType::Decimal128(38, 9),
                true
            )]))
            .is_ok()
        );
    }

    #[test]
    fn names_the_warehouses_take_as_one_are_refused() {
        let refused = |fields: Vec<Field>| file_columns(&schema(fields)).unwrap_err();
        let twice = refused(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ID", DataType::Int64, true),
        ]);
        assert_eq!(twice.reason, RefusalCode::BadName);
        assert!(
            twice.detail.contains("differ only in case"),
            "{}",
            twice.detail
        );
        let nested = refused(vec![Field::new(
            "s",
            DataType::Struct(
                vec![
                    Field::new("a", DataType::Int64, true),
                    Field::new("A", DataType::Int64, true),
                ]
                .into(),
            ),
            true,
        )]);
        assert!(nested.detail.contains("in record `s`"), "{}", nested.detail);
        assert_eq!(refused(vec![]).reason, RefusalCode::BadName);
        let reserved = refused(vec![Field::new("_FILE_NAME", DataType::Int64, true)]);
        assert!(
            reserved.detail.contains("BigQuery keeps"),
            "{}",
            reserved.detail
        );

        let table = spec(vec![Column::new("id", ColumnType::Int64, Mode::Nullable)]);
        let file = vec![Column::new("Id", ColumnType::Int64, Mode::Nullable)];
        let refusal = plan("t", &file, Some(&table), None).unwrap_err();
        assert_eq!(refusal.reason, RefusalCode::BadName);
        assert!(
            refusal.detail.contains("only in case"),
            "{}",
            refusal.detail
        );
    }
}
