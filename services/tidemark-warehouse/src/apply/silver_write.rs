//! `silver.<table>`: one row per key, upserted with a position guard so an older or
//! redelivered change never overwrites a newer row.

use crate::change::SourcePos;
use std::collections::{BTreeMap, BTreeSet};

use tidemark_core::mapping::ColType;

use super::{ApplyError, Context, Keyed, col_list, fetch_in, ts_cell};
use crate::cell::Cell;
use crate::change::Change;
use crate::history::Latest;
use crate::silver::{SilverRow, Stored, carried_from, carried_text, fold, patch};
use crate::spec::TableSpec;
use crate::sql::conn::Tx;
use crate::sql::names::{literal, quote};
use crate::sql::schema::{TableDef, ensure};

/// The columns tidemark adds, with their types, in the order they are staged.
pub(crate) fn meta_columns() -> Vec<(String, ColType)> {
    [
        ("_key", ColType::Text),
        ("_deleted", ColType::Bool),
        ("_op", ColType::Text),
        ("_source_ts", ColType::TimestampTz),
        ("_source_pos", ColType::Text),
        ("_kafka_topic", ColType::Text),
        ("_kafka_partition", ColType::Int32),
        ("_kafka_offset", ColType::Int64),
        ("_toast", ColType::Text),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t))
    .collect()
}

/// `carried`: the `_toast` text (columns a row carries from older changes).
pub(crate) fn meta_cells(
    key: &str,
    deleted: bool,
    c: &Change,
    carried: Option<String>,
) -> Vec<Cell> {
    vec![
        Cell::Text(key.to_owned()),
        Cell::Bool(deleted),
        Cell::Text(c.op.code().to_owned()),
        ts_cell(c.ts_ms),
        Cell::Text(c.pos.to_string()),
        Cell::Text(c.topic.clone()),
        Cell::Int(c.partition.into()),
        Cell::Int(c.offset),
        carried.map_or(Cell::Null, Cell::Text),
    ]
}

pub(crate) fn table_def(
    ctx: Context<'_>,
    tx: &Tx,
    name: &str,
    columns: &[(String, ColType)],
    unique: &str,
) -> TableDef {
    let b = tx.backend();
    let tstz = ColType::TimestampTz.ddl(b);
    TableDef {
        name: name.to_owned(),
        fixed: vec![
            "_key TEXT NOT NULL".into(),
            "_deleted BOOLEAN NOT NULL".into(),
            "_op TEXT NOT NULL".into(),
            format!("_source_ts {tstz}"),
            "_source_pos TEXT NOT NULL".into(),
            "_kafka_topic TEXT".into(),
            "_kafka_partition INTEGER".into(),
            "_kafka_offset BIGINT".into(),
            format!("_merged_at {tstz}"),
        ],
        // `_toast` is registered like a source column so tables made before it get it added.
        columns: columns
            .iter()
            .cloned()
            .chain([("_toast".to_owned(), ColType::Text)])
            .collect(),
        after_create: vec![format!(
            "CREATE UNIQUE INDEX {} ON {name} ({unique})",
            quote(&ctx.target.index_name(name, unique))
        )],
        on_column: Vec::new(),
        upgrades: Vec::new(),
    }
}

/// Where and how [`upsert_rows`] writes.
pub(crate) struct Upsert<'a> {
    /// Quoted table name.
    pub table: &'a str,
    /// The unique column the upsert conflicts on.
    pub conflict: &'a str,
    /// Source columns with their registered types.
    pub columns: &'a [(String, ColType)],
    /// Temporary table name.
    pub stage: &'a str,
    /// `>` (changes newer than the stored row) or `>=` (exact rows recomputed from a log).
    pub guard: &'a str,
}

