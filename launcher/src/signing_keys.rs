//! The gateway's signing keys (`attach_contract::gateway_keys`): kept in
//! `$ATTACH_DATA_DIR/signing-keys.json` (mode 0600, refused when group or
//! others can read it), created on first use and rotated at start-up when
//! the current key is older than `ATTACH_KEY_ROTATION_DAYS` or of another
//! algorithm than `ATTACH_SIGNING_ALG`; the key it replaces stays
//! published for `ATTACH_KEY_OVERLAP_HOURS`. The filter
//! gets the set through Envoy's environment (`ATTACH_SIGNING_KEYS`), never
//! through the bootstrap, which Envoy's admin interface prints.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use attach_contract::gateway_keys::{
    Algorithm, KEYS_FILE, KeySet, SigningKeys, StoredKey, new_key_of,
};

use crate::error::Error;
use crate::private_file::{self, Placement};

/// The variable of Envoy's environment that carries the set to the filter,
/// and of the companion service's, which signs agent cards with it.
pub use attach_contract::gateway_keys::KEYS_VAR;

/// When keys rotate: the current key's age that makes a new one, and how
/// long the one it replaces stays published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub after_secs: u64,
    pub overlap_secs: u64,
}

/// What [`load`] did to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Created,
    Rotated,
}

/// The key set as JSON text, after creating or rotating it as due at `now`
/// (unix seconds), new keys being of `alg`.
pub fn load(
    dir: &Path,
    now: u64,
    alg: Algorithm,
    rotation: Rotation,
) -> Result<(String, Change), Error> {
    let path = dir.join(KEYS_FILE);
    let at = path.display();
    let existing = match fs::metadata(&path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::runtime(format!(
                    "{at}: readable by others; run chmod 600 on it"
                )));
            }
            let text =
                fs::read_to_string(&path).map_err(|e| Error::runtime(format!("{at}: {e}")))?;
            let set = KeySet::parse(&text)
                .and_then(|set| SigningKeys::from_set(&set).map(|_| set))
                .map_err(|e| Error::runtime(format!("{at}: {e} (remove it to get a new key)")))?;
            Some(set)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(Error::runtime(format!("{at}: {e}"))),
    };
    let created = existing.is_none();
    let mut set = existing.unwrap_or_default();
    if !set.rotate(
        random_key(alg, now)?,
        now,
        rotation.after_secs,
        rotation.overlap_secs,
    ) {
        return Ok((document(&set)?, Change::Unchanged));
    }
    let text = document(&set)?;
    write(dir, &text)?;
    Ok((
        text,
        if created {
            Change::Created
        } else {
            Change::Rotated
        },
    ))
}

/// One line on what [`load`] did to the file at `path`, naming the key
/// that signs by its `kid` and algorithm (nothing secret).
pub fn report(path: &Path, text: &str, change: Change) -> Result<String, Error> {
    let keys =
        SigningKeys::parse(text).map_err(|e| Error::runtime(format!("{}: {e}", path.display())))?;
    let what = match change {
        Change::Created => "created",
        Change::Rotated => "rotated (the previous key stays published for the overlap)",
        Change::Unchanged => "unchanged",
    };
    Ok(format!(
        "{}: {what}; signing key {} ({})",
        path.display(),
        keys.kid(),
        keys.algorithm()
    ))
}

fn document(set: &KeySet) -> Result<String, Error> {
    serde_json::to_string(set).map_err(|e| Error::runtime(format!("signing keys: {e}")))
}

/// A new key of `alg` from `/dev/urandom`, drawing again the rare 32 bytes
/// that make no key of it (an ES256 scalar not below the curve's order).
fn random_key(alg: Algorithm, now: u64) -> Result<StoredKey, Error> {
    loop {
        if let Some(key) = new_key_of(alg, private_file::random::<32>()?, now) {
            return Ok(key);
        }
    }
}

