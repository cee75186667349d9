//! Each user's budget ledger in shared data, so that every worker of the
//! Envoy reserves against the same figures: read, changed and written back
//! by compare-and-swap, again from the start when another worker wrote
//! first. A user's first record is created without a CAS (the host has no
//! create-if-absent): two workers creating it at the same instant can lose
//! one reservation, a bound the README states.

use super::abi::{self, Status};
use crate::budget::ledger::Ledger;

const KEY_PREFIX: &str = "attach.budget.u.";
/// Writers that lose this many races in a row give up (the request is
/// refused with a 503 rather than admitted unreserved).
const ATTEMPTS: usize = 32;

/// Applies `change` to `user`'s ledger; it returns its result and whether
/// the ledger changed (a refusal leaves it as it was, unwritten). `None`
/// when shared data cannot be read or written.
pub fn update<R>(user: &str, mut change: impl FnMut(&mut Ledger) -> (R, bool)) -> Option<R> {
    let key = format!("{KEY_PREFIX}{user}");
    for _ in 0..ATTEMPTS {
        let (bytes, cas) = abi::shared_data(&key).ok()?;
        let mut ledger = Ledger::decode(bytes.as_deref().unwrap_or_default());
        let (result, changed) = change(&mut ledger);
        if !changed {
            return Some(result);
        }
        match abi::set_shared_data(&key, &ledger.encode(), cas) {
            Ok(()) => return Some(result),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}
