//! Token usage: the batches the gateways sync (their records, and what
//! the other gateways spent in return), a caller's usage against their
//! limits, and the runtime overrides admins set; the HTTP shapes are in
//! `routes/usage.rs`, the wire in [`attach_contract::usage`].
//!
//! Only the gateway proves itself for a sync (the memory mirror's own
//! credential, [`Ingester::Mirror`]): a record names any user, and the
//! answer tells what each user spent. A caller reads their own usage;
//! an admin (`ATTACH_ADMIN_USERS`, or a token scope `ATTACH_ADMIN_SCOPE`)
//! reads anyone's and sets overrides, which every gateway receives in its
//! next sync's answer.
//!
//! Every figure comes from the store, which several replicas may share:
//! what one replica took, the others count. Records are kept for the
//! longest window configured (plus [`RETENTION_MARGIN_MS`]).

pub mod export;
pub mod metrics;

use std::collections::BTreeSet;

use attach_contract::budget::{Limit, MAX_WINDOW_SECONDS, Override, Policy, Scope};
use attach_contract::limits::MAX_UNIX_MS;
use attach_contract::usage::{MAX_FIELD_BYTES, Record, SyncRequest, SyncResponse, Total, TotalKey};
use serde_json::{Value, json};

use crate::a2a::model::{now_ms, timestamp};
use crate::auth::{Caller, Ingester};
use crate::config::Metering;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::{ModelUsage, StoredOverride, UsageQuery};

/// How much longer than the longest window records are kept: a gateway
/// that syncs late still finds the records its windows need.
pub const RETENTION_MARGIN_MS: i64 = 3_600_000;
/// The most tokens one record may charge in each direction: sums of a
/// year of them stay far inside the store's 64-bit integers.
pub const MAX_RECORD_TOKENS: u64 = 1 << 40;

/// Why a batch cannot be taken, beyond the contract's own rules: what
/// the store could not count.
fn batch_problem(batch: &SyncRequest) -> Option<&'static str> {
    if let Some(problem) = batch.problem() {
        return Some(problem);
    }
    let bad = |r: &Record| {
        r.at_ms > MAX_UNIX_MS || r.tokens_in > MAX_RECORD_TOKENS || r.tokens_out > MAX_RECORD_TOKENS
    };
    batch.records.iter().any(bad).then_some(
        "a record's at_ms must be an instant (ms since the epoch) and its tokens at most 2^40",
    )
}

/// Where a window of `seconds` starts at `now`.
fn since(now: i64, seconds: u64) -> i64 {
    let seconds = i64::try_from(seconds.min(MAX_WINDOW_SECONDS)).unwrap_or(0);
    now.saturating_sub(seconds.saturating_mul(1000))
}

/// Takes a gateway's batch: stores its records (each once), counts the
/// new ones, and answers the totals it asks for and every override.
pub async fn sync(
    state: &AppState,
    writer: &Ingester,
    batch: &SyncRequest,
) -> AppResult<SyncResponse> {
    if !matches!(writer, Ingester::Mirror) {
        return Err(AppError::Unauthorized(
            "only the gateway (with its mirror credential) syncs usage".into(),
        ));
    }
    if let Some(problem) = batch_problem(batch) {
        return Err(AppError::BadRequest(format!(
            "not a usage batch: {problem}"
        )));
    }
    let now = now_ms();
    let exporting = matches!(state.config.usage.metering, Metering::CloudEvents(_));
    let fresh = state
        .store
        .insert_usage(
            &batch.gateway,
            &batch.records,
            exporting.then_some(&export::events as _),
            now,
        )
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    if let Some(meter) = state.metrics.usage() {
        meter.sync_batch();
        for (record, new) in batch.records.iter().zip(fresh) {
            if new {
                meter.record(record, state.config.usage.user_labels);
            }
        }
    }
    let mut keys: Vec<&TotalKey> = Vec::new();
    for key in &batch.totals_for {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let scopes: Vec<Scope> = keys.iter().map(|k| k.scope()).collect();
    let queries: Vec<UsageQuery<'_>> = keys
        .iter()
        .zip(&scopes)
        .map(|(key, scope)| UsageQuery {
            user: &key.user,
            since_ms: since(now, key.seconds),
            scope,
            except_gateway: Some(&batch.gateway),
        })
        .collect();
    let sums = state
        .store
        .usage_tokens(&queries)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    let totals = keys
        .into_iter()
        .zip(sums)
        .map(|(key, tokens)| Total {
            key: key.clone(),
            tokens: if key.seconds == 0 { 0 } else { tokens },
        })
        .collect();
    let overrides = runtime_overrides(state)
        .await?
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    Ok(SyncResponse { totals, overrides })
}

/// Every runtime override, with when it was set.
async fn runtime_overrides(state: &AppState) -> AppResult<Vec<(Override, i64)>> {
    let stored = state
        .store
        .list_overrides()
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    Ok(stored
        .into_iter()
        .filter_map(|s| {
            match Override::for_user(&s.user, &s.limits, "override") {
                Ok(o) => Some((o, s.updated_ms)),
                Err((at, why)) => {
                    // Only what `put_override` validated is stored.
                    eprintln!(
                        "attach-a2a: stored override of {:?} unreadable: {at}: {why}",
                        s.user
                    );
                    None
                }
            }
        })
        .collect())
}

/// Whether the caller administers budgets.
pub fn is_admin(state: &AppState, caller: &Caller) -> bool {
    let usage = &state.config.usage;
    usage.admin_users.contains(&caller.user)
        || caller
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|s| s == usage.admin_scope))
}

