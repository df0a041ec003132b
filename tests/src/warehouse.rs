//! Warehouse helpers for merge tests: both backends, and table contents as text rows.

use tidemark_warehouse::sql::conn::Pool;

/// The backends a conformance test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Sqlite,
    Postgres,
}

/// A fresh warehouse of a backend, `None` when PostgreSQL is not configured (see
/// [`crate::postgres`]).
pub async fn fresh(which: Which) -> Option<(Pool, String)> {
    let url = match which {
        Which::Sqlite => "sqlite::memory:".to_owned(),
        Which::Postgres => crate::postgres::fresh_database().await?,
    };
    let pool = Pool::connect(&url, None)
        .await
        .expect("connect to the warehouse");
    Some((pool, url))
}

/// Rows of a query, every column cast to text by the caller's SQL (use [`text`]).
pub async fn rows(pool: &Pool, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut tx = pool.begin().await.expect("begin");
    let r = tx
        .fetch(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    tx.rollback().await.expect("rollback");
    r
}

/// `expr` as text in the pool's dialect.
pub fn text(pool: &Pool, expr: &str) -> String {
    match pool {
        Pool::Postgres(_) => format!("({expr})::text"),
        Pool::Sqlite(_) => format!("CAST({expr} AS TEXT)"),
    }
}

/// A timestamp column as ms since the epoch, as text.
pub fn ms(pool: &Pool, col: &str) -> String {
    text(
        pool,
        &tidemark_warehouse::sql::conn::ms_of(pool.backend(), col),
    )
}

/// A table name in the pool's naming (`silver.x` on PostgreSQL, `silver__x` on SQLite).
pub fn table(pool: &Pool, layer: &str, name: &str) -> String {
    let t = tidemark_warehouse::sql::names::Target::new(pool.backend(), None).expect("target");
    match layer {
        "silver" => t.silver(name),
        "dim" => t.dim(name),
        "fact" => t.fact(name),
        _ => panic!("layer {layer}"),
    }
}
