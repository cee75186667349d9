//! The push config methods (A2A 1.0 sections 3.1.7 to 3.1.10; 0.3
//! `tasks/pushNotificationConfig/*`), scoped like tasks (section 13.1): a
//! config is made only for a task of the caller's with this agent, and
//! another user's task or config answers exactly as an unknown one
//! (TaskNotFoundError).

use serde_json::{Map, Value, json};

use super::resolve;
use super::wire::{self, NewConfig};
use crate::a2a::ProtocolVersion;
use crate::a2a::jsonrpc::{Request, optional_count, optional_object, optional_str, required_str};
use crate::a2a::model::now_ms;
use crate::auth::Caller;
use crate::config::AgentConfig;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::PushConfig;

/// Configs one task may have.
pub const MAX_PER_TASK: usize = 10;

fn store_err(state: &AppState, e: sqlx::Error) -> AppError {
    state.metrics.store_error();
    AppError::from(e)
}

/// Refuses a webhook the guard does not allow, with the reason and nothing
/// of what the service resolved.
pub async fn vet(state: &AppState, config: &NewConfig) -> AppResult<()> {
    resolve::vet(&config.url, state.push.allow())
        .await
        .map_err(|refusal| AppError::InvalidParams(refusal.to_string()))
}

/// Fails unless `task_id` is one of the caller's tasks with `agent`.
async fn owned_task(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    task_id: &str,
) -> AppResult<()> {
    state
        .store
        .get_task(&caller.user, task_id, Some(&agent.name))
        .await
        .map_err(|e| store_err(state, e))?
        .map(|_| ())
        .ok_or(AppError::TaskNotFound)
}

/// Stores a vetted config for a task the caller owns; the same id replaces
/// the config it names.
pub async fn save(
    state: &AppState,
    caller: &Caller,
    task_id: &str,
    config: NewConfig,
    version: ProtocolVersion,
) -> AppResult<PushConfig> {
    let existing = state
        .store
        .list_push_configs(&caller.user, task_id)
        .await
        .map_err(|e| store_err(state, e))?;
    let replaces = |c: &PushConfig| config.id.as_deref() == Some(c.id.as_str());
    if !existing.iter().any(replaces) && existing.len() >= MAX_PER_TASK {
        return Err(AppError::InvalidParams(format!(
            "a task takes at most {MAX_PER_TASK} push notification configs"
        )));
    }
    let stored = PushConfig {
        id: config
            .id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        task_id: task_id.to_string(),
        owner: caller.user.clone(),
        url: config.url,
        token: config.token,
        auth_scheme: config.auth_scheme,
        auth_credentials: config.auth_credentials,
        protocol: version.as_str().to_string(),
        created_ms: now_ms(),
    };
    state
        .store
        .put_push_config(&stored)
        .await
        .map_err(|e| store_err(state, e))?;
    Ok(stored)
}

async fn create(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    task_id: &str,
    config: NewConfig,
    version: ProtocolVersion,
) -> AppResult<PushConfig> {
    owned_task(state, caller, agent, task_id).await?;
    vet(state, &config).await?;
    save(state, caller, task_id, config, version).await
}

async fn get(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    task_id: &str,
    id: Option<&str>,
) -> AppResult<PushConfig> {
    owned_task(state, caller, agent, task_id).await?;
    let found = match id {
        Some(id) => state.store.get_push_config(&caller.user, task_id, id).await,
        // 0.3 lets the config id out: the task's first config.
        None => state
            .store
            .list_push_configs(&caller.user, task_id)
            .await
            .map(|all| all.into_iter().next()),
    };
    found
        .map_err(|e| store_err(state, e))?
        .ok_or(AppError::TaskNotFound)
}

async fn list(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    task_id: &str,
) -> AppResult<Vec<PushConfig>> {
    owned_task(state, caller, agent, task_id).await?;
    state
        .store
        .list_push_configs(&caller.user, task_id)
        .await
        .map_err(|e| store_err(state, e))
}

/// Idempotent (section 3.1.10): a config already gone is no error, an
/// unknown task is.
async fn delete(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    task_id: &str,
    id: &str,
) -> AppResult<()> {
    owned_task(state, caller, agent, task_id).await?;
    state
        .store
        .delete_push_config(&caller.user, task_id, id)
        .await
        .map_err(|e| store_err(state, e))?;
    Ok(())
}

