//! Decoded [`Value`]s → Arrow arrays, column by column, following the type mapping of
//! `tidemark_core::mapping` (the only place that decides types).

use std::sync::Arc;

use arrow_array::builder::BooleanBufferBuilder;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, DurationMicrosecondArray,
    DurationMillisecondArray, DurationNanosecondArray, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, ListArray, MapArray, StringArray, StructArray,
    Time32MillisecondArray, Time64MicrosecondArray, Time64NanosecondArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, new_null_array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, TimeUnit as ArrowUnit};
use tidemark_core::value::{Decimal, TimeUnit, Value};

/// A value that does not fit its column (a decoder/mapping mismatch: a bug, not bad input).
#[derive(Debug, thiserror::Error)]
#[error("column `{column}`: cannot store {value} as {data_type}")]
pub struct ValueTypeError {
    pub column: String,
    pub value: String,
    pub data_type: String,
}

fn mismatch(field: &Field, v: &Value) -> ValueTypeError {
    let mut value = format!("{v:?}");
    value.truncate(80);
    ValueTypeError {
        column: field.name().clone(),
        value,
        data_type: field.data_type().to_string(),
    }
}

fn is_null(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Unavailable)
}

fn nulls(values: &[&Value]) -> Option<NullBuffer> {
    let mut b = BooleanBufferBuilder::new(values.len());
    for v in values {
        b.append(!is_null(v));
    }
    let nb = NullBuffer::new(b.finish());
    (nb.null_count() > 0).then_some(nb)
}

/// Rescales a decimal to the column's scale; `None` when that would lose digits or overflow.
fn rescale(d: &Decimal, scale: i8) -> Option<i128> {
    let diff = i32::from(scale) - d.scale;
    if diff >= 0 {
        d.unscaled.checked_mul(10i128.checked_pow(diff as u32)?)
    } else {
        let div = 10i128.checked_pow((-diff) as u32)?;
        (d.unscaled % div == 0).then(|| d.unscaled / div)
    }
}

macro_rules! prim {
    ($arr:ty, $values:expr, $field:expr, $pat:pat => $out:expr) => {{
        let mut out = Vec::with_capacity($values.len());
        for v in $values {
            out.push(match v {
                $pat => Some($out),
                v if is_null(v) => None,
                v => return Err(mismatch($field, v)),
            });
        }
        Arc::new(<$arr>::from(out)) as ArrayRef
    }};
}

/// Text form of values stored in Utf8 columns (JSON, UUID, variable-scale decimals, …).
fn text(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) | Value::Json(s) => s.clone(),
        Value::Uuid(u) => u.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Int(i) => i.to_string(),
        _ => return None,
    })
}