/// Upserts `rows` (grouped by the columns they keep), with the position guard. Returns the
/// rows written.
pub(crate) async fn upsert_rows(
    tx: &mut Tx,
    ctx: Context<'_>,
    u: Upsert<'_>,
    rows: Vec<(SilverRow, String)>,
) -> Result<u64, sqlx::Error> {
    let Upsert {
        table,
        conflict,
        columns,
        stage: stage_name,
        guard,
    } = u;
    let mut staged_cols = meta_columns();
    let n_meta = staged_cols.len();
    staged_cols.extend(columns.iter().cloned());
    let mut groups: BTreeMap<(bool, BTreeSet<String>), Vec<Vec<Cell>>> = BTreeMap::new();
    for (row, key) in rows {
        let cells = row_cells(&row, &key, columns);
        groups
            .entry((row.keep_all, row.keep))
            .or_default()
            .push(cells);
    }
    let names: Vec<&str> = staged_cols.iter().map(|(n, _)| n.as_str()).collect();
    let list = col_list(names.iter().copied());
    let now = literal(&crate::bronze_read::ts_ms_text(ctx.now_ms));
    let mut written = 0;
    for ((keep_all, keep), cells) in groups {
        tx.stage_scan(stage_name, &staged_cols, &cells).await?;
        let sets: Vec<String> = staged_cols
            .iter()
            .map(|(n, _)| n.as_str())
            .enumerate()
            .filter(|(i, n)| {
                // Meta columns always move; a kept source column keeps its stored value.
                *n != "_key" && (*i < n_meta || !(keep_all || keep.contains(*n)))
            })
            .map(|(_, n)| n)
            .map(|n| format!("{} = excluded.{}", quote(n), quote(n)))
            .chain(std::iter::once(
                "_merged_at = excluded._merged_at".to_owned(),
            ))
            .collect();
        written += tx
            .exec(
                &format!(
                    "INSERT INTO {table} AS cur ({list}, _merged_at) SELECT {list}, {now} FROM {} WHERE true \
                     ON CONFLICT ({conflict}) DO UPDATE SET {} WHERE excluded._source_pos {guard} cur._source_pos",
                    quote(stage_name),
                    sets.join(", ")
                ),
                &[],
            )
            .await?;
    }
    Ok(written)
}

/// Creates or evolves `silver.<table>`; returns the registered column types.
pub(super) async fn ensure_silver(
    tx: &mut Tx,
    ctx: Context<'_>,
    spec: &TableSpec,
    columns: &[(String, ColType)],
) -> Result<BTreeMap<String, ColType>, ApplyError> {
    let table = ctx.target.silver(&spec.name);
    let def = table_def(ctx, tx, &table, columns, "_key");
    ensure(tx, ctx.target, &def)
        .await
        .map_err(|e| ApplyError::from_schema(&spec.name, e))
}

/// Where silver's rows come from.
pub(super) enum Source<'a> {
    /// Folded from the batch's changes, against the stored row's position.
    Fold(&'a [Keyed<'a>]),
    /// A dimension's exact latest rows, from its change log.
    Latest(super::dim::NewLatest),
}

/// Writes silver rows and truncates; returns the rows written. `columns` carry registered types.
pub(super) async fn write(
    tx: &mut Tx,
    ctx: Context<'_>,
    spec: &TableSpec,
    columns: &[(String, ColType)],
    source: Source<'_>,
    truncates: &[&Change],
) -> Result<u64, ApplyError> {
    let table = ctx.target.silver(&spec.name);
    let mut written = match source {
        Source::Fold(keyed) => write_keyed(tx, ctx, &table, columns, keyed, "tm_silver").await?,
        Source::Latest(super::dim::NewLatest { rows, fresh }) => {
            let rows = rows
                .into_iter()
                .map(|(key, l)| (latest_row(spec, l), key))
                .collect();
            // `>=`: a late change can alter how the newest one's placeholders resolve.
            let u = Upsert {
                table: &table,
                conflict: "_key",
                columns,
                stage: "tm_silver",
                guard: ">=",
            };
            write_rows(tx, ctx, u, rows, |k| fresh.contains(k)).await?
        }
    };
    written += truncate(tx, &table, truncates).await?;
    Ok(written)
}

