//! Support for tests that need a real PostgreSQL: each test gets a schema of its own in
//! the test database, so tests run in parallel without seeing each other's rows, and the
//! schema is dropped when the test ends.
use std::time::Duration;

use sqlx::Connection;

/// The server the tests use: `APEX_TEST_POSTGRES_URL`, or the local one on 5432.
pub fn postgres_url() -> String {
    std::env::var("APEX_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty schema; `url` connects with it as the search path.
pub struct TempSchema {
    pub url: String,
    base: String,
    name: String,
}

impl TempSchema {
    /// Panics when PostgreSQL cannot be reached: a test that needs it must fail, not skip.
    pub async fn create() -> Self {
        let base = postgres_url();
        let name = format!("apex_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {base} is needed by this test: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut conn).await.expect("create test schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        // The application name marks every connection made for this test, so that the
        // drop below can end them.
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}&application_name={name}");
        Self { url, base, name }
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own.
        // While it runs, the test's runtime is blocked, so a server still alive in it may
        // hold a transaction open that it can never finish; the DROP would wait for its
        // locks forever. Its connections are ended first, and the DROP gives up after a
        // bounded wait (an abandoned schema costs nothing but space).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&base)).await
                else {
                    return;
                };
                let _ = sqlx::query("SET lock_timeout = '10s'").execute(&mut conn).await;
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&name)
                .execute(&mut conn)
                .await;
                let statement = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                let drop = sqlx::query(&statement).execute(&mut conn);
                let _ = tokio::time::timeout(Duration::from_secs(30), drop).await;
            });
        })
        .join();
    }
}