/// One column of values as an Arrow array of `field`'s type.
pub(crate) fn to_array(values: &[&Value], field: &Field) -> Result<ArrayRef, ValueTypeError> {
    let n = values.len();
    Ok(match field.data_type() {
        DataType::Null => new_null_array(&DataType::Null, n),
        DataType::Boolean => prim!(BooleanArray, values, field, Value::Bool(b) => *b),
        DataType::Int8 => prim!(Int8Array, values, field, Value::Int(i) => *i as i8),
        DataType::Int16 => prim!(Int16Array, values, field, Value::Int(i) => *i as i16),
        DataType::Int32 => prim!(Int32Array, values, field, Value::Int(i) => *i as i32),
        DataType::Int64 => prim!(Int64Array, values, field, Value::Int(i) => *i),
        DataType::Float32 => prim!(Float32Array, values, field, Value::Float(f) => *f as f32),
        DataType::Float64 => prim!(Float64Array, values, field, Value::Float(f) => *f),
        DataType::Date32 => prim!(Date32Array, values, field, Value::Date(d) => *d),
        DataType::Time32(ArrowUnit::Millisecond) => {
            prim!(Time32MillisecondArray, values, field, Value::Time(t) => (*t / 1_000_000) as i32)
        }
        DataType::Time64(ArrowUnit::Microsecond) => {
            prim!(Time64MicrosecondArray, values, field, Value::Time(t) => *t / 1_000)
        }
        DataType::Time64(ArrowUnit::Nanosecond) => {
            prim!(Time64NanosecondArray, values, field, Value::Time(t) => *t)
        }
        DataType::Duration(ArrowUnit::Millisecond) => {
            prim!(DurationMillisecondArray, values, field, Value::Duration(t) => *t / 1_000_000)
        }
        DataType::Duration(ArrowUnit::Microsecond) => {
            prim!(DurationMicrosecondArray, values, field, Value::Duration(t) => *t / 1_000)
        }
        DataType::Duration(ArrowUnit::Nanosecond) => {
            prim!(DurationNanosecondArray, values, field, Value::Duration(t) => *t)
        }
        DataType::Timestamp(unit, tz) => {
            let u = match unit {
                ArrowUnit::Millisecond => TimeUnit::Millis,
                ArrowUnit::Microsecond => TimeUnit::Micros,
                _ => TimeUnit::Nanos,
            };
            let raw: Vec<Option<i64>> = values
                .iter()
                .map(|v| match v {
                    Value::Timestamp(t) => Ok(Some(t.to_epoch(u))),
                    v if is_null(v) => Ok(None),
                    v => Err(mismatch(field, v)),
                })
                .collect::<Result<_, _>>()?;
            match unit {
                ArrowUnit::Millisecond => {
                    Arc::new(TimestampMillisecondArray::from(raw).with_timezone_opt(tz.clone()))
                        as ArrayRef
                }
                ArrowUnit::Microsecond => {
                    Arc::new(TimestampMicrosecondArray::from(raw).with_timezone_opt(tz.clone()))
                }
                _ => Arc::new(TimestampNanosecondArray::from(raw).with_timezone_opt(tz.clone())),
            }
        }
        DataType::Decimal128(p, s) => {
            let raw: Vec<Option<i128>> = values
                .iter()
                .map(|v| match v {
                    Value::Decimal(d) => rescale(d, *s).map(Some).ok_or_else(|| mismatch(field, v)),
                    v if is_null(v) => Ok(None),
                    v => Err(mismatch(field, v)),
                })
                .collect::<Result<_, _>>()?;
            Arc::new(
                Decimal128Array::from(raw)
                    .with_precision_and_scale(*p, *s)
                    .map_err(|_| ValueTypeError {
                        column: field.name().clone(),
                        value: "decimal".into(),
                        data_type: field.data_type().to_string(),
                    })?,
            )
        }
        DataType::Utf8 => {
            let raw: Vec<Option<String>> = values
                .iter()
                .map(|v| match text(v) {
                    Some(s) => Ok(Some(s)),
                    None if is_null(v) => Ok(None),
                    None => Err(mismatch(field, v)),
                })
                .collect::<Result<_, _>>()?;
            Arc::new(StringArray::from(raw))
        }
        DataType::Binary => {
            let raw: Vec<Option<&[u8]>> = values
                .iter()
                .map(|v| match v {
                    Value::Bytes(b) => Ok(Some(b.as_slice())),
                    v if is_null(v) => Ok(None),
                    v => Err(mismatch(field, v)),
                })
                .collect::<Result<_, _>>()?;
            Arc::new(BinaryArray::from(raw))
        }
        DataType::List(item) => {
            let mut offsets = Vec::with_capacity(n);
            let mut children: Vec<&Value> = Vec::new();
            for v in values {
                match v {
                    Value::Array(items) => {
                        offsets.push(items.len());
                        children.extend(items.iter());
                    }
                    v if is_null(v) => offsets.push(0),
                    v => return Err(mismatch(field, v)),
                }
            }
            let child = to_array(&children, item)?;
            Arc::new(ListArray::new(
                item.clone(),
                OffsetBuffer::from_lengths(offsets),
                child,
                nulls(values),
            ))
        }
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(mismatch(field, &Value::Null));
            };
            let mut offsets = Vec::with_capacity(n);
            let (mut keys, mut vals): (Vec<&Value>, Vec<&Value>) = (Vec::new(), Vec::new());
            for v in values {
                match v {
                    Value::Map(pairs) => {
                        offsets.push(pairs.len());
                        for (k, val) in pairs {
                            keys.push(k);
                            vals.push(val);
                        }
                    }
                    v if is_null(v) => offsets.push(0),
                    v => return Err(mismatch(field, v)),
                }
            }
            let entries_array = StructArray::new(
                kv.clone(),
                vec![to_array(&keys, &kv[0])?, to_array(&vals, &kv[1])?],
                None,
            );
            Arc::new(MapArray::new(
                entries.clone(),
                OffsetBuffer::from_lengths(offsets),
                entries_array,
                nulls(values),
                *sorted,
            ))
        }
        DataType::Struct(fields) => struct_array(values, fields, field)?,
        other => {
            return Err(ValueTypeError {
                column: field.name().clone(),
                value: "any".into(),
                data_type: other.to_string(),
            });
        }
    })
}

fn struct_array(
    values: &[&Value],
    fields: &Fields,
    field: &Field,
) -> Result<ArrayRef, ValueTypeError> {
    let mut columns: Vec<Vec<&Value>> = vec![Vec::with_capacity(values.len()); fields.len()];
    for v in values {
        match v {
            Value::Struct(items) => {
                for (i, col) in columns.iter_mut().enumerate() {
                    col.push(items.get(i).unwrap_or(&Value::Null));
                }
            }
            v if is_null(v) => columns.iter_mut().for_each(|c| c.push(&Value::Null)),
            v => return Err(mismatch(field, v)),
        }
    }
    let children = fields
        .iter()
        .zip(&columns)
        .map(|(f, c)| to_array(c, f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(StructArray::new(
        fields.clone(),
        children,
        nulls(values),
    )))
}
