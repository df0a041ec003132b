//! Warehouse tables and their evolution. The merger registers every column it creates (name,
//! type) in `tidemark.columns`, so evolution compares types without reading each backend's
//! catalogue: new columns are added, safe widenings applied, anything else stops the table.

use std::collections::{BTreeMap, BTreeSet};

use tidemark_core::mapping::{Backend, ColType};

use super::conn::Tx;
use super::names::{Target, quote};
use crate::cell::Cell;

/// A type change the merger will not make by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "column {column} of {table} changed type from {from} to {to}, which is not a safe widening; \
     declare the type you want in [[tables]] columns = {{ {column} = \"…\" }} or rebuild the table \
     with `tidemark replay --tables <topic> --target-suffix <name>`"
)]
pub struct Incompatible {
    pub table: String,
    pub column: String,
    pub from: ColType,
    pub to: ColType,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Incompatible(#[from] Incompatible),
    /// The column registry names a type this version does not know (a newer tidemark wrote
    /// it): merging on would re-declare the column.
    #[error(
        "the column registry says column {column} of {table} is `{ty}`, a type this tidemark \
         does not know (written by a newer version?): upgrade tidemark"
    )]
    UnknownRegistered {
        table: String,
        column: String,
        ty: String,
    },
    #[error("warehouse: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Creates the namespaces, the column registry and the ledger of a target.
pub async fn bootstrap(tx: &mut Tx, target: &Target) -> Result<(), sqlx::Error> {
    if target.backend == Backend::Postgres {
        // `CREATE … IF NOT EXISTS` is not safe against a concurrent create of the same name:
        // mergers starting together take turns.
        tx.fetch("SELECT pg_advisory_xact_lock(7363746572696)::text", &[])
            .await?;
        for s in target.schemas() {
            tx.exec(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(&s)), &[])
                .await?;
        }
    }
    tx.exec(
        &format!(
            "CREATE TABLE IF NOT EXISTS {} (tbl TEXT NOT NULL, col TEXT NOT NULL, \
             type TEXT NOT NULL, ord INTEGER NOT NULL, PRIMARY KEY (tbl, col))",
            target.registry()
        ),
        &[],
    )
    .await?;
    tx.exec(
        &format!(
            "CREATE TABLE IF NOT EXISTS {} (topic TEXT NOT NULL, part INTEGER NOT NULL, \
             next_offset BIGINT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (topic, part))",
            target.ledger()
        ),
        &[],
    )
    .await?;
    super::claims::bootstrap(tx, target).await?;
    super::segments::bootstrap(tx, target).await?;
    super::leases::bootstrap(tx, target).await?;
    stamp_format(tx, target).await
}

/// The format of the warehouse tables tidemark manages (ledger, claims, registry, silver and
/// gold columns) that this binary writes and the newest it runs against.
/// 2: dimension key states (`tidemark.state_<t>`) and merger leases; a version-1 warehouse is
/// upgraded in place (keys without a state recompute once from their log).
pub const WAREHOUSE_FORMAT: u32 = 2;

/// Records the format in `tidemark.meta` on first use; refuses a warehouse a newer tidemark
/// stamped, whose tables this binary could misread or damage.
async fn stamp_format(tx: &mut Tx, target: &Target) -> Result<(), sqlx::Error> {
    let meta = target.meta();
    tx.exec(
        &format!("CREATE TABLE IF NOT EXISTS {meta} (name TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)"),
        &[],
    )
    .await?;
    let p1 = tx.param(1);
    tx.exec(
        &format!(
            "INSERT INTO {meta} (name, value) VALUES ('warehouse_format', {p1}) \
             ON CONFLICT (name) DO NOTHING"
        ),
        &[Cell::Text(WAREHOUSE_FORMAT.to_string())],
    )
    .await?;
    let rows = tx
        .fetch(
            &format!("SELECT value FROM {meta} WHERE name = 'warehouse_format'"),
            &[],
        )
        .await?;
    let found: u32 = rows
        .first()
        .and_then(|r| r[0].as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if found < WAREHOUSE_FORMAT {
        // Older binaries refuse the warehouse from now on: they would not keep the new tables.
        tx.exec(
            &format!("UPDATE {meta} SET value = {p1} WHERE name = 'warehouse_format'"),
            &[Cell::Text(WAREHOUSE_FORMAT.to_string())],
        )
        .await?;
    }
    if found > WAREHOUSE_FORMAT {
        return Err(sqlx::Error::Configuration(
            format!(
                "the warehouse has format version {found} ({meta}), newer than this tidemark \
                 runs against ({WAREHOUSE_FORMAT}): upgrade tidemark (see the README's Upgrades \
                 section)"
            )
            .into(),
        ));
    }
    Ok(())
}

/// One warehouse table as the merger manages it.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Quoted, qualified name.
    pub name: String,
    /// Fixed columns (`name type-and-constraints`), created with the table.
    pub fixed: Vec<String>,
    /// Source columns, in order.
    pub columns: Vec<(String, ColType)>,
    /// Statements run once after creation (indexes).
    pub after_create: Vec<String>,
    /// Statements that need a source column: run after creation when the column is there, or
    /// when it is added later (an index on a column first seen only as null).
    pub on_column: Vec<(String, String)>,
    /// Changes to tables made by an older tidemark, each run once (a new table has them
    /// through `after_create`).
    pub upgrades: Vec<Upgrade>,
}

