//! The store's handle: the pool of one backend, opened and migrated, and
//! what concerns both tables at once (the expiry sweep).

use sqlx::AnyPool;

use super::sql::{Arg, Sql, StoreResult};
use super::{postgres, sqlite};
use crate::config::DatabaseConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pub(super) pool: AnyPool,
    backend: Backend,
}

impl Store {
    pub async fn open(database: &DatabaseConfig) -> Result<Self, String> {
        sqlx::any::install_default_drivers();
        let (pool, backend) = match database {
            DatabaseConfig::Sqlite(path) => (sqlite::connect(path).await?, Backend::Sqlite),
            DatabaseConfig::Postgres(url) => (postgres::connect(url).await?, Backend::Postgres),
        };
        let migrator = match backend {
            Backend::Sqlite => &sqlite::MIGRATOR,
            Backend::Postgres => &postgres::MIGRATOR,
        };
        migrator.run(&pool).await.map_err(|e| {
            format!(
                "database migration failed: {}",
                crate::error::one_line(&e.to_string())
            )
        })?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Removes tasks and memory documents last touched before `cutoff_ms`.
    pub async fn delete_expired(&self, cutoff_ms: i64) -> StoreResult<(u64, u64)> {
        let mut tasks = Sql::new("DELETE FROM a2a_tasks WHERE ");
        tasks.push("updated_ms < ?", Arg::Int(cutoff_ms));
        let t = tasks.query().execute(&self.pool).await?.rows_affected();
        let mut mem = Sql::new("DELETE FROM memory_events WHERE ");
        mem.push("created_ms < ?", Arg::Int(cutoff_ms));
        let m = mem.query().execute(&self.pool).await?.rows_affected();
        Ok((t, m))
    }
}