/// Replaces the file whole, so a reader never sees half a key set.
fn write(dir: &Path, text: &str) -> Result<(), Error> {
    private_file::write(dir, KEYS_FILE, &format!("{text}\n"), Placement::Replace)
        .map_err(|e| Error::runtime(format!("{}: {e}", dir.join(KEYS_FILE).display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const ROTATION: Rotation = Rotation {
        after_secs: 30 * DAY,
        overlap_secs: DAY,
    };

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("attach-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn kids(text: &str) -> Vec<String> {
        KeySet::parse(text)
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect()
    }

    #[test]
    fn created_once_then_rotated_when_due() {
        let dir = scratch("rotate");
        let (first, change) = load(&dir, 0, Algorithm::EdDSA, ROTATION).unwrap();
        assert_eq!(change, Change::Created);
        let mode = fs::metadata(dir.join(KEYS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, change) = load(&dir, DAY, Algorithm::EdDSA, ROTATION).unwrap();
        assert_eq!(
            (again.as_str(), change),
            (first.as_str(), Change::Unchanged)
        );
        // Due: a new key signs, the old one is still published.
        let (rotated, change) = load(&dir, 30 * DAY, Algorithm::EdDSA, ROTATION).unwrap();
        assert_eq!(change, Change::Rotated);
        let both = kids(&rotated);
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], kids(&first)[0]);
        let keys = SigningKeys::parse(&rotated).unwrap();
        assert_eq!(keys.kid(), both[1]);
        // After the overlap, the old key is gone from the file.
        let (later, _) = load(&dir, 31 * DAY, Algorithm::EdDSA, ROTATION).unwrap();
        assert_eq!(kids(&later), vec![both[1].clone()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn algorithms(text: &str) -> Vec<String> {
        KeySet::parse(text)
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.alg)
            .collect()
    }

    #[test]
    fn another_algorithm_rotates_at_the_next_start() {
        let dir = scratch("algorithm");
        let (first, _) = load(&dir, 0, Algorithm::EdDSA, ROTATION).unwrap();
        // A day later, far from due by age: ES256 makes it due.
        let (rotated, change) = load(&dir, DAY, Algorithm::ES256, ROTATION).unwrap();
        assert_eq!(change, Change::Rotated);
        assert_eq!(algorithms(&rotated), ["EdDSA", "ES256"]);
        assert_eq!(kids(&rotated)[0], kids(&first)[0]);
        let keys = SigningKeys::parse(&rotated).unwrap();
        assert_eq!(keys.algorithm(), Algorithm::ES256);
        assert_eq!(keys.published(DAY).count(), 2);
        // Started again with ES256: nothing to do.
        let (again, change) = load(&dir, DAY + 1, Algorithm::ES256, ROTATION).unwrap();
        assert_eq!((again, change), (rotated, Change::Unchanged));
        // Once the overlap is over, only the P-256 key is left.
        let (later, _) = load(&dir, 2 * DAY + 1, Algorithm::ES256, ROTATION).unwrap();
        assert_eq!(algorithms(&later), ["ES256"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_es256_set_is_created_with_one_p256_key() {
        let dir = scratch("es256");
        let (text, change) = load(&dir, 0, Algorithm::ES256, ROTATION).unwrap();
        assert_eq!(change, Change::Created);
        assert_eq!(algorithms(&text), ["ES256"]);
        let jwks = SigningKeys::parse(&text).unwrap().jwks(0);
        assert_eq!(jwks["keys"][0]["kty"], "EC");
        assert_eq!(jwks["keys"][0]["crv"], "P-256");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_report_names_the_signing_key_and_no_secret() {
        let dir = scratch("report");
        let path = dir.join(KEYS_FILE);
        let (text, change) = load(&dir, 0, Algorithm::EdDSA, ROTATION).unwrap();
        let line = report(&path, &text, change).unwrap();
        let kid = kids(&text).remove(0);
        assert!(line.contains("created") && line.contains(&kid), "{line}");
        assert!(line.contains("EdDSA"), "{line}");
        let seed = &KeySet::parse(&text).unwrap().keys[0].seed;
        assert!(!line.contains(seed.as_str()), "{line}");
        let (text, change) = load(&dir, 30 * DAY, Algorithm::EdDSA, ROTATION).unwrap();
        let line = report(&path, &text, change).unwrap();
        assert!(
            line.contains("rotated") && line.contains(&kids(&text)[1]),
            "{line}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_readable_or_broken_file_is_refused() {
        let dir = scratch("refuse");
        load(&dir, 0, Algorithm::EdDSA, ROTATION).unwrap();
        let path = dir.join(KEYS_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&dir, 0, Algorithm::EdDSA, ROTATION)
            .unwrap_err()
            .to_string();
        assert!(e.contains("readable by others"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, r#"{"keys": [{"kid": "x"}]}"#).unwrap();
        let e = load(&dir, 0, Algorithm::EdDSA, ROTATION)
            .unwrap_err()
            .to_string();
        assert!(e.contains("remove it to get a new key"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
