//! What a memory event may carry.
//!
//! The filter fits every event it mirrors within these limits, so that the
//! sink never refuses an exchange for what a client put in it, and the
//! companion service's `/mem/ingest` refuses any event outside them. Both
//! read the rule here, so the two sides cannot drift apart.

use std::ops::RangeInclusive;

/// Label fields, in characters.
pub const MAX_KIND_CHARS: usize = 64;
pub const MAX_MODEL_CHARS: usize = 256;
pub const MAX_ROUTE_CHARS: usize = 2048;
pub const MAX_REQUEST_ID_CHARS: usize = 256;
pub const MAX_SESSION_CHARS: usize = 256;
pub const MAX_ROLE_CHARS: usize = 64;
pub const MAX_TASK_ID_CHARS: usize = 256;
pub const MAX_UNREADABLE_CHARS: usize = 64;
/// MCP asks tool names to stay within 128 characters; a server that does
/// not still has its calls recorded, under the name's first 256.
pub const MAX_TOOL_CHARS: usize = 256;

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write (its
/// years have four digits). Timestamps run from the epoch to here: nothing
/// outside can be written back.
pub const MAX_UNIX_MS: u64 = 253_402_300_799_999;

/// The HTTP status codes an event may record.
pub const STATUS_CODES: RangeInclusive<u16> = 100..=599;

/// Whether `value` may stand in a label field: at most `max_chars`
/// characters, none of them a control character (labels end up in logs,
/// in headers of tools that read them, and in Weaviate filters).
pub fn fits(value: &str, max_chars: usize) -> bool {
    !value.chars().any(char::is_control) && value.chars().nth(max_chars).is_none()
}

/// `value` made to fit a label field: control characters become U+FFFD and
/// the text is cut after `max_chars` characters, so it always [`fits`].
pub fn fit(value: &str, max_chars: usize) -> String {
    value
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Whether unix milliseconds `ms` lie between the epoch and [`MAX_UNIX_MS`].
pub fn in_time_range(ms: i64) -> bool {
    u64::try_from(ms).is_ok_and(|ms| ms <= MAX_UNIX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_by_characters_without_control_characters() {
        assert!(fits("", 0));
        assert!(fits("llama3.2", 8));
        assert!(!fits("llama3.2", 7));
        assert!(fits("ééé", 3), "characters, not bytes");
        assert!(!fits("a\tb", 10), "a tab is a control character");
        for bad in ["\n", "\u{0}", "\u{7f}", "\u{85}"] {
            assert!(!fits(bad, 10), "{bad:?}");
        }
        assert!(fits("\u{fffd}", 1));
    }

    #[test]
    fn fit_replaces_control_characters_and_cuts_on_characters() {
        assert_eq!(fit("a\nb\u{0}", 10), "a\u{fffd}b\u{fffd}");
        assert_eq!(fit("ééé", 2), "éé");
        assert_eq!(fit("abc", 0), "");
        let long = "m".repeat(300) + "\n";
        let cut = fit(&long, MAX_MODEL_CHARS);
        assert_eq!(cut, "m".repeat(MAX_MODEL_CHARS));
        assert!(fits(&cut, MAX_MODEL_CHARS));
    }

    #[test]
    fn the_time_range_is_the_epoch_to_year_9999() {
        assert!(in_time_range(0));
        assert!(in_time_range(253_402_300_799_999));
        assert!(!in_time_range(253_402_300_800_000));
        assert!(!in_time_range(-1));
        assert!(!in_time_range(i64::MIN) && !in_time_range(i64::MAX));
    }

    proptest::proptest! {
        #[test]
        fn fit_always_fits(value in "\\PC{0,40}|[\\x00-\\x1f\\x7f-\\u{9f}a-zé]{0,40}", max in 0usize..50) {
            let fitted = fit(&value, max);
            proptest::prop_assert!(fits(&fitted, max));
            if fits(&value, max) {
                proptest::prop_assert_eq!(fitted, value);
            }
        }
    }
}
