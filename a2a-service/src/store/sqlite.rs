//! SQLite: a file in the data directory, WAL journal, busy timeout, one
//! connection.

use std::path::Path;
use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

pub static MIGRATOR: Migrator = sqlx::migrate!("src/store/migrations/sqlite");

pub async fn connect(path: &Path) -> Result<AnyPool, String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let url = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| e.to_string())?
        .filename(path)
        .create_if_missing(true)
        .to_url_lossy();
    let options = AnyConnectOptions::from_url(&url).map_err(|e| e.to_string())?;
    AnyPoolOptions::new()
        // SQLite takes one writer at a time: with several connections the
        // losers sleep in its busy handler (1, 2, 5, 10 ms...), which is what
        // a task's p99 then measures. One connection queues them in order.
        .max_connections(1)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}
