//! PostgreSQL: several replicas may share one database.

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

pub static MIGRATOR: Migrator = sqlx::migrate!("src/store/migrations/postgres");

pub async fn connect(url: &str) -> Result<AnyPool, String> {
    AnyPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| {
            format!(
                "cannot connect to PostgreSQL: {}",
                crate::error::one_line(&e.to_string())
            )
        })
}
