//! `attach token`: a DID-JWT for the local stack, with no identity provider.
//!
//! A did:key Ed25519 identity is created once and kept in the data folder
//! (mode 0600, like an SSH key); every call prints a fresh token for the
//! gateway's DID audience, so a curl works a minute after `make run`.

use crate::error::Error;
use crate::private_file::{self, Placement};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Multicodec prefix of an Ed25519 public key (0xed as an unsigned varint).
const ED25519_PUB: [u8; 2] = [0xed, 0x01];
pub const IDENTITY_FILE: &str = "identity.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    did: String,
    /// The Ed25519 seed, base64url.
    seed: String,
}

pub struct Identity {
    pub did: String,
    key: SigningKey,
}

pub fn did_key(key: &SigningKey) -> String {
    let mut bytes = ED25519_PUB.to_vec();
    bytes.extend_from_slice(key.verifying_key().as_bytes());
    format!("did:key:z{}", bs58::encode(bytes).into_string())
}

/// Loads the identity in `dir`, creating it on first use. Returns whether it was created.
pub fn load_or_create(dir: &Path) -> Result<(Identity, bool), Error> {
    let path = dir.join(IDENTITY_FILE);
    let io = |e: std::io::Error| Error::runtime(format!("{}: {e}", path.display()));
    match fs::metadata(&path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::runtime(format!(
                    "{}: readable by others; run chmod 600 on it",
                    path.display()
                )));
            }
            let text = fs::read_to_string(&path).map_err(io)?;
            let stored: Stored = serde_json::from_str(&text)
                .map_err(|e| Error::runtime(format!("{}: {e}", path.display())))?;
            let seed: [u8; 32] = URL_SAFE_NO_PAD
                .decode(&stored.seed)
                .ok()
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| Error::runtime(format!("{}: bad seed", path.display())))?;
            let key = SigningKey::from_bytes(&seed);
            let did = did_key(&key);
            if did != stored.did {
                return Err(Error::runtime(format!(
                    "{}: the seed does not match the DID",
                    path.display()
                )));
            }
            Ok((Identity { did, key }, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = private_file::random::<32>()?;
            let key = SigningKey::from_bytes(&seed);
            let did = did_key(&key);
            let stored = Stored {
                did: did.clone(),
                seed: URL_SAFE_NO_PAD.encode(seed),
            };
            let text = serde_json::to_string_pretty(&stored)
                .map_err(|e| Error::runtime(format!("identity: {e}")))?;
            private_file::write(dir, IDENTITY_FILE, &text, Placement::CreateOnce).map_err(io)?;
            Ok((Identity { did, key }, true))
        }
        Err(e) => Err(io(e)),
    }
}

impl Identity {
    /// A compact EdDSA DID-JWT: `iss` = `sub` = the DID, for `aud`, valid `ttl_secs` from `now`.
    pub fn token(&self, aud: &str, now: u64, ttl_secs: u64) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT"});
        let claims = json!({
            "iss": self.did,
            "sub": self.did,
            "aud": aud,
            "iat": now,
            "exp": now + ttl_secs,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("attach-token-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn identity_is_created_once_with_private_permissions() {
        let dir = temp_dir("once");
        let (first, created) = load_or_create(&dir).unwrap();
        assert!(created);
        assert!(first.did.starts_with("did:key:z6Mk"), "{}", first.did);
        let mode = fs::metadata(dir.join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, created) = load_or_create(&dir).unwrap();
        assert!(!created);
        assert_eq!(first.did, second.did);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_permissions_are_refused() {
        let dir = temp_dir("perm");
        load_or_create(&dir).unwrap();
        let path = dir.join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&dir).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn token_claims_and_signature() {
        let dir = temp_dir("tok");
        let (id, _) = load_or_create(&dir).unwrap();
        let t = id.token("http://127.0.0.1:8080", 1_000, 600);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], id.did.as_str());
        assert_eq!(claims["aud"], "http://127.0.0.1:8080");
        assert_eq!(claims["exp"], 1_600);
        let sig: [u8; 64] = URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap()
            .try_into()
            .unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        id.key
            .verifying_key()
            .verify_strict(
                input.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
