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

/// Runs an `async fn(Pool)` scenario as two tests: on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($scenario:ident, $sqlite:ident, $pg:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            if let Some((pool, _)) =
                $crate::warehouse::fresh($crate::warehouse::Which::Sqlite).await
            {
                $scenario(pool).await;
            }
        }
        #[tokio::test]
        async fn $pg() {
            if let Some((pool, _)) =
                $crate::warehouse::fresh($crate::warehouse::Which::Postgres).await
            {
                $scenario(pool).await;
            }
        }
    };
}

/// `(version, valid_from ms, valid_to ms, is_current, is_deleted, is_inferred, <col>)` of a key.
pub async fn versions(pool: &Pool, dim: &str, id: i64, col: &str) -> Vec<Vec<Option<String>>> {
    let sql = format!(
        "SELECT {}, {}, {}, {}, {}, {}, {} FROM {} AS d WHERE d.id = {id} ORDER BY d.valid_from, d.version",
        text(pool, "version"),
        ms(pool, "valid_from"),
        ms(pool, "valid_to"),
        text(pool, "CASE WHEN is_current THEN 'cur' ELSE '' END"),
        text(pool, "CASE WHEN is_deleted THEN 'del' ELSE '' END"),
        text(pool, "CASE WHEN is_inferred THEN 'inf' ELSE '' END"),
        text(pool, &format!("\"{col}\"")),
        table(pool, "dim", dim),
    );
    rows(pool, &sql).await
}

pub fn v(items: &[&str]) -> Vec<Option<String>> {
    items
        .iter()
        .map(|s| {
            if *s == "NULL" {
                None
            } else {
                Some((*s).to_owned())
            }
        })
        .collect()
}
