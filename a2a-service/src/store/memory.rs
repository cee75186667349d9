//! Memory documents: the events of a user's memory, inserted once by id
//! (ingest is idempotent) and read back newest first.

use attach_contract::delegation::ActorChain;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::pool::Store;
use super::sql::{Arg, Sql, StoreResult, decode_json, json_text};
use super::tasks::{actors_column, actors_from_column};

/// A memory document.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryEvent {
    pub id: String,
    pub owner: String,
    pub session: String,
    pub kind: String,
    pub role: Option<String>,
    pub task_id: Option<String>,
    pub content: Value,
    pub created_ms: i64,
    pub meta: ExchangeMeta,
    /// Who acted for the owner when the event was written, current actor
    /// first; empty when the owner acted alone.
    pub actor: ActorChain,
    /// The MCP tool of a mirrored tool call or result. A column of its
    /// own, not part of [`ExchangeMeta`]'s object, so that listings can
    /// select by it.
    pub tool: Option<String>,
}

/// What the gateway's mirror knows of a model exchange besides its text,
/// kept so that readers can tell which model answered, how fast, at what
/// token cost, and whether the text was cut. Stored as one JSON object
/// (only the fields present) so that adding a field needs no migration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The upstream's HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// On the placeholder prompt of a request body the filter could not
    /// read: why, and the body's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
    /// On an MCP tool result: whether the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

impl ExchangeMeta {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The present fields as JSON members, to sit next to an event's own.
    pub fn fields(&self) -> serde_json::Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct MemoryFilter {
    pub session: Option<String>,
    pub task_id: Option<String>,
    pub kind: Option<String>,
    pub tool: Option<String>,
    pub limit: i64,
}

fn memory_from_row(row: &AnyRow) -> StoreResult<MemoryEvent> {
    Ok(MemoryEvent {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        session: row.try_get("session")?,
        kind: row.try_get("kind")?,
        role: row.try_get("role")?,
        task_id: row.try_get("task_id")?,
        content: decode_json("content", &row.try_get::<String, _>("content")?)?,
        created_ms: row.try_get("created_ms")?,
        meta: row
            .try_get::<Option<String>, _>("meta")?
            .map(|m| decode_json("meta", &m))
            .transpose()?
            .unwrap_or_default(),
        actor: actors_from_column("actor", row.try_get("actor")?)?,
        tool: row.try_get("tool")?,
    })
}

/// An insert that leaves an existing id untouched (ingest is idempotent).
pub(super) fn insert_memory_sql(e: &MemoryEvent) -> Sql {
    let mut sql = Sql::new(
        "INSERT INTO memory_events (id, owner, session, kind, role, task_id, content, created_ms, meta, actor, tool) VALUES (",
    );
    sql.push("?", Arg::Text(e.id.clone()));
    sql.push(", ?", Arg::Text(e.owner.clone()));
    sql.push(", ?", Arg::Text(e.session.clone()));
    sql.push(", ?", Arg::Text(e.kind.clone()));
    sql.push_optional(", ?", e.role.as_deref());
    sql.push_optional(", ?", e.task_id.as_deref());
    sql.push(", ?", Arg::Text(json_text(&e.content)));
    sql.push(", ?", Arg::Int(e.created_ms));
    let meta = (!e.meta.is_empty()).then(|| json_text(&e.meta));
    sql.push_optional(", ?", meta.as_deref());
    sql.push_optional(", ?", actors_column(&e.actor).as_deref());
    sql.push_optional(", ?) ON CONFLICT (id) DO NOTHING", e.tool.as_deref());
    sql
}

const MEMORY_COLUMNS: &str =
    "id, owner, session, kind, role, task_id, content, created_ms, meta, actor, tool";

impl Store {
    /// Inserts a memory document; an existing id is left untouched.
    /// Returns whether a row was written.
    pub async fn insert_memory(&self, e: &MemoryEvent) -> StoreResult<bool> {
        let sql = insert_memory_sql(e);
        Ok(sql.query().execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Inserts a batch in one transaction; returns how many were new.
    pub async fn ingest(&self, events: &[MemoryEvent]) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut written = 0;
        for e in events {
            let sql = insert_memory_sql(e);
            written += sql.query().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    pub async fn get_memory(&self, owner: &str, id: &str) -> StoreResult<Option<MemoryEvent>> {
        let mut sql = Sql::new(&format!(
            "SELECT {MEMORY_COLUMNS} FROM memory_events WHERE "
        ));
        sql.push("id = ?", Arg::Text(id.into()));
        sql.push(" AND owner = ?", Arg::Text(owner.into()));
        sql.query()
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(memory_from_row)
            .transpose()
    }

    pub async fn list_memory(
        &self,
        owner: &str,
        f: &MemoryFilter,
    ) -> StoreResult<Vec<MemoryEvent>> {
        let mut sql = Sql::new(&format!(
            "SELECT {MEMORY_COLUMNS} FROM memory_events WHERE "
        ));
        sql.push("owner = ?", Arg::Text(owner.into()));
        if let Some(s) = &f.session {
            sql.push(" AND session = ?", Arg::Text(s.clone()));
        }
        if let Some(t) = &f.task_id {
            sql.push(" AND task_id = ?", Arg::Text(t.clone()));
        }
        if let Some(k) = &f.kind {
            sql.push(" AND kind = ?", Arg::Text(k.clone()));
        }
        if let Some(t) = &f.tool {
            sql.push(" AND tool = ?", Arg::Text(t.clone()));
        }
        sql.raw(" ORDER BY created_ms DESC, id DESC");
        sql.push(" LIMIT ?", Arg::Int(f.limit));
        let rows = sql.query().fetch_all(&self.pool).await?;
        rows.iter().map(memory_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::ExchangeMeta;
    use attach_contract::event::field;

    /// The metadata is stored, and read back, under the members the
    /// filter's events carry it in; the tool, the one member kept apart,
    /// in a column.
    #[test]
    fn exchange_meta_members_are_the_events() {
        let full = ExchangeMeta {
            model: Some("m".into()),
            route: Some("/api/chat".into()),
            request_id: Some("r".into()),
            status: Some(200),
            latency_ms: Some(1),
            tokens_in: Some(2),
            tokens_out: Some(3),
            truncated: Some(false),
            unreadable: Some("not JSON".into()),
            request_bytes: Some(4),
            is_error: Some(true),
        };
        let fields = full.fields();
        let mut members: Vec<&str> = fields.keys().map(String::as_str).collect();
        members.push(field::TOOL);
        let mut want = field::EXCHANGE.to_vec();
        members.sort_unstable();
        want.sort_unstable();
        assert_eq!(members, want);
    }
}
