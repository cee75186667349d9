//! A2A tasks: inserted `submitted`, moved on only by conditional updates
//! (so a task canceled or failed meanwhile keeps that state), listed per
//! owner and agent, and swept when their forward can no longer be running.

use attach_contract::delegation::ActorChain;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::memory::{MemoryEvent, insert_memory_sql};
use super::pool::Store;
use super::sql::{Arg, Sql, StoreResult, decode_json, json_text};
use crate::a2a::model::{Artifact, Message, Task, TaskState};

/// How a finished forward ends a task.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub state: TaskState,
    pub reply: Option<Message>,
    pub artifacts: Vec<Artifact>,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// The agent's id for the task, when it answered with one.
    pub agent_task_id: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub context_id: Option<String>,
    pub state: Option<TaskState>,
    pub updated_after_ms: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// Outcome of a cancel request.
#[derive(Debug, PartialEq)]
pub enum CancelOutcome {
    Canceled(Box<Task>),
    NotCancelable(TaskState),
    NotFound,
}

fn task_from_row(row: &AnyRow) -> StoreResult<Task> {
    let state: String = row.try_get("state")?;
    let status_message: Option<String> = row.try_get("status_message")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(Task {
        id: row.try_get("id")?,
        context_id: row.try_get("context_id")?,
        owner: row.try_get("owner")?,
        session: row.try_get("session")?,
        agent: row.try_get("agent")?,
        state: TaskState::parse(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: format!("unknown task state {state:?}").into(),
        })?,
        input: decode_json("input", &row.try_get::<String, _>("input")?)?,
        history: decode_json("history", &row.try_get::<String, _>("history")?)?,
        artifacts: decode_json("artifacts", &row.try_get::<String, _>("artifacts")?)?,
        status_message: status_message
            .map(|m| decode_json("status_message", &m))
            .transpose()?,
        result: result.map(|r| decode_json("result", &r)).transpose()?,
        error: row.try_get("error")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        deadline_ms: row.try_get("deadline_ms")?,
        agent_task_id: row.try_get("agent_task_id")?,
        actors: actors_from_column("actor", row.try_get("actor")?)?,
        delegated_to: row.try_get("delegated_to")?,
    })
}

/// A chain stored in X-Attach-Actor's form; NULL is nobody.
pub(super) fn actors_from_column(column: &str, text: Option<String>) -> StoreResult<ActorChain> {
    match text {
        None => Ok(ActorChain::default()),
        Some(text) => ActorChain::from_header(&text).map_err(|e| sqlx::Error::ColumnDecode {
            index: column.into(),
            source: e.to_string().into(),
        }),
    }
}

/// A chain as stored: NULL when empty.
pub(super) fn actors_column(actors: &ActorChain) -> Option<String> {
    (!actors.is_empty()).then(|| actors.header_value())
}

/// `state IN (…)` for the given stored names, as parameters.
fn push_state_list(sql: &mut Sql, states: &[&str]) {
    sql.raw(" AND state IN (");
    for (i, s) in states.iter().enumerate() {
        if i > 0 {
            sql.raw(", ");
        }
        sql.push("?", Arg::Text(s.to_string()));
    }
    sql.raw(")");
}

const TASK_COLUMNS: &str = "id, context_id, owner, session, agent, state, input, history, artifacts, \
     status_message, result, error, created_ms, updated_ms, deadline_ms, agent_task_id, actor, \
     delegated_to";

impl Store {
    pub async fn insert_task(&self, t: &Task) -> StoreResult<()> {
        let mut sql = Sql::new(&format!("INSERT INTO a2a_tasks ({TASK_COLUMNS}) VALUES ("));
        let args = [
            Arg::Text(t.id.clone()),
            Arg::Text(t.context_id.clone()),
            Arg::Text(t.owner.clone()),
            Arg::Text(t.session.clone()),
            Arg::Text(t.agent.clone()),
            Arg::Text(t.state.as_str().into()),
            Arg::Text(json_text(&t.input)),
            Arg::Text(json_text(&t.history)),
            Arg::Text(json_text(&t.artifacts)),
        ];
        for (i, arg) in args.into_iter().enumerate() {
            sql.push(if i == 0 { "?" } else { ", ?" }, arg);
        }
        // status_message, result, error start empty.
        sql.raw(", NULL, NULL, NULL");
        sql.push(", ?", Arg::Int(t.created_ms));
        sql.push(", ?", Arg::Int(t.updated_ms));
        sql.push(", ?", Arg::Int(t.deadline_ms));
        sql.push_optional(", ?", t.agent_task_id.as_deref());
        sql.push_optional(", ?", actors_column(&t.actors).as_deref());
        sql.push_optional(", ?)", t.delegated_to.as_deref());
        sql.query().execute(&self.pool).await.map(|_| ())
    }

