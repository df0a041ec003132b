//! `gold.fact_<table>`: one row per fact event (or per key with `upsert = true`), each
//! reference resolved to the dimension version valid at the fact's source time. A reference to
//! a key the dimension has not seen creates an inferred member there.

use std::collections::BTreeMap;

use tidemark_core::mapping::{Backend, ColType};

use super::silver_write::{meta_cells, meta_columns, table_def};
use super::{ApplyError, Context, Keyed, col_list};
use crate::cell::{Cell, key_text};
use crate::change::Op;
use crate::spec::TableSpec;
use crate::sql::conn::Tx;
use crate::sql::names::{literal, quote};
use crate::sql::schema::ensure;
use crate::stop::StopKind;

/// Whether `table` has the column `col` in this target (the merger created both).
pub(super) async fn has_column(
    tx: &mut Tx,
    ctx: Context<'_>,
    table: &str,
    col: &str,
) -> Result<bool, sqlx::Error> {
    let (p1, p2) = (tx.param(1), tx.param(2));
    let rows = tx
        .fetch(
            &format!(
                "SELECT tbl FROM {} WHERE tbl = {p1} AND col = {p2}",
                ctx.target.registry()
            ),
            &[Cell::Text(table.to_owned()), Cell::Text(col.to_owned())],
        )
        .await?;
    Ok(!rows.is_empty())
}

/// The unique column of a fact table: one row per event, or per key with `upsert`.
pub(super) fn unique_col(spec: &TableSpec) -> &'static str {
    if spec.upsert { "_key" } else { "_event_id" }
}

/// The surrogate key of the dimension version valid at a fact's source time, for a fact row
/// aliased `f`; a fact no version is valid for (older than every version, or in a deleted
/// stretch) gets the earliest one. Two index lookups on the dimension's `(key, valid_from)`:
/// the newest version that started by then (if it had not ended), else the first one. The
/// cost does not grow with the key's history.
fn sk_expr(f: &str, ref_col: &str, dim_table: &str, dim_key: &str) -> String {
    let (r, k) = (quote(ref_col), quote(dim_key));
    format!(
        "COALESCE(\
         (SELECT CASE WHEN d.valid_to IS NULL OR {f}._source_ts < d.valid_to THEN d.sk END \
          FROM {dim_table} AS d WHERE d.{k} = {f}.{r} AND d.valid_from <= {f}._source_ts \
          ORDER BY d.valid_from DESC, d.version DESC LIMIT 1), \
         (SELECT d.sk FROM {dim_table} AS d WHERE d.{k} = {f}.{r} \
          ORDER BY d.valid_from, d.version LIMIT 1))"
    )
}

/// Points `<ref>_sk` of the facts `from` selects (a `FROM …` giving fact rows aliased `f2`) at
/// the version [`sk_expr`] finds: re-pointing facts after a dimension's versions moved, and
/// upserted facts. The facts whose version changes are found first and only they are written
/// (usually none: one read through the index); returns how many.
pub(super) async fn resolve(
    tx: &mut Tx,
    fact_table: &str,
    (unique, ref_col): (&str, &str),
    (dim_table, dim_key): (&str, &str),
    from: &str,
) -> Result<u64, sqlx::Error> {
    let (u, sk) = (quote(unique), quote(&format!("{ref_col}_sk")));
    let differs = match tx.backend() {
        Backend::Postgres => "IS DISTINCT FROM",
        Backend::Sqlite => "IS NOT",
    };
    let moved = tx
        .fetch(
            &format!(
                "SELECT x.u, {} FROM (SELECT f2.{u} AS u, f2.{sk} AS old, {} AS sk {from}) AS x \
                 WHERE x.old {differs} x.sk",
                tx.text("x.sk"),
                sk_expr("f2", ref_col, dim_table, dim_key),
            ),
            &[],
        )
        .await?;
    if moved.is_empty() {
        return Ok(0);
    }
    let rows: Vec<Vec<Cell>> = moved
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            let key = r.next().flatten().map_or(Cell::Null, Cell::Text);
            let sk = r.next().flatten().and_then(|v| v.parse().ok());
            vec![key, sk.map_or(Cell::Null, Cell::Int)]
        })
        .collect();
    let cols = [
        ("u".to_owned(), ColType::Text),
        ("sk".to_owned(), ColType::Int64),
    ];
    tx.stage("tm_repoint", &cols, &rows).await?;
    if tx.backend() == Backend::Postgres {
        // Even a few rows: without statistics the planner may hash the whole fact table.
        tx.exec(&format!("ANALYZE {}", quote("tm_repoint")), &[])
            .await?;
    }
    tx.exec(
        &format!(
            "UPDATE {fact_table} AS f SET {sk} = s.sk FROM {} AS s WHERE f.{u} = s.u",
            quote("tm_repoint")
        ),
        &[],
    )
    .await
}