fn require_admin(state: &AppState, caller: &Caller) -> AppResult<()> {
    if is_admin(state, caller) {
        return Ok(());
    }
    Err(AppError::Forbidden(
        "only a budget admin (ATTACH_ADMIN_USERS, or a token with ATTACH_ADMIN_SCOPE) may do this"
            .into(),
    ))
}

/// A user named in a path or a query: what a record's user may be.
fn check_user(user: &str) -> AppResult<()> {
    if user.is_empty() || user.len() > MAX_FIELD_BYTES || user.chars().any(char::is_control) {
        return Err(AppError::BadRequest(format!(
            "user must be 1 to {MAX_FIELD_BYTES} bytes of printable characters"
        )));
    }
    Ok(())
}

/// A `seconds` asked for: a window length the policy could have.
pub fn parse_seconds(text: &str) -> AppResult<u64> {
    text.parse::<u64>()
        .ok()
        .filter(|s| (1..=MAX_WINDOW_SECONDS).contains(s))
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "seconds must be a whole number from 1 to {MAX_WINDOW_SECONDS}"
            ))
        })
}

fn model_json(m: &ModelUsage) -> Value {
    json!({"model": m.model, "tokens_in": m.tokens_in, "tokens_out": m.tokens_out, "requests": m.requests})
}

