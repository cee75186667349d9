//! Fetching one issuer's key set, once this VM won the fetch (see
//! [`crate::jwks`]): the discovery document when the key set's URL is not
//! known, then the key set, written to shared data for every VM.

use super::callout::{self, Response};
use super::clock::now_ms;
use super::jwks_shared;
use super::log::log;
use super::vm::Vm;
use crate::jwks::key_set::JwkSet;
use crate::jwks::schedule::{FetchState, discovered_jwks_uri};
use crate::url::Url;
use proxy_wasm::types::LogLevel;
use std::time::Duration;

enum Stage {
    Discovery,
    Keys,
}

/// A fetch's callout in flight.
pub struct Pending {
    issuer: usize,
    stage: Stage,
}

/// What follows an answer.
pub enum Next {
    /// Another callout of the same fetch is in flight.
    Call(u32, Pending),
    /// The key set was installed: waiting requests may go on.
    Loaded,
    /// The fetch is over (failed, and recorded as such).
    Done,
}

/// Starts the fetch this VM claimed, at the key set when its URL is known.
pub fn start(vm: &Vm, issuer: usize, state: &FetchState) -> Option<(u32, Pending)> {
    let p = vm.config.providers.get(issuer)?;
    let known = p
        .jwks_uri
        .clone()
        .or_else(|| state.jwks_uri.as_deref().and_then(|u| Url::parse(u).ok()));
    match known {
        Some(url) => call(vm, issuer, Stage::Keys, &url),
        None => call(vm, issuer, Stage::Discovery, &p.discovery),
    }
}

fn call(vm: &Vm, issuer: usize, stage: Stage, url: &Url) -> Option<(u32, Pending)> {
    let request = callout::Request {
        method: "GET",
        path: &url.path,
        headers: vec![("accept", "application/json")],
        body: None,
        timeout: Duration::from_millis(vm.config.jwks.fetch_timeout_ms),
    };
    match callout::send(&vm.config, url, request) {
        Ok(token) => Some((token, Pending { issuer, stage })),
        Err(why) => {
            failed(vm, issuer, &why);
            None
        }
    }
}

/// Records the failure in the shared schedule, which backs off.
fn failed(vm: &Vm, issuer: usize, why: &str) {
    let Some(p) = vm.config.providers.get(issuer) else {
        return;
    };
    log(
        LogLevel::Warn,
        &format!("fetching keys of {} failed: {why}", p.issuer),
    );
    let now = now_ms();
    jwks_shared::update_state(&p.issuer, |s| {
        s.failed(now, &vm.config.jwks);
        true
    });
}

pub fn on_response(vm: &Vm, pending: Pending, response: &Response) -> Next {
    let Pending { issuer, stage } = pending;
    let why = match response.status.as_deref() {
        None => "no response (timeout or connection failure)".to_owned(),
        Some(status) if status != "200" => format!("HTTP status {status}"),
        Some(_) if response.too_large() => "document too large".to_owned(),
        Some(_) => match response.body() {
            Ok(body) => return on_document(vm, issuer, stage, &body),
            Err(status) => format!("answer unreadable: {status:?}"),
        },
    };
    failed(vm, issuer, &why);
    Next::Done
}

fn on_document(vm: &Vm, issuer: usize, stage: Stage, body: &[u8]) -> Next {
    let Some(p) = vm.config.providers.get(issuer) else {
        return Next::Done;
    };
    match stage {
        Stage::Discovery => match discovered_jwks_uri(body, &p.issuer) {
            Ok(url) => {
                let uri = format!("{}{}", url.origin(), url.path);
                jwks_shared::update_state(&p.issuer, |s| {
                    s.jwks_uri = Some(uri.clone());
                    true
                });
                match call(vm, issuer, Stage::Keys, &url) {
                    Some((token, pending)) => Next::Call(token, pending),
                    None => Next::Done,
                }
            }
            Err(why) => {
                failed(vm, issuer, why);
                Next::Done
            }
        },
        Stage::Keys => match JwkSet::parse(body) {
            Ok(set) => {
                let now = now_ms();
                if !jwks_shared::write_keys(&p.issuer, body) {
                    failed(vm, issuer, "shared data refused the key set");
                    return Next::Done;
                }
                jwks_shared::update_state(&p.issuer, |s| {
                    s.succeeded(now, &vm.config.jwks);
                    true
                });
                log(
                    LogLevel::Info,
                    &format!("loaded {} key(s) of {}", set.len(), p.issuer),
                );
                // The set just written is the shared entry's current
                // version (this VM holds the fetch lease): install it
                // under that CAS instead of parsing it again.
                if let Some((_, cas)) = jwks_shared::read_keys(&p.issuer) {
                    vm.keys.borrow_mut().install(issuer, cas, set);
                }
                vm.sync();
                Next::Loaded
            }
            Err(e) => {
                failed(vm, issuer, &format!("key set unusable: {e}"));
                Next::Done
            }
        },
    }
}
