//! The host's wall clock.

use super::abi;

/// Wall-clock time in milliseconds. If the host cannot tell the time, the
/// answer is "the far future": every token then looks expired (fail closed).
pub fn now_ms() -> u64 {
    abi::current_time_ns().map_or(u64::MAX / 2, |ns| ns / 1_000_000)
}
