//! Applies one table's micro-batch inside the caller's transaction: silver for every table,
//! then the SCD2 dimension or the fact table where configured. Each part stages its rows into a
//! temporary table and changes the warehouse with a few set-based statements.

mod dim;
mod dim_plan;
mod fact;
mod fact_marks;
mod silver_write;

use std::collections::{BTreeMap, BTreeSet};

use tidemark_core::mapping::ColType;

use crate::cell::{Cell, key_text};
use crate::change::{Change, Columns};
use crate::spec::TableSpec;
use crate::sql::conn::Tx;
pub(crate) use crate::sql::conn::ms_of;
pub(crate) use crate::sql::names::col_list;
use crate::sql::names::{Target, check_identifier, quote};
use crate::sql::schema::SchemaError;
use crate::stop::{StopKind, StopReason};

pub(crate) use dim::DimStats;
pub(crate) use fact_marks::FactMarks;

/// A table's changes for one batch.
#[derive(Debug, Clone)]
pub(crate) struct TableBatch {
    pub spec: TableSpec,
    /// Columns seen in the batch's files, with their types.
    pub columns: Columns,
    /// In offset order per partition.
    pub changes: Vec<Change>,
}

/// What a batch did, for metrics and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub changes: u64,
    pub silver_rows: u64,
    pub truncates: u64,
    /// Changes without a complete key: kept in bronze, not merged.
    pub unkeyed: u64,
    pub dim: DimStats,
    pub facts: u64,
    /// What a fact's references did to each dimension (inferred members, re-pointed versions).
    pub referenced: Vec<(String, DimStats)>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The table cannot go on until someone acts; other tables continue.
    #[error("table {table} stopped: {problem}")]
    Stopped { table: String, problem: StopReason },
    #[error("warehouse: {0}")]
    Sql(#[from] sqlx::Error),
}

impl ApplyError {
    fn from_schema(table: &str, e: SchemaError) -> ApplyError {
        match e {
            SchemaError::Incompatible(i) => ApplyError::Stopped {
                table: table.into(),
                problem: StopReason::new(StopKind::Schema, i.to_string()),
            },
            e @ SchemaError::UnknownRegistered { .. } => ApplyError::Stopped {
                table: table.into(),
                problem: StopReason::new(StopKind::Schema, e.to_string()),
            },
            SchemaError::Sql(e) => ApplyError::Sql(e),
        }
    }

    fn stopped(table: &str, kind: StopKind, problem: String) -> ApplyError {
        ApplyError::Stopped {
            table: table.into(),
            problem: StopReason::new(kind, problem),
        }
    }
}

/// Everything the apply step needs besides the batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub target: &'a Target,
    /// Every known table by topic (for references between facts and dimensions).
    pub specs: &'a BTreeMap<String, TableSpec>,
    /// `_merged_at` of this batch.
    pub now_ms: i64,
    /// The newest fact of each fact table, where known.
    pub fact_marks: &'a FactMarks,
}

/// A change with its key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed<'a> {
    pub key: &'a str,
    pub change: &'a Change,
}