/// The usage of `user` (the caller's own unless an admin names another):
/// each limit with what was used of it, and per window length the tokens
/// in and out and the requests, per model.
pub async fn read(
    state: &AppState,
    caller: &Caller,
    user: Option<&str>,
    seconds: Option<u64>,
) -> AppResult<Value> {
    let user = match user {
        None => caller.user.as_str(),
        Some(other) => {
            require_admin(state, caller)?;
            check_user(other)?;
            other
        }
    };
    let runtime: Vec<Override> = runtime_overrides(state)
        .await?
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    let limits: Vec<Limit> = state.config.usage.policy.user_limits(&runtime, user);
    let now = now_ms();
    let queries: Vec<UsageQuery<'_>> = limits
        .iter()
        .map(|l| UsageQuery {
            user,
            since_ms: since(now, l.window.seconds),
            scope: &l.scope,
            except_gateway: None,
        })
        .collect();
    let used = state
        .store
        .usage_tokens(&queries)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    let limits_json: Vec<Value> = limits
        .iter()
        .zip(used)
        .map(|(l, used)| {
            json!({
                "scope": l.scope.name(), "seconds": l.window.seconds, "tokens": l.window.tokens,
                "used": used, "remaining": l.window.tokens.saturating_sub(used),
                "status": l.window.status,
            })
        })
        .collect();
    let lengths: BTreeSet<u64> = limits
        .iter()
        .map(|l| l.window.seconds)
        .chain(seconds)
        .collect();
    let mut windows = Vec::with_capacity(lengths.len());
    for seconds in lengths {
        let models = state
            .store
            .usage_by_model(user, since(now, seconds))
            .await
            .inspect_err(|_| state.metrics.store_error())?;
        let sum = |f: fn(&ModelUsage) -> u64| models.iter().map(f).sum::<u64>();
        windows.push(json!({
            "seconds": seconds,
            "tokens_in": sum(|m| m.tokens_in),
            "tokens_out": sum(|m| m.tokens_out),
            "requests": sum(|m| m.requests),
            "models": models.iter().map(model_json).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({"user": user, "limits": limits_json, "windows": windows}))
}

fn override_json(o: &Override, updated_ms: i64) -> Value {
    let mut value = o.fields_value();
    if let Some(object) = value.as_object_mut() {
        object.insert("user".into(), json!(o.user.text()));
        object.insert("updated_at".into(), json!(timestamp(updated_ms)));
    }
    value
}

/// Every runtime override, for an admin.
pub async fn list_overrides(state: &AppState, caller: &Caller) -> AppResult<Value> {
    require_admin(state, caller)?;
    let overrides = runtime_overrides(state).await?;
    Ok(json!({
        "overrides": overrides.iter().map(|(o, at)| override_json(o, *at)).collect::<Vec<_>>(),
    }))
}

/// Sets `user`'s override from `{"windows": [...], "models": [...]}`
/// (the policy's rules; either may be left out), replacing any; an
/// invalid one is refused with its field named, and nothing changes.
pub async fn put_override(
    state: &AppState,
    caller: &Caller,
    user: &str,
    body: &Value,
) -> AppResult<Value> {
    require_admin(state, caller)?;
    check_user(user)?;
    let o = Override::for_user(user, body, "override")
        .map_err(|(at, why)| AppError::BadRequest(format!("{at}: {why}")))?;
    let updated_ms = now_ms();
    state
        .store
        .put_override(&StoredOverride {
            user: user.into(),
            limits: o.fields_value(),
            updated_ms,
        })
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    Ok(override_json(&o, updated_ms))
}

/// Removes `user`'s override: the policy's limits apply again.
pub async fn delete_override(state: &AppState, caller: &Caller, user: &str) -> AppResult<()> {
    require_admin(state, caller)?;
    let removed = state
        .store
        .delete_override(user)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    if !removed {
        return Err(AppError::NotFound(format!("no override for user {user:?}")));
    }
    Ok(())
}

/// The longest window of the policy and of `runtime`, in seconds.
fn longest_window(policy: &Policy, runtime: &[Override]) -> Option<u64> {
    let overrides = policy.users.iter().chain(runtime);
    let windows = policy
        .windows
        .iter()
        .chain(policy.models.iter().flat_map(|m| &m.windows))
        .chain(overrides.clone().flat_map(|o| o.windows.iter().flatten()))
        .chain(
            overrides
                .flat_map(|o| o.models.iter().flatten())
                .flat_map(|m| &m.windows),
        );
    windows.map(|w| w.seconds).max()
}

/// Removes the records no window can count any more: older than the
/// longest window (of the policy and the runtime overrides) plus
/// [`RETENTION_MARGIN_MS`], or than `A2A_TASK_TTL` when no window is set.
pub async fn housekeeping(state: &AppState) {
    let runtime: Vec<Override> = match runtime_overrides(state).await {
        Ok(list) => list.into_iter().map(|(o, _)| o).collect(),
        Err(_) => return,
    };
    let keep_ms = match longest_window(&state.config.usage.policy, &runtime) {
        Some(seconds) => i64::try_from(seconds * 1000)
            .unwrap_or(i64::MAX)
            .saturating_add(RETENTION_MARGIN_MS),
        None => i64::try_from(state.config.task_ttl.as_millis()).unwrap_or(i64::MAX),
    };
    let cutoff = now_ms().saturating_sub(keep_ms);
    if let Err(e) = state.store.delete_usage_before(cutoff).await {
        state.metrics.store_error();
        eprintln!(
            "attach-a2a: usage expiry sweep failed: {}",
            crate::error::one_line(&e.to_string())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_window_counts_overrides_and_model_rules() {
        let policy = Policy::from_value(
            &json!({
                "windows": [{"seconds": 60, "tokens": 1}],
                "models": [{"match": "m*", "windows": [{"seconds": 3600, "tokens": 1}]}],
                "users": [{"match": "a", "models": [{"match": "x", "windows": [{"seconds": 7200, "tokens": 1}]}]}],
            }),
            "budget",
        )
        .unwrap();
        assert_eq!(longest_window(&policy, &[]), Some(7200));
        let runtime = [Override::for_user(
            "b",
            &json!({"windows": [{"seconds": 86400, "tokens": 1}]}),
            "o",
        )
        .unwrap()];
        assert_eq!(longest_window(&policy, &runtime), Some(86400));
        assert_eq!(longest_window(&Policy::default(), &[]), None);
    }

    #[test]
    fn windows_start_where_they_should() {
        assert_eq!(since(100_000, 60), 40_000);
        assert_eq!(since(0, u64::MAX), -(MAX_WINDOW_SECONDS as i64) * 1000);
        assert!(parse_seconds("0").is_err() && parse_seconds("x").is_err());
        assert_eq!(parse_seconds("60").unwrap(), 60);
    }
}
