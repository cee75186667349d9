//! Push notification configs: webhooks registered for a task. Every read
//! and write names the owner, so one user's config is never found through
//! another's request.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::pool::Store;
use super::sql::{Arg, Sql, StoreResult};

/// A webhook registered for a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushConfig {
    pub id: String,
    pub task_id: String,
    pub owner: String,
    pub url: String,
    /// Sent back as `X-A2A-Notification-Token`, for the receiver to check.
    pub token: Option<String>,
    /// `Authorization: <scheme> <credentials>` on every delivery.
    pub auth_scheme: Option<String>,
    pub auth_credentials: Option<String>,
    /// The A2A version the config was made with, which shapes the payload
    /// (`1.0` or `0.3`).
    pub protocol: String,
    pub created_ms: i64,
}

const COLUMNS: &str =
    "id, task_id, owner, url, token, auth_scheme, auth_credentials, protocol, created_ms";

fn from_row(row: &AnyRow) -> StoreResult<PushConfig> {
    Ok(PushConfig {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        owner: row.try_get("owner")?,
        url: row.try_get("url")?,
        token: row.try_get("token")?,
        auth_scheme: row.try_get("auth_scheme")?,
        auth_credentials: row.try_get("auth_credentials")?,
        protocol: row.try_get("protocol")?,
        created_ms: row.try_get("created_ms")?,
    })
}

impl Store {
    /// Creates a config, or replaces the one of the same task with the
    /// same id (the protocol's set-or-update).
    pub async fn put_push_config(&self, c: &PushConfig) -> StoreResult<()> {
        let mut sql = Sql::new(&format!(
            "INSERT INTO a2a_push_configs ({COLUMNS}) VALUES ("
        ));
        sql.push("?", Arg::Text(c.id.clone()));
        sql.push(", ?", Arg::Text(c.task_id.clone()));
        sql.push(", ?", Arg::Text(c.owner.clone()));
        sql.push(", ?", Arg::Text(c.url.clone()));
        sql.push_optional(", ?", c.token.as_deref());
        sql.push_optional(", ?", c.auth_scheme.as_deref());
        sql.push_optional(", ?", c.auth_credentials.as_deref());
        sql.push(", ?", Arg::Text(c.protocol.clone()));
        sql.push(", ?)", Arg::Int(c.created_ms));
        sql.raw(
            " ON CONFLICT (task_id, id) DO UPDATE SET url = excluded.url, \
             token = excluded.token, auth_scheme = excluded.auth_scheme, \
             auth_credentials = excluded.auth_credentials, protocol = excluded.protocol",
        );
        sql.push(
            " WHERE a2a_push_configs.owner = ?",
            Arg::Text(c.owner.clone()),
        );
        sql.query().execute(&self.pool).await?;
        Ok(())
    }

    pub async fn get_push_config(
        &self,
        owner: &str,
        task_id: &str,
        id: &str,
    ) -> StoreResult<Option<PushConfig>> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM a2a_push_configs WHERE "));
        sql.push("task_id = ?", Arg::Text(task_id.into()));
        sql.push(" AND id = ?", Arg::Text(id.into()));
        sql.push(" AND owner = ?", Arg::Text(owner.into()));
        sql.query()
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// `owner`'s configs for a task, oldest first.
    pub async fn list_push_configs(
        &self,
        owner: &str,
        task_id: &str,
    ) -> StoreResult<Vec<PushConfig>> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM a2a_push_configs WHERE "));
        sql.push("task_id = ?", Arg::Text(task_id.into()));
        sql.push(" AND owner = ?", Arg::Text(owner.into()));
        sql.raw(" ORDER BY created_ms, id");
        let rows = sql.query().fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Whether a config was removed.
    pub async fn delete_push_config(
        &self,
        owner: &str,
        task_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let mut sql = Sql::new("DELETE FROM a2a_push_configs WHERE ");
        sql.push("task_id = ?", Arg::Text(task_id.into()));
        sql.push(" AND id = ?", Arg::Text(id.into()));
        sql.push(" AND owner = ?", Arg::Text(owner.into()));
        Ok(sql.query().execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Removes the configs of tasks that are gone (expired, or removed
    /// because the agent answered with a message).
    pub async fn delete_orphan_push_configs(&self) -> StoreResult<u64> {
        let sql = Sql::new(
            "DELETE FROM a2a_push_configs WHERE NOT EXISTS \
             (SELECT 1 FROM a2a_tasks WHERE a2a_tasks.id = a2a_push_configs.task_id)",
        );
        Ok(sql.query().execute(&self.pool).await?.rows_affected())
    }
}