/// Silver's row of a dimension key's latest change.
fn latest_row(spec: &TableSpec, l: Latest) -> SilverRow {
    let last = Change {
        topic: spec.topic.clone(),
        partition: l.partition,
        offset: l.offset,
        op: l.op,
        pos: l.pos,
        ts_ms: l.ts_ms,
        record_key: Default::default(),
        before: None,
        after: None,
        txn: None,
    };
    SilverRow {
        values: l.values,
        keep: BTreeSet::new(),
        keep_all: false,
        deleted: l.deleted,
        last,
        carried: Default::default(),
    }
}

/// A row's staged cells: [`meta_columns`], then `columns`.
fn row_cells(row: &SilverRow, key: &str, columns: &[(String, ColType)]) -> Vec<Cell> {
    let mut cells = meta_cells(key, row.deleted, &row.last, carried_text(&row.carried));
    for (name, ty) in columns {
        let v = row.values.get(name).cloned().unwrap_or(Cell::Null);
        cells.push(v.coerce(*ty));
    }
    cells
}

/// Writes `rows`: those of keys `is_new` says the table has no row for are appended, the
/// others upserted. Returns the rows written.
async fn write_rows(
    tx: &mut Tx,
    ctx: Context<'_>,
    u: Upsert<'_>,
    rows: Vec<(SilverRow, String)>,
    is_new: impl Fn(&str) -> bool,
) -> Result<u64, sqlx::Error> {
    let (new, known): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(_, k)| is_new(k));
    let appended = new.len() as u64;
    append_rows(tx, ctx, u.table, u.columns, new).await?;
    Ok(appended + upsert_rows(tx, ctx, u, known).await?)
}

/// Inserts rows of keys `table` has no row for, without a conflict check.
async fn append_rows(
    tx: &mut Tx,
    ctx: Context<'_>,
    table: &str,
    columns: &[(String, ColType)],
    rows: Vec<(SilverRow, String)>,
) -> Result<(), sqlx::Error> {
    let now = ts_cell(ctx.now_ms);
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|(row, key)| {
            let mut cells = row_cells(row, key, columns);
            cells.push(now.clone());
            cells
        })
        .collect();
    let names: Vec<String> = meta_columns()
        .into_iter()
        .map(|(n, _)| n)
        .chain(columns.iter().map(|(n, _)| n.clone()))
        .chain(["_merged_at".to_owned()])
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    tx.append(table, &names, cells).await
}

