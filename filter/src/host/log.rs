//! Envoy's log, as the filter writes it.

use super::abi;
use proxy_wasm::types::LogLevel;

/// Writes one line; a line the host refuses is lost, there being nowhere
/// else to say so.
pub fn log(level: LogLevel, message: &str) {
    let _ = abi::log(level, message);
}
