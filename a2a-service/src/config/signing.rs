//! The gateway's signing keys, with which the service signs the agent
//! cards it serves (`a2a/card_signing.rs`): the same key set the filter
//! signs identity tokens with and publishes at `/.well-known/jwks.json`,
//! so a client verifies cards with the keys it already finds there.
//!
//! The launcher hands the set's text in `ATTACH_SIGNING_KEYS`, as it hands
//! it to Envoy: in the environment, never on a command line. Without the
//! variable the service reads `$ATTACH_DATA_DIR/signing-keys.json`, where
//! the launcher keeps the set, when that file exists; without either it
//! has no keys and serves its cards unsigned, as before cards were signed.
//! The set is read once, at start-up, like the filter's.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use attach_contract::gateway_keys::{KEYS_FILE, KEYS_VAR, SigningKeys};

use super::error::ConfigError;

/// The key set from `text` (the variable's value) or else from the data
/// folder's file; `None` when there is neither.
pub(super) fn signing_keys(
    text: Option<String>,
    data_dir: &Path,
) -> Result<Option<Arc<SigningKeys>>, ConfigError> {
    let refuse = |reason: String| ConfigError::new(KEYS_VAR, reason);
    let keys = match text {
        Some(text) => SigningKeys::parse(&text).map_err(|e| refuse(e.to_string()))?,
        None => {
            let path = data_dir.join(KEYS_FILE);
            match read_key_file(&path) {
                Ok(text) => SigningKeys::parse(&text)
                    .map_err(|e| refuse(format!("not set, and {}: {e}", path.display())))?,
                Err(FileError::Missing) => return Ok(None),
                Err(FileError::Unusable(reason)) => {
                    return Err(refuse(format!("not set, and {}: {reason}", path.display())));
                }
            }
        }
    };
    Ok(Some(Arc::new(keys)))
}

enum FileError {
    Missing,
    Unusable(String),
}

/// The key file's text; refused when group or others may read it, since
/// its private keys let anyone sign as the gateway.
fn read_key_file(path: &Path) -> Result<String, FileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(FileError::Missing),
        Err(e) => return Err(FileError::Unusable(e.to_string())),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(FileError::Unusable(
            "readable by others; run chmod 600 on it".into(),
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|e| FileError::Unusable(format!("cannot be read as text ({e})")))
}
