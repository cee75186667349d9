//! The shared data records of [`crate::jwks`], read and written by every VM:
//! each issuer's fetch schedule and its raw key set.

use super::abi::{self, Status};
use crate::jwks::schedule::FetchState;

fn state_key(issuer: &str) -> String {
    format!("attach.jwks.state|{issuer}")
}

fn keys_key(issuer: &str) -> String {
    format!("attach.jwks.keys|{issuer}")
}

/// The issuer's schedule and its CAS (`None` when nobody wrote it yet).
fn read(issuer: &str) -> Result<(FetchState, Option<u32>), Status> {
    Ok(match abi::shared_data(&state_key(issuer))? {
        (Some(bytes), cas) => (serde_json::from_slice(&bytes).unwrap_or_default(), cas),
        (None, cas) => (FetchState::default(), cas),
    })
}

/// The issuer's schedule, or the default one when shared data cannot be read.
pub fn read_state(issuer: &str) -> FetchState {
    read(issuer).map(|(state, _)| state).unwrap_or_default()
}

/// Creates the issuer's record when absent. Envoy accepts any CAS for a key
/// that does not exist yet, so records are created up front (at configure
/// time) and only ever changed with a real CAS afterwards. A record that
/// cannot be read is left alone, lest one that exists be overwritten.
pub fn ensure_state(issuer: &str) {
    if let Ok((_, None)) = read(issuer) {
        if let Ok(bytes) = serde_json::to_vec(&FetchState::default()) {
            let _ = abi::set_shared_data(&state_key(issuer), &bytes, None);
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
        let (mut state, cas) = read(issuer).ok()?;
        if cas.is_none() {
            ensure_state(issuer);
            continue;
        }
        if !change(&mut state) {
            return None;
        }
        let bytes = serde_json::to_vec(&state).ok()?;
        match abi::set_shared_data(&state_key(issuer), &bytes, cas) {
            Ok(()) => return Some(state),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// The raw key set and its CAS, the VM-local parse cache's version.
pub fn read_keys(issuer: &str) -> Option<(Vec<u8>, u32)> {
    match abi::shared_data(&keys_key(issuer)) {
        Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
        _ => None,
    }
}

pub fn write_keys(issuer: &str, raw: &[u8]) -> bool {
    abi::set_shared_data(&keys_key(issuer), raw, None).is_ok()
}
