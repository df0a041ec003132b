//! The two backends behind one small set of primitives: run a statement, fetch rows as text,
//! stage rows into a temporary table (PostgreSQL: `COPY … FROM STDIN (FORMAT csv)`; SQLite:
//! multi-row inserts), commit. Everything above this module is backend-neutral SQL text.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Row as _, Sqlite, SqlitePool, Transaction};
use tidemark_core::config::{Secret, WarehouseConfig};
use tidemark_core::mapping::{Backend, ColType};

use super::names::quote;
use crate::cell::Cell;

/// A connection pool to the warehouse.
#[derive(Debug, Clone)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// An open transaction.
#[derive(Debug)]
pub enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// PostgreSQL options: the URL (with its `sslmode`, `sslrootcert`, … parameters), then the
/// `[warehouse]` keys on top. Sessions run in UTC so timestamps render unambiguously.
fn pg_options(config: &WarehouseConfig) -> Result<PgConnectOptions, sqlx::Error> {
    // A merger's transactions never wait on anything but the warehouse: one left open (its
    // process paused or cut off) is ended by the server, so its locks do not stall the mergers
    // that took its tables over.
    // JIT compiles a plan the planner thinks expensive (a correlated lookup per row of a large
    // estimate) in ~300 ms, longer than the merger's statements take to run.
    // The merger's name on its sessions: one that takes its tables over ends them
    // (`leases::end_sessions`).
    let mut opts = PgConnectOptions::from_str(&config.url)?
        .options([
            ("timezone", "UTC"),
            ("idle_in_transaction_session_timeout", "10s"),
            ("jit", "off"),
        ])
        .application_name(&super::leases::session_name(&super::leases::identity()));
    if let Some(p) = &config.password {
        opts = opts.password(p.expose());
    }
    if let Some(mode) = &config.ssl_mode {
        opts = opts.ssl_mode(PgSslMode::from_str(mode)?);
    }
    if let Some(ca) = &config.ssl_root_cert {
        opts = opts.ssl_root_cert_from_pem(ca.text().as_bytes().to_vec());
    }
    if let Some(cert) = &config.ssl_client_cert {
        opts = opts.ssl_client_cert_from_pem(cert.text());
    }
    if let Some(key) = &config.ssl_client_key {
        opts = opts.ssl_client_key_from_pem(key.text());
    }
    Ok(opts)
}

/// A TLS failure names the settings that decide it (rustls says only `UnknownIssuer` or
/// `NotValidForName`).
fn tls_hint(e: sqlx::Error) -> sqlx::Error {
    let about_tls = match &e {
        sqlx::Error::Tls(_) => true,
        // rustls' verdicts reach sqlx as I/O errors.
        sqlx::Error::Io(io) => io.to_string().contains("certificate"),
        _ => false,
    };
    match e {
        e if about_tls => sqlx::Error::Tls(
            format!(
                "{e} (the server's certificate must be signed by a CA in \
                 warehouse.ssl_root_cert, or the system's trust store, and name the URL's host \
                 for ssl_mode = \"verify-full\")"
            )
            .into(),
        ),
        other => other,
    }
}

/// Rows fetched as text (every selected column must be text or castable by the query).
pub type TextRows = Vec<Vec<Option<String>>>;

impl Pool {
    /// Connects to `postgres://…` or `sqlite://…` (`sqlite::memory:` for a private in-memory
    /// database); the SQLite file is created when missing.
    pub async fn connect(url: &str, password: Option<&str>) -> Result<Pool, sqlx::Error> {
        let config = WarehouseConfig {
            url: url.to_owned(),
            password: password.map(Secret::new),
            ..WarehouseConfig::default()
        };
        Pool::connect_to(&config).await
    }