/// Folds each key's changes against its stored row and upserts the result (silver, upsert
/// facts): late changes first patch values the stored row carries from older changes.
pub(crate) async fn write_keyed(
    tx: &mut Tx,
    ctx: Context<'_>,
    table: &str,
    columns: &[(String, ColType)],
    keyed: &[Keyed<'_>],
    stage: &str,
) -> Result<u64, sqlx::Error> {
    let keys: BTreeSet<String> = keyed.iter().map(|k| k.key.to_owned()).collect();
    let mut stored: BTreeMap<String, Stored> =
        fetch_in(tx, (table, "s"), "s._key, s._source_pos, s._toast", &keys)
            .await?
            .into_iter()
            .filter_map(|r| {
                let stored = Stored {
                    pos: SourcePos::stored(r[1].clone()?),
                    carried: carried_from(r[2].as_deref()),
                };
                Some((r[0].clone()?, stored))
            })
            .collect();

    let mut patches = Vec::new();
    let mut rows = Vec::new();
    for group in keyed.chunk_by(|a, b| a.key == b.key) {
        let key = group[0].key;
        let changes = || group.iter().map(|k| k.change);
        if let Some(s) = stored.get_mut(key)
            && let Some(p) = patch(changes(), s)
        {
            s.carried = p.carried.clone();
            patches.push((key.to_owned(), p));
        }
        if let Some(row) = fold(changes(), stored.get(key)) {
            rows.push((row, key.to_owned()));
        }
    }
    let mut written = apply_patches(tx, table, columns, &format!("{stage}_patch"), patches).await?;
    let u = Upsert {
        table,
        conflict: "_key",
        columns,
        stage,
        guard: ">",
    };
    // Keys without a stored row (read above, in this transaction) are new to the table.
    written += write_rows(tx, ctx, u, rows, |k| !stored.contains_key(k)).await?;
    Ok(written)
}

/// Writes the values late changes patch into stored rows, grouped by the columns they patch;
/// a row that moved meanwhile is left alone.
async fn apply_patches(
    tx: &mut Tx,
    table: &str,
    columns: &[(String, ColType)],
    stage: &str,
    patches: Vec<(String, crate::silver::Patch)>,
) -> Result<u64, sqlx::Error> {
    let mut groups: BTreeMap<Vec<String>, Vec<Vec<Cell>>> = BTreeMap::new();
    for (key, p) in patches {
        let cols: Vec<String> = p
            .values
            .keys()
            .filter(|c| columns.iter().any(|(n, _)| n == *c))
            .cloned()
            .collect();
        if cols.is_empty() {
            continue;
        }
        let mut cells = vec![
            Cell::Text(key),
            Cell::Text(p.pos.to_string()),
            carried_text(&p.carried).map_or(Cell::Null, Cell::Text),
        ];
        for c in &cols {
            let ty = columns
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, t)| *t)
                .unwrap_or(ColType::Text);
            cells.push(p.values[c].clone().coerce(ty));
        }
        groups.entry(cols).or_default().push(cells);
    }
    let mut written = 0;
    for (cols, rows) in groups {
        let mut stage_cols = vec![
            ("_key".to_owned(), ColType::Text),
            ("_source_pos".to_owned(), ColType::Text),
            ("_toast".to_owned(), ColType::Text),
        ];
        stage_cols.extend(cols.iter().map(|c| {
            let ty = columns
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, t)| *t)
                .unwrap_or(ColType::Text);
            (c.clone(), ty)
        }));
        tx.stage(stage, &stage_cols, &rows).await?;
        let sets: Vec<String> = cols
            .iter()
            .map(|c| format!("{} = p.{}", quote(c), quote(c)))
            .chain(["_toast = p._toast".to_owned()])
            .collect();
        written += tx
            .exec(
                &format!(
                    "UPDATE {table} AS cur SET {} FROM {} AS p WHERE cur._key = p._key AND cur._source_pos = p._source_pos",
                    sets.join(", "),
                    quote(stage)
                ),
                &[],
            )
            .await?;
    }
    Ok(written)
}

/// Truncates soft-delete every older row.
async fn truncate(tx: &mut Tx, table: &str, truncates: &[&Change]) -> Result<u64, sqlx::Error> {
    let mut written = 0;
    for t in truncates {
        let (p1, p2, p3, p4, p5, p6) = (
            tx.param(1),
            tx.param(2),
            tx.param(3),
            tx.param(4),
            tx.param(5),
            tx.param(6),
        );
        written += tx
            .exec(
                &format!(
                    "UPDATE {table} SET _deleted = true, _op = 't', _source_pos = {p1}, \
                     _source_ts = {}, _kafka_topic = {p3}, _kafka_partition = {p4}, \
                     _kafka_offset = {p5} WHERE _source_pos < {p6}",
                    tx.cast(&p2, ColType::TimestampTz)
                ),
                &[
                    Cell::Text(t.pos.to_string()),
                    ts_cell(t.ts_ms),
                    Cell::Text(t.topic.clone()),
                    Cell::Int(t.partition.into()),
                    Cell::Int(t.offset),
                    Cell::Text(t.pos.to_string()),
                ],
            )
            .await?;
    }
    Ok(written)
}