/// A change to an existing table (an index replaced), run once per table. Done upgrades are
/// registered like columns, under a name no column can have (identifiers refuse control
/// characters), so checking for them costs nothing beyond the registry read `ensure` makes.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub name: &'static str,
    pub statements: Vec<String>,
}

const UPGRADE_MARK: char = '\u{7f}';

fn upgrade_marker(name: &str) -> String {
    format!("{UPGRADE_MARK}{name}")
}

/// Makes the table exist with at least `def.columns`; returns the registered type of every
/// source column (which may be wider than asked).
pub async fn ensure(
    tx: &mut Tx,
    target: &Target,
    def: &TableDef,
) -> Result<BTreeMap<String, ColType>, SchemaError> {
    let backend = tx.backend();
    let p1 = tx.param(1);
    let rows = tx
        .fetch(
            &format!(
                "SELECT col, type, {} FROM {} WHERE tbl = {p1}",
                tx.text("ord"),
                target.registry()
            ),
            &[Cell::Text(def.name.clone())],
        )
        .await?;
    let mut registered: BTreeMap<String, ColType> = BTreeMap::new();
    let mut upgraded: BTreeSet<String> = BTreeSet::new();
    let mut max_ord = -1i64;
    for r in &rows {
        let (Some(c), Some(t)) = (&r[0], &r[1]) else {
            continue;
        };
        if c.starts_with(UPGRADE_MARK) {
            upgraded.insert(c.clone());
            continue;
        }
        let parsed = ColType::parse(t).map_err(|_| SchemaError::UnknownRegistered {
            table: def.name.clone(),
            column: c.clone(),
            ty: t.clone(),
        })?;
        registered.insert(c.clone(), parsed);
        max_ord = max_ord.max(r[2].as_deref().and_then(|o| o.parse().ok()).unwrap_or(0));
    }
    // Names go through binds: a column name is event text.
    let register_sql = format!(
        "INSERT INTO {} (tbl, col, type, ord) VALUES ({}, {}, {}, {}) \
         ON CONFLICT (tbl, col) DO UPDATE SET type = excluded.type",
        target.registry(),
        tx.param(1),
        tx.param(2),
        tx.param(3),
        tx.param(4),
    );
    let register = |col: &str, ty: ColType, ord: i64| {
        [
            Cell::Text(def.name.clone()),
            Cell::Text(col.to_owned()),
            Cell::Text(ty.to_string()),
            Cell::Int(ord),
        ]
    };
    if rows.is_empty() {
        let mut cols = def.fixed.clone();
        cols.extend(
            def.columns
                .iter()
                .map(|(c, t)| format!("{} {}", quote(c), t.ddl(backend))),
        );
        tx.exec(
            &format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                def.name,
                cols.join(", ")
            ),
            &[],
        )
        .await?;
        for stmt in &def.after_create {
            tx.exec(stmt, &[]).await?;
        }
        for (col, stmt) in &def.on_column {
            if def.columns.iter().any(|(c, _)| c == col) {
                tx.exec(stmt, &[]).await?;
            }
        }
        // The fixed columns are registered too (type text: never evolved), so a table
        // with no source columns yet still counts as created.
        tx.exec(&register_sql, &register("", ColType::Text, -1))
            .await?;
        for (i, (c, t)) in def.columns.iter().enumerate() {
            tx.exec(&register_sql, &register(c, *t, i as i64)).await?;
            registered.insert(c.clone(), *t);
        }
        for u in &def.upgrades {
            tx.exec(
                &register_sql,
                &register(&upgrade_marker(u.name), ColType::Text, -1),
            )
            .await?;
        }
        registered.remove("");
        return Ok(registered);
    }
    registered.remove("");
    for u in &def.upgrades {
        let marker = upgrade_marker(u.name);
        if upgraded.contains(&marker) {
            continue;
        }
        for stmt in &u.statements {
            tx.exec(stmt, &[]).await?;
        }
        tx.exec(&register_sql, &register(&marker, ColType::Text, -1))
            .await?;
    }
    for (c, new) in &def.columns {
        match registered.get(c).copied() {
            None => {
                max_ord += 1;
                tx.exec(
                    &format!(
                        "ALTER TABLE {} ADD COLUMN {} {}",
                        def.name,
                        quote(c),
                        new.ddl(backend)
                    ),
                    &[],
                )
                .await?;
                tx.exec(&register_sql, &register(c, *new, max_ord)).await?;
                registered.insert(c.clone(), *new);
            }
            Some(old) => {
                let Some(wide) = old.widen_to(*new) else {
                    return Err(Incompatible {
                        table: def.name.clone(),
                        column: c.clone(),
                        from: old,
                        to: *new,
                    }
                    .into());
                };
                if wide != old {
                    if backend == Backend::Postgres {
                        tx.exec(
                            &format!(
                                "ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}",
                                def.name,
                                quote(c),
                                wide.ddl(backend),
                                quote(c),
                                wide.ddl(backend)
                            ),
                            &[],
                        )
                        .await?;
                    }
                    tx.exec(&register_sql, &register(c, wide, 0)).await?;
                    registered.insert(c.clone(), wide);
                }
            }
        }
    }
    Ok(registered)
}