    /// Connects as `[warehouse]` says: URL, password and PostgreSQL TLS settings.
    pub async fn connect_to(config: &WarehouseConfig) -> Result<Pool, sqlx::Error> {
        let url = config.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = pg_options(config)?;
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await
                .map_err(tls_hint)?;
            Ok(Pool::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            // The file is created when missing; its directory too.
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .map(|p| p.split('?').next().unwrap_or(p))
                .filter(|p| !p.is_empty() && !p.starts_with(':'))
                && let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    sqlx::Error::Configuration(
                        format!("cannot create {}: {e}", dir.display()).into(),
                    )
                })?;
            }
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30));
            // One writer: SQLite serialises writes anyway, and `:memory:` is per connection.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            Ok(Pool::Sqlite(pool))
        } else {
            Err(sqlx::Error::Configuration(
                "warehouse.url must start with postgres:// or sqlite:".into(),
            ))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
        })
    }

    /// Whether the warehouse answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        tx.fetch("SELECT 'ok'", &[]).await?;
        tx.rollback().await
    }

    pub async fn close(&self) {
        match self {
            Pool::Postgres(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }
}

macro_rules! bind_cells {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for c in $binds {
            q = match c {
                Cell::Null => q.bind(None::<String>),
                Cell::Bool(b) => q.bind(*b),
                Cell::Int(i) => q.bind(*i),
                Cell::Float(f) => q.bind(*f),
                Cell::Text(t) => q.bind(t.clone()),
                Cell::Bytes(b) => q.bind(b.clone()),
            };
        }
        q
    }};
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Postgres(_) => Backend::Postgres,
            Tx::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs a statement with `$n`/`?` binds; returns the rows affected.
    pub async fn exec(&mut self, sql: &str, binds: &[Cell]) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Tx::Postgres(tx) => bind_cells!(sqlx::query(sql), binds)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Sqlite(tx) => bind_cells!(sqlx::query(sql), binds)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// Fetches rows; every column is read as text.
    pub async fn fetch(&mut self, sql: &str, binds: &[Cell]) -> Result<TextRows, sqlx::Error> {
        Ok(match self {
            Tx::Postgres(tx) => {
                let rows = bind_cells!(sqlx::query(sql), binds)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.try_get::<Option<String>, _>(i))
                            .collect()
                    })
                    .collect::<Result<_, _>>()?
            }
            Tx::Sqlite(tx) => {
                let rows = bind_cells!(sqlx::query(sql), binds)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.try_get::<Option<String>, _>(i))
                            .collect()
                    })
                    .collect::<Result<_, _>>()?
            }
        })
    }

    /// `SELECT cols` of the rows of `table` (aliased `alias`) whose `_key` is one of `keys`,
    /// every column as text, in `IN` lists of up to 500 keys (one statement each; the index is
    /// probed per listed key). More keys on PostgreSQL are staged and probed from the stage in
    /// one statement instead (a list or array of many keys makes it hash them and scan the
    /// whole table).
    pub async fn fetch_in(
        &mut self,
        (table, alias): (&str, &str),
        cols: &str,
        keys: &[&str],
    ) -> Result<TextRows, sqlx::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.backend() == Backend::Postgres && keys.len() > IN_LIST_KEYS {
            let stage = "tm_in_keys";
            let rows: Vec<Vec<Cell>> = keys
                .iter()
                .map(|k| vec![Cell::Text((*k).to_owned())])
                .collect();
            self.stage_scan(stage, &[("k".to_owned(), ColType::Text)], &rows)
                .await?;
            let sql = format!(
                "SELECT {cols} FROM {} AS t CROSS JOIN LATERAL \
                 (SELECT * FROM {table} AS {alias} WHERE {alias}._key = t.k) AS {alias}",
                quote(stage)
            );
            return self.fetch(&sql, &[]).await;
        }
        let mut out = Vec::new();
        for chunk in keys.chunks(IN_LIST_KEYS) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| self.param(i)).collect();
            let sql = format!(
                "SELECT {cols} FROM {table} AS {alias} WHERE {alias}._key IN ({})",
                params.join(", ")
            );
            let binds: Vec<Cell> = chunk.iter().map(|k| Cell::Text((*k).to_owned())).collect();
            out.extend(self.fetch(&sql, &binds).await?);
        }
        Ok(out)
    }

    /// Fetches rows of any column types for display (an ad-hoc query's result): text, integers,
    /// floats and booleans as text; other types as `?`.
    pub async fn fetch_display(&mut self, sql: &str) -> Result<TextRows, sqlx::Error> {
        fn cell<'r, R: sqlx::Row>(r: &'r R, i: usize) -> Option<String>
        where
            usize: sqlx::ColumnIndex<R>,
            Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            if let Ok(v) = r.try_get::<Option<String>, _>(i) {
                return v;
            }
            if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
                return v.map(|x| x.to_string());
            }
            if let Ok(v) = r.try_get::<Option<f64>, _>(i) {
                return v.map(|x| x.to_string());
            }
            if let Ok(v) = r.try_get::<Option<bool>, _>(i) {
                return v.map(|x| x.to_string());
            }
            Some("?".into())
        }
        Ok(match self {
            Tx::Postgres(tx) => sqlx::query(sql)
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
                .collect(),
            Tx::Sqlite(tx) => sqlx::query(sql)
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
                .collect(),
        })
    }

    /// The placeholder of the `n`th bind (1-based). Numbered on both backends, so a statement
    /// may use one bind twice (a bare `?` would take the next bind, and bind NULL past the end).
    pub fn param(&self, n: usize) -> String {
        match self {
            Tx::Postgres(_) => format!("${n}"),
            Tx::Sqlite(_) => format!("?{n}"),
        }
    }

    /// A bind placeholder cast to a column type (PostgreSQL types binds by their Rust type).
    pub fn cast(&self, param: &str, ty: ColType) -> String {
        match self {
            Tx::Postgres(_) => format!("CAST({param} AS {})", ty.ddl(Backend::Postgres)),
            Tx::Sqlite(_) => param.to_owned(),
        }
    }

    /// An expression as text, for [`Tx::fetch`].
    pub fn text(&self, expr: &str) -> String {
        match self {
            Tx::Postgres(_) => format!("({expr})::text"),
            Tx::Sqlite(_) => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// Creates temporary table `name` with `cols` and loads `rows` into it, set-based, with
    /// statistics for the planner: for a stage that is joined.
    pub async fn stage(
        &mut self,
        name: &str,
        cols: &[(String, ColType)],
        rows: &[Vec<Cell>],
    ) -> Result<(), sqlx::Error> {
        self.load_stage(name, cols, rows, true).await
    }

    /// [`Tx::stage`] for a stage that is only read through once (`INSERT … SELECT`): no
    /// statistics, which cost as much as a second load.
    pub async fn stage_scan(
        &mut self,
        name: &str,
        cols: &[(String, ColType)],
        rows: &[Vec<Cell>],
    ) -> Result<(), sqlx::Error> {
        self.load_stage(name, cols, rows, false).await
    }

    async fn load_stage(
        &mut self,
        name: &str,
        cols: &[(String, ColType)],
        rows: &[Vec<Cell>],
        analyze: bool,
    ) -> Result<(), sqlx::Error> {
        let backend = self.backend();
        let col_defs = cols
            .iter()
            .map(|(c, t)| format!("{} {}", quote(c), t.ddl(backend)))
            .collect::<Vec<_>>()
            .join(", ");
        let (drop, create) = match backend {
            Backend::Postgres => (
                format!("DROP TABLE IF EXISTS pg_temp.{}", quote(name)),
                format!(
                    "CREATE TEMP TABLE {} ({col_defs}) ON COMMIT DROP",
                    quote(name)
                ),
            ),
            Backend::Sqlite => (
                format!("DROP TABLE IF EXISTS temp.{}", quote(name)),
                format!("CREATE TEMP TABLE {} ({col_defs})", quote(name)),
            ),
        };
        self.exec(&drop, &[]).await?;
        self.exec(&create, &[]).await?;
        let table = match backend {
            Backend::Postgres => quote(name),
            Backend::Sqlite => format!("temp.{}", quote(name)),
        };
        let names: Vec<&str> = cols.iter().map(|(c, _)| c.as_str()).collect();
        self.append_borrowed(&table, &names, rows).await?;
        // Temporary tables have no statistics; without them the planner picks nested loops
        // over large stages.
        if analyze && backend == Backend::Postgres && rows.len() > 500 {
            self.exec(&format!("ANALYZE {}", quote(name)), &[]).await?;
        }
        Ok(())
    }

    /// Inserts `rows` into `table` (a quoted name) as they are, set-based: `COPY` on
    /// PostgreSQL, multi-row inserts on SQLite. Only for rows the table cannot hold yet (no
    /// conflict handling); columns left out take their defaults.
    ///
    /// On PostgreSQL the rows are encoded on the blocking pool while the connection sends what
    /// is ready, so the server parses one chunk while the next is encoded (and the rows are
    /// freed there too).
    pub async fn append(
        &mut self,
        table: &str,
        cols: &[&str],
        rows: Vec<Vec<Cell>>,
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() || cols.is_empty() {
            return Ok(());
        }
        let Tx::Postgres(tx) = self else {
            return self.append_borrowed(table, cols, &rows).await;
        };
        let conn: &mut sqlx::PgConnection = tx;
        let mut copy = conn.copy_in_raw(&copy_sql(table, cols)).await?;
        let (chunks, mut ready) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let encoder = tokio::task::spawn_blocking(move || {
            let mut buf = String::with_capacity(COPY_CHUNK + (1 << 12));
            for row in &rows {
                write_csv_row(&mut buf, row);
                if buf.len() > COPY_CHUNK {
                    let chunk = std::mem::replace(&mut buf, String::with_capacity(COPY_CHUNK));
                    if chunks.blocking_send(chunk.into_bytes()).is_err() {
                        return; // the copy failed: nothing more to encode
                    }
                }
            }
            if !buf.is_empty() {
                let _ = chunks.blocking_send(buf.into_bytes());
            }
        });
        while let Some(chunk) = ready.recv().await {
            copy.send(chunk).await?;
        }
        encoder
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("encoding rows for COPY failed: {e}")))?;
        copy.finish().await?;
        Ok(())
    }

    /// [`Tx::append`] of borrowed rows, encoded as they are sent (stages, SQLite).
    async fn append_borrowed(
        &mut self,
        table: &str,
        cols: &[&str],
        rows: &[Vec<Cell>],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() || cols.is_empty() {
            return Ok(());
        }
        let col_list = super::names::col_list(cols.iter().copied());
        match self {
            Tx::Postgres(tx) => {
                let conn: &mut sqlx::PgConnection = tx;
                let mut copy = conn.copy_in_raw(&copy_sql(table, cols)).await?;
                let mut buf = String::with_capacity(1 << 16);
                for row in rows {
                    write_csv_row(&mut buf, row);
                    if buf.len() > COPY_CHUNK {
                        copy.send(std::mem::take(&mut buf).into_bytes()).await?;
                    }
                }
                if !buf.is_empty() {
                    copy.send(buf.into_bytes()).await?;
                }
                copy.finish().await?;
            }
            Tx::Sqlite(tx) => {
                // SQLite allows 32766 binds per statement.
                let per = (30_000 / cols.len()).max(1);
                for chunk in rows.chunks(per) {
                    let mut qb = sqlx::QueryBuilder::<Sqlite>::new(format!(
                        "INSERT INTO {table} ({col_list}) "
                    ));
                    qb.push_values(chunk, |mut b, row| {
                        for cell in row {
                            match cell {
                                Cell::Null => b.push_bind(None::<String>),
                                Cell::Bool(v) => b.push_bind(*v),
                                Cell::Int(v) => b.push_bind(*v),
                                Cell::Float(v) => b.push_bind(*v),
                                Cell::Text(v) => b.push_bind(v.clone()),
                                Cell::Bytes(v) => b.push_bind(v.clone()),
                            };
                        }
                    });
                    qb.build().execute(&mut **tx).await?;
                }
            }
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::Sqlite(tx) => tx.rollback().await,
        }
    }
}

