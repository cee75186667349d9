//! Shared data records used across VMs: each issuer's fetch schedule and raw key set.

use crate::jwks::schedule::FetchState;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Bytes, Status};

fn state_key(issuer: &str) -> String {
    format!("attach.jwks.state|{issuer}")
}

fn keys_key(issuer: &str) -> String {
    format!("attach.jwks.keys|{issuer}")
}

/// The issuer's schedule and its CAS (`None` when nobody wrote it yet).
pub fn read_state(issuer: &str) -> (FetchState, Option<u32>) {
    match hostcalls::get_shared_data(&state_key(issuer)) {
        Ok((Some(bytes), cas)) => (serde_json::from_slice(&bytes).unwrap_or_default(), cas),
        Ok((None, cas)) => (FetchState::default(), cas),
        Err(_) => (FetchState::default(), None),
    }
}

/// Creates the issuer's record when absent. Envoy accepts any CAS for a key
/// that does not exist yet, so records are created up front (at configure
/// time) and only ever changed with a real CAS afterwards.
pub fn ensure_state(issuer: &str) {
    if let (_, None) = read_state(issuer) {
        if let Ok(bytes) = serde_json::to_vec(&FetchState::default()) {
            let _ = hostcalls::set_shared_data(&state_key(issuer), Some(&bytes), None);
        }
    }
}

/// Applies `change` with compare-and-swap; `change` returns false to abort.
/// Returns the state written, or `None` when aborted or contended too long.
pub fn update_state(
    issuer: &str,
    mut change: impl FnMut(&mut FetchState) -> bool,
) -> Option<FetchState> {
    for _ in 0..16 {
        let (mut state, cas) = read_state(issuer);
        if cas.is_none() {
            ensure_state(issuer);
            continue;
        }
        if !change(&mut state) {
            return None;
        }
        let bytes = serde_json::to_vec(&state).ok()?;
        match hostcalls::set_shared_data(&state_key(issuer), Some(&bytes), cas) {
            Ok(()) => return Some(state),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// The raw key set and its CAS, the VM-local parse cache's version.
pub fn read_keys(issuer: &str) -> Option<(Bytes, u32)> {
    match hostcalls::get_shared_data(&keys_key(issuer)) {
        Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
        _ => None,
    }
}

pub fn write_keys(issuer: &str, raw: &[u8]) -> bool {
    hostcalls::set_shared_data(&keys_key(issuer), Some(raw), None).is_ok()
}
