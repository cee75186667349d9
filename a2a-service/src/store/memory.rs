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

/// Which of a user's events a listing, a search or an erasure selects:
/// every condition present must hold (see [`MemorySelector::matches`]).
/// Stored with each erasure, as JSON, so ingest can tell what it erased.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The model of a mirrored exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The actor acting when the event was written (the chain's current
    /// actor); events the user wrote alone have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Created at or after (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Created before (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

impl MemorySelector {
    /// No condition at all: every event of the user.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `e` is selected: the rule every store and Weaviate query
    /// implements, written once here for what must be decided in the
    /// service (erased events arriving late, Weaviate's loose matches).
    pub fn matches(&self, e: &MemoryEvent) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        same(&self.session, Some(&e.session))
            && same(&self.task_id, e.task_id.as_deref())
            && same(&self.kind, Some(&e.kind))
            && same(&self.tool, e.tool.as_deref())
            && same(&self.model, e.meta.model.as_deref())
            && same(&self.actor, e.actor.current())
            && self.since_ms.is_none_or(|t| e.created_ms >= t)
            && self.until_ms.is_none_or(|t| e.created_ms < t)
    }
}

/// Retention as of one instant: events created before these cutoffs are
/// expired, hidden from every read before the sweep removes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// For every kind not in `kinds`; `None` keeps them.
    pub default: Option<i64>,
    /// Per kind, overriding `default`; `None` keeps that kind.
    pub kinds: Vec<(String, Option<i64>)>,
}

impl Cutoffs {
    /// The cutoff for events of `kind`.
    pub fn of(&self, kind: &str) -> Option<i64> {
        match self.kinds.iter().find(|(k, _)| k == kind) {
            Some((_, cutoff)) => *cutoff,
            None => self.default,
        }
    }

    pub fn is_expired(&self, e: &MemoryEvent) -> bool {
        self.of(&e.kind).is_some_and(|cutoff| e.created_ms < cutoff)
    }
}

/// A listing or a search: what to select, how many, and what has expired.
#[derive(Clone, Debug, Default)]
pub struct MemoryFilter {
    pub select: MemorySelector,
    pub limit: i64,
    pub hidden: Cutoffs,
}

/// An event found by a search, with its score (higher is better; what it
/// measures depends on the ranking: bm25, `ts_rank`, cosine similarity or
/// a fused rank).
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub event: MemoryEvent,
    pub score: f64,
}

/// The searchable text of an event: the strings of its content, in order,
/// one space apart (a prompt's text, a document's fields' values).
pub fn search_text(content: &Value) -> String {
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::String(s) => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(members) => members.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(content, &mut out);
    out
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
        "INSERT INTO memory_events (id, owner, session, kind, role, task_id, content, created_ms, meta, actor, tool, text, model, agent) VALUES (",
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
    sql.push_optional(", ?", e.tool.as_deref());
    sql.push(", ?", Arg::Text(search_text(&e.content)));
    sql.push_optional(", ?", e.meta.model.as_deref());
    sql.push_optional(", ?) ON CONFLICT (id) DO NOTHING", e.actor.current());
    sql
}

/// ` AND …` for each condition of `select`, on the columns of
/// `memory_events` (unqualified).
pub(super) fn push_selector(sql: &mut Sql, select: &MemorySelector) {
    let texts = [
        (" AND session = ?", &select.session),
        (" AND task_id = ?", &select.task_id),
        (" AND kind = ?", &select.kind),
        (" AND tool = ?", &select.tool),
        (" AND model = ?", &select.model),
        (" AND agent = ?", &select.actor),
    ];
    for (fragment, value) in texts {
        if let Some(v) = value {
            sql.push(fragment, Arg::Text(v.clone()));
        }
    }
    if let Some(t) = select.since_ms {
        sql.push(" AND created_ms >= ?", Arg::Int(t));
    }
    if let Some(t) = select.until_ms {
        sql.push(" AND created_ms < ?", Arg::Int(t));
    }
}

/// ` AND …` leaving out what has expired under `hidden`.
pub(super) fn push_unexpired(sql: &mut Sql, hidden: &Cutoffs) {
    for (kind, cutoff) in &hidden.kinds {
        if let Some(c) = cutoff {
            sql.push(" AND NOT (kind = ?", Arg::Text(kind.clone()));
            sql.push(" AND created_ms < ?)", Arg::Int(*c));
        }
    }
    if let Some(c) = hidden.default {
        sql.push(" AND (created_ms >= ?", Arg::Int(c));
        for (kind, _) in &hidden.kinds {
            sql.push(" OR kind = ?", Arg::Text(kind.clone()));
        }
        sql.raw(")");
    }
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
        push_selector(&mut sql, &f.select);
        push_unexpired(&mut sql, &f.hidden);
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
