//! Envoy's log level (`--log-level`), from `ATTACH_LOG_LEVEL`.
//!
//! The default is `warn`: Envoy's own start-up log is about a hundred
//! lines at `info`, which would bury the launcher's banner, while the
//! filter's warnings (key sets that cannot be fetched, memory deliveries
//! that fail) still come out. The filter's per-request refusals are
//! `debug`; `ATTACH_LOG_LEVEL=debug` shows them, with the rest of Envoy's
//! debug log.

use crate::error::Error;

/// The level when `ATTACH_LOG_LEVEL` is unset.
pub const DEFAULT: &str = "warn";

/// The names Envoy's `--log-level` accepts.
const LEVELS: [&str; 8] = [
    "trace", "debug", "info", "warning", "warn", "error", "critical", "off",
];

/// The level to run Envoy at: `raw` (the value of `ATTACH_LOG_LEVEL`, in
/// any case) when given, else [`DEFAULT`].
pub fn choose(raw: Option<&str>) -> Result<String, Error> {
    let Some(raw) = raw else {
        return Ok(DEFAULT.to_string());
    };
    let lower = raw.to_ascii_lowercase();
    if !LEVELS.contains(&lower.as_str()) {
        return Err(Error::setting(
            "ATTACH_LOG_LEVEL",
            format!("{raw:?} is not one of {}", LEVELS.join(", ")),
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warn_unless_a_level_is_given() {
        assert_eq!(choose(None).unwrap(), "warn");
        assert_eq!(choose(Some("info")).unwrap(), "info");
        assert_eq!(choose(Some("DEBUG")).unwrap(), "debug");
        for level in LEVELS {
            assert_eq!(choose(Some(level)).unwrap(), level);
        }
    }

    #[test]
    fn an_unknown_level_names_the_variable_and_the_choices() {
        let e = choose(Some("loud")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "ATTACH_LOG_LEVEL: \"loud\" is not one of trace, debug, info, warning, warn, error, critical, off"
        );
    }
}