/// The 1.0 methods (`v1::PUSH_CONFIG`).
pub async fn dispatch_v1(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    method: &str,
    p: &Map<String, Value>,
) -> AppResult<Value> {
    match method {
        "CreateTaskPushNotificationConfig" => {
            let (task_id, config) = wire::parse_v1(p)?;
            let task_id =
                task_id.ok_or_else(|| AppError::InvalidParams("taskId is required".into()))?;
            let stored = create(
                state,
                caller,
                agent,
                &task_id,
                config,
                ProtocolVersion::V1_0,
            )
            .await?;
            Ok(wire::v1_json(&stored))
        }
        "GetTaskPushNotificationConfig" => {
            let id = required_str(p, "id")?;
            let c = get(state, caller, agent, required_str(p, "taskId")?, Some(id)).await?;
            Ok(wire::v1_json(&c))
        }
        "ListTaskPushNotificationConfigs" => {
            let all = list(state, caller, agent, required_str(p, "taskId")?).await?;
            let (page, next) = paginate(p, all)?;
            let configs: Vec<Value> = page.iter().map(wire::v1_json).collect();
            Ok(json!({"configs": configs, "nextPageToken": next}))
        }
        "DeleteTaskPushNotificationConfig" => {
            delete(
                state,
                caller,
                agent,
                required_str(p, "taskId")?,
                required_str(p, "id")?,
            )
            .await?;
            Ok(json!({}))
        }
        other => Err(AppError::MethodNotFound(format!(
            "{other} is not a push config method"
        ))),
    }
}

/// `pageSize` / `pageToken` over a task's configs (at most
/// [`MAX_PER_TASK`]); the token is the offset of the next page.
fn paginate(p: &Map<String, Value>, all: Vec<PushConfig>) -> AppResult<(Vec<PushConfig>, String)> {
    let size = optional_count(p, "pageSize")?
        .filter(|n| *n > 0)
        .unwrap_or(MAX_PER_TASK);
    let offset = match optional_str(p, "pageToken")? {
        None | Some("") => 0,
        Some(t) => t.parse::<usize>().map_err(|_| {
            AppError::InvalidParams("pageToken is not one this service issued".into())
        })?,
    };
    let total = all.len();
    let page: Vec<PushConfig> = all.into_iter().skip(offset).take(size).collect();
    let end = offset.saturating_add(page.len());
    let next = if end < total {
        end.to_string()
    } else {
        String::new()
    };
    Ok((page, next))
}

/// The 0.3 methods (`v0_3::PUSH_CONFIG`).
pub async fn dispatch_v0_3(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    r: &Request,
) -> AppResult<Value> {
    let p = &r.params;
    match r.method.as_str() {
        "tasks/pushNotificationConfig/set" => {
            let task_id = required_str(p, "taskId")?;
            let inner = optional_object(p, "pushNotificationConfig")?.ok_or_else(|| {
                AppError::InvalidParams("pushNotificationConfig is required".into())
            })?;
            let config = wire::parse_v0_3(inner)?;
            let stored =
                create(state, caller, agent, task_id, config, ProtocolVersion::V0_3).await?;
            Ok(wire::v0_3_json(&stored))
        }
        "tasks/pushNotificationConfig/get" => {
            let id = optional_str(p, "pushNotificationConfigId")?.filter(|s| !s.is_empty());
            let c = get(state, caller, agent, required_str(p, "id")?, id).await?;
            Ok(wire::v0_3_json(&c))
        }
        "tasks/pushNotificationConfig/list" => {
            let all = list(state, caller, agent, required_str(p, "id")?).await?;
            Ok(all.iter().map(wire::v0_3_json).collect())
        }
        "tasks/pushNotificationConfig/delete" => {
            let id = required_str(p, "pushNotificationConfigId")?;
            delete(state, caller, agent, required_str(p, "id")?, id).await?;
            Ok(Value::Null)
        }
        other => Err(AppError::MethodNotFound(format!(
            "{other} is not a push config method"
        ))),
    }
}

/// The push config a send carries in its configuration (1.0
/// `taskPushNotificationConfig`, 0.3 `pushNotificationConfig`), vetted;
/// refused when push is off.
pub async fn from_send(
    state: &AppState,
    version: ProtocolVersion,
    params: &Map<String, Value>,
) -> AppResult<Option<NewConfig>> {
    let Some(configuration) = optional_object(params, "configuration")? else {
        return Ok(None);
    };
    let config = match version {
        ProtocolVersion::V1_0 => optional_object(configuration, "taskPushNotificationConfig")?
            .map(|c| wire::parse_v1(c).map(|(_, config)| config))
            .transpose()?,
        ProtocolVersion::V0_3 => optional_object(configuration, "pushNotificationConfig")?
            .map(wire::parse_v0_3)
            .transpose()?,
    };
    let Some(config) = config else {
        return Ok(None);
    };
    if !state.push.enabled() {
        return Err(AppError::PushNotificationNotSupported);
    }
    vet(state, &config).await?;
    Ok(Some(config))
}
