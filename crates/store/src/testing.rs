//! Support for tests that need a real PostgreSQL: each test gets a schema of its own in
//! the test database, so tests run in parallel without seeing each other's rows, and the
//! schema is dropped when the test ends.
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
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Self { url, base, name }
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}
