//! The type mapping table in README.md is checked against the mapping functions, so the two
//! cannot drift. Run with TIDEMARK_PRINT_MAPPING=1 to print the table the code implies.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::DataType;
use tidemark_core::mapping::{Backend, arrow_field, arrow_row_fields, sql_type};
use tidemark_core::schema::{Field, Kind, Schema, StructSchema};

fn named(kind: Kind, name: &str, params: &[(&str, &str)]) -> Schema {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Schema::with_name(kind, true, Some(name.into()), &params, "t").unwrap()
}

fn plain(kind: Kind) -> Schema {
    Schema::plain(kind, true)
}

fn specs() -> Vec<(&'static str, Schema)> {
    let vsd = Kind::Struct(Arc::new(StructSchema::new(
        None,
        vec![
            Field {
                name: "scale".into(),
                schema: Schema::plain(Kind::Int32, false),
            },
            Field {
                name: "value".into(),
                schema: Schema::plain(Kind::Bytes, false),
            },
        ],
    )));
    let st = Kind::Struct(Arc::new(StructSchema::new(
        None,
        vec![Field {
            name: "a".into(),
            schema: plain(Kind::Int32),
        }],
    )));
    vec![
        ("`int8`", plain(Kind::Int8)),
        ("`int16`", plain(Kind::Int16)),
        ("`int32`", plain(Kind::Int32)),
        ("`int64`", plain(Kind::Int64)),
        ("`float`", plain(Kind::Float32)),
        ("`double`", plain(Kind::Float64)),
        ("`boolean`", plain(Kind::Boolean)),
        ("`string`", plain(Kind::String)),
        ("`bytes`", plain(Kind::Bytes)),
        (
            "`bytes` Decimal (precision 12, scale 2)",
            named(
                Kind::Bytes,
                "org.apache.kafka.connect.data.Decimal",
                &[("scale", "2"), ("connect.decimal.precision", "12")],
            ),
        ),
        (
            "`bytes` Decimal (no precision, scale 4)",
            named(
                Kind::Bytes,
                "org.apache.kafka.connect.data.Decimal",
                &[("scale", "4")],
            ),
        ),
        (
            "`struct` VariableScaleDecimal",
            named(vsd, "io.debezium.data.VariableScaleDecimal", &[]),
        ),
        (
            "`int32` Date",
            named(Kind::Int32, "io.debezium.time.Date", &[]),
        ),
        (
            "`int32` Time (ms)",
            named(Kind::Int32, "io.debezium.time.Time", &[]),
        ),
        (
            "`int64` MicroTime",
            named(Kind::Int64, "io.debezium.time.MicroTime", &[]),
        ),
        (
            "`int64` NanoTime",
            named(Kind::Int64, "io.debezium.time.NanoTime", &[]),
        ),
        (
            "`int64` MicroTime of MySQL/MariaDB (a duration)",
            Schema {
                logical: tidemark_core::schema::Logical::Duration(
                    tidemark_core::value::TimeUnit::Micros,
                ),
                ..named(Kind::Int64, "io.debezium.time.MicroTime", &[])
            },
        ),
        (
            "`int64` Timestamp (ms)",
            named(Kind::Int64, "io.debezium.time.Timestamp", &[]),
        ),
        (
            "`int64` MicroTimestamp",
            named(Kind::Int64, "io.debezium.time.MicroTimestamp", &[]),
        ),
        (
            "`int64` NanoTimestamp",
            named(Kind::Int64, "io.debezium.time.NanoTimestamp", &[]),
        ),
        (
            "`string` ZonedTimestamp",
            named(Kind::String, "io.debezium.time.ZonedTimestamp", &[]),
        ),
        (
            "`string` ZonedTime",
            named(Kind::String, "io.debezium.time.ZonedTime", &[]),
        ),
        (
            "`string` Json",
            named(Kind::String, "io.debezium.data.Json", &[]),
        ),
        (
            "`string` Uuid",
            named(Kind::String, "io.debezium.data.Uuid", &[]),
        ),
        (
            "`string` Enum",
            named(Kind::String, "io.debezium.data.Enum", &[("allowed", "a,b")]),
        ),
        (
            "`int32` Year",
            named(Kind::Int32, "io.debezium.time.Year", &[]),
        ),
        (
            "`array` of `int32`",
            plain(Kind::Array(Box::new(plain(Kind::Int32)))),
        ),
        (
            "`map` `string` → `int64`",
            plain(Kind::Map(
                Box::new(Schema::plain(Kind::String, false)),
                Box::new(plain(Kind::Int64)),
            )),
        ),
        ("`struct`", plain(st)),
    ]
}

/// Arrow types in a short, readable form (`List<Int32>`).
fn short(dt: &DataType) -> String {
    match dt {
        DataType::List(item) => format!("List<{}>", short(item.data_type())),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) => format!(
                "Map<{}, {}>",
                short(kv[0].data_type()),
                short(kv[1].data_type())
            ),
            other => format!("Map<{other}>"),
        },
        DataType::Struct(fields) => {
            format!(
                "Struct<{}>",
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), short(f.data_type())))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        other => format!("{other:?}"),
    }
}

fn row(label: &str, schema: &Schema) -> String {
    let f = arrow_field("c", schema);
    let arrow = short(f.data_type());
    format!(
        "| {label} | `{arrow}` | `{}` | `{}` |",
        sql_type(&f, Backend::Postgres),
        sql_type(&f, Backend::Sqlite)
    )
}

#[test]
fn readme_type_mapping_table_matches_the_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let rows: Vec<String> = specs().iter().map(|(l, s)| row(l, s)).collect();
    if std::env::var_os("TIDEMARK_PRINT_MAPPING").is_some() {
        println!("{}", rows.join("\n"));
    }
    let missing: Vec<&String> = rows
        .iter()
        .filter(|r| !readme.lines().any(|l| l.trim() == r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md type mapping rows out of date; expected rows:\n{}",
        rows.join("\n")
    );
}

#[test]
fn bronze_row_structs_carry_the_unavailable_column_list() {
    let st = StructSchema::new(
        None,
        vec![Field {
            name: "bio".into(),
            schema: plain(Kind::String),
        }],
    );
    let fields = arrow_row_fields(&st);
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[1].name(), tidemark_core::mapping::UNAVAILABLE_FIELD);
}

/// The README's metrics reference is the catalogue, rendered.
#[test]
fn readme_metrics_reference_matches_the_catalogue() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let table = tidemark_core::metrics::catalogue::markdown_table();
    if std::env::var_os("TIDEMARK_PRINT_METRICS_TABLE").is_some() {
        println!("{table}");
    }
    assert!(
        readme.contains(&table),
        "README metrics reference differs from the catalogue; regenerate it with \
         TIDEMARK_PRINT_METRICS_TABLE=1 cargo test -p tidemark-core --test mapping readme_metrics -- --nocapture"
    );
}
