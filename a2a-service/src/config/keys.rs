//! The assertion key's file: where the key comes from when
//! `ATTACH_ASSERTION_KEY` is not set.

use std::path::Path;

use super::error::ConfigError;
use crate::auth::AssertionKey;

/// The key file the launcher writes: base64url text, readable by its owner
/// only (a key others can read lets them forge any identity).
pub(super) fn read_key_file(path: &Path) -> Result<AssertionKey, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let refuse = |reason: String| {
        ConfigError::new(
            "ATTACH_ASSERTION_KEY",
            format!("{}: {reason}", path.display()),
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        refuse(format!(
            "not set, and the key file cannot be read ({e}); the launcher creates it"
        ))
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(refuse("readable by others; run chmod 600 on it".into()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| refuse(format!("cannot be read as text ({e})")))?;
    AssertionKey::from_text(&text).map_err(refuse)
}