/// The index re-pointing walks: a reference's facts from a time on.
fn ref_time_index(ctx: Context<'_>, table: &str, ref_col: &str) -> (String, String) {
    let name = ctx.target.index_name(table, &format!("{ref_col}_ts"));
    let create = format!(
        "CREATE INDEX IF NOT EXISTS {} ON {table} ({}, _source_ts)",
        quote(&name),
        quote(ref_col)
    );
    (name, create)
}

/// Fact tables made before [`ref_time_index`] get it when their facts are first re-pointed
/// (re-pointing a key's facts from a time on would otherwise read all of the key's facts).
pub(super) async fn ensure_ref_time_index(
    tx: &mut Tx,
    ctx: Context<'_>,
    table: &str,
    ref_col: &str,
) -> Result<(), sqlx::Error> {
    let (name, create) = ref_time_index(ctx, table, ref_col);
    let p1 = tx.param(1);
    let exists = match tx.backend() {
        Backend::Postgres => format!("SELECT indexname FROM pg_indexes WHERE indexname = {p1}"),
        Backend::Sqlite => {
            format!("SELECT name FROM sqlite_master WHERE type = 'index' AND name = {p1}")
        }
    };
    if tx.fetch(&exists, &[Cell::Text(name)]).await?.is_empty() {
        tx.exec(&create, &[]).await?;
    }
    Ok(())
}

/// A reference registered with its dimension: the fact column, and the dimension table and key
/// column when this batch refers to a key (else the dimension may not exist yet).
type Resolvable = (String, Option<(String, String)>);