/// Keys per `IN` list of [`Tx::fetch_in`].
const IN_LIST_KEYS: usize = 500;

/// How much CSV a `COPY` sends at a time.
const COPY_CHUNK: usize = 1 << 20;

fn copy_sql(table: &str, cols: &[&str]) -> String {
    let col_list = super::names::col_list(cols.iter().copied());
    format!("COPY {table} ({col_list}) FROM STDIN WITH (FORMAT csv)")
}

/// One row of a `COPY … (FORMAT csv)`.
fn write_csv_row(buf: &mut String, row: &[Cell]) {
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        cell.write_csv(buf);
    }
    buf.push('\n');
}

/// A timestamp column's value in ms since the epoch, as SQL. On SQLite it reads the fixed-width
/// text the merger writes (`YYYY-MM-DD HH:MM:SS.ffffff+00:00`).
pub fn ms_of(backend: Backend, col: &str) -> String {
    match backend {
        Backend::Postgres => format!("(extract(epoch from {col}) * 1000)::bigint"),
        Backend::Sqlite => format!(
            "(CAST(strftime('%s', substr({col}, 1, 19)) AS INTEGER) * 1000 + CAST(substr({col}, 21, 3) AS INTEGER))"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_placeholder_used_twice_binds_the_same_value() {
        let pool = Pool::connect("sqlite::memory:", None).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        let (p1, p2) = (tx.param(1), tx.param(2));
        let rows = tx
            .fetch(
                &format!("SELECT {p1} || {p2} || {p1}"),
                &[Cell::Text("a".into()), Cell::Text("b".into())],
            )
            .await
            .unwrap();
        assert_eq!(rows, vec![vec![Some("aba".to_owned())]]);
    }
}