pub(crate) async fn apply(
    tx: &mut Tx,
    ctx: Context<'_>,
    batch: &TableBatch,
) -> Result<Applied, ApplyError> {
    let spec = &batch.spec;
    let table = spec.name.as_str();
    if batch.changes.is_empty() {
        // Ranges of tombstones, dead letters or other record kinds: only the ledger moves.
        return Ok(Applied::default());
    }
    let mut applied = Applied {
        changes: batch.changes.len() as u64,
        ..Applied::default()
    };
    check_table_name(spec)?;
    let columns = effective_columns(spec, &batch.columns)?;

    // Keys: configured, else the record key's columns (the first change that has one).
    let key_names = match batch
        .changes
        .iter()
        .map(|c| spec.key_names(c))
        .find(|k| !k.is_empty())
    {
        Some(k) => k,
        None if batch
            .changes
            .iter()
            .all(|c| c.op == crate::change::Op::Truncate) =>
        {
            Vec::new()
        }
        None => {
            return Err(ApplyError::stopped(
                table,
                StopKind::Key,
                "its events have no key: set tables[].key for this topic".into(),
            ));
        }
    };
    let mut key_types: Vec<(String, ColType)> = Vec::new();
    let mut all_columns = columns.clone();
    for name in &key_names {
        let ty = columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .or_else(|| {
                batch
                    .changes
                    .iter()
                    .find_map(|c| c.record_key.get(name).and_then(type_of_cell))
            });
        key_types.push((name.clone(), ty.unwrap_or(ColType::Text)));
        // A key column only in the record key joins the columns; its type must be known (a
        // batch of truncates carries none).
        if let Some(ty) = ty
            && !all_columns.iter().any(|(n, _)| n == name)
        {
            all_columns.insert(0, (name.clone(), ty));
        }
    }

    let mut keyed_storage: Vec<(String, &Change)> = Vec::with_capacity(batch.changes.len());
    let mut truncates = Vec::new();
    for c in &batch.changes {
        if c.op == crate::change::Op::Truncate {
            truncates.push(c);
            continue;
        }
        match spec.key_of(c, &key_names) {
            Some(k) => keyed_storage.push((key_text(&k), c)),
            None => applied.unkeyed += 1,
        }
    }
    if applied.unkeyed > 0 {
        tracing::warn!(
            table,
            count = applied.unkeyed,
            "changes without a complete key are not merged"
        );
    }
    let mut keyed: Vec<Keyed<'_>> = keyed_storage
        .iter()
        .map(|(k, c)| Keyed {
            key: k.as_str(),
            change: c,
        })
        .collect();
    keyed.sort_by(|a, b| a.key.cmp(b.key).then_with(|| a.change.order(b.change)));

    let types = silver_write::ensure_silver(tx, ctx, spec, &all_columns).await?;
    // Columns seen only as null are written (as NULL) where the table already has them.
    for name in batch.columns.null_only() {
        if let Some(ty) = types.get(name)
            && !all_columns.iter().any(|(n, _)| n == name)
        {
            all_columns.push((name.clone(), *ty));
        }
    }
    let typed: Vec<(String, ColType)> = all_columns
        .iter()
        .map(|(n, t)| (n.clone(), types.get(n).copied().unwrap_or(*t)))
        .collect();
    applied.truncates = truncates.len() as u64;

    let source = if spec.is_dimension() {
        let tracked: Vec<(String, ColType)> = typed
            .iter()
            .filter(|(n, _)| !spec.ignore.contains(n) && !key_names.contains(n))
            .cloned()
            .collect();
        for n in tracked.iter().map(|(n, _)| n).chain(&key_names) {
            if crate::sql::names::DIM_META.contains(&n.as_str()) {
                return Err(ApplyError::stopped(
                    table,
                    StopKind::Column,
                    format!(
                        "column {} collides with a gold SCD2 column; add it to tables[].ignore_columns or rename it in the source",
                        quote(n)
                    ),
                ));
            }
        }
        let entries = dim::entries_from_changes(&keyed);
        let (stats, latest) = dim::apply(tx, ctx, spec, &key_types, &tracked, entries).await?;
        applied.dim = stats;
        silver_write::Source::Latest(latest)
    } else {
        silver_write::Source::Fold(&keyed)
    };
    applied.silver_rows = silver_write::write(tx, ctx, spec, &typed, source, &truncates).await?;
    if spec.is_fact() {
        (applied.facts, applied.referenced) =
            fact::apply(tx, ctx, spec, &all_columns, &types, &keyed).await?;
    }
    Ok(applied)
}

/// The warehouse name must fit every table derived from it (PostgreSQL truncates past 63 bytes,
/// which could make two tables one).
fn check_table_name(spec: &TableSpec) -> Result<(), ApplyError> {
    if tidemark_core::config::is_valid_identifier(&spec.name, spec.kind) {
        return Ok(());
    }
    Err(ApplyError::stopped(
        &spec.name,
        StopKind::Name,
        format!(
            "its warehouse name is {} bytes or has control characters; names may have at most {} \
             bytes (with the prefix of the tables made from it): set [[tables]] source = \"{}\", name = \"…\"",
            spec.name.len(),
            tidemark_core::config::max_table_name_bytes(spec.kind),
            spec.topic
        ),
    ))
}

/// The batch's columns with declared types applied and every name checked.
fn effective_columns(
    spec: &TableSpec,
    seen: &Columns,
) -> Result<Vec<(String, ColType)>, ApplyError> {
    let mut out = Vec::with_capacity(seen.0.len());
    for (name, ty) in &seen.0 {
        check_identifier(name).map_err(|p| {
            ApplyError::stopped(
                &spec.name,
                StopKind::Name,
                format!("column {}: {p}", quote(name)),
            )
        })?;
        if crate::sql::names::SILVER_META.contains(&name.as_str())
            || (spec.is_fact() && crate::sql::names::FACT_META.contains(&name.as_str()))
        {
            return Err(ApplyError::stopped(
                &spec.name,
                StopKind::Column,
                format!(
                    "column {} collides with a column tidemark adds to silver or gold; rename it in \
                     the source (or drop it with a Debezium column.exclude.list)",
                    quote(name)
                ),
            ));
        }
        out.push((
            name.clone(),
            spec.declared.get(name).copied().unwrap_or(*ty),
        ));
    }
    for (name, ty) in &spec.declared {
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name.clone(), *ty));
        }
    }
    Ok(out)
}

fn type_of_cell(c: &Cell) -> Option<ColType> {
    Some(match c {
        Cell::Null => return None,
        Cell::Bool(_) => ColType::Bool,
        Cell::Int(_) => ColType::Int64,
        Cell::Float(_) => ColType::Float64,
        Cell::Text(_) => ColType::Text,
        Cell::Bytes(_) => ColType::Bytes,
    })
}

/// `SELECT cols` of the rows of `table` (aliased `alias`) whose `_key` is one of `keys`.
pub(crate) async fn fetch_in(
    tx: &mut Tx,
    table: (&str, &str),
    cols: &str,
    keys: &BTreeSet<String>,
) -> Result<crate::sql::conn::TextRows, sqlx::Error> {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    tx.fetch_in(table, cols, &keys).await
}

pub(crate) fn ts_cell(ms: i64) -> Cell {
    Cell::Text(crate::bronze_read::ts_ms_text(ms))
}

/// Parses a boolean read as text from either backend.
pub(crate) fn parse_bool(s: Option<&str>) -> bool {
    matches!(s, Some("t" | "true" | "1"))
}