pub(super) async fn apply(
    tx: &mut Tx,
    ctx: Context<'_>,
    spec: &TableSpec,
    columns: &[(String, ColType)],
    types: &BTreeMap<String, ColType>,
    keyed: &[Keyed<'_>],
) -> Result<(u64, Vec<(String, super::DimStats)>), ApplyError> {
    let table = ctx.target.fact(&spec.name);
    let mut cols: Vec<(String, ColType)> = columns
        .iter()
        .map(|(n, t)| (n.clone(), types.get(n).copied().unwrap_or(*t)))
        .collect();
    for r in spec.references.keys() {
        let sk = format!("{r}_sk");
        if cols.iter().any(|(n, _)| *n == sk) {
            return Err(ApplyError::stopped(
                &spec.name,
                StopKind::Column,
                format!(
                    "column {} collides with the surrogate key column of reference {}",
                    quote(&sk),
                    quote(r)
                ),
            ));
        }
        cols.push((sk, ColType::Int64));
    }
    let mut def = table_def(ctx, tx, &table, &cols, unique_col(spec));
    def.fixed.push("_event_id TEXT".into());
    for r in spec.references.keys() {
        def.on_column
            .push((r.clone(), ref_time_index(ctx, &table, r).1));
    }
    let types = ensure(tx, ctx.target, &def)
        .await
        .map_err(|e| ApplyError::from_schema(&spec.name, e))?;
    let value_cols: Vec<(String, ColType)> = columns
        .iter()
        .map(|(n, t)| (n.clone(), types.get(n).copied().unwrap_or(*t)))
        .collect();

    // References first (inferred members, facts already stored re-pointed), so the new facts
    // find the versions they point at when they are written.
    let (referenced, resolvable) = register_references(tx, ctx, spec, &types, keyed).await?;
    let written = if spec.upsert {
        let n = super::silver_write::write_keyed(tx, ctx, &table, &value_cols, keyed, "tm_fact")
            .await?;
        point_upserted(tx, spec, &table, &resolvable, keyed).await?;
        n
    } else {
        let mut stage_cols = meta_columns();
        stage_cols.push(("_event_id".into(), ColType::Text));
        stage_cols.extend(value_cols.iter().cloned());
        // A redelivery inside the batch is one fact (the same key and position).
        let mut ids = std::collections::HashSet::new();
        let rows: Vec<Vec<Cell>> = keyed
            .iter()
            .filter(|k| k.change.op != Op::Truncate)
            .map(|k| (k, event_id(k)))
            .filter(|(_, id)| ids.insert(id.clone()))
            .map(|(k, id)| {
                let c = k.change;
                // Placeholders are marked, then resolved below from the key's earlier facts.
                let unavailable: crate::silver::Carried = c
                    .image()
                    .map(|i| {
                        i.unavailable
                            .iter()
                            .map(|n| (n.clone(), String::new()))
                            .collect()
                    })
                    .unwrap_or_default();
                let carried = crate::silver::carried_text(&unavailable);
                let mut cells = meta_cells(k.key, c.op == Op::Delete, c, carried);
                cells.push(Cell::Text(id));
                let img = c.image();
                for (n, t) in &value_cols {
                    let v = img
                        .and_then(|i| i.values.get(n))
                        .cloned()
                        .unwrap_or(Cell::Null);
                    cells.push(v.coerce(*t));
                }
                cells
            })
            .collect();
        tx.stage_scan("tm_fact", &stage_cols, &rows).await?;
        let list = col_list(stage_cols.iter().map(|(n, _)| n.as_str()));
        let now = literal(&crate::bronze_read::ts_ms_text(ctx.now_ms));
        // Surrogate keys are found as the rows are written: no UPDATE of rows just inserted.
        let (mut sk_cols, mut sk_vals) = (String::new(), String::new());
        for (col, (dim_table, dim_key)) in resolvable
            .iter()
            .filter_map(|(c, d)| Some((c, d.as_ref()?)))
        {
            sk_cols.push_str(&format!(", {}", quote(&format!("{col}_sk"))));
            sk_vals.push_str(&format!(", {}", sk_expr("s", col, dim_table, dim_key)));
        }
        let redelivered = drop_stored(tx, &table).await?;
        let n = tx
            .exec(
                &format!(
                    "INSERT INTO {table} ({list}{sk_cols}, _merged_at) SELECT {list}{sk_vals}, {now} \
                     FROM {} AS s{redelivered}",
                    quote("tm_fact")
                ),
                &[],
            )
            .await?;
        resolve_placeholders(tx, &table, &value_cols).await?;
        n
    };

    if let Some(ts) = keyed.iter().map(|k| k.change.ts_ms).max() {
        ctx.fact_marks.raise(&spec.name, ts);
    }
    Ok((written, referenced))
}

/// Makes the staged facts (`tm_fact`) that the table already holds (redeliveries) not be
/// inserted again; returns what the insert's `FROM` needs after it.
///
/// PostgreSQL: they are deleted from the stage first, found by one probe of the `_event_id`
/// index per staged fact (a lateral join: a plain join may hash the whole table), so the
/// insert needs no `ON CONFLICT`, whose speculative insertion made it about a third slower.
/// SQLite: the insert skips them with `ON CONFLICT DO NOTHING`.
async fn drop_stored(tx: &mut Tx, table: &str) -> Result<&'static str, sqlx::Error> {
    if tx.backend() == Backend::Sqlite {
        return Ok(" WHERE true ON CONFLICT (_event_id) DO NOTHING");
    }
    let stage = quote("tm_fact");
    tx.exec(
        &format!(
            "DELETE FROM {stage} WHERE _event_id IN (SELECT s._event_id FROM {stage} AS s \
             CROSS JOIN LATERAL (SELECT 1 FROM {table} AS f WHERE f._event_id = s._event_id LIMIT 1) AS f)"
        ),
        &[],
    )
    .await?;
    Ok("")
}

