//! A real PostgreSQL for tests: `TIDEMARK_TEST_PG_URL` (a server URL without database, e.g.
//! `postgres://postgres@127.0.0.1:54329`, which `scripts/test.sh` starts) and a fresh database
//! per test. Without it the PostgreSQL half of a test is skipped, unless
//! `TIDEMARK_REQUIRE_PG` is set (CI), where that is a failure.

use sqlx::Connection;

/// The URL of a new, empty database, or `None` when no server is configured.
pub async fn fresh_database() -> Option<String> {
    let Ok(base) = std::env::var("TIDEMARK_TEST_PG_URL") else {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_PG").is_none(),
            "TIDEMARK_TEST_PG_URL is required (scripts/test.sh starts a server)"
        );
        eprintln!("PostgreSQL part skipped: set TIDEMARK_TEST_PG_URL or run scripts/test.sh");
        return None;
    };
    let base = base.trim_end_matches('/');
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test database");
    Some(format!("{base}/{name}"))
}