    /// The task, if `owner` owns it (and it belongs to `agent` when given).
    pub async fn get_task(
        &self,
        owner: &str,
        id: &str,
        agent: Option<&str>,
    ) -> StoreResult<Option<Task>> {
        let mut sql = Sql::new(&format!("SELECT {TASK_COLUMNS} FROM a2a_tasks WHERE "));
        sql.push("id = ?", Arg::Text(id.into()));
        sql.push(" AND owner = ?", Arg::Text(owner.into()));
        if let Some(agent) = agent {
            sql.push(" AND agent = ?", Arg::Text(agent.into()));
        }
        sql.query()
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(task_from_row)
            .transpose()
    }

    /// The owner's tasks with `agent`, newest first, and how many match.
    pub async fn list_tasks(
        &self,
        owner: &str,
        agent: &str,
        f: &TaskFilter,
    ) -> StoreResult<(Vec<Task>, i64)> {
        let mut filter = Sql::new(" FROM a2a_tasks WHERE ");
        filter.push("owner = ?", Arg::Text(owner.into()));
        filter.push(" AND agent = ?", Arg::Text(agent.into()));
        if let Some(c) = &f.context_id {
            filter.push(" AND context_id = ?", Arg::Text(c.clone()));
        }
        if let Some(s) = f.state {
            filter.push(" AND state = ?", Arg::Text(s.as_str().into()));
        }
        if let Some(after) = f.updated_after_ms {
            filter.push(" AND updated_ms >= ?", Arg::Int(after));
        }
        let count_sql = Sql {
            text: format!("SELECT COUNT(*) AS n{}", filter.text),
            args: filter
                .args
                .iter()
                .map(|a| match a {
                    Arg::Text(s) => Arg::Text(s.clone()),
                    Arg::Int(i) => Arg::Int(*i),
                })
                .collect(),
        };
        let total: i64 = count_sql
            .query()
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let mut sql = Sql {
            text: format!("SELECT {TASK_COLUMNS}{}", filter.text),
            args: filter.args,
        };
        sql.raw(" ORDER BY created_ms DESC, id DESC");
        sql.push(" LIMIT ?", Arg::Int(f.limit));
        sql.push(" OFFSET ?", Arg::Int(f.offset));
        let rows = sql.query().fetch_all(&self.pool).await?;
        Ok((
            rows.iter().map(task_from_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    /// Moves a task to `next` if its current state allows it.
    pub async fn transition(&self, id: &str, next: TaskState, now_ms: i64) -> StoreResult<bool> {
        let mut sql = Sql::new("UPDATE a2a_tasks SET ");
        sql.push("state = ?", Arg::Text(next.as_str().into()));
        sql.push(", updated_ms = ?", Arg::Int(now_ms));
        sql.push(" WHERE id = ?", Arg::Text(id.into()));
        push_state_list(&mut sql, &TaskState::sources_of(next));
        Ok(sql.query().execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Records what a streaming agent reported while still working (its
    /// status message, the artifacts so far), unless the task moved on.
    pub async fn progress(
        &self,
        id: &str,
        status_message: Option<&Message>,
        artifacts: &[Artifact],
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut sql = Sql::new("UPDATE a2a_tasks SET ");
        match status_message {
            Some(m) => sql.push("status_message = ?", Arg::Text(json_text(m))),
            None => sql.raw("status_message = NULL"),
        };
        sql.push(", artifacts = ?", Arg::Text(json_text(&artifacts)));
        sql.push(", updated_ms = ?", Arg::Int(now_ms));
        sql.push(" WHERE id = ?", Arg::Text(id.into()));
        push_state_list(&mut sql, &[TaskState::Working.as_str()]);
        Ok(sql.query().execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Records a forward's outcome unless the task moved on meanwhile
    /// (canceled, or failed as interrupted), and with it `result_event`, in
    /// one transaction: whoever sees the task
    /// ended also finds its result in memory.
    pub async fn complete(
        &self,
        id: &str,
        c: &Completion,
        reply_history: &[Message],
        now_ms: i64,
        result_event: &MemoryEvent,
    ) -> StoreResult<bool> {
        let mut sql = Sql::new("UPDATE a2a_tasks SET ");
        sql.push("state = ?", Arg::Text(c.state.as_str().into()));
        sql.push(", history = ?", Arg::Text(json_text(&reply_history)));
        sql.push(", artifacts = ?", Arg::Text(json_text(&c.artifacts)));
        match &c.reply {
            Some(m) => sql.push(", status_message = ?", Arg::Text(json_text(m))),
            None => sql.raw(", status_message = NULL"),
        };
        match &c.result {
            Some(r) => sql.push(", result = ?", Arg::Text(json_text(r))),
            None => sql.raw(", result = NULL"),
        };
        sql.push_optional(", error = ?", c.error.as_deref());
        if let Some(agent_task) = &c.agent_task_id {
            sql.push(", agent_task_id = ?", Arg::Text(agent_task.clone()));
        }
        sql.push(", updated_ms = ?", Arg::Int(now_ms));
        sql.push(" WHERE id = ?", Arg::Text(id.into()));
        push_state_list(&mut sql, &[TaskState::Working.as_str()]);
        let mut tx = self.pool.begin().await?;
        if sql.query().execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(false);
        }
        insert_memory_sql(result_event)
            .query()
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Takes a follow-up message for a task that waits for its owner
    /// (`input-required` / `auth-required`): back to `working` with the
    /// message appended, unless another request took it first.
    pub async fn resume(
        &self,
        owner: &str,
        id: &str,
        history: &[Message],
        deadline_ms: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut sql = Sql::new("UPDATE a2a_tasks SET state = 'working'");
        sql.push(", history = ?", Arg::Text(json_text(&history)));
        sql.push(", deadline_ms = ?", Arg::Int(deadline_ms));
        sql.push(", updated_ms = ?", Arg::Int(now_ms));
        sql.push(" WHERE id = ?", Arg::Text(id.into()));
        sql.push(" AND owner = ?", Arg::Text(owner.into()));
        push_state_list(
            &mut sql,
            &[
                TaskState::InputRequired.as_str(),
                TaskState::AuthRequired.as_str(),
            ],
        );
        Ok(sql.query().execute(&self.pool).await?.rows_affected() == 1)
    }

    pub async fn cancel(
        &self,
        owner: &str,
        id: &str,
        agent: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<CancelOutcome> {
        let Some(task) = self.get_task(owner, id, agent).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        if !task.state.can_become(TaskState::Canceled) {
            return Ok(CancelOutcome::NotCancelable(task.state));
        }
        if self.transition(id, TaskState::Canceled, now_ms).await? {
            let task = self.get_task(owner, id, agent).await?;
            return Ok(task.map_or(CancelOutcome::NotFound, |t| {
                CancelOutcome::Canceled(Box::new(t))
            }));
        }
        // It finished between the read and the update.
        match self.get_task(owner, id, agent).await? {
            Some(t) => Ok(CancelOutcome::NotCancelable(t.state)),
            None => Ok(CancelOutcome::NotFound),
        }
    }

    /// Fails active tasks whose deadline passed: the forward that owned them
    /// can no longer be running (its process died or stopped). Returns the
    /// tasks as failed, for their webhooks and followers.
    pub async fn fail_overdue(&self, now_ms: i64, reason: &str) -> StoreResult<Vec<Task>> {
        let mut sql = Sql::new("UPDATE a2a_tasks SET state = 'failed', ");
        sql.push("error = ?", Arg::Text(reason.into()));
        sql.push(", updated_ms = ?", Arg::Int(now_ms));
        sql.push(" WHERE deadline_ms < ?", Arg::Int(now_ms));
        push_state_list(
            &mut sql,
            &[TaskState::Submitted.as_str(), TaskState::Working.as_str()],
        );
        sql.raw(&format!(" RETURNING {TASK_COLUMNS}"));
        let rows = sql.query().fetch_all(&self.pool).await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Fails the given active tasks now (this process is stopping); returns
    /// those it failed.
    pub async fn fail_tasks(
        &self,
        ids: &[String],
        now_ms: i64,
        reason: &str,
    ) -> StoreResult<Vec<Task>> {
        let mut failed = Vec::new();
        for id in ids {
            let mut sql = Sql::new("UPDATE a2a_tasks SET state = 'failed', ");
            sql.push("error = ?", Arg::Text(reason.into()));
            sql.push(", updated_ms = ?", Arg::Int(now_ms));
            sql.push(" WHERE id = ?", Arg::Text(id.clone()));
            push_state_list(
                &mut sql,
                &[TaskState::Submitted.as_str(), TaskState::Working.as_str()],
            );
            sql.raw(&format!(" RETURNING {TASK_COLUMNS}"));
            if let Some(row) = sql.query().fetch_optional(&self.pool).await? {
                failed.push(task_from_row(&row)?);
            }
        }
        Ok(failed)
    }

    /// Removes one of `owner`'s tasks (an exchange the agent answered with a
    /// direct message, which leaves no task); its memory documents stay.
    pub async fn delete_task(&self, owner: &str, id: &str) -> StoreResult<bool> {
        let mut sql = Sql::new("DELETE FROM a2a_tasks WHERE ");
        sql.push("id = ?", Arg::Text(id.into()));
        sql.push(" AND owner = ?", Arg::Text(owner.into()));
        Ok(sql.query().execute(&self.pool).await?.rows_affected() == 1)
    }

    pub async fn count_by_state(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM a2a_tasks GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("state")?, r.try_get::<i64, _>("n")?)))
            .collect()
    }
}