/// Registers this batch's references with their dimensions (inferred members for keys not seen
/// yet); returns the dimensions' stats and the references new facts can be pointed through.
async fn register_references(
    tx: &mut Tx,
    ctx: Context<'_>,
    spec: &TableSpec,
    types: &BTreeMap<String, ColType>,
    keyed: &[Keyed<'_>],
) -> Result<(Vec<(String, super::DimStats)>, Vec<Resolvable>), ApplyError> {
    let mut referenced = Vec::new();
    let mut resolvable = Vec::new();
    for (col, dim_topic) in &spec.references {
        let Some(dim) = ctx.specs.get(dim_topic) else {
            continue;
        };
        // Not a column yet (so far only NULL): nothing refers to the dimension.
        if !types.contains_key(col) {
            continue;
        }
        let [dim_key] = dim.key.as_slice() else {
            tracing::warn!(
                fact = spec.name,
                dimension = dim.name,
                "a referenced dimension needs exactly one key column (tables[].key); reference not resolved"
            );
            continue;
        };
        let mut refs: BTreeMap<String, i64> = BTreeMap::new();
        for k in keyed {
            let Some(cell) = k.change.image().and_then(|i| i.values.get(col)) else {
                continue;
            };
            if cell.is_null() {
                continue;
            }
            let t = refs
                .entry(key_text(std::slice::from_ref(cell)))
                .or_insert(i64::MAX);
            *t = (*t).min(k.change.ts_ms);
        }
        let key_ty = types.get(col).copied().unwrap_or(ColType::Text);
        // Only NULL references in this batch: the dimension may not exist yet.
        let any_ref = !refs.is_empty();
        // A reference the dimension cannot take (another key type) stops the fact, not the
        // dimension.
        let st = super::dim::reference(tx, ctx, dim, (dim_key.clone(), key_ty), refs)
            .await
            .map_err(|e| match e {
                ApplyError::Stopped { problem, .. } => ApplyError::Stopped {
                    table: spec.name.clone(),
                    problem: problem.map(|p| format!(
                        "reference {} → {dim_topic}: {p}; declare the fact column's type to match the dimension key (tables[].columns)",
                        quote(col)
                    )),
                },
                other => other,
            })?;
        referenced.push((dim.name.clone(), st));
        let dim_table = any_ref.then(|| (ctx.target.dim(&dim.name), dim_key.clone()));
        resolvable.push((col.clone(), dim_table));
    }
    Ok((referenced, resolvable))
}

/// Points the references of the rows an upsert wrote (new or updated) at their versions; a
/// reference set to NULL points at no version.
async fn point_upserted(
    tx: &mut Tx,
    spec: &TableSpec,
    table: &str,
    resolvable: &[Resolvable],
    keyed: &[Keyed<'_>],
) -> Result<(), sqlx::Error> {
    if resolvable.is_empty() {
        return Ok(());
    }
    stage_fact_keys(tx, spec, keyed).await?;
    let u = quote(unique_col(spec));
    let keys = quote(FACT_KEYS);
    for (col, dim) in resolvable {
        tx.exec(
            &format!(
                "UPDATE {table} SET {} = NULL WHERE {} IS NULL AND {u} IN (SELECT {u} FROM {keys})",
                quote(&format!("{col}_sk")),
                quote(col),
            ),
            &[],
        )
        .await?;
        if let Some((dim_table, dim_key)) = dim {
            let from = format!("FROM {table} AS f2 WHERE f2.{u} IN (SELECT {u} FROM {keys})");
            resolve(
                tx,
                table,
                (unique_col(spec), col),
                (dim_table, dim_key),
                &from,
            )
            .await?;
        }
    }
    Ok(())
}

/// Sets each fact column that arrived as a TOAST placeholder to the value in force at the
/// fact's position: the key's newest earlier fact that had the column. Runs over every marked
/// row of the batch's keys, so a late fact also fixes the later rows that carried an older value.
async fn resolve_placeholders(
    tx: &mut Tx,
    table: &str,
    value_cols: &[(String, ColType)],
) -> Result<(), sqlx::Error> {
    // Columns marked in any row of the batch's keys (a late fact has none itself, but the rows
    // after it may).
    let marked = tx
        .fetch(
            &format!(
                "SELECT DISTINCT _toast FROM {table} WHERE _toast IS NOT NULL AND _key IN (SELECT _key FROM {})",
                quote("tm_fact")
            ),
            &[],
        )
        .await?;
    let unavailable: std::collections::BTreeSet<String> = marked
        .iter()
        .flat_map(|r| crate::silver::carried_from(r[0].as_deref()).into_keys())
        .filter(|c| value_cols.iter().any(|(n, _)| n == c))
        .collect();
    let find = match tx.backend() {
        tidemark_core::mapping::Backend::Postgres => "strpos",
        tidemark_core::mapping::Backend::Sqlite => "instr",
    };
    for col in &unavailable {
        let c = quote(col);
        // The marker is the column's JSON key in `_toast`, bound as a value.
        let marker = format!(
            "{}:",
            serde_json::to_string(col).expect("a string serializes")
        );
        let (p1, p2) = (tx.param(1), tx.param(2));
        tx.exec(
            &format!(
                "UPDATE {table} AS f SET {c} = (SELECT e.{c} FROM {table} AS e WHERE e._key = f._key \
                 AND e._source_pos < f._source_pos AND (e._toast IS NULL OR {find}(e._toast, {p1}) = 0) \
                 ORDER BY e._source_pos DESC LIMIT 1) \
                 WHERE f._key IN (SELECT _key FROM {}) AND {find}(f._toast, {p2}) > 0",
                quote("tm_fact")
            ),
            &[Cell::Text(marker.clone()), Cell::Text(marker)],
        )
        .await?;
    }
    Ok(())
}

/// The stage that names every fact row a batch wrote (by [`unique_col`]), for resolving their
/// references: the upsert writes in several groups, each restaging its own rows.
const FACT_KEYS: &str = "tm_fact_keys";

async fn stage_fact_keys(
    tx: &mut Tx,
    spec: &TableSpec,
    keyed: &[Keyed<'_>],
) -> Result<(), sqlx::Error> {
    let rows: std::collections::BTreeSet<String> = keyed
        .iter()
        .filter(|k| k.change.op != Op::Truncate)
        .map(|k| {
            if spec.upsert {
                k.key.to_owned()
            } else {
                event_id(k)
            }
        })
        .collect();
    let rows: Vec<Vec<Cell>> = rows.into_iter().map(|r| vec![Cell::Text(r)]).collect();
    let cols = [(unique_col(spec).to_owned(), ColType::Text)];
    tx.stage(FACT_KEYS, &cols, &rows).await
}

/// A fact event's id: its key and source position (a redelivery has the same id).
fn event_id(k: &Keyed<'_>) -> String {
    let id = xxhash_rust::xxh3::xxh3_128(format!("{}\0{}", k.key, k.change.pos).as_bytes());
    format!("{id:032x}")
}
