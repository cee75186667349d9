//! The root context's side of the budgets: on its tick, each worker sends
//! the companion service the usage records waiting on the shared queue and
//! asks what the other gateways spent for the users it served; the answer's
//! totals go into those users' shared ledgers and its runtime overrides
//! into the worker's policy. One sync in flight per worker, one per
//! interval; a batch the service did not take is sent again (its records'
//! ids keep a second delivery from counting twice).

use super::budgets::{self, Budgets};
use super::callout::{self, Response};
use super::clock::now_ms;
use super::ledger_shared;
use super::log::log;
use super::vm::Vm;
use attach_contract::usage::{MAX_RECORDS, MAX_TOTALS, SyncResponse};
use proxy_wasm::types::LogLevel;
use std::time::Duration;

/// A sync callout in flight.
pub struct Pending;

/// Starts this worker's sync when it is due; the callout's token.
pub fn pump(vm: &Vm) -> Option<(u32, Pending)> {
    let budget = vm.config.budget.as_ref()?;
    let sync = budget.sync.as_ref()?;
    let budgets = vm.budgets.as_ref()?;
    let now = now_ms();
    let mut state = budgets.sync.borrow_mut();
    if state.in_flight || now < state.next_ms {
        return None;
    }
    state.next_ms = now.saturating_add(sync.interval_ms);
    if state.pending.is_empty() {
        if let Some(queue) = &budgets.queue {
            while state.pending.len() < MAX_RECORDS {
                let Some(record) = queue.pop() else { break };
                state.pending.push(record);
            }
            queue.taken(state.pending.len());
        }
    }
    let body = batch(budgets, &state.pending, now);
    // The service takes batches on the memory mirror's credential.
    let key = vm.config.assertion_key.as_deref()?;
    let headers = sync.headers(key, now / 1_000);
    let request = callout::Request {
        method: "POST",
        path: &sync.path,
        headers: headers.iter().map(|(k, v)| (*k, v.as_str())).collect(),
        body: Some(&body),
        timeout: Duration::from_millis(sync.interval_ms.max(1_000)),
    };
    match callout::send(&vm.config, &sync.url, request) {
        Ok(token) => {
            state.in_flight = true;
            Some((token, Pending))
        }
        Err(why) => {
            budgets.sync_failed();
            log(LogLevel::Warn, &format!("attach: budget sync: {why}"));
            None
        }
    }
}

/// The batch's JSON: the records go as they were queued (already JSON),
/// so none is parsed again here.
fn batch(budgets: &Budgets, records: &[Vec<u8>], now: u64) -> Vec<u8> {
    let gateway = serde_json::to_string(&budgets::gateway_id()).unwrap_or_default();
    let totals = serde_json::to_string(&budgets.totals_for(now, MAX_TOTALS)).unwrap_or_default();
    let mut body =
        Vec::with_capacity(64 + totals.len() + records.iter().map(Vec::len).sum::<usize>());
    body.extend_from_slice(b"{\"gateway\":");
    body.extend_from_slice(gateway.as_bytes());
    body.extend_from_slice(b",\"records\":[");
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record);
    }
    body.extend_from_slice(b"],\"totals_for\":");
    body.extend_from_slice(totals.as_bytes());
    body.push(b'}');
    body
}

/// The service's answer: on a 2xx the batch is done, the totals and
/// overrides are taken in; a refused batch (4xx) is dropped and logged,
/// anything else is sent again at the next interval.
pub fn on_response(vm: &Vm, _: Pending, response: &Response) {
    let Some(budgets) = vm.budgets.as_ref() else {
        return;
    };
    let code = response.code();
    let mut state = budgets.sync.borrow_mut();
    state.in_flight = false;
    match code {
        Some(200..=299) => {
            state.pending.clear();
            drop(state);
            let answer = (!response.too_large())
                .then(|| response.body().ok())
                .flatten()
                .and_then(|body| serde_json::from_slice(&body).ok())
                .map(|value| SyncResponse::from_value(&value));
            match answer {
                Some(Ok(answer)) => take_in(budgets, answer),
                Some(Err((at, why))) => log(
                    LogLevel::Warn,
                    &format!("attach: budget sync answer unreadable at {at}: {why}"),
                ),
                None => log(LogLevel::Warn, "attach: budget sync answer unreadable"),
            }
        }
        Some(400..=499) => {
            budgets.sync_failed();
            log(
                LogLevel::Warn,
                &format!(
                    "attach: the service refused a usage batch of {} record(s) with HTTP {}; dropped",
                    state.pending.len(),
                    code.unwrap_or_default()
                ),
            );
            state.pending.clear();
        }
        _ => {
            budgets.sync_failed();
            log(
                LogLevel::Debug,
                &format!(
                    "attach: budget sync failed ({:?}); sent again later",
                    response.status
                ),
            );
        }
    }
}

fn take_in(budgets: &Budgets, answer: SyncResponse) {
    let now = now_ms();
    for total in &answer.totals {
        let written = ledger_shared::update(&total.key.user, |ledger| {
            ledger.set_remote(&total.key.scope, total.key.seconds, total.tokens, now);
            ((), true)
        });
        if written.is_none() {
            log(
                LogLevel::Debug,
                "attach: a user's ledger could not take the other gateways' total",
            );
        }
    }
    *budgets.overrides.borrow_mut() = answer.overrides;
}
