//! The only code that talks to the proxy-wasm host (Envoy).
//!
//! `root` owns the per-VM state and every callout; `gate` is the per-request
//! filter; `shared` wraps shared data, the one channel between VMs; `mirror`
//! is the memory mirror's queue and deliveries.

mod gate;
mod mirror;
mod root;
mod shared;
mod stream;

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Debug);
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}}

/// Wall-clock time in milliseconds. If the host cannot tell the time, the
/// answer is "the far future": every token then looks expired (fail closed).
pub(crate) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(u64::MAX / 2)
}

pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}
